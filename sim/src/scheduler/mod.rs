//! Pod placement as the kube-scheduler's default filter plugins decide it: the scheduling cycle that picks the node a pending pod fits on, or the real scheduler's `FailedScheduling` message when none does; each plugin lives in its own module.

mod fit_error;
mod framework;
mod inter_pod_affinity;
mod node_affinity;
mod node_name;
mod node_resources_fit;
mod node_unschedulable;
mod preemption;
mod profile;
mod requests;
mod snapshot;
mod taint_toleration;

use std::collections::HashMap;

use serde_json::Value;

pub use fit_error::Unschedulable;
use fit_error::{PREEMPTION_NEVER, histogram, no_fit, prefilter_rejection};
use framework::{Incoming, NodeInfo, Occupant, Rejection, occupies_node, same_pod};
use node_affinity::{ERR_NODE_AFFINITY_CONFLICT, ERR_NODE_AFFINITY_PREFILTER, PreFilterNodes};
use preemption::preemption_outcome;
use profile::filter;
use snapshot::Snapshot;

/// The message when the cluster has no nodes at all.
const NO_NODES: &str = "no nodes available to schedule pods";

/// Where `pod` can run: the chosen node's name, or why no node fits, worded
/// like the real scheduler.
///
/// `nodes` are the cluster's `v1` Nodes; `pods` is every pod in the cluster
/// (all namespaces). A pod with `spec.nodeName` set whose `status.phase` is
/// neither `Succeeded` nor `Failed` and that has no
/// `metadata.deletionTimestamp` occupies its node (its requests, one pod
/// slot, and its labels for inter-pod affinity); `pod` itself is never
/// counted, should it be in `pods`.
///
/// A node must pass, in the default profile's order: NodeUnschedulable
/// (`spec.unschedulable`, unless the pod tolerates
/// `node.kubernetes.io/unschedulable:NoSchedule`), NodeName, TaintToleration
/// (`NoSchedule` and `NoExecute` taints), NodeAffinity (`nodeSelector` and
/// required node affinity, with `matchFields` on `metadata.name` also
/// narrowing the candidate nodes as the plugin's PreFilter does),
/// NodeResourcesFit (pod count and every requested resource against
/// `status.allocatable`; a missing `pods` allocatable means 110) and
/// InterPodAffinity (the pod's required affinity and anti-affinity, and the
/// required anti-affinity of the pods already placed). A node that fails is
/// reported with the reasons of its first failing plugin only, as the
/// framework stops there.
///
/// Among the nodes that fit, the one with the fewest occupying pods wins,
/// ties broken by the smaller name: a deterministic stand-in for the real
/// scheduler's scoring that still spreads pods.
///
/// The `preemption:` clause of the message is what DefaultPreemption would
/// report: a node that failed for a reason eviction can resolve (resources,
/// pod count, anti-affinity) is re-checked without the pods of lower
/// `spec.priority`. If that would make the pod fit, the real scheduler
/// would preempt and nominate the node; this function evicts nothing and
/// returns the message without the clause, as the scheduler reports it then.
pub fn place<P: std::borrow::Borrow<Value>>(
    pod: &Value,
    nodes: &[Value],
    pods: &[P],
) -> Result<String, Unschedulable> {
    if nodes.is_empty() {
        return Err(Unschedulable {
            message: NO_NODES.to_owned(),
        });
    }
    let total = nodes.len();
    let infos: Vec<NodeInfo> = nodes.iter().map(NodeInfo::new).collect();
    let by_name: HashMap<&str, &Value> = infos.iter().map(|n| (n.name, n.node)).collect();
    let occupants: Vec<Occupant> = pods
        .iter()
        .map(std::borrow::Borrow::borrow)
        .filter(|p| occupies_node(p) && !same_pod(p, pod))
        .map(Occupant::new)
        .collect();
    let preemption_policy_never = pod["spec"]["preemptionPolicy"].as_str() == Some("Never");

    // PreFilter, in plugin order: NodeAffinity, then InterPodAffinity. Either
    // rejecting ends the cycle before any Filter runs.
    let candidates: Vec<&NodeInfo> = match node_affinity::prefilter(pod) {
        PreFilterNodes::All => infos.iter().collect(),
        PreFilterNodes::Only(names) => infos.iter().filter(|n| names.contains(n.name)).collect(),
        PreFilterNodes::Conflict => {
            return Err(prefilter_rejection(
                total,
                ERR_NODE_AFFINITY_CONFLICT,
                preemption_policy_never,
            ));
        }
    };
    let incoming = match Incoming::new(pod) {
        Ok(incoming) => incoming,
        Err(e) => {
            return Err(prefilter_rejection(
                total,
                &format!("parsing pod: {e}"),
                preemption_policy_never,
            ));
        }
    };

    let snapshot = Snapshot::new(&incoming, &by_name, &occupants);
    let mut rejected: Vec<(&NodeInfo, Rejection)> = Vec::new();
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    for node in candidates {
        match filter(&incoming, node, &snapshot) {
            Ok(()) => feasible.push(node),
            Err(rejection) => rejected.push((node, rejection)),
        }
    }
    if let Some(chosen) = feasible
        .iter()
        .min_by(|a, b| {
            snapshot
                .pod_count(a.name)
                .cmp(&snapshot.pod_count(b.name))
                .then_with(|| a.name.cmp(b.name))
        })
        .map(|n| n.name.to_owned())
    {
        return Ok(chosen);
    }

    let mut reasons = histogram(rejected.iter().map(|(_, r)| r));
    // Nodes the NodeAffinity PreFilter left out have no status of their own;
    // the framework gives them one shared reason.
    let absent = total - rejected.len();
    if absent > 0 {
        *reasons
            .entry(ERR_NODE_AFFINITY_PREFILTER.to_owned())
            .or_default() += absent;
    }
    let mut message = no_fit(total, &reasons);
    let preemption = if preemption_policy_never {
        Some(PREEMPTION_NEVER.to_owned())
    } else {
        preemption_outcome(&incoming, &by_name, &occupants, &rejected, total)
    };
    if let Some(preemption) = preemption {
        message.push_str(" preemption: ");
        message.push_str(&preemption);
    }
    Err(Unschedulable { message })
}

#[cfg(test)]
mod testing;

#[cfg(test)]
mod tests {
    use super::Unschedulable;
    use super::testing::*;

    #[test]
    fn a_pod_that_fits_gets_the_node() {
        let nodes = [node("a", "2", "4Gi")];
        assert_eq!(
            place(&pod("p", "1", "1Gi"), &nodes, &[]),
            Ok("a".to_owned())
        );
    }

    #[test]
    fn no_nodes_at_all() {
        assert_eq!(
            message(place(&pod("p", "1", "1Gi"), &[], &[])),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn the_error_displays_its_message() {
        let e = Unschedulable {
            message: "0/1 nodes are available: 1 Too many pods.".to_owned(),
        };
        assert_eq!(e.to_string(), e.message);
    }

    #[test]
    fn mixed_three_node_cluster_gives_the_real_aggregated_message() {
        let nodes = [
            with_labels(node("a", "1", "4Gi"), json!({"disk": "ssd"})),
            node("b", "8", "4Gi"),
            node("c", "8", "4Gi"),
        ];
        let mut p = pod("p", "2", "1Gi");
        p["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        assert_eq!(
            message(place(&p, &nodes, &[])),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
             2 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn only_the_first_failing_filter_of_a_node_is_reported() {
        // Node a is tainted, too small and unlabelled: only the taint counts,
        // as TaintToleration runs before NodeAffinity and NodeResourcesFit.
        let mut tainted = node("a", "1", "1Gi");
        tainted["spec"]["taints"] =
            json!([{"key": "dedicated", "value": "ci", "effect": "NoSchedule"}]);
        let mut p = pod("p", "2", "2Gi");
        p["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        assert_eq!(
            message(place(&p, &[tainted], &[])),
            format!(
                "0/1 nodes are available: 1 node(s) had untolerated taint {{dedicated: ci}}. {}",
                not_helpful(1)
            )
        );
    }

    #[test]
    fn reasons_sort_as_strings_like_go() {
        // Ten nodes without the label and two too small: "10 …" sorts before "2 …".
        let mut nodes: Vec<Value> = (0..10)
            .map(|i| node(&format!("n{i}"), "8", "8Gi"))
            .collect();
        nodes.push(with_labels(
            node("small-1", "1", "8Gi"),
            json!({"disk": "ssd"}),
        ));
        nodes.push(with_labels(
            node("small-2", "1", "8Gi"),
            json!({"disk": "ssd"}),
        ));
        let mut p = pod("p", "2", "1Gi");
        p["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        assert_eq!(
            message(place(&p, &nodes, &[])),
            "0/12 nodes are available: 10 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu. \
             preemption: 0/12 nodes are available: 10 Preemption is not helpful for scheduling, \
             2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn spread_picks_the_node_with_fewest_pods_then_the_smaller_name() {
        let nodes = [
            node("c", "8", "8Gi"),
            node("b", "8", "8Gi"),
            node("a", "8", "8Gi"),
        ];
        let pods = [
            running(pod("x", "100m", "1Mi"), "a"),
            running(pod("y", "100m", "1Mi"), "a"),
            running(pod("z", "100m", "1Mi"), "c"),
        ];
        assert_eq!(
            place(&pod("p", "1", "1Gi"), &nodes, &pods),
            Ok("b".to_owned())
        );
        let pods = [running(pod("x", "100m", "1Mi"), "a")];
        assert_eq!(
            place(&pod("p", "1", "1Gi"), &nodes, &pods),
            Ok("b".to_owned())
        );
        assert_eq!(
            place(&pod("p", "1", "1Gi"), &nodes, &[]),
            Ok("a".to_owned())
        );
    }
}
