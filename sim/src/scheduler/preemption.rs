//! The DefaultPreemption PostFilter, reduced to its message: whether evicting lower-priority pods would make the pod fit somewhere; nothing is evicted.

use std::collections::HashMap;

use serde_json::Value;

use super::fit_error::{PREEMPTION_NOT_HELPFUL, histogram, no_fit};
use super::framework::{Code, Incoming, NodeInfo, Occupant, Rejection};
use super::profile::filter;
use super::snapshot::Snapshot;

pub(super) const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// What DefaultPreemption's PostFilter reports (without `preemption: `), or
/// `None` when evicting lower-priority pods would make the pod fit.
pub(super) fn preemption_outcome(
    incoming: &Incoming<'_>,
    nodes: &HashMap<&str, &Value>,
    occupants: &[Occupant<'_>],
    rejected: &[(&NodeInfo<'_>, Rejection)],
    total: usize,
) -> Option<String> {
    let mut statuses = Vec::new();
    for (node, _) in rejected
        .iter()
        .filter(|(_, rejection)| rejection.code == Code::Unschedulable)
    {
        let is_victim = |o: &Occupant<'_>| o.node == node.name && o.priority < incoming.priority;
        if !occupants.iter().any(is_victim) {
            statuses.push(Rejection::unresolvable(NO_VICTIMS));
            continue;
        }
        // SelectVictimsOnNode: remove every lower-priority pod, then filter again.
        let remaining = occupants.iter().filter(|o| !is_victim(o));
        let without_victims = Snapshot::new(incoming, nodes, remaining);
        match filter(incoming, node, &without_victims) {
            Ok(()) => return None,
            Err(rejection) => statuses.push(rejection),
        }
    }
    let mut reasons = histogram(statuses.iter());
    let absent = total - statuses.len();
    if absent > 0 {
        *reasons
            .entry(PREEMPTION_NOT_HELPFUL.to_owned())
            .or_default() += absent;
    }
    Some(no_fit(total, &reasons))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn preemption_that_would_help_drops_the_clause() {
        let nodes = [node("a", "2", "8Gi")];
        let mut low = running(pod("low", "2", "1Gi"), "a");
        low["spec"]["priority"] = json!(-10);
        assert_eq!(
            message(place(&pod("p", "1", "1Gi"), &nodes, &[low])),
            "0/1 nodes are available: 1 Insufficient cpu."
        );
    }

    #[test]
    fn preemption_that_would_not_help_reports_the_remaining_reason() {
        let nodes = [node("a", "2", "8Gi")];
        let mut low = running(pod("low", "1", "1Gi"), "a");
        low["spec"]["priority"] = json!(-10);
        let same = running(pod("same", "1", "1Gi"), "a");
        // Evicting `low` frees 1 cpu; the pod wants 2.
        assert_eq!(
            message(place(&pod("p", "2", "1Gi"), &nodes, &[low, same])),
            "0/1 nodes are available: 1 Insufficient cpu. \
             preemption: 0/1 nodes are available: 1 Insufficient cpu."
        );
    }

    #[test]
    fn preemption_policy_never() {
        let nodes = [node("a", "1", "8Gi")];
        let mut p = pod("p", "2", "1Gi");
        p["spec"]["preemptionPolicy"] = json!("Never");
        assert_eq!(
            message(place(&p, &nodes, &[])),
            "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
        );
    }
}
