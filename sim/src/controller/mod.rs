//! The control loop: the job, deployment, replicaset and volume-binding controllers, scheduling and kubelet hand-off (start, graceful stop), deadlines and TTLs, driven by store events and a tick as the real controllers are by informers.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

mod deployment;
mod job;
mod replicaset;
mod template;
mod volume;

use crate::cluster::{Cluster, resource};
use crate::kubelet::Kubelet;
use crate::store::{Event, EventType, Key, now};
use job::{owner_job, sync_job};

/// How often deadlines, TTLs and unschedulable pods are looked at again.
const TICK: Duration = Duration::from_millis(200);

/// Runs the control loop until the cluster is dropped.
pub fn spawn(cluster: &Arc<Cluster>, kubelet: &Arc<Kubelet>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(cluster);
    let kubelet = kubelet.clone();
    let mut events = cluster.store.subscribe();
    tokio::spawn(async move {
        if let Some(c) = weak.upgrade() {
            resync(&c, &kubelet);
        }
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(c) = weak.upgrade() else { return };
                    match event {
                        Ok(e) => on_event(&c, &kubelet, &e),
                        Err(RecvError::Lagged(_)) => resync(&c, &kubelet),
                        Err(RecvError::Closed) => return,
                    }
                }
                _ = tick.tick() => {
                    let Some(c) = weak.upgrade() else { return };
                    periodic(&c, &kubelet);
                }
            }
        }
    })
}

fn on_event(c: &Arc<Cluster>, kubelet: &Kubelet, event: &Event) {
    let key = &event.key;
    // Events hold their object as text: parsed only where it is read.
    let parsed = || event.object();
    match (key.resource, event.kind) {
        ("jobs", EventType::Deleted) => {}
        ("jobs", _) => sync_job(c, &key.namespace, &key.name),
        ("pods", EventType::Deleted) => {
            let object = &parsed();
            if let Some(uid) = object["metadata"]["uid"].as_str() {
                kubelet.stop(uid);
            }
            pod_owners(c, &key.namespace, object);
            recreating_deployment(c, &key.namespace, object);
        }
        ("pods", _) => {
            let object = &parsed();
            if object["metadata"].get("deletionTimestamp").is_some() {
                terminate(c, kubelet, key, object);
            } else if object["spec"]["nodeName"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                schedule(c, object);
            } else {
                kubelet.ensure(c, object);
            }
            pod_owners(c, &key.namespace, object);
        }
        ("deployments", EventType::Deleted) => {}
        ("deployments", _) => deployment::sync(c, &key.namespace, &key.name),
        ("replicasets", kind) => {
            if kind != EventType::Deleted {
                replicaset::sync(c, &key.namespace, &key.name);
            }
            if let Some(d) = replicaset::controller_named(&parsed(), "Deployment") {
                deployment::sync(c, &key.namespace, &d);
            }
        }
        ("persistentvolumeclaims", EventType::Added | EventType::Modified) => {
            volume::bind(c, key, &parsed());
        }
        _ => {}
    }
}

/// A `Recreate` rollout waits for the last old pod to be gone, which
/// changes no ReplicaSet's status (a terminating pod no longer counted), so
/// the pod's deletion itself wakes its Deployment, as the real controller's
/// pod handler does.
fn recreating_deployment(c: &Arc<Cluster>, ns: &str, pod: &Value) {
    let Some(rs) = replicaset::controller_named(pod, "ReplicaSet") else {
        return;
    };
    let sets = resource("apps", "replicasets");
    let deployment = c
        .store
        .get(&Key::new(sets, ns, &rs))
        .and_then(|rs| replicaset::controller_named(&rs, "Deployment"));
    if let Some(d) = deployment {
        deployment::sync(c, ns, &d);
    }
}

/// The controllers of a pod that changed: its Job or its ReplicaSet.
fn pod_owners(c: &Arc<Cluster>, ns: &str, pod: &Value) {
    if let Some(job) = owner_job(pod) {
        sync_job(c, ns, &job);
    }
    if let Some(rs) = replicaset::controller_named(pod, "ReplicaSet") {
        replicaset::sync(c, ns, &rs);
    }
}

/// A pod marked for deletion: the kubelet stops it (preStop, SIGTERM,
/// SIGKILL after the grace period) and removes it; a pod it does not run
/// (any more) is removed at once.
fn terminate(c: &Arc<Cluster>, kubelet: &Kubelet, key: &Key, pod: &Value) {
    let running = pod["metadata"]["uid"]
        .as_str()
        .is_some_and(|uid| kubelet.stop(uid));
    if !running {
        let _ = c.delete_with_grace(resource("", "pods"), key, "Background", Some(0));
    }
}

fn resync(c: &Arc<Cluster>, kubelet: &Kubelet) {
    for (group, name, sync) in [
        (
            "apps",
            "replicasets",
            replicaset::sync as fn(&Arc<Cluster>, &str, &str),
        ),
        ("apps", "deployments", deployment::sync),
    ] {
        let (items, _) = c.store.list(resource(group, name), None);
        for o in items {
            sync(
                c,
                o["metadata"]["namespace"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default(),
            );
        }
    }
    let (jobs, _) = c.store.list(resource("batch", "jobs"), None);
    for j in jobs {
        sync_job(
            c,
            j["metadata"]["namespace"].as_str().unwrap_or_default(),
            j["metadata"]["name"].as_str().unwrap_or_default(),
        );
    }
    periodic(c, kubelet);
}

fn periodic(c: &Arc<Cluster>, kubelet: &Kubelet) {
    for node in c.faults.lost_nodes() {
        lose_node(c, kubelet, &node);
    }
    let pending = c.store.select(resource("", "pods"), None, |p| {
        p["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
            && p["metadata"].get("deletionTimestamp").is_none()
    });
    for p in &pending {
        schedule(c, p);
    }
    job::periodic(c);
    c.store.expire_events(c.options.event_ttl);
    // Pods become available `minReadySeconds` after they are ready: a
    // clock, not an event.
    let waiting = c.store.select(resource("apps", "replicasets"), None, |rs| {
        rs["spec"]["minReadySeconds"]
            .as_i64()
            .is_some_and(|s| s > 0)
    });
    for rs in waiting {
        let ns = rs["metadata"]["namespace"].as_str().unwrap_or_default();
        replicaset::sync(c, ns, rs["metadata"]["name"].as_str().unwrap_or_default());
        if let Some(d) = replicaset::controller_named(&rs, "Deployment") {
            deployment::sync(c, ns, &d);
        }
    }
}

/// Binds a pending pod to a node, or marks it unschedulable with the
/// scheduler's message (and an event when the message changes).
fn schedule(c: &Arc<Cluster>, pod: &Value) {
    let pods = resource("", "pods");
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let key = Key::new(pods, ns, name);
    let (nodes, _) = c.store.list(resource("", "nodes"), None);
    // Only pods bound to a node count against it (and for pod affinity);
    // they are borrowed, not copied: this runs for every pending pod.
    let placed = c.store.with_selected(
        pods,
        None,
        |p| {
            p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
        },
        |bound| crate::scheduler::place(pod, &nodes, bound),
    );
    let at = now();
    match placed {
        Ok(node) => {
            // A pod bound meanwhile (seen through a stale snapshot) stays where it is.
            let mut bound = false;
            let _ = c.store.update(pods, &key, |p| {
                if p["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
                    p["spec"]["nodeName"] = json!(node);
                    set_condition(&mut p["status"], json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": at}));
                    bound = true;
                }
                Ok(())
            });
            if bound {
                c.event(
                    pod,
                    "Normal",
                    "Scheduled",
                    &format!("Successfully assigned {ns}/{name} to {node}"),
                );
            }
        }
        Err(why) => {
            // Judged on the stored pod, not `pod`: a queued watch event can
            // carry a snapshot older than what a resync already recorded.
            let mut changed = false;
            let _ = c.store.update(pods, &key, |p| {
                let same = p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["type"] == "PodScheduled"
                            && c["message"].as_str() == Some(why.message.as_str())
                    })
                });
                if !same {
                    set_condition(&mut p["status"], json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why.message, "lastProbeTime": null, "lastTransitionTime": at}));
                    changed = true;
                }
                Ok(())
            });
            if changed {
                c.event(pod, "Warning", "FailedScheduling", &why.message);
            }
        }
    }
}

fn set_condition(status: &mut Value, condition: Value) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    if let Some(list) = status["conditions"].as_array_mut() {
        list.retain(|c| c["type"] != condition["type"]);
        list.push(condition);
    }
}

/// A node that stopped reporting: `Ready` becomes `Unknown`, the node is
/// tainted unreachable (so nothing new lands there), and its pods' processes
/// stop and the pods fail with the node controller's reason.
fn lose_node(c: &Arc<Cluster>, kubelet: &Kubelet, name: &str) {
    let nodes = resource("", "nodes");
    let key = Key::new(nodes, "", name);
    let Some(node) = c.store.get(&key) else {
        return;
    };
    let at = now();
    let already = node["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "Unknown")
    });
    if !already {
        let _ = c.store.update(nodes, &key, |n| {
            set_condition(&mut n["status"], json!({
                "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
                "lastHeartbeatTime": at, "lastTransitionTime": at,
            }));
            let mut taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
            taints.push(json!({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": at}));
            taints.push(json!({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}));
            n["spec"]["taints"] = json!(taints);
            Ok(())
        });
        c.event(
            &node,
            "Normal",
            "NodeNotReady",
            &format!("Node {name} status is now: NodeNotReady"),
        );
    }
    let pods = resource("", "pods");
    let all = c
        .store
        .select(pods, None, |p| p["spec"]["nodeName"].as_str() == Some(name));
    for p in all {
        let on_node = true;
        let done = matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        if !on_node || done {
            continue;
        }
        if let Some(uid) = p["metadata"]["uid"].as_str() {
            kubelet.stop(uid);
        }
        let ns = p["metadata"]["namespace"].as_str().unwrap_or_default();
        let pod_name = p["metadata"]["name"].as_str().unwrap_or_default();
        let message = format!("Node {name} which was running pod {pod_name} is unresponsive");
        let _ = c.store.update(pods, &Key::new(pods, ns, pod_name), |p| {
            let status = &mut p["status"];
            status["phase"] = json!("Failed");
            status["reason"] = json!("NodeLost");
            status["message"] = json!(message);
            set_condition(status, json!({
                "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": at,
            }));
            Ok(())
        });
        c.event(&p, "Warning", "NodeLost", &message);
    }
}
