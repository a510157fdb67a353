//! The NodeUnschedulable filter plugin: a cordoned node (`spec.unschedulable`) takes only pods that tolerate its taint.

use super::framework::{Incoming, NodeInfo, Rejection};
use super::taint_toleration::tolerated;

// The plugins' reason strings, verbatim from kube-scheduler (v1.33).
pub(super) const ERR_NODE_UNSCHEDULABLE: &str = "node(s) were unschedulable";

/// The taint `kubectl cordon` implies; tolerating it tolerates `spec.unschedulable`.
pub(super) const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Rejects a cordoned node unless the pod tolerates `node.kubernetes.io/unschedulable:NoSchedule`.
pub(super) fn filter(incoming: &Incoming<'_>, node: &NodeInfo<'_>) -> Result<(), Rejection> {
    if node.node["spec"]["unschedulable"].as_bool() == Some(true)
        && !tolerated(incoming.tolerations, UNSCHEDULABLE_TAINT, "", "NoSchedule")
    {
        return Err(Rejection::unresolvable(ERR_NODE_UNSCHEDULABLE));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn unschedulable_nodes_are_skipped() {
        let mut cordoned = node("a", "8", "8Gi");
        cordoned["spec"]["unschedulable"] = json!(true);
        let nodes = [cordoned.clone(), node("b", "8", "8Gi")];
        assert_eq!(
            place(&pod("p", "1", "1Gi"), &nodes, &[]),
            Ok("b".to_owned())
        );
        assert_eq!(
            message(place(&pod("p", "1", "1Gi"), &[cordoned], &[])),
            format!(
                "0/1 nodes are available: 1 node(s) were unschedulable. {}",
                not_helpful(1)
            )
        );
    }

    #[test]
    fn tolerating_the_unschedulable_taint_allows_a_cordoned_node() {
        let mut cordoned = node("a", "8", "8Gi");
        cordoned["spec"]["unschedulable"] = json!(true);
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["tolerations"] = json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]);
        assert_eq!(place(&p, &[cordoned], &[]), Ok("a".to_owned()));
    }
}
