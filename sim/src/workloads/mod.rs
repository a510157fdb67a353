//! The workload kinds beyond Jobs (Deployments, ReplicaSets, Services, NetworkPolicies, PodDisruptionBudgets) as the API server treats them on write: defaults, validation, `metadata.generation` and Service cluster IPs.

pub mod defaults;
pub mod intstr;
pub mod validate;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::cluster::{Cluster, resource};
use crate::resources::Resource;
use crate::status::{ApiError, cause};
use crate::store::meta_mut;

/// Kinds whose `metadata.generation` counts changes of their `spec`.
const GENERATION_KINDS: &[&str] = &[
    "Deployment",
    "ReplicaSet",
    "Job",
    "PodDisruptionBudget",
    "NetworkPolicy",
];

/// The service cluster IP range (kube-apiserver's default `--service-cluster-ip-range`).
const SERVICE_RANGE: (Ipv4Addr, u32) = (Ipv4Addr::new(10, 96, 0, 0), 12);

/// What the server sets on a new object of these kinds before validation:
/// `metadata.generation` 1, and a Service's cluster IP.
pub fn on_create(
    cluster: &Cluster,
    resource: &Resource,
    object: &mut Value,
) -> Result<(), ApiError> {
    if GENERATION_KINDS.contains(&resource.kind) {
        meta_mut(object).insert("generation".into(), json!(1));
    }
    if resource.kind == "Service" {
        allocate_cluster_ip(cluster, object)?;
    }
    Ok(())
}

/// On an update: the generation goes up when the `spec` changed (status
/// writes and metadata changes leave it), and a Service keeps its cluster IP.
pub fn on_update(resource: &Resource, current: &Value, next: &mut Value) -> Result<(), ApiError> {
    if GENERATION_KINDS.contains(&resource.kind) {
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
        let bumped = if current.get("spec") == next.get("spec") {
            generation
        } else {
            generation + 1
        };
        meta_mut(next).insert("generation".into(), json!(bumped));
    }
    if resource.kind == "Service" {
        keep_cluster_ip(current, next)?;
    }
    Ok(())
}

/// Allocates a free address of the range for a `ClusterIP`/`NodePort`/
/// `LoadBalancer` Service that asks for none, or checks the one it asks for.
fn allocate_cluster_ip(cluster: &Cluster, object: &mut Value) -> Result<(), ApiError> {
    let spec = &mut object["spec"];
    if spec["type"].as_str() == Some("ExternalName") {
        return Ok(());
    }
    let (services, _) = cluster.store.list(resource("", "services"), None);
    let used: BTreeSet<String> = services
        .iter()
        .filter_map(|s| s["spec"]["clusterIP"].as_str().map(str::to_owned))
        .collect();
    let requested = spec["clusterIP"].as_str().unwrap_or_default().to_owned();
    let ip = match requested.as_str() {
        "None" => "None".to_owned(),
        "" => free_ip(&used)
            .ok_or_else(|| ApiError::internal("failed to allocate a serviceIP: range is full"))?,
        wanted => {
            let at = "spec.clusterIPs";
            let parsed: Option<Ipv4Addr> = wanted.parse().ok();
            let in_range = parsed.is_some_and(in_service_range);
            let message = if !in_range {
                Some(format!(
                    "Invalid value: {wanted:?}: failed to allocate IP {wanted}: the provided IP ({wanted}) is not in the valid range. The range of valid IPs is {}/{}",
                    SERVICE_RANGE.0, SERVICE_RANGE.1
                ))
            } else if used.contains(wanted) {
                Some(format!(
                    "Invalid value: {wanted:?}: failed to allocate IP {wanted}: provided IP is already allocated"
                ))
            } else {
                None
            };
            if let Some(m) = message {
                let name = object["metadata"]["name"].as_str().unwrap_or_default();
                return Err(ApiError::invalid(
                    "Service",
                    "",
                    name,
                    vec![cause("FieldValueInvalid", at, m)],
                ));
            }
            wanted.to_owned()
        }
    };
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
    Ok(())
}

fn in_service_range(ip: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - SERVICE_RANGE.1);
    u32::from(ip) & mask == u32::from(SERVICE_RANGE.0)
}

/// A random free address of the range, past `.1` (the `kubernetes` Service's).
fn free_ip(used: &BTreeSet<String>) -> Option<String> {
    let base = u32::from(SERVICE_RANGE.0);
    let size = 1u32 << (32 - SERVICE_RANGE.1);
    let start = u32::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..4].try_into().ok()?);
    (0..size - 3)
        .map(|i| base + 2 + (start.wrapping_add(i) % (size - 3)))
        .map(|n| Ipv4Addr::from(n).to_string())
        .find(|ip| !used.contains(ip))
}

/// `spec.clusterIP` may not change once set; an update that leaves it out keeps it.
fn keep_cluster_ip(current: &Value, next: &mut Value) -> Result<(), ApiError> {
    let old = current["spec"]["clusterIP"].clone();
    match next["spec"]["clusterIP"].as_str() {
        None | Some("") => {
            next["spec"]["clusterIP"] = old.clone();
            next["spec"]["clusterIPs"] = current["spec"]["clusterIPs"].clone();
            Ok(())
        }
        Some(ip) if Some(ip) == old.as_str() => Ok(()),
        Some(ip) => {
            let name = current["metadata"]["name"].as_str().unwrap_or_default();
            Err(ApiError::invalid(
                "Service",
                "",
                name,
                vec![cause(
                    "FieldValueInvalid",
                    "spec.clusterIPs[0]",
                    format!("Invalid value: []string{{{ip:?}}}: may not change once set"),
                )],
            ))
        }
    }
}
