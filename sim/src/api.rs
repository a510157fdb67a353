//! The HTTP API: discovery, and get/list/watch/create/update/patch/delete of every resource, with the real server's paths, JSON and status codes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::resources::{self, RESOURCES, Resource};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Key, meta_mut};
use crate::validate;

/// Largest request body accepted (the real server's limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// The router: everything goes through one handler that parses the path the
/// way the API server does.
pub fn router(cluster: Arc<Cluster>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(cluster)
}

/// What a resource path names.
#[derive(Debug)]
struct Target {
    resource: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

type Reply = Result<Response, ApiError>;

async fn handle(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query().unwrap_or_default());
    let headers = req.headers().clone();
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return error(&ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            )));
        }
    };
    let reply = route(&cluster, &method, &path, &query, &headers, body).await;
    match reply {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %path, code = e.code, reason = e.reason, message = %e.message, "request refused");
            error(&e)
        }
    }
}

async fn route(
    cluster: &Arc<Cluster>,
    method: &Method,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> Reply {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["version"]) => Ok(json_ok(version())),
        (&Method::GET, ["healthz" | "readyz" | "livez"]) => {
            Ok((StatusCode::OK, "ok").into_response())
        }
        (&Method::GET, ["api"]) => Ok(json_ok(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": cluster.address()}],
        }))),
        (&Method::GET, ["apis"]) => Ok(json_ok(group_list())),
        (&Method::GET, ["openapi", "v3"]) => Ok(json_ok(openapi_root())),
        (&Method::GET, ["openapi", "v3", "api", "v1"]) => Ok(json_ok(openapi_group("", "v1"))),
        (&Method::GET, ["openapi", "v3", "apis", group, version])
            if group_known(group, version) =>
        {
            Ok(json_ok(openapi_group(group, version)))
        }
        (&Method::GET, ["api", "v1"]) => Ok(json_ok(resource_list("", "v1"))),
        (&Method::GET, ["apis", "batch"]) => Ok(json_ok(group("batch"))),
        (&Method::GET, ["apis", group, version]) if group_known(group, version) => {
            Ok(json_ok(resource_list(group, version)))
        }
        (&Method::GET, ["sim", "stats"]) => Ok(json_ok(cluster.stats.snapshot())),
        (&Method::GET, ["sim", "faults"]) => Ok(json_ok(
            serde_json::to_value(FaultView(cluster.faults.get())).unwrap_or_default(),
        )),
        (&Method::PUT, ["sim", "faults"]) => {
            let config: crate::faults::FaultConfig = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("invalid fault configuration: {e}")))?;
            cluster.faults.set(config);
            Ok(json_ok(json!({"status": "ok"})))
        }
        _ => {
            let target = parse_target(&segments).ok_or_else(|| ApiError::no_route(path))?;
            resource_request(cluster, method, target, query, headers, body).await
        }
    }
}

/// The fault configuration as JSON (it is only `Deserialize`).
struct FaultView(crate::faults::FaultConfig);

impl serde::Serialize for FaultView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = &self.0;
        json!({
            "errors": c.errors.iter().map(|r| json!({"verb": r.verb, "resource": r.resource, "rate": r.rate, "code": r.code, "retryAfter": r.retry_after})).collect::<Vec<_>>(),
            "latencyMs": c.latency_ms,
            "watchCloseSeconds": c.watch_close_seconds,
            "logCutBytes": c.log_cut_bytes,
            "unavailableSeconds": c.unavailable_seconds,
            "lostNodes": c.lost_nodes,
        })
        .serialize(s)
    }
}

fn group_known(group: &str, version: &str) -> bool {
    RESOURCES
        .iter()
        .any(|r| r.group == group && r.version == version && !group.is_empty())
}

/// `/api/v1/...` or `/apis/<group>/<version>/...`, then
/// `[namespaces/<ns>/]<resource>[/<name>[/<sub>]]`.
fn parse_target(segments: &[&str]) -> Option<Target> {
    let (group, version, rest) = match segments {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (name, sub) = match rest {
        [_] => (None, None),
        [_, name] => (Some((*name).to_owned()), None),
        [_, name, sub] => (Some((*name).to_owned()), Some((*sub).to_owned())),
        _ => return None,
    };
    let resource = resources::find(group, version, rest.first()?)?;
    if namespace.is_some() && !resource.namespaced {
        return None;
    }
    if let Some(sub) = &sub
        && !resource.subresources.contains(&sub.as_str())
    {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name,
        sub,
    })
}

async fn resource_request(
    cluster: &Arc<Cluster>,
    method: &Method,
    t: Target,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> Reply {
    let verb = match (method, &t.name, t.sub.as_deref()) {
        (&Method::GET, None, _) if query.flag("watch") => "watch",
        (&Method::GET, None, _) => "list",
        (&Method::GET, Some(_), Some("log")) => "log",
        (&Method::GET, Some(_), _) => "get",
        (&Method::POST, None, _) => "create",
        (&Method::PUT, Some(_), _) => "update",
        (&Method::PATCH, Some(_), _) => "patch",
        (&Method::DELETE, Some(_), _) => "delete",
        (&Method::DELETE, None, _) => "deletecollection",
        _ => {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
    };
    let verb = if t.sub.as_deref() == Some("status") && verb != "get" {
        "update-status"
    } else {
        verb
    };
    cluster.stats.request(verb, t.resource.name);
    if *method == Method::POST || *method == Method::PUT {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        // Protobuf bodies (kubectl's generators send them for core types)
        // are not modelled: refuse them as a server without that codec would.
        if !content_type.starts_with("application/json") && !content_type.starts_with("*/*") {
            return Err(ApiError::unsupported_media_type(content_type));
        }
    }
    cluster.faults.before(verb, t.resource.name).await?;
    match verb {
        "list" => list(cluster, &t, query),
        "watch" => watch(cluster, &t, query),
        "get" => get(cluster, &t),
        "log" => pod_log(cluster, &t, query),
        "create" => create(cluster, &t, query, body),
        "update" | "update-status" | "patch" => {
            let status = t.sub.as_deref() == Some("status");
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json");
            write(
                cluster,
                &t,
                query,
                body,
                method == Method::PATCH,
                status,
                content_type,
            )
        }
        "delete" => delete(cluster, &t, query, &body),
        "deletecollection" => {
            let (items, _) = select(cluster, &t, query)?;
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
                delete(cluster, &one, query, &body)?;
            }
            Ok(json_ok(list_doc(
                t.resource,
                items,
                cluster.store.version(),
            )))
        }
        _ => Err(ApiError::method_not_allowed("unsupported verb")),
    }
}

/// The `labelSelector` and `fieldSelector` of a list or watch.
fn selectors(t: &Target, query: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
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

fn list(cluster: &Cluster, t: &Target, query: &Query) -> Reply {
    let (items, rv) = select(cluster, t, query)?;
    Ok(json_ok(list_doc(t.resource, items, rv)))
}

fn list_doc(resource: &Resource, items: Vec<Value>, rv: u64) -> Value {
    json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })
}

fn get(cluster: &Cluster, t: &Target) -> Reply {
    get_object(cluster, t).map(json_ok)
}

fn key(t: &Target) -> Result<Key, ApiError> {
    let name = t.name.as_deref().unwrap_or_default();
    if t.resource.namespaced && t.namespace.is_none() {
        return Err(ApiError::no_route(&format!("{}/{name}", t.resource.name)));
    }
    Ok(Key::new(
        t.resource,
        t.namespace.as_deref().unwrap_or_default(),
        name,
    ))
}

fn create(cluster: &Arc<Cluster>, t: &Target, query: &Query, body: Bytes) -> Reply {
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
        (StatusCode::CREATED, json_body(&created)).into_response(),
        &decoded.warnings,
    ))
}

fn namespaces() -> &'static Resource {
    &RESOURCES[0]
}

#[allow(clippy::too_many_arguments)]
fn write(
    cluster: &Arc<Cluster>,
    t: &Target,
    query: &Query,
    body: Bytes,
    patch: bool,
    status: bool,
    content_type: &str,
) -> Reply {
    let key = key(t)?;
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

fn delete(cluster: &Arc<Cluster>, t: &Target, query: &Query, body: &Bytes) -> Reply {
    let key = key(t)?;
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
    let deleted = cluster.delete(t.resource, &key, &policy)?;
    Ok(json_ok(deleted))
}

fn watch(cluster: &Arc<Cluster>, t: &Target, query: &Query) -> Reply {
    let (labels, fields) = selectors(t, query)?;
    let from = match query.get("resourceVersion").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid resource version {v:?}: expected a number"))
        })?),
    };
    let bookmarks = query.flag("allowWatchBookmarks");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let resource = t.resource;
    let ns_filter = t.namespace.clone();
    let (tx, rx) = futures::channel::mpsc::channel::<Bytes>(64);
    let sub = match cluster.store.watch(resource, t.namespace.as_deref(), from) {
        Ok(s) => s,
        Err(e) => {
            // The real server answers an expired watch with a 200 stream
            // holding one ERROR event.
            let body = watch_line("ERROR", &e.to_status());
            return Ok(stream_response(futures::stream::iter([body]).boxed()));
        }
    };
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let _open = cluster.stats.open("watch", resource.name);
        let mut tx = tx;
        let mut live = sub.live;
        let mut last_rv = sub.rv;
        let matches = |o: &Value| labels.matches_object(o) && fields.matches(o);
        for event in sub.backlog {
            if matches(&event.object)
                && tx
                    .send(watch_line(event.kind.as_str(), &event.object))
                    .await
                    .is_err()
            {
                return;
            }
        }
        let now = tokio::time::Instant::now();
        let end = [timeout, cluster.faults.watch_cut()]
            .into_iter()
            .flatten()
            .min()
            .map(|d| now + d);
        let mut tick = tokio::time::interval(cluster.options.bookmark_interval);
        tick.tick().await;
        loop {
            let until_end = async {
                match end {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                _ = until_end => return,
                _ = tick.tick(), if bookmarks => {
                    let mark = json!({
                        "kind": resource.kind,
                        "apiVersion": resource.api_version(),
                        "metadata": {"resourceVersion": last_rv.to_string()},
                    });
                    if tx.send(watch_line("BOOKMARK", &mark)).await.is_err() {
                        return;
                    }
                }
                event = live.recv() => match event {
                    Ok(e) => {
                        last_rv = e.rv;
                        if e.key.resource != resource.name
                            || ns_filter.as_ref().is_some_and(|ns| &e.key.namespace != ns)
                            || !matches(&e.object)
                        {
                            continue;
                        }
                        if tx.send(watch_line(e.kind.as_str(), &e.object)).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow to keep up: end with 410 so the client
                        // re-lists, as the real server does.
                        let status = ApiError::expired("the watch fell behind; please re-list").to_status();
                        let _ = tx.send(watch_line("ERROR", &status)).await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        }
    });
    Ok(stream_response(rx.boxed()))
}

/// `pods/log`: the container's lines so far, or followed live until it ends.
fn pod_log(cluster: &Arc<Cluster>, t: &Target, query: &Query) -> Reply {
    let pod = get_object(cluster, t)?;
    let pod_name = t.name.as_deref().unwrap_or_default();
    let names = |list: &str| -> Vec<String> {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    let (init, main) = (names("initContainers"), names("containers"));
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) => c.to_owned(),
        None if main.len() == 1 => main[0].clone(),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                main.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            return Err(ApiError::bad_request(message));
        }
    };
    let state = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|l| pod["status"][*l].as_array().into_iter().flatten())
        .find(|c| c["name"].as_str() == Some(container.as_str()))
        .map(|c| c["state"].clone());
    if !init.contains(&container) && !main.contains(&container) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {pod_name}"
        )));
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let log = match (cluster.kubelet.log(&ns, pod_name, &container), &state) {
        (Some(log), _) => log,
        (None, state) => {
            let reason = state
                .as_ref()
                .and_then(|s| s["waiting"]["reason"].as_str())
                .map(|r| match r {
                    "ErrImagePull" | "ImagePullBackOff" => "trying and failing to pull image",
                    other => other,
                })
                .unwrap_or("ContainerCreating");
            return Err(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{pod_name}\" is waiting to start: {reason}"
            )));
        }
    };
    let timestamps = query.flag("timestamps");
    let follow = query.flag("follow");
    let since = match (query.get("sinceTime"), query.get("sinceSeconds")) {
        (Some(t), _) => Some(crate::logs::parse_time(t).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid sinceTime {t:?}: expected an RFC 3339 time"
            ))
        })?),
        (None, Some(s)) => {
            let secs: i128 = s.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid sinceSeconds {s:?}: expected a number"))
            })?;
            Some(crate::logs::now_nanos() - secs * 1_000_000_000)
        }
        _ => None,
    };
    let tail = query.get("tailLines").and_then(|n| n.parse::<usize>().ok());
    let limit = query.get("limitBytes").and_then(|n| n.parse::<u64>().ok());
    let cut = cluster.faults.log_cut();
    let budget = [limit, cut].into_iter().flatten().min();
    // `limitBytes` ends a stream cleanly, as the real server does; an
    // injected cut breaks the connection, as a failing network would.
    let broken = cut.is_some_and(|c| limit.is_none_or(|l| c < l));
    let format = move |l: &crate::logs::Line| -> String {
        if timestamps {
            format!("{} {}", crate::logs::rfc3339_nanos(l.at), l.text)
        } else {
            l.text.clone()
        }
    };
    let (first, finished) = log.read(0);
    let seen = first.len();
    let mut start: Vec<crate::logs::Line> = first
        .into_iter()
        .filter(|l| since.is_none_or(|s| l.at >= s))
        .collect();
    if let Some(n) = tail {
        let skip = start.len().saturating_sub(n);
        start.drain(..skip);
    }
    let initial: String = start.iter().map(format).collect();
    if !follow || finished {
        let mut text = initial;
        if let Some(b) = budget
            && text.len() > b as usize
        {
            text.truncate(floor_char_boundary(&text, b as usize));
            if broken {
                let data = futures::stream::once(async move { Ok(Bytes::from(text)) });
                return Ok(text_response(Body::from_stream(data.chain(
                    futures::stream::once(async {
                        tokio::time::sleep(CUT_AFTER).await;
                        Err::<Bytes, _>(log_cut())
                    }),
                ))));
            }
        }
        return Ok(text_response(Body::from(text)));
    }
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let cluster = cluster.clone();
    let resource = t.resource.name;
    tokio::spawn(async move {
        let _open = cluster.stats.open("log", resource);
        let mut sent: u64 = 0;
        // Cuts `text` to what the byte budget (limitBytes, or an injected
        // log cut) still allows; `None` once it is spent.
        let take = |text: String, sent: &mut u64| -> Option<Bytes> {
            let mut text = text;
            if let Some(b) = budget {
                let room = b.saturating_sub(*sent) as usize;
                if room == 0 {
                    return None;
                }
                text.truncate(floor_char_boundary(&text, room));
            }
            *sent += text.len() as u64;
            Some(Bytes::from(text))
        };
        let cut_off = |mut tx: futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>| async move {
            if broken {
                tokio::time::sleep(CUT_AFTER).await;
                let _ = tx.send(Err(log_cut())).await;
            }
        };
        if !initial.is_empty() {
            match take(initial, &mut sent) {
                Some(b) => {
                    if tx.send(Ok(b)).await.is_err() {
                        return;
                    }
                }
                None => return cut_off(tx).await,
            }
        }
        let mut index = seen;
        loop {
            log.wait(index).await;
            let (lines, finished) = log.read(index);
            index += lines.len();
            let text: String = lines.iter().map(format).collect();
            if !text.is_empty() {
                match take(text, &mut sent) {
                    Some(b) => {
                        if tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                    None => return cut_off(tx).await,
                }
            }
            if budget.is_some_and(|b| sent >= b) {
                return cut_off(tx).await;
            }
            if finished && lines.is_empty() {
                return;
            }
        }
    });
    Ok(text_response(Body::from_stream(rx)))
}

/// The connection breaks a moment after the bytes that got through, so that
/// they reach the client (breaking at once could discard them unsent).
const CUT_AFTER: std::time::Duration = std::time::Duration::from_millis(20);

fn log_cut() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "log stream cut (injected fault)",
    )
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn text_response(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn get_object(cluster: &Cluster, t: &Target) -> Result<Value, ApiError> {
    let key = key(t)?;
    cluster
        .store
        .get(&key)
        .ok_or_else(|| ApiError::not_found(t.resource.name, t.resource.group, &key.name))
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

fn stream_response(stream: futures::stream::BoxStream<'static, Bytes>) -> Response {
    let mut r = Response::new(Body::from_stream(stream.map(Ok::<_, Infallible>)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn json_body(v: &Value) -> Body {
    Body::from(v.to_string())
}

/// A `200` with `v` as JSON.
pub fn json_ok(v: Value) -> Response {
    let mut r = Response::new(json_body(&v));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(e: &ApiError) -> Response {
    let mut r = json_ok(e.to_status());
    *r.status_mut() = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(after) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&after.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append("Warning", v);
        }
    }
    r
}

/// Query parameters, decoded.
pub struct Query(Vec<(String, String)>);

impl Query {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` is `true` or `1`.
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }

    fn strict(&self) -> bool {
        self.get("fieldValidation") == Some("Strict")
    }

    fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

fn parse_query(q: &str) -> Query {
    Query(url_decode_pairs(q))
}

fn url_decode_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/openapi/v3`: where each group version's document is.
fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": "/openapi/v3/api/v1?hash=sim"}),
    );
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        let key = format!("apis/{}/{}", r.group, r.version);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash=sim")}),
        );
    }
    json!({"paths": paths})
}

/// A group version's OpenAPI v3 document, reduced to what clients ask of
/// it: each resource's operations with their group-version-kind and the
/// `fieldValidation` parameter (which tells `kubectl` that the server
/// validates fields itself), and the kinds' schemas as open objects. It
/// does not carry the full field schemas, so `kubectl` falls back to its
/// compiled-in types for patches.
fn openapi_group(group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let params = json!([
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
    ]);
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let collection = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.name)
        } else {
            format!("{prefix}/{}", r.name)
        };
        let op = |verb: &str| json!({"x-kubernetes-action": verb, "x-kubernetes-group-version-kind": gvk, "parameters": params});
        paths.insert(
            collection.clone(),
            json!({"post": op("post"), "get": op("list")}),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
        );
        let schema_name = if group.is_empty() {
            format!("io.k8s.api.core.{version}.{}", r.kind)
        } else {
            format!("io.k8s.api.{group}.{version}.{}", r.kind)
        };
        schemas.insert(
            schema_name,
            json!({"type": "object", "x-kubernetes-group-version-kind": [gvk]}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (simulated)", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn group(name: &str) -> Value {
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": [{"groupVersion": format!("{name}/v1"), "version": "v1"}],
        "preferredVersion": {"groupVersion": format!("{name}/v1"), "version": "v1"},
    })
}

fn group_list() -> Value {
    let mut groups: Vec<&str> = RESOURCES
        .iter()
        .map(|r| r.group)
        .filter(|g| !g.is_empty())
        .collect();
    groups.dedup();
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|g| {
            let mut v = group(g);
            if let Some(o) = v.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            v
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(group: &str, version: &str) -> Value {
    let mut list = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        list.push(json!({
            "name": r.name,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": resources::verbs(),
            "shortNames": r.short_names,
        }));
        for sub in r.subresources {
            let verbs: &[&str] = if *sub == "log" {
                &["get"]
            } else {
                &["get", "patch", "update"]
            };
            list.push(json!({
                "name": format!("{}/{sub}", r.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": if *sub == "log" { "Pod" } else { r.kind },
                "verbs": verbs,
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list})
}
