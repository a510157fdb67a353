//! The deployment controller: a ReplicaSet per pod template (named by its `pod-template-hash`), revisions, the `RollingUpdate` (maxSurge/maxUnavailable) and `Recreate` strategies, revision history, and the Deployment's status and conditions as `kubectl rollout` reads them.

use std::sync::Arc;

use serde_json::{Value, json};

use super::replicaset::{controlled_by, is_active};
use crate::cluster::{Cluster, resource};
use crate::store::{Key, meta_mut, now};
use crate::workloads::intstr::fenceposts;

/// The label that tells a ReplicaSet's pods from another's.
pub const HASH_LABEL: &str = "pod-template-hash";
/// The revision annotation on Deployments and their ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn replicas(o: &Value) -> i64 {
    o["spec"]["replicas"].as_i64().unwrap_or(0)
}

fn status_count(o: &Value, field: &str) -> i64 {
    o["status"][field].as_i64().unwrap_or(0)
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

/// The template without the hash label: what "the same template" compares.
fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            t["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    t
}

/// `pod-template-hash`: FNV-32a of the template (and the collision count),
/// spelt with the API server's safe alphabet, as the real controller does.
fn template_hash(template: &Value, collisions: i64) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let text = format!("{}{}", without_hash(template), collisions);
    for b in text.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| SAFE[b as usize % SAFE.len()] as char)
        .collect()
}

/// One Deployment: its new ReplicaSet, the strategy's scaling, the history
/// cleanup and its status.
pub(super) fn sync(c: &Arc<Cluster>, ns: &str, deployment_name: &str) {
    let deployments = resource("apps", "deployments");
    let key = Key::new(deployments, ns, deployment_name);
    let Some(d) = c.store.get(&key) else { return };
    if d["metadata"].get("deletionTimestamp").is_some() {
        return;
    }
    let uid = d["metadata"]["uid"].as_str().unwrap_or_default();
    let mut sets = controlled_by(c, ("apps", "replicasets"), ns, uid);
    sets.sort_by_key(|rs| {
        (
            rs["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            name(rs).to_owned(),
        )
    });
    let template = without_hash(&d["spec"]["template"]);
    let found = sets
        .iter()
        .position(|rs| without_hash(&rs["spec"]["template"]) == template);
    let paused = d["spec"]["paused"] == json!(true);
    let mut created = None;
    let new_rs = match found {
        Some(i) => Some(sets.remove(i)),
        None if paused => None,
        None => {
            let rs = create_new_rs(c, &d, &sets);
            created = rs.as_ref().map(|rs| name(rs).to_owned());
            rs
        }
    };
    let old = sets;
    let new_rs = new_rs.map(|rs| bump_revision(c, &d, rs, &old));
    if !paused && let Some(new_rs) = &new_rs {
        match d["spec"]["strategy"]["type"].as_str() {
            Some("Recreate") => recreate(c, &d, new_rs, &old),
            _ => rolling(c, &d, new_rs, &old),
        }
        cleanup(c, &d, &old);
    }
    write_status(c, &key, new_rs.as_ref(), created.as_deref());
}

/// A new ReplicaSet for the Deployment's template, with the next revision;
/// its first size comes with the strategy's first step.
fn create_new_rs(c: &Arc<Cluster>, d: &Value, old: &[Value]) -> Option<Value> {
    let sets = resource("apps", "replicasets");
    let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
    let next_revision = old.iter().map(revision).max().unwrap_or(0) + 1;
    let mut collisions = d["status"]["collisionCount"].as_i64().unwrap_or(0);
    for _ in 0..5 {
        let hash = template_hash(&d["spec"]["template"], collisions);
        let rs_name = format!("{}-{hash}", name(d));
        let mut template = d["spec"]["template"].clone();
        template["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut selector = d["spec"]["selector"].clone();
        selector["matchLabels"][HASH_LABEL] = json!(hash);
        let rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": ns,
                "labels": template["metadata"]["labels"],
                "annotations": {
                    REVISION: next_revision.to_string(),
                    DESIRED: replicas(d).to_string(),
                    MAX_REPLICAS: (replicas(d) + surge(d)).to_string(),
                },
                "generation": 1,
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "Deployment", "name": name(d),
                    "uid": d["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
                "selector": selector,
                "template": template,
            },
            "status": {"replicas": 0},
        });
        match c.store.create(sets, Key::new(sets, ns, &rs_name), rs) {
            Ok(rs) => return Some(rs),
            // A ReplicaSet of that name with another template: count the
            // collision and hash again, as the real controller does.
            Err(_) => collisions += 1,
        }
    }
    None
}

/// The new ReplicaSet carries the newest revision (a rollback to an old
/// template moves that ReplicaSet's revision up); the Deployment shows it.
fn bump_revision(c: &Arc<Cluster>, d: &Value, rs: Value, old: &[Value]) -> Value {
    let max_old = old.iter().map(revision).max().unwrap_or(0);
    let current = revision(&rs);
    let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
    let rs = if current <= max_old {
        let sets = resource("apps", "replicasets");
        let key = Key::new(sets, ns, name(&rs));
        c.store
            .update(sets, &key, |o| {
                let annotations = &mut o["metadata"]["annotations"];
                let history = match annotations[REVISION_HISTORY].as_str() {
                    Some(h) if !h.is_empty() => format!("{h},{current}"),
                    _ => current.to_string(),
                };
                annotations[REVISION_HISTORY] = json!(history);
                annotations[REVISION] = json!((max_old + 1).to_string());
                Ok(())
            })
            .unwrap_or(rs)
    } else {
        rs
    };
    let shown = revision(&rs).to_string();
    if d["metadata"]["annotations"][REVISION].as_str() != Some(shown.as_str()) {
        let deployments = resource("apps", "deployments");
        let _ = c
            .store
            .update(deployments, &Key::new(deployments, ns, name(d)), |o| {
                o["metadata"]["annotations"][REVISION] = json!(shown);
                Ok(())
            });
    }
    rs
}

fn surge(d: &Value) -> i64 {
    fenceposts(&d["spec"]["strategy"]["rollingUpdate"], replicas(d)).0
}

/// Sets a ReplicaSet's `spec.replicas` (a spec change: its generation goes
/// up) with the Deployment's annotations and a `ScalingReplicaSet` Event.
fn scale(c: &Arc<Cluster>, d: &Value, rs: &Value, to: i64) {
    let from = replicas(rs);
    if from == to {
        return;
    }
    let sets = resource("apps", "replicasets");
    let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
    let max = replicas(d) + surge(d);
    let updated = c.store.update(sets, &Key::new(sets, ns, name(rs)), |o| {
        o["spec"]["replicas"] = json!(to);
        o["metadata"]["annotations"][DESIRED] = json!(replicas(d).to_string());
        o["metadata"]["annotations"][MAX_REPLICAS] = json!(max.to_string());
        let generation = o["metadata"]["generation"].as_i64().unwrap_or(1);
        meta_mut(o).insert("generation".into(), json!(generation + 1));
        Ok(())
    });
    if updated.is_ok() {
        let direction = if to > from { "up" } else { "down" };
        c.event(
            d,
            "Normal",
            "ScalingReplicaSet",
            &format!(
                "Scaled {direction} replica set {} from {from} to {to}",
                name(rs)
            ),
        );
    }
}

/// `Recreate`: every old ReplicaSet to 0, and the new one up only once no
/// old pod is left.
fn recreate(c: &Arc<Cluster>, d: &Value, new_rs: &Value, old: &[Value]) {
    for rs in old {
        scale(c, d, rs, 0);
    }
    let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
    let old_pods_left = old.iter().any(|rs| {
        let uid = rs["metadata"]["uid"].as_str().unwrap_or_default();
        !c.store
            .select(resource("", "pods"), Some(ns), |p| {
                super::replicaset::controller_uid(p) == Some(uid)
                    && (is_active(p) || p["metadata"].get("deletionTimestamp").is_some())
            })
            .is_empty()
    });
    if !old_pods_left {
        scale(c, d, new_rs, replicas(d));
    }
}

/// `RollingUpdate`, as the real `reconcileNewReplicaSet` and
/// `reconcileOldReplicaSets`: the new ReplicaSet grows while the total stays
/// within `replicas + maxSurge`; old ones shrink while the available pods
/// stay at least `replicas - maxUnavailable`.
fn rolling(c: &Arc<Cluster>, d: &Value, new_rs: &Value, old: &[Value]) {
    let desired = replicas(d);
    let (max_surge, max_unavailable) = fenceposts(&d["spec"]["strategy"]["rollingUpdate"], desired);
    let all_count = |new: i64| new + old.iter().map(replicas).sum::<i64>();
    let mut new_replicas = replicas(new_rs);
    if new_replicas > desired {
        scale(c, d, new_rs, desired);
        new_replicas = desired;
    } else if new_replicas < desired {
        let room = desired + max_surge - all_count(new_replicas);
        if room > 0 {
            new_replicas += room.min(desired - new_replicas);
            scale(c, d, new_rs, new_replicas);
        }
    }
    let old_count: i64 = old.iter().map(replicas).sum();
    if old_count == 0 {
        return;
    }
    let min_available = desired - max_unavailable;
    let new_unavailable = new_replicas - status_count(new_rs, "availableReplicas");
    let mut budget = all_count(new_replicas) - min_available - new_unavailable;
    if budget <= 0 {
        return;
    }
    // First the old pods that are not available anyway.
    let mut old: Vec<(Value, i64)> = old.iter().map(|rs| (rs.clone(), replicas(rs))).collect();
    for (rs, size) in old.iter_mut() {
        let unhealthy = *size - status_count(rs, "availableReplicas");
        let cut = unhealthy.min(budget).min(*size).max(0);
        if cut > 0 {
            *size -= cut;
            budget -= cut;
            scale(c, d, rs, *size);
        }
    }
    // Then available ones, oldest first, while enough stay available.
    let available: i64 = status_count(new_rs, "availableReplicas")
        + old
            .iter()
            .map(|(rs, _)| status_count(rs, "availableReplicas"))
            .sum::<i64>();
    let mut cut_total = (available - min_available).min(budget);
    for (rs, size) in old.iter_mut() {
        if cut_total <= 0 {
            break;
        }
        let cut = cut_total.min(*size);
        if cut > 0 {
            *size -= cut;
            cut_total -= cut;
            scale(c, d, rs, *size);
        }
    }
}

/// Old ReplicaSets scaled to nothing beyond `revisionHistoryLimit`, the
/// oldest revision first, are deleted.
fn cleanup(c: &Arc<Cluster>, d: &Value, old: &[Value]) {
    let limit = d["spec"]["revisionHistoryLimit"]
        .as_i64()
        .unwrap_or(10)
        .max(0) as usize;
    let mut idle: Vec<&Value> = old
        .iter()
        .filter(|rs| replicas(rs) == 0 && status_count(rs, "replicas") == 0)
        .collect();
    if idle.len() <= limit {
        return;
    }
    idle.sort_by_key(|rs| revision(rs));
    let sets = resource("apps", "replicasets");
    let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
    for rs in &idle[..idle.len() - limit] {
        let _ = c.delete(sets, &Key::new(sets, ns, name(rs)), "Background");
    }
}

/// The Deployment's status from its ReplicaSets (read again: the scaling
/// above changed them) and its `Available` and `Progressing` conditions.
fn write_status(c: &Arc<Cluster>, key: &Key, new_rs: Option<&Value>, created: Option<&str>) {
    let Some(d) = c.store.get(key) else { return };
    let uid = d["metadata"]["uid"].as_str().unwrap_or_default();
    let sets = controlled_by(c, ("apps", "replicasets"), &key.namespace, uid);
    let sum = |field: &str| sets.iter().map(|rs| status_count(rs, field)).sum::<i64>();
    let new_name = new_rs.map(name);
    let updated = sets
        .iter()
        .find(|rs| Some(name(rs)) == new_name)
        .map_or(0, |rs| status_count(rs, "replicas"));
    let desired = replicas(&d);
    let (total, ready, available) = (
        sum("replicas"),
        sum("readyReplicas"),
        sum("availableReplicas"),
    );
    let max_unavailable = match d["spec"]["strategy"]["type"].as_str() {
        Some("Recreate") => 0,
        _ => fenceposts(&d["spec"]["strategy"]["rollingUpdate"], desired).1,
    };
    let generation = d["metadata"]["generation"].clone();
    let complete = updated == desired && total == desired && available == desired;
    let at = now();
    let _ = c.store.update(resource("apps", "deployments"), key, |o| {
        let previous = o["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let mut status = json!({"observedGeneration": generation, "replicas": total, "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available});
        if desired - available > 0 {
            status["unavailableReplicas"] = json!(desired - available);
        }
        // The real type omits zero counts.
        for field in ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas"] {
            if status[field] == json!(0) {
                status.as_object_mut().map(|s| s.remove(field));
            }
        }
        let (avail_status, avail_reason, avail_message) = if available >= desired - max_unavailable {
            ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.".to_owned())
        } else {
            ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.".to_owned())
        };
        let rs_name = new_name.unwrap_or_default();
        let (prog_reason, prog_message) = if complete {
            ("NewReplicaSetAvailable", format!("ReplicaSet \"{rs_name}\" has successfully progressed."))
        } else if let Some(created) = created {
            ("NewReplicaSetCreated", format!("Created new replica set \"{created}\""))
        } else {
            ("ReplicaSetUpdated", format!("ReplicaSet \"{rs_name}\" is progressing."))
        };
        let conditions = vec![
            condition(&previous, "Available", avail_status, avail_reason, &avail_message, &at),
            condition(&previous, "Progressing", "True", prog_reason, &prog_message, &at),
        ];
        status["conditions"] = json!(conditions);
        if let Some(n) = o["status"]["collisionCount"].as_i64() {
            status["collisionCount"] = json!(n);
        }
        o["status"] = status;
        Ok(())
    });
}

/// A Deployment condition: `lastUpdateTime` moves with any change,
/// `lastTransitionTime` only with the status.
fn condition(
    previous: &[Value],
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    at: &str,
) -> Value {
    let old = previous.iter().find(|c| c["type"] == kind);
    let same = old
        .is_some_and(|c| c["status"] == status && c["reason"] == reason && c["message"] == message);
    if same && let Some(c) = old {
        return c.clone();
    }
    let transition = old
        .filter(|c| c["status"] == status)
        .map_or_else(|| json!(at), |c| c["lastTransitionTime"].clone());
    json!({"type": kind, "status": status, "lastUpdateTime": at, "lastTransitionTime": transition, "reason": reason, "message": message})
}
