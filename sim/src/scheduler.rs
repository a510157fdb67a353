//! Pod placement as the kube-scheduler's default filter plugins decide it: the node a pending pod fits on, or the real scheduler's `FailedScheduling` message when none does.
//!
//! [`place`] is a pure function over `v1` Pod and Node objects in the API's
//! JSON shape. It mirrors the filter plugins of the default profile in the
//! order the framework runs them (NodeUnschedulable, NodeName,
//! TaintToleration, NodeAffinity, NodeResourcesFit, InterPodAffinity), the
//! NodeAffinity and InterPodAffinity PreFilter steps, and the message
//! `FitError` builds, including the `preemption: …` clause DefaultPreemption
//! adds. Scoring is replaced by a simple spread (see [`place`]).
//!
//! Resource quantities are converted to exact integers here (millicores for
//! `cpu`, whole units for everything else, both rounded up as
//! `Quantity.MilliValue()`/`Value()` do) rather than with `kube_quantity`:
//! that crate converts between binary and decimal suffixes through `f32`,
//! so `1073741824` compares below `1Gi` and sums drift, which would make
//! exact fits depend on how the requests are spelled.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::selector::{LabelOperator, LabelRequirement, LabelSelector, SelectorError};

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

// The plugins' reason strings, verbatim from kube-scheduler (v1.33).
const ERR_NODE_UNSCHEDULABLE: &str = "node(s) were unschedulable";
const ERR_NODE_NAME: &str = "node(s) didn't match the requested node name";
const ERR_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
const ERR_NODE_AFFINITY_CONFLICT: &str = "pod affinity terms conflict";
const ERR_NODE_AFFINITY_PREFILTER: &str = "node(s) didn't satisfy plugin(s) [NodeAffinity]";
const ERR_TOO_MANY_PODS: &str = "Too many pods";
const ERR_POD_AFFINITY: &str = "node(s) didn't match pod affinity rules";
const ERR_POD_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
const ERR_EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
const NO_NODES: &str = "no nodes available to schedule pods";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
const PREEMPTION_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
const PREEMPTION_NEVER: &str = "not eligible due to preemptionPolicy=Never.";

/// The taint `kubectl cordon` implies; tolerating it tolerates `spec.unschedulable`.
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";
/// The kubelet's default `maxPods`, for a node that reports no `pods` allocatable.
const DEFAULT_MAX_PODS: i128 = 110;
/// The label every namespace carries; the only namespace label a pure
/// function over pods and nodes can know.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

static NO_LABELS: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

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
    let candidates: Vec<&NodeInfo> = match node_affinity_prefilter(pod) {
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

/// Whether a node that failed could be made to fit by preemption, in the
/// framework's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    /// `Unschedulable`: evicting lower-priority pods might help.
    Unschedulable,
    /// `UnschedulableAndUnresolvable`: nothing on the node can be evicted to help.
    Unresolvable,
}

/// The status of a node that failed a filter plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rejection {
    code: Code,
    reasons: Vec<String>,
}

impl Rejection {
    fn unresolvable(reason: impl Into<String>) -> Self {
        Rejection {
            code: Code::Unresolvable,
            reasons: vec![reason.into()],
        }
    }

    fn unschedulable(reasons: Vec<String>) -> Self {
        Rejection {
            code: Code::Unschedulable,
            reasons,
        }
    }
}

/// Amounts per resource name: millicores for `cpu`, whole units (bytes,
/// devices) for everything else.
type Resources = BTreeMap<String, i128>;

/// A node with its allocatable resources read once.
struct NodeInfo<'a> {
    node: &'a Value,
    name: &'a str,
    allocatable: Resources,
    max_pods: i128,
}

impl<'a> NodeInfo<'a> {
    fn new(node: &'a Value) -> Self {
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
struct Occupant<'a> {
    pod: &'a Value,
    node: &'a str,
    requests: Resources,
    priority: i64,
    anti_affinity: Vec<AffinityTerm>,
}

impl<'a> Occupant<'a> {
    fn new(pod: &'a Value) -> Self {
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
struct Incoming<'a> {
    pod: &'a Value,
    node_name: Option<&'a str>,
    tolerations: &'a [Value],
    requests: Resources,
    priority: i64,
    affinity: Vec<AffinityTerm>,
    anti_affinity: Vec<AffinityTerm>,
}

impl<'a> Incoming<'a> {
    fn new(pod: &'a Value) -> Result<Self, SelectorError> {
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
struct AffinityTerm {
    selector: LabelSelector,
    namespaces: BTreeSet<String>,
    namespace_selector: LabelSelector,
    topology_key: String,
}

impl AffinityTerm {
    /// `owner_namespace` is the namespace of the pod the term belongs to: the
    /// default when the term names neither namespaces nor a selector.
    fn parse(owner_namespace: &str, term: &Value) -> Result<Self, SelectorError> {
        // A missing selector reads as null, which selects nothing, as in Kubernetes.
        let selector = LabelSelector::from_label_selector_object(&term["labelSelector"])?;
        let namespace_selector =
            LabelSelector::from_label_selector_object(&term["namespaceSelector"])?;
        let mut namespaces: BTreeSet<String> = term["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
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
    fn matches(&self, pod: &Value) -> bool {
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
fn required_terms(pod: &Value, kind: &str) -> Result<Vec<AffinityTerm>, SelectorError> {
    let namespace = namespace_of(pod);
    pod["spec"]["affinity"][kind]["requiredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|term| AffinityTerm::parse(namespace, term))
        .collect()
}

/// Whether `pod` matches every term; no terms match nothing, as in Kubernetes.
fn matches_all_terms(terms: &[AffinityTerm], pod: &Value) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod))
}

/// Per (topology key, value): how many placed pods count there.
type TopologyCounts = HashMap<(String, String), i64>;

/// What a node already holds.
#[derive(Default)]
struct Usage {
    requested: Resources,
    pods: usize,
}

/// The cluster as the filters see it: usage per node and the InterPodAffinity
/// PreFilter's counts, built from a set of placed pods.
struct Snapshot<'a> {
    usage: HashMap<&'a str, Usage>,
    /// Topologies with a pod matching all of the incoming pod's affinity terms.
    affinity: TopologyCounts,
    /// Topologies with a pod matching one of the incoming pod's anti-affinity terms.
    anti_affinity: TopologyCounts,
    /// Topologies with a placed pod whose anti-affinity matches the incoming pod.
    existing_anti_affinity: TopologyCounts,
}

impl<'a> Snapshot<'a> {
    fn new<'o>(
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

    fn pod_count(&self, node: &str) -> usize {
        self.usage.get(node).map_or(0, |u| u.pods)
    }
}

/// Counts a pod on `node` in the topology `key`, if the node has that label.
fn count_topology(counts: &mut TopologyCounts, node: &Value, key: &str) {
    if let Some(value) = label(node, key) {
        *counts
            .entry((key.to_owned(), value.to_owned()))
            .or_default() += 1;
    }
}

fn topology_count(counts: &TopologyCounts, key: &str, value: &str) -> i64 {
    counts
        .get(&(key.to_owned(), value.to_owned()))
        .copied()
        .unwrap_or(0)
}

/// Runs the filter plugins in the default profile's order, stopping at the
/// first that rejects the node, as the framework does.
fn filter(
    incoming: &Incoming<'_>,
    node: &NodeInfo<'_>,
    snapshot: &Snapshot<'_>,
) -> Result<(), Rejection> {
    let spec = &node.node["spec"];

    // NodeUnschedulable
    if spec["unschedulable"].as_bool() == Some(true)
        && !tolerated(incoming.tolerations, UNSCHEDULABLE_TAINT, "", "NoSchedule")
    {
        return Err(Rejection::unresolvable(ERR_NODE_UNSCHEDULABLE));
    }

    // NodeName
    if let Some(wanted) = incoming.node_name
        && wanted != node.name
    {
        return Err(Rejection::unresolvable(ERR_NODE_NAME));
    }

    // TaintToleration: the first untolerated taint in the node's order names the reason.
    if let Some(taint) = spec["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|taint| {
            let effect = taint["effect"].as_str().unwrap_or_default();
            matches!(effect, "NoSchedule" | "NoExecute")
                && !tolerated(
                    incoming.tolerations,
                    taint["key"].as_str().unwrap_or_default(),
                    taint["value"].as_str().unwrap_or_default(),
                    effect,
                )
        })
    {
        return Err(Rejection::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint["key"].as_str().unwrap_or_default(),
            taint["value"].as_str().unwrap_or_default(),
        )));
    }

    // NodeAffinity
    if !matches_node_affinity(incoming.pod, node) {
        return Err(Rejection::unresolvable(ERR_NODE_AFFINITY));
    }

    // NodeResourcesFit
    let insufficient = insufficient_resources(incoming, node, snapshot.usage.get(node.name));
    if !insufficient.is_empty() {
        return Err(Rejection::unschedulable(insufficient));
    }

    // InterPodAffinity
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

/// Whether some toleration tolerates the taint (`v1.Toleration.ToleratesTaint`):
/// an empty effect matches every effect, an empty key every key, and the
/// operator is `Equal` (the default) or `Exists`.
fn tolerated(tolerations: &[Value], key: &str, value: &str, effect: &str) -> bool {
    tolerations.iter().any(|toleration| {
        let t_effect = toleration["effect"].as_str().unwrap_or_default();
        let t_key = toleration["key"].as_str().unwrap_or_default();
        if !t_effect.is_empty() && t_effect != effect {
            return false;
        }
        if !t_key.is_empty() && t_key != key {
            return false;
        }
        match toleration["operator"].as_str().unwrap_or_default() {
            "" | "Equal" => toleration["value"].as_str().unwrap_or_default() == value,
            "Exists" => true,
            _ => false,
        }
    })
}

/// What the NodeAffinity PreFilter leaves for the filters.
enum PreFilterNodes {
    /// Every node.
    All,
    /// Only the nodes with these names (`matchFields` on `metadata.name`).
    Only(BTreeSet<String>),
    /// No node: every term names disjoint node sets.
    Conflict,
}

/// The NodeAffinity PreFilter: if every required term pins `metadata.name`
/// with `In`, only the union over terms of the names each term allows can fit.
fn node_affinity_prefilter(pod: &Value) -> PreFilterNodes {
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
            let values: BTreeSet<String> = requirement["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
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
fn matches_node_affinity(pod: &Value, node: &NodeInfo<'_>) -> bool {
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
fn node_selector_term_matches(term: &Value, labels: &Map<String, Value>, node_name: &str) -> bool {
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
fn node_selector_requirement(expression: &Value) -> Option<LabelRequirement> {
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
fn field_requirement(field: &Value) -> Option<(&str, bool, &str)> {
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

/// NodeResourcesFit's `fitsRequest`: every reason the node falls short, pod
/// count first.
fn insufficient_resources(
    incoming: &Incoming<'_>,
    node: &NodeInfo<'_>,
    usage: Option<&Usage>,
) -> Vec<String> {
    let mut reasons = Vec::new();
    let placed = usage.map_or(0, |u| u.pods);
    if i128::try_from(placed)
        .unwrap_or(i128::MAX)
        .saturating_add(1)
        > node.max_pods
    {
        reasons.push(ERR_TOO_MANY_PODS.to_owned());
    }
    for (name, &wanted) in &incoming.requests {
        // A resource the pod does not ask for never disqualifies a node, even
        // an overcommitted one.
        if wanted <= 0 {
            continue;
        }
        let allocatable = node.allocatable.get(name).copied().unwrap_or(0);
        let requested = usage
            .and_then(|u| u.requested.get(name))
            .copied()
            .unwrap_or(0);
        if wanted > allocatable.saturating_sub(requested) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    reasons
}

/// `satisfyPodAffinity`: every affinity term must have a matching pod in the
/// node's topology, and the node must carry every topology label; the first
/// pod of a group that matches its own terms may start it anywhere with
/// those labels when no pod matches yet.
fn satisfies_pod_affinity(incoming: &Incoming<'_>, node: &Value, snapshot: &Snapshot<'_>) -> bool {
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
fn satisfies_pod_anti_affinity(
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
fn satisfies_existing_anti_affinity(node: &Value, snapshot: &Snapshot<'_>) -> bool {
    snapshot.existing_anti_affinity.is_empty()
        || labels_of(node).iter().all(|(key, value)| {
            value.as_str().is_none_or(|value| {
                topology_count(&snapshot.existing_anti_affinity, key, value) <= 0
            })
        })
}

/// What DefaultPreemption's PostFilter reports (without `preemption: `), or
/// `None` when evicting lower-priority pods would make the pod fit.
fn preemption_outcome(
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

/// The message when a PreFilter plugin rejects the pod: its reason stands
/// for every node, and preemption cannot help anywhere.
fn prefilter_rejection(total: usize, reason: &str, preemption_policy_never: bool) -> Unschedulable {
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
fn histogram<'r>(rejections: impl Iterator<Item = &'r Rejection>) -> BTreeMap<String, usize> {
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
fn no_fit(total: usize, reasons: &BTreeMap<String, usize>) -> String {
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

/// The pod's effective request (`resourcehelper.PodRequests`): the larger of
/// the containers' sum (plus restartable init containers, i.e. sidecars) and
/// what any init container needs while it runs (itself plus the sidecars
/// started before it), per resource, plus `spec.overhead`.
fn pod_requests(pod: &Value) -> Resources {
    let spec = &pod["spec"];
    let mut requests = Resources::new();
    for container in spec["containers"].as_array().into_iter().flatten() {
        add_resources(&mut requests, &container_requests(container));
    }
    let mut sidecars = Resources::new();
    let mut init_peak = Resources::new();
    for container in spec["initContainers"].as_array().into_iter().flatten() {
        let own = container_requests(container);
        let while_running = if container["restartPolicy"].as_str() == Some("Always") {
            // A sidecar keeps running beside the app containers.
            add_resources(&mut requests, &own);
            add_resources(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut total = own;
            add_resources(&mut total, &sidecars);
            total
        };
        max_resources(&mut init_peak, &while_running);
    }
    max_resources(&mut requests, &init_peak);
    if let Some(overhead) = spec["overhead"].as_object() {
        add_resources(&mut requests, &resource_list(overhead));
    }
    requests
}

/// A container's requests, with each limit standing in for a missing
/// request of the same resource, as the API server's defaulting sets it.
fn container_requests(container: &Value) -> Resources {
    let resources = &container["resources"];
    let mut requests = resources["requests"]
        .as_object()
        .map(resource_list)
        .unwrap_or_default();
    if let Some(limits) = resources["limits"].as_object() {
        for (name, amount) in resource_list(limits) {
            requests.entry(name).or_insert(amount);
        }
    }
    requests
}

/// A `ResourceList`; entries that do not parse are left out.
fn resource_list(list: &Map<String, Value>) -> Resources {
    list.iter()
        .filter_map(|(name, quantity)| Some((name.clone(), resource_amount(name, quantity)?)))
        .collect()
}

fn add_resources(into: &mut Resources, other: &Resources) {
    for (name, amount) in other {
        let total = into.entry(name.clone()).or_insert(0);
        *total = total.saturating_add(*amount);
    }
}

fn max_resources(into: &mut Resources, other: &Resources) {
    for (name, amount) in other {
        let current = into.entry(name.clone()).or_insert(0);
        *current = (*current).max(*amount);
    }
}

/// A quantity in the unit the scheduler compares: millicores for `cpu`
/// (`MilliValue()`), whole units for anything else (`Value()`).
pub(crate) fn resource_amount(name: &str, quantity: &Value) -> Option<i128> {
    let scale = if name == "cpu" { 3 } else { 0 };
    match quantity {
        Value::String(text) => scaled_quantity(text, scale),
        // A number is what a quantity written unquoted in YAML becomes.
        Value::Number(number) => scaled_quantity(&number.to_string(), scale),
        _ => None,
    }
}

/// Parses a Kubernetes quantity (`resource.ParseQuantity`'s grammar: an
/// optionally signed decimal number, then a binary-SI, decimal-SI or
/// `e`/`E` exponent suffix) and returns `ceil(value × 10^scale)` exactly;
/// `None` if it does not parse or does not fit an `i128`.
fn scaled_quantity(text: &str, scale: i32) -> Option<i128> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'+' => (false, &text[1..]),
        b'-' => (true, &text[1..]),
        _ => (false, text),
    };
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let mut mantissa: i128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(digit - b'0'))?;
    }
    let mut exponent = scale - i32::try_from(fraction.len()).ok()?;
    let mut binary_shift = 0;
    match suffix {
        "" => {}
        "n" => exponent -= 9,
        "u" => exponent -= 6,
        "m" => exponent -= 3,
        "k" => exponent += 3,
        "M" => exponent += 6,
        "G" => exponent += 9,
        "T" => exponent += 12,
        "P" => exponent += 15,
        "E" => exponent += 18,
        "Ki" => binary_shift = 10,
        "Mi" => binary_shift = 20,
        "Gi" => binary_shift = 30,
        "Ti" => binary_shift = 40,
        "Pi" => binary_shift = 50,
        "Ei" => binary_shift = 60,
        _ => {
            let digits = suffix.strip_prefix(['e', 'E'])?;
            let unsigned_digits = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned_digits.is_empty() || !unsigned_digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            exponent = exponent.checked_add(digits.parse::<i32>().ok()?)?;
        }
    }
    let mut numerator = mantissa.checked_mul(1_i128.checked_shl(binary_shift)?)?;
    let mut denominator: i128 = 1;
    if exponent >= 0 {
        numerator = numerator.checked_mul(10_i128.checked_pow(exponent.unsigned_abs())?)?;
    } else {
        denominator = 10_i128.checked_pow(exponent.unsigned_abs())?;
    }
    let truncated = numerator / denominator;
    // Rounding up, as Quantity.Value() and MilliValue() do: away from zero
    // for a positive value, towards zero for a negative one.
    Some(if negative {
        -truncated
    } else {
        truncated + i128::from(numerator % denominator != 0)
    })
}

/// Whether a pod holds a place on its node: bound, not finished, not being deleted.
fn occupies_node(pod: &Value) -> bool {
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
fn same_pod(a: &Value, b: &Value) -> bool {
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
fn priority(pod: &Value) -> i64 {
    pod["spec"]["priority"].as_i64().unwrap_or(0)
}

/// The pod's namespace; an object built without one is taken to be in
/// `default`, where the API server would have put it.
fn namespace_of(pod: &Value) -> &str {
    pod["metadata"]["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
}

fn labels_of(object: &Value) -> &Map<String, Value> {
    object["metadata"]["labels"]
        .as_object()
        .unwrap_or(&NO_LABELS)
}

fn label<'v>(object: &'v Value, key: &str) -> Option<&'v str> {
    labels_of(object).get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// [`super::place`] with owned pods, so that `&[]` needs no annotation.
    fn place(pod: &Value, nodes: &[Value], pods: &[Value]) -> Result<String, Unschedulable> {
        super::place(pod, nodes, pods)
    }

    /// A schedulable node with the hostname label, like `cluster::node`.
    fn node(name: &str, cpu: &str, memory: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}},
        })
    }

    fn with_labels(mut node: Value, labels: Value) -> Value {
        if let (Some(into), Some(from)) = (
            node["metadata"]["labels"].as_object_mut(),
            labels.as_object(),
        ) {
            for (k, v) in from {
                into.insert(k.clone(), v.clone());
            }
        }
        node
    }

    /// A pending pod in `default` with one container requesting `cpu` and `memory`.
    fn pod(name: &str, cpu: &str, memory: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
            "status": {"phase": "Pending"},
        })
    }

    /// `pod` bound to `node` and running.
    fn running(mut pod: Value, node: &str) -> Value {
        pod["spec"]["nodeName"] = json!(node);
        pod["status"]["phase"] = json!("Running");
        pod
    }

    fn labelled(mut pod: Value, labels: Value) -> Value {
        pod["metadata"]["labels"] = labels;
        pod
    }

    fn message(result: Result<String, Unschedulable>) -> String {
        match result {
            Ok(node) => panic!("expected no fit, got {node}"),
            Err(e) => e.message,
        }
    }

    fn not_helpful(n: usize) -> String {
        format!(
            "preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling."
        )
    }

    // --- placement and message shape ---

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

    // --- NodeName ---

    #[test]
    fn node_name_only_considers_that_node() {
        let nodes = [node("a", "8", "8Gi"), node("b", "8", "8Gi")];
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["nodeName"] = json!("b");
        assert_eq!(place(&p, &nodes, &[]), Ok("b".to_owned()));
    }

    #[test]
    fn node_name_of_a_missing_node() {
        let nodes = [node("a", "8", "8Gi"), node("b", "8", "8Gi")];
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["nodeName"] = json!("gone");
        assert_eq!(
            message(place(&p, &nodes, &[])),
            format!(
                "0/2 nodes are available: 2 node(s) didn't match the requested node name. {}",
                not_helpful(2)
            )
        );
    }

    #[test]
    fn a_bound_pod_in_the_pod_list_is_not_counted_against_itself() {
        let nodes = [node("a", "1", "1Gi")];
        let p = running(pod("p", "1", "1Gi"), "a");
        assert_eq!(
            place(&p, &nodes, std::slice::from_ref(&p)),
            Ok("a".to_owned())
        );
    }

    // --- NodeUnschedulable ---

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

    // --- NodeAffinity: nodeSelector ---

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

    // --- TaintToleration ---

    fn tainted(name: &str, taints: Value) -> Value {
        let mut n = node(name, "8", "8Gi");
        n["spec"]["taints"] = taints;
        n
    }

    fn tolerating(tolerations: Value) -> Value {
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["tolerations"] = tolerations;
        p
    }

    #[test]
    fn untolerated_taint_is_named_in_the_message() {
        let nodes = [tainted(
            "a",
            json!([{"key": "dedicated", "value": "ci", "effect": "NoSchedule"}]),
        )];
        assert_eq!(
            message(place(&pod("p", "1", "1Gi"), &nodes, &[])),
            format!(
                "0/1 nodes are available: 1 node(s) had untolerated taint {{dedicated: ci}}. {}",
                not_helpful(1)
            )
        );
        // A taint without a value prints an empty value, as kubectl users see it.
        let nodes = [tainted(
            "a",
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        )];
        assert!(message(place(&pod("p", "1", "1Gi"), &nodes, &[])).contains(
            "1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }."
        ));
    }

    #[test]
    fn equal_toleration_needs_the_value() {
        let nodes = [tainted(
            "a",
            json!([{"key": "dedicated", "value": "ci", "effect": "NoSchedule"}]),
        )];
        let matching = tolerating(
            json!([{"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}]),
        );
        assert_eq!(place(&matching, &nodes, &[]), Ok("a".to_owned()));
        // The operator defaults to Equal.
        let defaulted = tolerating(json!([{"key": "dedicated", "value": "ci"}]));
        assert_eq!(place(&defaulted, &nodes, &[]), Ok("a".to_owned()));
        let other_value =
            tolerating(json!([{"key": "dedicated", "value": "prod", "effect": "NoSchedule"}]));
        assert!(place(&other_value, &nodes, &[]).is_err());
        let other_effect =
            tolerating(json!([{"key": "dedicated", "value": "ci", "effect": "NoExecute"}]));
        assert!(place(&other_effect, &nodes, &[]).is_err());
    }

    #[test]
    fn exists_toleration_with_a_key_ignores_the_value() {
        let nodes = [tainted(
            "a",
            json!([{"key": "dedicated", "value": "ci", "effect": "NoExecute"}]),
        )];
        let p = tolerating(json!([{"key": "dedicated", "operator": "Exists"}]));
        assert_eq!(place(&p, &nodes, &[]), Ok("a".to_owned()));
        let other_key = tolerating(json!([{"key": "gpu", "operator": "Exists"}]));
        assert!(place(&other_key, &nodes, &[]).is_err());
    }

    #[test]
    fn exists_toleration_with_an_empty_key_tolerates_every_taint() {
        let nodes = [tainted(
            "a",
            json!([
                {"key": "dedicated", "value": "ci", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
            ]),
        )];
        assert_eq!(
            place(&tolerating(json!([{"operator": "Exists"}])), &nodes, &[]),
            Ok("a".to_owned())
        );
        // With an effect, only taints of that effect.
        let no_schedule_only = tolerating(json!([{"operator": "Exists", "effect": "NoSchedule"}]));
        assert!(
            message(place(&no_schedule_only, &nodes, &[]))
                .contains("untolerated taint {node.kubernetes.io/not-ready: }")
        );
    }

    #[test]
    fn prefer_no_schedule_taints_do_not_filter() {
        let nodes = [tainted(
            "a",
            json!([{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]),
        )];
        assert_eq!(
            place(&pod("p", "1", "1Gi"), &nodes, &[]),
            Ok("a".to_owned())
        );
    }

    #[test]
    fn the_first_untolerated_taint_is_reported() {
        let nodes = [tainted(
            "a",
            json!([
                {"key": "tolerated", "value": "x", "effect": "NoSchedule"},
                {"key": "first", "value": "1", "effect": "NoExecute"},
                {"key": "second", "value": "2", "effect": "NoSchedule"},
            ]),
        )];
        let p = tolerating(json!([{"key": "tolerated", "operator": "Exists"}]));
        assert!(
            message(place(&p, &nodes, &[])).contains("1 node(s) had untolerated taint {first: 1}.")
        );
    }

    // --- NodeResourcesFit ---

    #[test]
    fn insufficient_cpu_and_memory_each_count_once_per_node() {
        let nodes = [node("a", "1", "1Gi"), node("b", "4", "1Gi")];
        assert_eq!(
            message(place(&pod("p", "2", "2Gi"), &nodes, &[])),
            "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory. \
             preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn occupying_pods_use_up_allocatable() {
        let nodes = [node("a", "2", "4Gi")];
        let pods = [running(pod("x", "1500m", "1Gi"), "a")];
        assert!(
            message(place(&pod("p", "600m", "1Gi"), &nodes, &pods)).contains("1 Insufficient cpu.")
        );
        // An exact fit is a fit.
        assert_eq!(
            place(&pod("p", "500m", "3Gi"), &nodes, &pods),
            Ok("a".to_owned())
        );
    }

    #[test]
    fn finished_deleting_and_elsewhere_pods_do_not_occupy() {
        let nodes = [node("a", "2", "4Gi")];
        let mut succeeded = running(pod("s", "2", "1Gi"), "a");
        succeeded["status"]["phase"] = json!("Succeeded");
        let mut failed = running(pod("f", "2", "1Gi"), "a");
        failed["status"]["phase"] = json!("Failed");
        let mut deleting = running(pod("d", "2", "1Gi"), "a");
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let pending = pod("q", "2", "1Gi");
        let elsewhere = running(pod("e", "2", "1Gi"), "b");
        let pods = [succeeded, failed, deleting, pending, elsewhere];
        assert_eq!(
            place(&pod("p", "2", "4Gi"), &nodes, &pods),
            Ok("a".to_owned())
        );
    }

    #[test]
    fn a_pod_without_requests_fits_an_overcommitted_node() {
        let nodes = [node("a", "1", "1Gi")];
        let pods = [running(pod("x", "2", "2Gi"), "a")];
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["containers"][0]["resources"] = json!({});
        assert_eq!(place(&p, &nodes, &pods), Ok("a".to_owned()));
    }

    #[test]
    fn init_containers_count_by_their_maximum_against_the_containers_sum() {
        let nodes = [node("a", "3", "8Gi")];
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["containers"] = json!([
            {"name": "a", "resources": {"requests": {"cpu": "1"}}},
            {"name": "b", "resources": {"requests": {"cpu": "1"}}},
        ]);
        // Sum of containers 2, largest init container 3: the pod needs 3.
        p["spec"]["initContainers"] = json!([
            {"name": "i1", "resources": {"requests": {"cpu": "3"}}},
            {"name": "i2", "resources": {"requests": {"cpu": "1"}}},
        ]);
        assert_eq!(place(&p, &nodes, &[]), Ok("a".to_owned()));
        p["spec"]["initContainers"][0]["resources"]["requests"]["cpu"] = json!("3100m");
        assert!(message(place(&p, &nodes, &[])).contains("1 Insufficient cpu."));
        // Init containers run one at a time, so they do not add up.
        p["spec"]["initContainers"] = json!([
            {"name": "i1", "resources": {"requests": {"cpu": "2"}}},
            {"name": "i2", "resources": {"requests": {"cpu": "2"}}},
        ]);
        assert_eq!(place(&p, &nodes, &[]), Ok("a".to_owned()));
    }

    #[test]
    fn sidecars_and_overhead_add_to_the_request() {
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["initContainers"] = json!([
            {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
            {"name": "init", "resources": {"requests": {"cpu": "1500m"}}},
        ]);
        p["spec"]["overhead"] = json!({"cpu": "250m"});
        let requests = pod_requests(&p);
        // max(1 + 1 sidecar, 1.5 + 1 sidecar before it) + 0.25 overhead.
        assert_eq!(requests.get("cpu"), Some(&2750));
        assert_eq!(requests.get("memory"), Some(&(1 << 30)));
    }

    #[test]
    fn limits_stand_in_for_missing_requests() {
        let nodes = [node("a", "2", "8Gi")];
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "3", "memory": "1Gi"}});
        assert!(message(place(&p, &nodes, &[])).contains("1 Insufficient cpu."));
        // Per resource: an explicit request wins over the limit.
        p["spec"]["containers"][0]["resources"] =
            json!({"requests": {"cpu": "1"}, "limits": {"cpu": "3", "memory": "9Gi"}});
        assert_eq!(
            message(place(&p, &nodes, &[])),
            "0/1 nodes are available: 1 Insufficient memory. \
             preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn extended_resources_are_checked_too() {
        let mut gpu_node = node("a", "8", "8Gi");
        gpu_node["status"]["allocatable"]["nvidia.com/gpu"] = json!("1");
        let nodes = [gpu_node, node("b", "8", "8Gi")];
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["containers"][0]["resources"]["limits"] = json!({"nvidia.com/gpu": "1"});
        assert_eq!(place(&p, &nodes, &[]), Ok("a".to_owned()));
        p["spec"]["containers"][0]["resources"]["limits"] = json!({"nvidia.com/gpu": "2"});
        assert!(message(place(&p, &nodes, &[])).contains("2 Insufficient nvidia.com/gpu."));
    }

    #[test]
    fn too_many_pods() {
        let mut small = node("a", "8", "8Gi");
        small["status"]["allocatable"]["pods"] = json!("2");
        let pods = [
            running(pod("x", "100m", "1Mi"), "a"),
            running(pod("y", "100m", "1Mi"), "a"),
        ];
        assert_eq!(
            message(place(
                &pod("p", "100m", "1Mi"),
                std::slice::from_ref(&small),
                &pods
            )),
            "0/1 nodes are available: 1 Too many pods. \
             preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
        assert_eq!(
            place(
                &pod("p", "100m", "1Mi"),
                std::slice::from_ref(&small),
                &pods[..1]
            ),
            Ok("a".to_owned())
        );
    }

    #[test]
    fn too_many_pods_and_insufficient_cpu_are_both_reported() {
        let mut small = node("a", "1", "8Gi");
        small["status"]["allocatable"]["pods"] = json!("1");
        let pods = [running(pod("x", "500m", "1Mi"), "a")];
        assert!(
            message(place(&pod("p", "1", "1Mi"), &[small], &pods))
                .starts_with("0/1 nodes are available: 1 Insufficient cpu, 1 Too many pods. ")
        );
    }

    #[test]
    fn pod_count_defaults_to_110() {
        let mut n = node("a", "1000", "1000Gi");
        n["status"]["allocatable"] = json!({"cpu": "1000", "memory": "1000Gi"});
        let pods: Vec<Value> = (0..110)
            .map(|i| running(pod(&format!("x{i}"), "1m", "1Mi"), "a"))
            .collect();
        assert!(
            message(place(
                &pod("p", "1m", "1Mi"),
                std::slice::from_ref(&n),
                &pods
            ))
            .contains("1 Too many pods.")
        );
        assert_eq!(
            place(&pod("p", "1m", "1Mi"), &[n], &pods[..109]),
            Ok("a".to_owned())
        );
    }

    // --- preemption clause ---

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

    // --- InterPodAffinity ---

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

    // --- quantities ---

    #[test]
    fn quantities_convert_exactly() {
        let bytes = |s: &str| scaled_quantity(s, 0);
        let milli = |s: &str| scaled_quantity(s, 3);
        assert_eq!(bytes("1Gi"), Some(1_073_741_824));
        assert_eq!(bytes("1073741824"), bytes("1Gi"));
        assert_eq!(bytes("16393232Ki"), Some(16_786_669_568));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1.5Gi"), Some(1_610_612_736));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("2E-1"), Some(1));
        assert_eq!(bytes("+5"), Some(5));
        assert_eq!(milli("0.5"), milli("500m"));
        assert_eq!(milli("4"), Some(4000));
        assert_eq!(milli(".25"), Some(250));
        assert_eq!(milli("1."), Some(1000));
        // Rounded up, as MilliValue() and Value() do.
        assert_eq!(milli("1n"), Some(1));
        assert_eq!(milli("100u"), Some(1));
        assert_eq!(bytes("1500m"), Some(2));
        assert_eq!(bytes("-1500m"), Some(-1));
        for bad in [
            "", "abc", "1.2.3", ".", "1Q", "1e", "1e+", "1 Gi", "Gi", "1ki",
        ] {
            assert_eq!(bytes(bad), None, "{bad}");
        }
        assert_eq!(bytes("1e100"), None);
    }

    #[test]
    fn exact_fits_do_not_depend_on_how_quantities_are_spelled() {
        let nodes = [node("a", "2", "1073741824")];
        assert_eq!(
            place(&pod("p", "2000m", "1Gi"), &nodes, &[]),
            Ok("a".to_owned())
        );
        let pods = [running(pod("x", "1", "512Mi"), "a")];
        assert_eq!(
            place(&pod("p", "1000m", "536870912"), &nodes, &pods),
            Ok("a".to_owned())
        );
        assert!(place(&pod("p", "1000m", "536870913"), &nodes, &pods).is_err());
    }

    #[test]
    fn numeric_quantities_are_read_too() {
        let mut n = node("a", "2", "4Gi");
        n["status"]["allocatable"]["cpu"] = json!(2);
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!(2.5);
        assert!(message(place(&p, &[n], &[])).contains("1 Insufficient cpu."));
    }
}
