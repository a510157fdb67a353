//! Pods and nodes for the scheduler's tests, in the API's JSON shape; test-only.

pub(super) use serde_json::{Value, json};

use super::Unschedulable;

/// [`super::place`] with owned pods, so that `&[]` needs no annotation.
pub(super) fn place(pod: &Value, nodes: &[Value], pods: &[Value]) -> Result<String, Unschedulable> {
    super::place(pod, nodes, pods)
}

/// A schedulable node with the hostname label, like `cluster::node`.
pub(super) fn node(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}},
    })
}

pub(super) fn with_labels(mut node: Value, labels: Value) -> Value {
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
pub(super) fn pod(name: &str, cpu: &str, memory: &str) -> Value {
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
pub(super) fn running(mut pod: Value, node: &str) -> Value {
    pod["spec"]["nodeName"] = json!(node);
    pod["status"]["phase"] = json!("Running");
    pod
}

pub(super) fn labelled(mut pod: Value, labels: Value) -> Value {
    pod["metadata"]["labels"] = labels;
    pod
}

pub(super) fn message(result: Result<String, Unschedulable>) -> String {
    match result {
        Ok(node) => panic!("expected no fit, got {node}"),
        Err(e) => e.message,
    }
}

pub(super) fn not_helpful(n: usize) -> String {
    format!("preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling.")
}
