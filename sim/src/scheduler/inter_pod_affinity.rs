//! The InterPodAffinity filter plugin: the pod's required affinity and anti-affinity by topology, and the required anti-affinity of the pods already placed.

use serde_json::Value;

use super::framework::{Incoming, NodeInfo, Rejection, label, labels_of, matches_all_terms};
use super::snapshot::{Snapshot, topology_count};

/// Rejects a node where the pod's affinity has no match, or where its own
/// or a placed pod's anti-affinity forbids it.
pub(super) fn filter(
    incoming: &Incoming<'_>,
    node: &NodeInfo<'_>,
    snapshot: &Snapshot<'_>,
) -> Result<(), Rejection> {
    if !satisfies_pod_affinity(incoming, node.node, snapshot) {
        return Err(Rejection::unresolvable(ERR_POD_AFFINITY));
    }
    if !satisfies_pod_anti_affinity(incoming, node.node, snapshot) {
        return Err(Rejection::unschedulable(vec![
            ERR_POD_ANTI_AFFINITY.to_owned(),
        ]));
    }
    if !satisfies_existing_anti_affinity(node.node, snapshot) {
        return Err(Rejection::unschedulable(vec![
            ERR_EXISTING_ANTI_AFFINITY.to_owned(),
        ]));
    }
    Ok(())
}

pub(super) const ERR_POD_AFFINITY: &str = "node(s) didn't match pod affinity rules";

pub(super) const ERR_POD_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";

pub(super) const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// `satisfyPodAffinity`: every affinity term must have a matching pod in the
/// node's topology, and the node must carry every topology label; the first
/// pod of a group that matches its own terms may start it anywhere with
/// those labels when no pod matches yet.
pub(super) fn satisfies_pod_affinity(
    incoming: &Incoming<'_>,
    node: &Value,
    snapshot: &Snapshot<'_>,
) -> bool {
    let mut pods_exist = true;
    for term in &incoming.affinity {
        let Some(value) = label(node, &term.topology_key) else {
            return false;
        };
        if topology_count(&snapshot.affinity, &term.topology_key, value) <= 0 {
            pods_exist = false;
        }
    }
    pods_exist
        || (snapshot.affinity.is_empty() && matches_all_terms(&incoming.affinity, incoming.pod))
}

/// `satisfyPodAntiAffinity`: no pod matching an anti-affinity term may share
/// the node's value of the term's topology key.
pub(super) fn satisfies_pod_anti_affinity(
    incoming: &Incoming<'_>,
    node: &Value,
    snapshot: &Snapshot<'_>,
) -> bool {
    incoming.anti_affinity.iter().all(|term| {
        label(node, &term.topology_key).is_none_or(|value| {
            topology_count(&snapshot.anti_affinity, &term.topology_key, value) <= 0
        })
    })
}

/// `satisfyExistingPodsAntiAffinity`: no placed pod whose anti-affinity
/// matches the incoming pod may share any of the node's topology pairs.
pub(super) fn satisfies_existing_anti_affinity(node: &Value, snapshot: &Snapshot<'_>) -> bool {
    snapshot.existing_anti_affinity.is_empty()
        || labels_of(node).iter().all(|(key, value)| {
            value.as_str().is_none_or(|value| {
                topology_count(&snapshot.existing_anti_affinity, key, value) <= 0
            })
        })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    fn zoned(name: &str, zone: &str) -> Value {
        with_labels(
            node(name, "8", "8Gi"),
            json!({"topology.kubernetes.io/zone": zone}),
        )
    }

    fn with_pod_affinity(mut pod: Value, kind: &str, terms: Value) -> Value {
        pod["spec"]["affinity"] =
            json!({kind: {"requiredDuringSchedulingIgnoredDuringExecution": terms}});
        pod
    }

    fn term(app: &str, topology_key: &str) -> Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": topology_key})
    }

    const ZONE: &str = "topology.kubernetes.io/zone";
    const HOSTNAME: &str = "kubernetes.io/hostname";

    #[test]
    fn pod_affinity_follows_the_topology_of_a_matching_pod() {
        let nodes = [zoned("a", "z1"), zoned("b", "z2"), zoned("c", "z2")];
        // A busy `b` makes the spread prefer `c`, which shares b's zone.
        let pods = [
            labelled(running(pod("db", "100m", "1Mi"), "b"), json!({"app": "db"})),
            running(pod("other", "100m", "1Mi"), "b"),
        ];
        let p = with_pod_affinity(
            pod("p", "1", "1Gi"),
            "podAffinity",
            json!([term("db", ZONE)]),
        );
        assert_eq!(place(&p, &nodes, &pods), Ok("c".to_owned()));
        let only_a = [zoned("a", "z1")];
        assert_eq!(
            message(place(&p, &only_a, &pods)),
            format!(
                "0/1 nodes are available: 1 node(s) didn't match pod affinity rules. {}",
                not_helpful(1)
            )
        );
    }

    #[test]
    fn pod_affinity_fails_on_a_node_without_the_topology_label() {
        let nodes = [node("bare", "8", "8Gi"), zoned("a", "z1")];
        let pods = [labelled(
            running(pod("db", "100m", "1Mi"), "a"),
            json!({"app": "db"}),
        )];
        let p = with_pod_affinity(
            pod("p", "1", "1Gi"),
            "podAffinity",
            json!([term("db", ZONE)]),
        );
        assert_eq!(place(&p, &nodes, &pods), Ok("a".to_owned()));
        assert!(
            message(place(&p, &nodes[..1], &pods))
                .contains("1 node(s) didn't match pod affinity rules.")
        );
    }

    #[test]
    fn pod_affinity_first_pod_of_a_group_may_start_it() {
        let nodes = [zoned("a", "z1"), node("bare", "8", "8Gi")];
        let p = labelled(
            with_pod_affinity(
                pod("p", "1", "1Gi"),
                "podAffinity",
                json!([term("web", ZONE)]),
            ),
            json!({"app": "web"}),
        );
        // No pod matches yet and `p` matches its own term: any node with the label.
        assert_eq!(place(&p, &nodes, &[]), Ok("a".to_owned()));
        // The node still needs the topology label.
        assert!(place(&p, &nodes[1..], &[]).is_err());
        // Not when `p` does not match its own term.
        let stranger = labelled(p.clone(), json!({"app": "other"}));
        assert!(message(place(&stranger, &nodes, &[])).contains("didn't match pod affinity rules"));
        // Nor once a matching pod exists elsewhere.
        let pods = [labelled(
            running(pod("w", "100m", "1Mi"), "x"),
            json!({"app": "web"}),
        )];
        let with_x = [zoned("a", "z1"), zoned("x", "z9")];
        assert_eq!(place(&p, &with_x, &pods), Ok("x".to_owned()));
    }

    #[test]
    fn pod_affinity_namespaces_default_to_the_pods_own() {
        let nodes = [zoned("a", "z1")];
        let mut db = labelled(running(pod("db", "100m", "1Mi"), "a"), json!({"app": "db"}));
        db["metadata"]["namespace"] = json!("data");
        let pods = [db];
        let p = with_pod_affinity(
            pod("p", "1", "1Gi"),
            "podAffinity",
            json!([term("db", ZONE)]),
        );
        assert!(place(&p, &nodes, &pods).is_err());
        let mut named = term("db", ZONE);
        named["namespaces"] = json!(["data"]);
        let p = with_pod_affinity(pod("p", "1", "1Gi"), "podAffinity", json!([named]));
        assert_eq!(place(&p, &nodes, &pods), Ok("a".to_owned()));
        let mut any_namespace = term("db", ZONE);
        any_namespace["namespaceSelector"] = json!({});
        let p = with_pod_affinity(pod("p", "1", "1Gi"), "podAffinity", json!([any_namespace]));
        assert_eq!(place(&p, &nodes, &pods), Ok("a".to_owned()));
    }

    #[test]
    fn pod_anti_affinity_on_hostname_keeps_replicas_apart() {
        let nodes = [
            node("a", "8", "8Gi"),
            node("b", "8", "8Gi"),
            node("c", "8", "8Gi"),
        ];
        let replica = |name: &str| {
            labelled(
                with_pod_affinity(
                    pod(name, "100m", "1Mi"),
                    "podAntiAffinity",
                    json!([term("web", HOSTNAME)]),
                ),
                json!({"app": "web"}),
            )
        };
        let pods = [running(replica("r1"), "a"), running(replica("r2"), "c")];
        assert_eq!(place(&replica("r3"), &nodes, &pods), Ok("b".to_owned()));
        let pods = [
            running(replica("r1"), "a"),
            running(replica("r2"), "b"),
            running(replica("r3"), "c"),
        ];
        assert_eq!(
            message(place(&replica("r4"), &nodes, &pods)),
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
             preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn existing_pods_anti_affinity_repels_matching_pods() {
        let nodes = [node("a", "8", "8Gi"), node("b", "8", "8Gi")];
        // `loner` refuses pods labelled app=noisy on its host; the incoming pod
        // has no affinity of its own.
        let loner = with_pod_affinity(
            running(pod("loner", "100m", "1Mi"), "a"),
            "podAntiAffinity",
            json!([term("noisy", HOSTNAME)]),
        );
        let spare = running(pod("spare", "100m", "1Mi"), "b");
        let noisy = labelled(pod("p", "1", "1Gi"), json!({"app": "noisy"}));
        assert_eq!(
            place(&noisy, &nodes, &[loner.clone(), spare]),
            Ok("b".to_owned())
        );
        assert_eq!(
            message(place(&noisy, &nodes[..1], &[loner])),
            "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules. \
             preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn an_unparseable_affinity_selector_rejects_the_pod() {
        let nodes = [node("a", "8", "8Gi")];
        let bad = json!([{"labelSelector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}, "topologyKey": ZONE}]);
        let p = with_pod_affinity(pod("p", "1", "1Gi"), "podAffinity", bad);
        let text = message(place(&p, &nodes, &[]));
        assert!(
            text.starts_with("0/1 nodes are available: parsing pod: "),
            "{text}"
        );
        assert!(text.ends_with(&format!(". {}", not_helpful(1))), "{text}");
    }
}
