//! The default profile's filter plugins, run in the framework's order; each plugin lives in its own module.

use super::framework::{Incoming, NodeInfo, Rejection};
use super::snapshot::Snapshot;
use super::{
    inter_pod_affinity, node_affinity, node_name, node_resources_fit, node_unschedulable,
    taint_toleration,
};

/// Runs the filter plugins in the default profile's order (NodeUnschedulable,
/// NodeName, TaintToleration, NodeAffinity, NodeResourcesFit,
/// InterPodAffinity), stopping at the first that rejects the node, as the
/// framework does.
pub(super) fn filter(
    incoming: &Incoming<'_>,
    node: &NodeInfo<'_>,
    snapshot: &Snapshot<'_>,
) -> Result<(), Rejection> {
    node_unschedulable::filter(incoming, node)?;
    node_name::filter(incoming, node)?;
    taint_toleration::filter(incoming, node)?;
    node_affinity::filter(incoming, node)?;
    node_resources_fit::filter(incoming, node, snapshot)?;
    inter_pod_affinity::filter(incoming, node, snapshot)
}
