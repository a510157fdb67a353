//! The NodeAffinity plugin: its PreFilter (`matchFields` on `metadata.name` narrows the nodes) and its filter (`nodeSelector` and required node affinity).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::framework::{Incoming, NodeInfo, Rejection, labels_of, string_set};
use crate::selector::{LabelOperator, LabelRequirement};

/// Rejects a node the pod's node selector or required node affinity does not match.
pub(super) fn filter(incoming: &Incoming<'_>, node: &NodeInfo<'_>) -> Result<(), Rejection> {
    if !matches_node_affinity(incoming.pod, node) {
        return Err(Rejection::unresolvable(ERR_NODE_AFFINITY));
    }
    Ok(())
}

pub(super) const ERR_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";

pub(super) const ERR_NODE_AFFINITY_CONFLICT: &str = "pod affinity terms conflict";

pub(super) const ERR_NODE_AFFINITY_PREFILTER: &str =
    "node(s) didn't satisfy plugin(s) [NodeAffinity]";

/// What the NodeAffinity PreFilter leaves for the filters.
pub(super) enum PreFilterNodes {
    /// Every node.
    All,
    /// Only the nodes with these names (`matchFields` on `metadata.name`).
    Only(BTreeSet<String>),
    /// No node: every term names disjoint node sets.
    Conflict,
}

/// The NodeAffinity PreFilter: if every required term pins `metadata.name`
/// with `In`, only the union over terms of the names each term allows can fit.
pub(super) fn prefilter(pod: &Value) -> PreFilterNodes {
    let terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if terms.is_empty() {
        return PreFilterNodes::All;
    }
    let mut names = BTreeSet::new();
    for term in terms {
        let mut term_names: Option<BTreeSet<String>> = None;
        for requirement in term["matchFields"].as_array().into_iter().flatten() {
            if requirement["key"].as_str() != Some("metadata.name")
                || requirement["operator"].as_str() != Some("In")
            {
                continue;
            }
            let values = string_set(&requirement["values"]);
            // Requirements within a term are ANDed.
            term_names = Some(match term_names {
                None => values,
                Some(previous) => previous.intersection(&values).cloned().collect(),
            });
        }
        // Terms are ORed, so one term without a name pin lets every node through.
        let Some(term_names) = term_names else {
            return PreFilterNodes::All;
        };
        names.extend(term_names);
    }
    if names.is_empty() {
        PreFilterNodes::Conflict
    } else {
        PreFilterNodes::Only(names)
    }
}

/// `spec.nodeSelector` and the required node affinity
/// (`nodeaffinity.GetRequiredNodeAffinity(pod).Match(node)`).
pub(super) fn matches_node_affinity(pod: &Value, node: &NodeInfo<'_>) -> bool {
    let spec = &pod["spec"];
    let labels = labels_of(node.node);
    if let Some(selector) = spec["nodeSelector"].as_object() {
        for (key, wanted) in selector {
            match (labels.get(key).and_then(Value::as_str), wanted.as_str()) {
                (Some(actual), Some(wanted)) if actual == wanted => {}
                _ => return false,
            }
        }
    }
    let required =
        &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    if required.is_null() {
        return true;
    }
    // A present but empty term list selects no node, as in Kubernetes (the
    // API server's validation normally rules it out).
    required["nodeSelectorTerms"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|term| node_selector_term_matches(term, labels, node.name))
}

/// One `NodeSelectorTerm`: its `matchExpressions` on labels and `matchFields`
/// ANDed. An empty term, or one with an expression Kubernetes cannot parse,
/// matches no node.
pub(super) fn node_selector_term_matches(
    term: &Value,
    labels: &Map<String, Value>,
    node_name: &str,
) -> bool {
    let expressions = term["matchExpressions"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let fields = term["matchFields"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let mut requirements = Vec::with_capacity(expressions.len());
    for expression in expressions {
        let Some(requirement) = node_selector_requirement(expression) else {
            return false;
        };
        requirements.push(requirement);
    }
    let mut field_tests = Vec::with_capacity(fields.len());
    for field in fields {
        let Some(test) = field_requirement(field) else {
            return false;
        };
        field_tests.push(test);
    }
    requirements.iter().all(|r| r.matches(labels))
        // Kubernetes skips field tests for a node without a name.
        && (node_name.is_empty()
            || field_tests.iter().all(|(key, equal, value)| {
                // `metadata.name` is the only field a node exposes to affinity;
                // any other reads as empty.
                let actual = if *key == "metadata.name" { node_name } else { "" };
                (actual == *value) == *equal
            }))
}

/// A `matchExpressions` entry as a label requirement, validated as
/// `labels.NewRequirement` does.
pub(super) fn node_selector_requirement(expression: &Value) -> Option<LabelRequirement> {
    let key = expression["key"].as_str()?;
    let operator = match expression["operator"].as_str()? {
        "In" => LabelOperator::In,
        "NotIn" => LabelOperator::NotIn,
        "Exists" => LabelOperator::Exists,
        "DoesNotExist" => LabelOperator::DoesNotExist,
        "Gt" => LabelOperator::GreaterThan,
        "Lt" => LabelOperator::LessThan,
        _ => return None,
    };
    let values = match &expression["values"] {
        Value::Null => Vec::new(),
        Value::Array(values) => values
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    LabelRequirement::new(key, operator, values).ok()
}

/// A `matchFields` entry: (field, whether it must equal, value). Kubernetes
/// accepts only `In` and `NotIn` with exactly one value here.
pub(super) fn field_requirement(field: &Value) -> Option<(&str, bool, &str)> {
    let key = field["key"].as_str()?;
    let equal = match field["operator"].as_str()? {
        "In" => true,
        "NotIn" => false,
        _ => return None,
    };
    match field["values"].as_array()?.as_slice() {
        [value] => Some((key, equal, value.as_str()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn node_selector_needs_every_label() {
        let nodes = [
            with_labels(node("a", "8", "8Gi"), json!({"disk": "ssd"})),
            with_labels(node("b", "8", "8Gi"), json!({"disk": "ssd", "zone": "z1"})),
        ];
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["nodeSelector"] = json!({"disk": "ssd", "zone": "z1"});
        assert_eq!(place(&p, &nodes, &[]), Ok("b".to_owned()));
        p["spec"]["nodeSelector"] = json!({"disk": "hdd"});
        assert_eq!(
            message(place(&p, &nodes, &[])),
            format!(
                "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. {}",
                not_helpful(2)
            )
        );
    }

    // --- NodeAffinity: required terms ---

    fn with_required_terms(mut pod: Value, terms: Value) -> Value {
        pod["spec"]["affinity"] = json!({"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}});
        pod
    }

    #[test]
    fn affinity_in_notin_exists_doesnotexist() {
        let nodes = [
            with_labels(node("a", "8", "8Gi"), json!({"zone": "z1", "gpu": "yes"})),
            with_labels(node("b", "8", "8Gi"), json!({"zone": "z2"})),
            with_labels(node("c", "8", "8Gi"), json!({"zone": "z3"})),
        ];
        let fits = |expressions: Value| {
            place(
                &with_required_terms(
                    pod("p", "1", "1Gi"),
                    json!([{"matchExpressions": expressions}]),
                ),
                &nodes,
                &[],
            )
        };
        let key_in = json!([{"key": "zone", "operator": "In", "values": ["z2", "z9"]}]);
        assert_eq!(fits(key_in), Ok("b".to_owned()));
        let key_not_in = json!([{"key": "zone", "operator": "NotIn", "values": ["z1", "z2"]}]);
        assert_eq!(fits(key_not_in), Ok("c".to_owned()));
        assert_eq!(
            fits(json!([{"key": "gpu", "operator": "Exists"}])),
            Ok("a".to_owned())
        );
        let both = json!([{"key": "gpu", "operator": "DoesNotExist"}, {"key": "zone", "operator": "NotIn", "values": ["z2"]}]);
        assert_eq!(fits(both), Ok("c".to_owned()));
        let none = json!([{"key": "zone", "operator": "In", "values": ["z1"]}, {"key": "gpu", "operator": "DoesNotExist"}]);
        assert_eq!(
            message(fits(none)),
            format!(
                "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. {}",
                not_helpful(3)
            )
        );
    }

    #[test]
    fn affinity_terms_are_ored() {
        let nodes = [
            with_labels(node("a", "8", "8Gi"), json!({"zone": "z1"})),
            with_labels(node("b", "8", "8Gi"), json!({"zone": "z2"})),
        ];
        let p = with_required_terms(
            pod("p", "1", "1Gi"),
            json!([
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z9"]}]},
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]},
            ]),
        );
        assert_eq!(place(&p, &nodes, &[]), Ok("b".to_owned()));
    }

    #[test]
    fn affinity_gt_and_lt_compare_integers() {
        let nodes = [
            with_labels(node("a", "8", "8Gi"), json!({"cores": "4"})),
            with_labels(node("b", "8", "8Gi"), json!({"cores": "16"})),
            with_labels(node("c", "8", "8Gi"), json!({"cores": "many"})),
        ];
        let fits = |operator: &str, value: &str| {
            place(
                &with_required_terms(
                    pod("p", "1", "1Gi"),
                    json!([{"matchExpressions": [{"key": "cores", "operator": operator, "values": [value]}]}]),
                ),
                &nodes,
                &[],
            )
        };
        // Numerically, not as strings ("16" < "4" as strings).
        assert_eq!(fits("Gt", "8"), Ok("b".to_owned()));
        assert_eq!(fits("Lt", "8"), Ok("a".to_owned()));
        assert!(fits("Gt", "16").is_err());
        // A non-integer value makes the term unparseable: it matches no node.
        assert!(fits("Gt", "x").is_err());
    }

    #[test]
    fn affinity_with_an_empty_term_list_or_empty_term_matches_nothing() {
        let nodes = [node("a", "8", "8Gi")];
        assert!(
            place(
                &with_required_terms(pod("p", "1", "1Gi"), json!([])),
                &nodes,
                &[]
            )
            .is_err()
        );
        assert!(
            place(
                &with_required_terms(pod("p", "1", "1Gi"), json!([{}])),
                &nodes,
                &[]
            )
            .is_err()
        );
    }

    #[test]
    fn match_fields_metadata_name_narrows_to_the_named_nodes() {
        let nodes = [
            node("a", "8", "8Gi"),
            node("b", "8", "8Gi"),
            node("c", "1", "8Gi"),
        ];
        let pinned = |name: &str| {
            with_required_terms(
                pod("p", "2", "1Gi"),
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]}]),
            )
        };
        assert_eq!(place(&pinned("b"), &nodes, &[]), Ok("b".to_owned()));
        // As for a DaemonSet pod: the other nodes are left out by the PreFilter.
        assert_eq!(
            message(place(&pinned("c"), &nodes, &[])),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]. \
             preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
             2 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            message(place(&pinned("gone"), &nodes, &[])),
            format!(
                "0/3 nodes are available: 3 node(s) didn't satisfy plugin(s) [NodeAffinity]. {}",
                not_helpful(3)
            )
        );
    }

    #[test]
    fn match_fields_not_in_and_with_labels() {
        let nodes = [
            with_labels(node("a", "8", "8Gi"), json!({"zone": "z1"})),
            with_labels(node("b", "8", "8Gi"), json!({"zone": "z1"})),
        ];
        let p = with_required_terms(
            pod("p", "1", "1Gi"),
            json!([{
                "matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}],
                "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["a"]}],
            }]),
        );
        assert_eq!(place(&p, &nodes, &[]), Ok("b".to_owned()));
    }

    #[test]
    fn match_fields_pinning_disjoint_names_in_one_term_conflicts() {
        let nodes = [node("a", "8", "8Gi"), node("b", "8", "8Gi")];
        let p = with_required_terms(
            pod("p", "1", "1Gi"),
            json!([{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": ["a"]},
                {"key": "metadata.name", "operator": "In", "values": ["b"]},
            ]}]),
        );
        assert_eq!(
            message(place(&p, &nodes, &[])),
            format!(
                "0/2 nodes are available: pod affinity terms conflict. {}",
                not_helpful(2)
            )
        );
    }
}
