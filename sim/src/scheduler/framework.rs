//! The scheduling framework's types (kube-scheduler's `framework` package): the node and pod infos the plugins read, a required affinity term, and the status of a node a plugin rejects.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::requests::{Resources, pod_requests};
use crate::quantity::resource_amount;
use crate::selector::{LabelSelector, SelectorError};

/// The kubelet's default `maxPods`, for a node that reports no `pods` allocatable.
pub(super) const DEFAULT_MAX_PODS: i128 = 110;

/// The label every namespace carries; the only namespace label a pure
/// function over pods and nodes can know.
pub(super) const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub(super) static NO_LABELS: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

/// Whether a node that failed could be made to fit by preemption, in the
/// framework's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Code {
    /// `Unschedulable`: evicting lower-priority pods might help.
    Unschedulable,
    /// `UnschedulableAndUnresolvable`: nothing on the node can be evicted to help.
    Unresolvable,
}

/// The status of a node that failed a filter plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rejection {
    pub(super) code: Code,
    pub(super) reasons: Vec<String>,
}

impl Rejection {
    pub(super) fn unresolvable(reason: impl Into<String>) -> Self {
        Rejection {
            code: Code::Unresolvable,
            reasons: vec![reason.into()],
        }
    }

    pub(super) fn unschedulable(reasons: Vec<String>) -> Self {
        Rejection {
            code: Code::Unschedulable,
            reasons,
        }
    }
}

/// A node with its allocatable resources read once.
pub(super) struct NodeInfo<'a> {
    pub(super) node: &'a Value,
    pub(super) name: &'a str,
    pub(super) allocatable: Resources,
    pub(super) max_pods: i128,
}

impl<'a> NodeInfo<'a> {
    pub(super) fn new(node: &'a Value) -> Self {
        let mut allocatable = Resources::new();
        let mut max_pods = DEFAULT_MAX_PODS;
        if let Some(listed) = node["status"]["allocatable"].as_object() {
            for (name, quantity) in listed {
                let Some(amount) = resource_amount(name, quantity) else {
                    continue;
                };
                if name == "pods" {
                    max_pods = amount;
                } else {
                    allocatable.insert(name.clone(), amount);
                }
            }
        }
        NodeInfo {
            node,
            name: node["metadata"]["name"].as_str().unwrap_or_default(),
            allocatable,
            max_pods,
        }
    }
}

/// A pod placed on a node, with what the filters need of it.
pub(super) struct Occupant<'a> {
    pub(super) pod: &'a Value,
    pub(super) node: &'a str,
    pub(super) requests: Resources,
    pub(super) priority: i64,
    pub(super) anti_affinity: Vec<AffinityTerm>,
}

impl<'a> Occupant<'a> {
    pub(super) fn new(pod: &'a Value) -> Self {
        Occupant {
            pod,
            node: pod["spec"]["nodeName"].as_str().unwrap_or_default(),
            requests: pod_requests(pod),
            priority: priority(pod),
            // The scheduler's cache drops the terms of a placed pod it cannot
            // parse rather than refusing to schedule anything else.
            anti_affinity: required_terms(pod, "podAntiAffinity").unwrap_or_default(),
        }
    }
}

/// The pod being placed.
pub(super) struct Incoming<'a> {
    pub(super) pod: &'a Value,
    pub(super) node_name: Option<&'a str>,
    pub(super) tolerations: &'a [Value],
    pub(super) requests: Resources,
    pub(super) priority: i64,
    pub(super) affinity: Vec<AffinityTerm>,
    pub(super) anti_affinity: Vec<AffinityTerm>,
}

impl<'a> Incoming<'a> {
    pub(super) fn new(pod: &'a Value) -> Result<Self, SelectorError> {
        let spec = &pod["spec"];
        Ok(Incoming {
            pod,
            node_name: spec["nodeName"].as_str().filter(|n| !n.is_empty()),
            tolerations: spec["tolerations"]
                .as_array()
                .map_or(&[][..], Vec::as_slice),
            requests: pod_requests(pod),
            priority: priority(pod),
            affinity: required_terms(pod, "podAffinity")?,
            anti_affinity: required_terms(pod, "podAntiAffinity")?,
        })
    }
}

/// One `PodAffinityTerm`, with its namespaces resolved as the scheduler does.
pub(super) struct AffinityTerm {
    pub(super) selector: LabelSelector,
    pub(super) namespaces: BTreeSet<String>,
    pub(super) namespace_selector: LabelSelector,
    pub(super) topology_key: String,
}

impl AffinityTerm {
    /// `owner_namespace` is the namespace of the pod the term belongs to: the
    /// default when the term names neither namespaces nor a selector.
    pub(super) fn parse(owner_namespace: &str, term: &Value) -> Result<Self, SelectorError> {
        // A missing selector reads as null, which selects nothing, as in Kubernetes.
        let selector = LabelSelector::from_label_selector_object(&term["labelSelector"])?;
        let namespace_selector =
            LabelSelector::from_label_selector_object(&term["namespaceSelector"])?;
        let mut namespaces = string_set(&term["namespaces"]);
        if namespaces.is_empty() && namespace_selector.is_nothing() {
            namespaces.insert(owner_namespace.to_owned());
        }
        Ok(AffinityTerm {
            selector,
            namespaces,
            namespace_selector,
            topology_key: term["topologyKey"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// Whether `pod` is in the term's namespaces and has labels its selector matches.
    pub(super) fn matches(&self, pod: &Value) -> bool {
        let namespace = namespace_of(pod);
        let in_namespace = self.namespaces.contains(namespace)
            || (!self.namespace_selector.is_nothing() && {
                let mut labels = Map::new();
                labels.insert(
                    NAMESPACE_NAME_LABEL.to_owned(),
                    Value::String(namespace.to_owned()),
                );
                self.namespace_selector.matches(&labels)
            });
        in_namespace && self.selector.matches(labels_of(pod))
    }
}

/// The required pod (anti-)affinity terms of a pod; `kind` is `podAffinity`
/// or `podAntiAffinity`.
pub(super) fn required_terms(pod: &Value, kind: &str) -> Result<Vec<AffinityTerm>, SelectorError> {
    let namespace = namespace_of(pod);
    pod["spec"]["affinity"][kind]["requiredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|term| AffinityTerm::parse(namespace, term))
        .collect()
}

/// Whether `pod` matches every term; no terms match nothing, as in Kubernetes.
pub(super) fn matches_all_terms(terms: &[AffinityTerm], pod: &Value) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod))
}

/// Whether a pod holds a place on its node: bound, not finished, not being deleted.
pub(super) fn occupies_node(pod: &Value) -> bool {
    pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty())
        && !matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        )
        && pod["metadata"]["deletionTimestamp"].is_null()
}

/// Whether two pod objects are the same pod: by UID when both have one,
/// else by namespace and name.
pub(super) fn same_pod(a: &Value, b: &Value) -> bool {
    let meta =
        |p: &Value, field: &str| p["metadata"][field].as_str().is_some_and(|s| !s.is_empty());
    if meta(a, "uid") && meta(b, "uid") {
        return a["metadata"]["uid"] == b["metadata"]["uid"];
    }
    meta(a, "name")
        && a["metadata"]["name"] == b["metadata"]["name"]
        && namespace_of(a) == namespace_of(b)
}

/// `spec.priority`, which the API server's Priority admission sets from the
/// pod's PriorityClass; 0 when absent, as `corev1helpers.PodPriority` says.
pub(super) fn priority(pod: &Value) -> i64 {
    pod["spec"]["priority"].as_i64().unwrap_or(0)
}

/// The pod's namespace; an object built without one is taken to be in
/// `default`, where the API server would have put it.
pub(super) fn namespace_of(pod: &Value) -> &str {
    pod["metadata"]["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
}

pub(super) fn labels_of(object: &Value) -> &Map<String, Value> {
    object["metadata"]["labels"]
        .as_object()
        .unwrap_or(&NO_LABELS)
}

pub(super) fn label<'v>(object: &'v Value, key: &str) -> Option<&'v str> {
    labels_of(object).get(key).and_then(Value::as_str)
}

/// The strings of a JSON array as a set; anything else is empty.
pub(super) fn string_set(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}
