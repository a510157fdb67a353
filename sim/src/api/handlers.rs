//! The resource handlers (kube-apiserver's REST verbs): get, list, create, delete and deletecollection, and the selectors and lookups watch and log share; update and patch live in `update`.

use std::sync::Arc;

use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Value, json};

use super::query::Query;
use super::response::{json_body_response, json_ok, with_warnings};
use super::target::{Reply, Target};
use crate::cluster::Cluster;
use crate::resources::{RESOURCES, Resource};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Key, meta_mut};
use crate::validate;

/// The `labelSelector` and `fieldSelector` of a list or watch.
pub(super) fn selectors(
    t: &Target,
    query: &Query,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = FieldSelector::parse(
        query.get("fieldSelector").unwrap_or_default(),
        &t.resource.selectable_fields(),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((labels, fields))
}

fn select(cluster: &Cluster, t: &Target, query: &Query) -> Result<(Vec<Value>, u64), ApiError> {
    let (labels, fields) = selectors(t, query)?;
    Ok(cluster
        .store
        .list_where(t.resource, t.namespace.as_deref(), |o| {
            labels.matches_object(o) && fields.matches(o)
        }))
}

pub(super) fn list(cluster: &Cluster, t: &Target, query: &Query) -> Reply {
    let (items, rv) = select(cluster, t, query)?;
    Ok(json_ok(list_doc(t.resource, items, rv)))
}

pub(super) fn list_doc(resource: &Resource, items: Vec<Value>, rv: u64) -> Value {
    json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })
}

pub(super) fn get(cluster: &Cluster, t: &Target) -> Reply {
    get_object(cluster, t).map(json_ok)
}

pub(super) fn create(cluster: &Arc<Cluster>, t: &Target, query: &Query, body: Bytes) -> Reply {
    if t.resource.namespaced && t.namespace.is_none() {
        return Err(ApiError::method_not_allowed(
            "POST requires a namespace in the path",
        ));
    }
    let decoded = validate::decode(t.resource, &body, query.strict())?;
    let mut object = decoded.object;
    let ns = t.namespace.clone().unwrap_or_default();
    if let Some(body_ns) = object["metadata"]["namespace"].as_str()
        && !body_ns.is_empty()
        && t.resource.namespaced
        && body_ns != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if object["metadata"]["name"]
        .as_str()
        .is_none_or(str::is_empty)
        && let Some(prefix) = object["metadata"]["generateName"].as_str()
    {
        let name = format!("{prefix}{}", crate::cluster::random_suffix());
        meta_mut(&mut object).insert("name".into(), json!(name));
    }
    if t.resource.namespaced {
        meta_mut(&mut object).insert("namespace".into(), json!(ns));
        let ns_key = Key::new(namespaces(), "", &ns);
        if cluster.store.get(&ns_key).is_none() {
            return Err(ApiError::not_found("namespaces", "", &ns));
        }
    }
    meta_mut(&mut object).insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    crate::defaults::apply(t.resource, &mut object);
    crate::serviceaccounts::admit(cluster, t.resource, &mut object)?;
    crate::workloads::on_create(cluster, t.resource, &mut object)?;
    validate::validate(t.resource, &object)?;
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let created = if query.dry_run() {
        object
    } else {
        cluster
            .store
            .create(t.resource, Key::new(t.resource, &ns, &name), object)?
    };
    Ok(with_warnings(
        json_body_response(StatusCode::CREATED, &created),
        &decoded.warnings,
    ))
}

fn namespaces() -> &'static Resource {
    &RESOURCES[0]
}

pub(super) fn delete(cluster: &Arc<Cluster>, t: &Target, query: &Query, body: &Bytes) -> Reply {
    let key = t.key()?;
    let options: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let policy = options["propagationPolicy"]
        .as_str()
        .or(query.get("propagationPolicy"))
        .map(str::to_owned);
    let policy = match policy.as_deref() {
        Some(p @ ("Background" | "Foreground" | "Orphan")) => p.to_owned(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not supported; expected Background, Foreground or Orphan"
            )));
        }
        // Jobs keep their old default (orphan their pods) for API clients.
        None if t.resource.kind == "Job" => "Orphan".to_owned(),
        None => "Background".to_owned(),
    };
    let current = cluster
        .store
        .get(&key)
        .ok_or_else(|| ApiError::not_found(t.resource.name, t.resource.group, &key.name))?;
    if let Some(uid) = options["preconditions"]["uid"].as_str()
        && Some(uid) != current["metadata"]["uid"].as_str()
    {
        return Err(ApiError::conflict(
            t.resource.name,
            t.resource.group,
            &key.name,
        ));
    }
    if query.dry_run() || options["dryRun"].as_array().is_some_and(|a| !a.is_empty()) {
        return Ok(json_ok(current));
    }
    let grace = options["gracePeriodSeconds"]
        .as_i64()
        .or_else(|| query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
    let deleted = cluster.delete_with_grace(t.resource, &key, &policy, grace)?;
    Ok(json_ok(deleted))
}

pub(super) fn get_object(cluster: &Cluster, t: &Target) -> Result<Value, ApiError> {
    let key = t.key()?;
    cluster
        .store
        .get(&key)
        .ok_or_else(|| ApiError::not_found(t.resource.name, t.resource.group, &key.name))
}

/// `deletecollection`: deletes each selected object as `delete` would; the
/// answer lists them.
pub(super) fn delete_collection(
    cluster: &Arc<Cluster>,
    t: &Target,
    query: &Query,
    body: &Bytes,
) -> Reply {
    let (items, _) = select(cluster, t, query)?;
    for item in &items {
        let name = item["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let ns = item["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let one = Target {
            resource: t.resource,
            namespace: Some(ns),
            name: Some(name),
            sub: None,
        };
        delete(cluster, &one, query, body)?;
    }
    Ok(json_ok(list_doc(
        t.resource,
        items,
        cluster.store.version(),
    )))
}
