//! The scheduler's `FitError` message: how many nodes gave which reason, sorted as Go sorts them, and the `preemption:` clauses that do not depend on victims.

use std::collections::BTreeMap;

use super::framework::Rejection;

/// Why no node fits a pod, worded as the kube-scheduler words the
/// `FailedScheduling` event and the pod's `PodScheduled` condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unschedulable {
    /// The whole message, e.g. `0/3 nodes are available: 3 Insufficient cpu.
    /// preemption: 0/3 nodes are available: 3 No preemption victims found for
    /// incoming pod.`
    pub message: String,
}

pub(super) const PREEMPTION_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";

pub(super) const PREEMPTION_NEVER: &str = "not eligible due to preemptionPolicy=Never.";

/// The message when a PreFilter plugin rejects the pod: its reason stands
/// for every node, and preemption cannot help anywhere.
pub(super) fn prefilter_rejection(
    total: usize,
    reason: &str,
    preemption_policy_never: bool,
) -> Unschedulable {
    let preemption = if preemption_policy_never {
        PREEMPTION_NEVER.to_owned()
    } else {
        no_fit(
            total,
            &BTreeMap::from([(PREEMPTION_NOT_HELPFUL.to_owned(), total)]),
        )
    };
    Unschedulable {
        message: format!("0/{total} nodes are available: {reason}. preemption: {preemption}"),
    }
}

/// How many nodes gave each reason; a node counts once per reason it gave.
pub(super) fn histogram<'r>(
    rejections: impl Iterator<Item = &'r Rejection>,
) -> BTreeMap<String, usize> {
    let mut reasons = BTreeMap::new();
    for rejection in rejections {
        for reason in &rejection.reasons {
            *reasons.entry(reason.clone()).or_default() += 1;
        }
    }
    reasons
}

/// `FitError.Error()` without the PostFilter part: the entries are
/// `"<count> <reason>"` strings sorted as strings, as Go's `sort.Strings`
/// sorts them (so `10 …` comes before `2 …`).
pub(super) fn no_fit(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    let mut entries: Vec<String> = reasons
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    entries.sort();
    if entries.is_empty() {
        format!("0/{total} nodes are available:")
    } else {
        format!("0/{total} nodes are available: {}.", entries.join(", "))
    }
}
