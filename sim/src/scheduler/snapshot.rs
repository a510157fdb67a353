//! The cluster as the filters see it for one pod: usage per node, and the topology counts InterPodAffinity's PreFilter computes.

use std::collections::HashMap;

use serde_json::Value;

use super::framework::{Incoming, Occupant, label, matches_all_terms};
use super::requests::{Resources, add_resources};

/// Per (topology key, value): how many placed pods count there.
pub(super) type TopologyCounts = HashMap<(String, String), i64>;

/// What a node already holds.
#[derive(Default)]
pub(super) struct Usage {
    pub(super) requested: Resources,
    pub(super) pods: usize,
}

/// The cluster as the filters see it: usage per node and the InterPodAffinity
/// PreFilter's counts, built from a set of placed pods.
pub(super) struct Snapshot<'a> {
    pub(super) usage: HashMap<&'a str, Usage>,
    /// Topologies with a pod matching all of the incoming pod's affinity terms.
    pub(super) affinity: TopologyCounts,
    /// Topologies with a pod matching one of the incoming pod's anti-affinity terms.
    pub(super) anti_affinity: TopologyCounts,
    /// Topologies with a placed pod whose anti-affinity matches the incoming pod.
    pub(super) existing_anti_affinity: TopologyCounts,
}

impl<'a> Snapshot<'a> {
    pub(super) fn new<'o>(
        incoming: &Incoming<'_>,
        nodes: &HashMap<&str, &Value>,
        occupants: impl IntoIterator<Item = &'o Occupant<'a>>,
    ) -> Self
    where
        'a: 'o,
    {
        let mut snapshot = Snapshot {
            usage: HashMap::new(),
            affinity: TopologyCounts::new(),
            anti_affinity: TopologyCounts::new(),
            existing_anti_affinity: TopologyCounts::new(),
        };
        for occupant in occupants {
            // A pod bound to a node that does not exist occupies nothing the
            // scheduler can see.
            let Some(node) = nodes.get(occupant.node) else {
                continue;
            };
            let usage = snapshot.usage.entry(occupant.node).or_default();
            usage.pods += 1;
            add_resources(&mut usage.requested, &occupant.requests);
            for term in &occupant.anti_affinity {
                if term.matches(incoming.pod) {
                    count_topology(
                        &mut snapshot.existing_anti_affinity,
                        node,
                        &term.topology_key,
                    );
                }
            }
            if matches_all_terms(&incoming.affinity, occupant.pod) {
                for term in &incoming.affinity {
                    count_topology(&mut snapshot.affinity, node, &term.topology_key);
                }
            }
            for term in &incoming.anti_affinity {
                if term.matches(occupant.pod) {
                    count_topology(&mut snapshot.anti_affinity, node, &term.topology_key);
                }
            }
        }
        snapshot
    }

    pub(super) fn pod_count(&self, node: &str) -> usize {
        self.usage.get(node).map_or(0, |u| u.pods)
    }
}

/// Counts a pod on `node` in the topology `key`, if the node has that label.
pub(super) fn count_topology(counts: &mut TopologyCounts, node: &Value, key: &str) {
    if let Some(value) = label(node, key) {
        *counts
            .entry((key.to_owned(), value.to_owned()))
            .or_default() += 1;
    }
}

pub(super) fn topology_count(counts: &TopologyCounts, key: &str, value: &str) -> i64 {
    counts
        .get(&(key.to_owned(), value.to_owned()))
        .copied()
        .unwrap_or(0)
}
