//! The API server's front: the router that parses a path and resolves the verb the way kube-apiserver does, then hands the request to discovery, the resource handlers, update, watch or pod log; it holds no handler itself.

mod access;
mod discovery;
mod handlers;
mod log;
mod protobuf;
mod query;
mod response;
mod target;
mod update;
mod watch;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::cluster::Cluster;
use crate::resources::Resource;
use crate::status::ApiError;

use discovery::{
    group, group_known, group_list, openapi_group, openapi_root, resource_list, version,
};
use handlers::{create, delete, delete_collection, get, list};
use log::pod_log;
pub use query::Query;
use response::error;
pub use response::json_ok;
use target::{Reply, Target};
use update::{Change, update};
use watch::watch;

/// Largest request body accepted (the real server's limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// The router: everything goes through one handler that parses the path the
/// way the API server does.
pub fn router(cluster: Arc<Cluster>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(cluster)
}

async fn handle(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = Query::parse(req.uri().query().unwrap_or_default());
    let headers = req.headers().clone();
    // Who asks, and may they, before the body is read.
    let raw_query = req.uri().query().unwrap_or_default();
    let user = match access::admit(&cluster, method.as_str(), &path, raw_query, &headers) {
        Ok(user) => user,
        Err(e) => {
            tracing::debug!(%method, %path, code = e.code, "request not admitted");
            return error(&e);
        }
    };
    // Answers are JSON only: a client that takes nothing but protobuf gets
    // the 406 a server without a protobuf encoder gives.
    if protobuf::accepts_only_protobuf(&headers) {
        return error(&ApiError::not_acceptable("application/json"));
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return error(&ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            )));
        }
    };
    let reply = route(&cluster, &user, &method, &path, &query, &headers, body).await;
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
    user: &crate::auth::User,
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
        (&Method::GET, ["apis", g]) if group_known(g, "v1") => Ok(json_ok(group(g))),
        (
            &Method::POST,
            [
                "apis",
                "authorization.k8s.io",
                "v1",
                "selfsubjectaccessreviews",
            ],
        ) => access::self_subject_access_review(cluster, user, headers, &body),
        (
            _,
            [
                "apis",
                "authorization.k8s.io",
                "v1",
                "selfsubjectaccessreviews",
            ],
        ) => Ok(access::create_only()),
        (
            &Method::POST,
            [
                "api",
                "v1",
                "namespaces",
                ns,
                "serviceaccounts",
                name,
                "token",
            ],
        ) => access::token_request(cluster, ns, name, headers, &body),
        (_, ["api", "v1", "namespaces", _, "serviceaccounts", _, "token"]) => {
            Ok(access::create_only())
        }
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
            let target = Target::parse(&segments).ok_or_else(|| ApiError::no_route(path))?;
            resource_request(cluster, method, target, query, headers, body).await
        }
    }
}

/// A request on a resource path: its verb, accounting, media type and
/// injected faults, then the handler.
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
    // A protobuf body (kubectl's typed commands send one) becomes the JSON
    // the handlers read; every JSON path stays as it is.
    let converted = if protobuf::is_protobuf(headers) && !body.is_empty() {
        json_of_protobuf(t.resource, method, &body)?
    } else {
        None
    };
    let (body, content_type) = match converted {
        Some(json) => (json, "application/json"),
        None => (body, content_type(headers)),
    };
    if (*method == Method::POST || *method == Method::PUT)
        && !content_type.starts_with("application/json")
        && !content_type.starts_with("*/*")
    {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    cluster.faults.before(verb, t.resource.name).await?;
    match verb {
        "list" => list(cluster, &t, query),
        "watch" => watch(cluster, &t, query),
        "get" => get(cluster, &t),
        "log" => pod_log(cluster, &t, query),
        "create" => create(cluster, &t, query, body),
        "update" | "update-status" | "patch" => {
            let change = Change {
                body,
                patch: method == Method::PATCH,
                status: t.sub.as_deref() == Some("status"),
                content_type,
            };
            update(cluster, &t, query, change)
        }
        "delete" => delete(cluster, &t, query, &body),
        "deletecollection" => delete_collection(cluster, &t, query, &body),
        _ => Err(ApiError::method_not_allowed("unsupported verb")),
    }
}

/// A protobuf body as JSON: the object of a POST or PUT (checked strictly
/// against its type, so a field the conversion names wrongly is an error,
/// not a dropped field), the DeleteOptions of a DELETE. A patch has no
/// protobuf form: `None`, and update refuses its media type.
fn json_of_protobuf(
    resource: &Resource,
    method: &Method,
    body: &Bytes,
) -> Result<Option<Bytes>, ApiError> {
    let value = match *method {
        Method::POST | Method::PUT => {
            let object = protobuf::object(resource, body)?;
            crate::validate::decode_value(resource, object, true)?.object
        }
        Method::DELETE => protobuf::delete_options(body)?,
        _ => return Ok(None),
    };
    Ok(Some(Bytes::from(value.to_string())))
}

/// The request's media type (JSON when none is given).
fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
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
