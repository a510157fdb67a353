//! The ReplicaSet controller: as many active pods as `spec.replicas` from the template (surplus pods deleted, the least useful first), and the status counts (`replicas`, `readyReplicas`, `availableReplicas`, `fullyLabeledReplicas`, `observedGeneration`).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::{Cluster, resource};
use crate::logs::{now_nanos, parse_time};
use crate::status::ApiError;
use crate::store::Key;

/// Whether `pod` counts: neither finished nor being deleted.
pub(super) fn is_active(pod: &Value) -> bool {
    !matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    ) && pod["metadata"].get("deletionTimestamp").is_none()
}

/// Whether `pod`'s `Ready` condition is true.
pub(super) fn is_ready(pod: &Value) -> bool {
    ready_since(pod).is_some()
}

fn ready_since(pod: &Value) -> Option<i128> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")
        .map(|c| {
            c["lastTransitionTime"]
                .as_str()
                .and_then(parse_time)
                .unwrap_or(0)
        })
}

/// Ready for at least `min_ready` seconds.
pub(super) fn is_available(pod: &Value, min_ready: i64) -> bool {
    ready_since(pod).is_some_and(|at| {
        min_ready <= 0 || now_nanos() >= at + i128::from(min_ready) * 1_000_000_000
    })
}

/// The objects of `resource` in `ns` whose controller is the object `uid`.
pub(super) fn controlled_by(
    c: &Cluster,
    resource_name: (&str, &str),
    ns: &str,
    uid: &str,
) -> Vec<Value> {
    c.store
        .select(resource(resource_name.0, resource_name.1), Some(ns), |o| {
            controller_uid(o) == Some(uid)
        })
}

/// The uid of `object`'s controller, from its owner references.
pub(super) fn controller_uid(object: &Value) -> Option<&str> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == json!(true))
        .and_then(|r| r["uid"].as_str())
}

/// The name of `object`'s controller if it is of `kind`.
pub(super) fn controller_named(object: &Value, kind: &str) -> Option<String> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == json!(true) && r["kind"] == kind)
        .and_then(|r| r["name"].as_str().map(str::to_owned))
}

/// One ReplicaSet: creates or deletes pods towards `spec.replicas`, then
/// writes its status.
pub(super) fn sync(c: &Arc<Cluster>, ns: &str, name: &str) {
    let rs_resource = resource("apps", "replicasets");
    let key = Key::new(rs_resource, ns, name);
    let Some(rs) = c.store.get(&key) else { return };
    if rs["metadata"].get("deletionTimestamp").is_some() {
        return;
    }
    let uid = rs["metadata"]["uid"].as_str().unwrap_or_default();
    let owned = controlled_by(c, ("", "pods"), ns, uid);
    let mut active: Vec<Value> = owned.into_iter().filter(is_active).collect();
    let desired = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    if active.len() < desired {
        for _ in active.len()..desired {
            match create_pod(c, &rs) {
                Ok(pod) => {
                    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
                    c.event(
                        &rs,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {pod_name}"),
                    );
                    active.push(pod);
                }
                Err(e) => {
                    c.event(
                        &rs,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {}", e.message),
                    );
                    break;
                }
            }
        }
    } else if active.len() > desired {
        active.sort_by_key(deletion_rank);
        let pods = resource("", "pods");
        for pod in active.drain(..active.len() - desired) {
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
            if c.delete(pods, &Key::new(pods, ns, pod_name), "Background")
                .is_ok()
            {
                c.event(
                    &rs,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {pod_name}"),
                );
            }
        }
    }
    write_status(c, &key, &rs, &active);
}

/// Which surplus pod goes first, as the real controller ranks them:
/// unscheduled before scheduled, pending before running, not ready before
/// ready, more restarts first, the newest first.
fn deletion_rank(pod: &Value) -> (bool, u8, bool, i64, std::cmp::Reverse<String>) {
    let scheduled = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let phase = match pod["status"]["phase"].as_str() {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let restarts: i64 = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["restartCount"].as_i64())
        .sum();
    let created = pod["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (
        scheduled,
        phase,
        is_ready(pod),
        -restarts,
        std::cmp::Reverse(created),
    )
}

fn write_status(c: &Cluster, key: &Key, rs: &Value, active: &[Value]) {
    let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let template_labels = rs["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            template_labels
                .iter()
                .all(|(k, v)| &p["metadata"]["labels"][k] == v)
        })
        .count();
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let available = active.iter().filter(|p| is_available(p, min_ready)).count();
    let generation = rs["metadata"]["generation"].clone();
    let _ = c.store.update(resource("apps", "replicasets"), key, |o| {
        // The real type omits zero counts but `replicas`.
        let mut status = json!({"replicas": active.len(), "observedGeneration": generation});
        for (field, n) in [
            ("fullyLabeledReplicas", fully_labeled),
            ("readyReplicas", ready),
            ("availableReplicas", available),
        ] {
            if n > 0 {
                status[field] = json!(n);
            }
        }
        o["status"] = status;
        Ok(())
    });
}

/// A pod from the ReplicaSet's template.
fn create_pod(c: &Arc<Cluster>, rs: &Value) -> Result<Value, ApiError> {
    super::template::create_pod(c, rs, "apps/v1", "ReplicaSet")
}
