//! Update (PUT) and patch (merge, JSON and strategic-as-merge): the next state of an object, computed once for dry runs and under the store's lock for real writes.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::query::Query;
use super::response::{json_ok, with_warnings};
use super::target::{Reply, Target};
use crate::cluster::Cluster;
use crate::status::ApiError;
use crate::validate;

/// What a PUT or PATCH asks to change.
pub(super) struct Change<'a> {
    /// The new object, or the patch.
    pub body: Bytes,
    /// Whether `body` is a patch (PATCH) rather than the whole object (PUT).
    pub patch: bool,
    /// Whether it goes to the `status` subresource.
    pub status: bool,
    /// The request's media type, which names the patch format.
    pub content_type: &'a str,
}

/// Update (PUT) or patch (PATCH) of one object, or of its status.
pub(super) fn update(
    cluster: &Arc<Cluster>,
    t: &Target,
    query: &Query,
    change: Change<'_>,
) -> Reply {
    let Change {
        body,
        patch,
        status,
        content_type,
    } = change;
    let key = t.key()?;
    let resource = t.resource;
    let strict = query.strict();
    let content_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    // What the object becomes: the same computation for a dry run and for
    // the real write (which runs it under the store's lock).
    let next_state = |current: &Value| -> Result<(Value, Vec<String>), ApiError> {
        let proposed = if patch {
            let patch: Value = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(format!("the patch could not be decoded as JSON: {e}"))
            })?;
            let mut next = current.clone();
            match content_type.as_str() {
                // Strategic merge is served as a JSON merge patch: the same
                // for every field but lists with merge keys (documented).
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    json_patch::merge(&mut next, &patch);
                }
                "application/json-patch+json" => {
                    let ops: json_patch::Patch = serde_json::from_value(patch)
                        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                    json_patch::patch(&mut next, &ops).map_err(|e| {
                        ApiError::unprocessable(format!("the JSON patch cannot be applied: {e}"))
                    })?;
                }
                other => return Err(ApiError::unsupported_media_type(other)),
            }
            next
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(format!(
                    "the body of the request could not be decoded as JSON: {e}"
                ))
            })?
        };
        let decoded = validate::decode_value(resource, proposed, strict)?;
        let mut next = decoded.object;
        if next["metadata"]["name"].as_str() != Some(key.name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                next["metadata"]["name"].as_str().unwrap_or_default(),
                key.name
            )));
        }
        if let Some(rv) = next["metadata"]["resourceVersion"].as_str()
            && !rv.is_empty()
            && Some(rv) != current["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::conflict(resource.name, resource.group, &key.name));
        }
        // The main resource cannot change status; the status subresource
        // changes nothing else.
        if resource.subresources.contains(&"status") {
            let (base, keep) = if status {
                (current.clone(), next.get("status").cloned())
            } else {
                (next, current.get("status").cloned())
            };
            next = base;
            match keep {
                Some(s) => next["status"] = s,
                None => {
                    if let Some(o) = next.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        crate::workloads::on_update(resource, current, &mut next)?;
        validate::validate(resource, &next)?;
        Ok((next, decoded.warnings))
    };
    if query.dry_run() {
        let current = cluster
            .store
            .get(&key)
            .ok_or_else(|| ApiError::not_found(resource.name, resource.group, &key.name))?;
        let (next, warnings) = next_state(&current)?;
        return Ok(with_warnings(json_ok(next), &warnings));
    }
    let mut warnings = Vec::new();
    let updated = cluster.store.update(resource, &key, |current| {
        let (next, w) = next_state(current)?;
        warnings = w;
        *current = next;
        Ok(())
    })?;
    Ok(with_warnings(json_ok(updated), &warnings))
}
