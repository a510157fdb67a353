//! Where a Job's pod may run: node selector, node and pod affinity, tolerations; it checks these variables only.

use std::collections::BTreeMap;

use clap::Args;
use k8s_openapi::api::core::v1::{NodeSelectorRequirement, PodAffinityTerm, Toleration};

use crate::config::check::Checker;
use crate::config::parse;

const NODE_SELECTOR: &str = "EXECUTOR_KUBERNETES_NODE_SELECTOR";
const NODE_REQUIRED_AFFINITY_MATCH_EXPRESSIONS: &str =
    "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_EXPRESSIONS";
const NODE_REQUIRED_AFFINITY_MATCH_FIELDS: &str =
    "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_FIELDS";
const POD_AFFINITY: &str = "EXECUTOR_KUBERNETES_POD_AFFINITY";
const POD_ANTI_AFFINITY: &str = "EXECUTOR_KUBERNETES_POD_ANTI_AFFINITY";
const NODE_TOLERATIONS: &str = "EXECUTOR_KUBERNETES_NODE_TOLERATIONS";

/// The placement settings as text, from a flag or else its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct RawPlacement {
    /// Node selector for Jobs: comma-separated key=value pairs.
    #[arg(long, env = NODE_SELECTOR)]
    pub node_selector: Option<String>,
    /// Required node affinity match expressions (JSON list of NodeSelectorRequirement).
    #[arg(long, env = NODE_REQUIRED_AFFINITY_MATCH_EXPRESSIONS)]
    pub node_required_affinity_match_expressions: Option<String>,
    /// Required node affinity match fields (JSON list of NodeSelectorRequirement).
    #[arg(long, env = NODE_REQUIRED_AFFINITY_MATCH_FIELDS)]
    pub node_required_affinity_match_fields: Option<String>,
    /// Required pod affinity (JSON list of PodAffinityTerm; topologyKey required).
    #[arg(long, env = POD_AFFINITY)]
    pub pod_affinity: Option<String>,
    /// Required pod anti-affinity (JSON list of PodAffinityTerm; topologyKey required).
    #[arg(long, env = POD_ANTI_AFFINITY)]
    pub pod_anti_affinity: Option<String>,
    /// Tolerations for Jobs (JSON list of Toleration).
    #[arg(long, env = NODE_TOLERATIONS)]
    pub node_tolerations: Option<String>,
}

/// What places a Job's pod on nodes.
pub(super) struct Placement {
    pub(super) node_selector: BTreeMap<String, String>,
    pub(super) required_match_expressions: Vec<NodeSelectorRequirement>,
    pub(super) required_match_fields: Vec<NodeSelectorRequirement>,
    pub(super) pod_affinity: Vec<PodAffinityTerm>,
    pub(super) pod_anti_affinity: Vec<PodAffinityTerm>,
    pub(super) tolerations: Vec<Toleration>,
}

impl RawPlacement {
    /// Checks the placement settings, recording each problem in `c`.
    pub(super) fn check(&self, c: &mut Checker) -> Placement {
        let requirements = "a JSON list of NodeSelectorRequirement";
        let terms = "a JSON list of PodAffinityTerm";
        Placement {
            node_selector: c
                .optional(NODE_SELECTOR, &self.node_selector, parse::key_values)
                .unwrap_or_default(),
            required_match_expressions: checked_list(
                c,
                NODE_REQUIRED_AFFINITY_MATCH_EXPRESSIONS,
                &self.node_required_affinity_match_expressions,
                requirements,
                check_requirements,
            ),
            required_match_fields: checked_list(
                c,
                NODE_REQUIRED_AFFINITY_MATCH_FIELDS,
                &self.node_required_affinity_match_fields,
                requirements,
                check_requirements,
            ),
            pod_affinity: checked_list(c, POD_AFFINITY, &self.pod_affinity, terms, check_terms),
            pod_anti_affinity: checked_list(
                c,
                POD_ANTI_AFFINITY,
                &self.pod_anti_affinity,
                terms,
                check_terms,
            ),
            tolerations: checked_list(
                c,
                NODE_TOLERATIONS,
                &self.node_tolerations,
                "a JSON list of Toleration",
                check_tolerations,
            ),
        }
    }
}

/// Strict JSON, then `check` on what it gave (the default when absent or invalid).
fn checked_list<T: serde::de::DeserializeOwned>(
    c: &mut Checker,
    variable: &'static str,
    raw: &Option<String>,
    expected: &str,
    check: fn(&[T]) -> Result<(), String>,
) -> Vec<T> {
    let value: Vec<T> = c.json(variable, raw, expected);
    c.check(variable, check(&value));
    value
}

const OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"];

fn check_requirements(reqs: &[NodeSelectorRequirement]) -> Result<(), String> {
    for (i, r) in reqs.iter().enumerate() {
        if !OPERATORS.contains(&r.operator.as_str()) {
            return Err(format!(
                "[{i}].operator: {:?} is not an operator; expected one of {}",
                r.operator,
                OPERATORS.join(", ")
            ));
        }
    }
    Ok(())
}

fn check_terms(terms: &[PodAffinityTerm]) -> Result<(), String> {
    match terms.iter().position(|t| t.topology_key.trim().is_empty()) {
        Some(i) => Err(format!(
            "[{i}].topologyKey: empty; every term needs a topologyKey such as kubernetes.io/hostname"
        )),
        None => Ok(()),
    }
}

fn check_tolerations(tolerations: &[Toleration]) -> Result<(), String> {
    for (i, t) in tolerations.iter().enumerate() {
        if !matches!(t.operator.as_deref(), None | Some("Equal" | "Exists")) {
            return Err(format!(
                "[{i}].operator: {:?} is not an operator; expected Equal or Exists",
                t.operator.as_deref().unwrap_or("")
            ));
        }
        if !matches!(
            t.effect.as_deref(),
            None | Some("" | "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        ) {
            return Err(format!(
                "[{i}].effect: {:?} is not an effect; expected NoSchedule, PreferNoSchedule or NoExecute",
                t.effect.as_deref().unwrap_or("")
            ));
        }
    }
    Ok(())
}
