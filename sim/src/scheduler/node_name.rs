//! The NodeName filter plugin: a pod that names its node (`spec.nodeName`) fits only there.

use super::framework::{Incoming, NodeInfo, Rejection};

pub(super) const ERR_NODE_NAME: &str = "node(s) didn't match the requested node name";

/// Rejects every node but the one the pod names, if it names one.
pub(super) fn filter(incoming: &Incoming<'_>, node: &NodeInfo<'_>) -> Result<(), Rejection> {
    if let Some(wanted) = incoming.node_name
        && wanted != node.name
    {
        return Err(Rejection::unresolvable(ERR_NODE_NAME));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn node_name_only_considers_that_node() {
        let nodes = [node("a", "8", "8Gi"), node("b", "8", "8Gi")];
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["nodeName"] = json!("b");
        assert_eq!(place(&p, &nodes, &[]), Ok("b".to_owned()));
    }

    #[test]
    fn node_name_of_a_missing_node() {
        let nodes = [node("a", "8", "8Gi"), node("b", "8", "8Gi")];
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["nodeName"] = json!("gone");
        assert_eq!(
            message(place(&p, &nodes, &[])),
            format!(
                "0/2 nodes are available: 2 node(s) didn't match the requested node name. {}",
                not_helpful(2)
            )
        );
    }

    #[test]
    fn a_bound_pod_in_the_pod_list_is_not_counted_against_itself() {
        let nodes = [node("a", "1", "1Gi")];
        let p = running(pod("p", "1", "1Gi"), "a");
        assert_eq!(
            place(&p, &nodes, std::slice::from_ref(&p)),
            Ok("a".to_owned())
        );
    }
}
