//! The API's door: every request is authenticated (bearer token; anonymous only on the health and version endpoints), may impersonate, and is authorized by RBAC before any handler runs; plus the two requests about access itself, SelfSubjectAccessReview and TokenRequest.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::response::json_body_response;
use super::target::Reply;
use crate::auth::attributes::Attributes;
use crate::auth::{User, rbac, service_account_of};
use crate::cluster::{Cluster, resource};
use crate::status::ApiError;
use crate::store::{Key, now};

/// Paths a request without credentials may reach (then as
/// `system:anonymous`, still subject to RBAC), as a kube-apiserver whose
/// anonymous authentication is limited to these endpoints.
const ANONYMOUS_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version"];

/// The user a request acts as, once authenticated, impersonation applied and
/// authorized; a `401` or `403` otherwise.
pub(super) fn admit(
    cluster: &Cluster,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
) -> Result<User, ApiError> {
    let user = authenticate(cluster, path, headers)?;
    let user = impersonate(cluster, user, headers)?;
    let attrs = Attributes::of_request(method, path, query);
    let decision = rbac::authorize(&cluster.store, &user, &attrs);
    if decision.allowed {
        Ok(user)
    } else {
        Err(attrs.forbidden(&user, &decision.reason))
    }
}

fn authenticate(cluster: &Cluster, path: &str, headers: &HeaderMap) -> Result<User, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return if ANONYMOUS_PATHS.contains(&path) {
            Ok(User::anonymous())
        } else {
            Err(ApiError::unauthorized())
        };
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    cluster
        .auth
        .authenticate(&cluster.store, token)
        .ok_or_else(ApiError::unauthorized)
}

/// `Impersonate-User` and `Impersonate-Group`: the acting user needs the
/// `impersonate` verb on each (on `serviceaccounts` for an account's name,
/// `users` otherwise, `groups` for groups), as kube-apiserver checks it.
fn impersonate(cluster: &Cluster, actor: User, headers: &HeaderMap) -> Result<User, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    };
    let users = values("impersonate-user");
    let groups = values("impersonate-group");
    let Some(name) = users.first() else {
        if groups.is_empty() {
            return Ok(actor);
        }
        return Err(ApiError::internal(format!(
            "requested {groups:?} without impersonating a user"
        )));
    };
    let mut checks = Vec::new();
    match service_account_of(name) {
        Some((ns, sa)) => checks.push(("serviceaccounts", ns.to_owned(), sa.to_owned())),
        None => checks.push(("users", String::new(), name.clone())),
    }
    for g in &groups {
        checks.push(("groups", String::new(), g.clone()));
    }
    for (resource, namespace, object) in checks {
        let attrs = Attributes {
            verb: "impersonate".into(),
            resource_request: true,
            resource: resource.into(),
            namespace,
            name: object,
            ..Attributes::default()
        };
        let decision = rbac::authorize(&cluster.store, &actor, &attrs);
        if !decision.allowed {
            return Err(attrs.forbidden(&actor, &decision.reason));
        }
    }
    let mut user = User {
        name: name.clone(),
        uid: String::new(),
        groups: groups.clone(),
    };
    if groups.is_empty()
        && let Some((ns, sa)) = service_account_of(name)
    {
        user = User::service_account(ns, sa, "");
    } else if name != "system:anonymous"
        && !groups
            .iter()
            .any(|g| g == "system:authenticated" || g == "system:unauthenticated")
    {
        user.groups.push("system:authenticated".into());
    }
    Ok(user)
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: whether
/// the requesting user may do what the spec says (`kubectl auth can-i`).
pub(super) fn self_subject_access_review(
    cluster: &Cluster,
    user: &User,
    headers: &HeaderMap,
    body: &Bytes,
) -> Reply {
    let review = if super::protobuf::is_protobuf(headers) {
        super::protobuf::self_subject_access_review(body)?
    } else {
        let r = resource("authorization.k8s.io", "selfsubjectaccessreviews");
        crate::validate::decode(r, body, false)?.object
    };
    let spec = &review["spec"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let attrs = if let Some(res) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        Attributes {
            verb: text(&res["verb"]),
            resource_request: true,
            group: text(&res["group"]),
            resource: text(&res["resource"]),
            subresource: text(&res["subresource"]),
            namespace: text(&res["namespace"]),
            name: text(&res["name"]),
            path: String::new(),
        }
    } else if let Some(non) = spec.get("nonResourceAttributes").filter(|v| v.is_object()) {
        Attributes {
            verb: text(&non["verb"]),
            path: text(&non["path"]),
            ..Attributes::default()
        }
    } else {
        return Err(ApiError::invalid(
            "SelfSubjectAccessReview",
            "authorization.k8s.io",
            "",
            vec![crate::status::cause(
                "FieldValueRequired",
                "spec.resourceAttributes",
                "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        ));
    };
    let decision = rbac::authorize(&cluster.store, user, &attrs);
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    let answer = json!({
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {},
        "spec": spec,
        "status": status,
    });
    Ok(json_body_response(StatusCode::CREATED, &answer))
}

/// The lifetime a TokenRequest gets when it names none, and the shortest it may name.
const DEFAULT_TOKEN_SECONDS: u64 = 3600;
const MIN_TOKEN_SECONDS: u64 = 600;

/// `POST .../serviceaccounts/<name>/token` (`kubectl create token`): a new
/// bearer token for the account.
pub(super) fn token_request(
    cluster: &Arc<Cluster>,
    namespace: &str,
    name: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Reply {
    let request: Value = if body.is_empty() {
        json!({})
    } else if super::protobuf::is_protobuf(headers) {
        super::protobuf::token_request(body)?
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body of the request could not be decoded as JSON: {e}"
            ))
        })?
    };
    let seconds = request["spec"]["expirationSeconds"]
        .as_u64()
        .unwrap_or(DEFAULT_TOKEN_SECONDS);
    if seconds < MIN_TOKEN_SECONDS {
        return Err(ApiError::invalid(
            "TokenRequest",
            "authentication.k8s.io",
            name,
            vec![crate::status::cause(
                "FieldValueInvalid",
                "spec.expirationSeconds",
                format!(
                    "Invalid value: {seconds}: may not specify a duration less than 10 minutes"
                ),
            )],
        ));
    }
    let sa = resource("", "serviceaccounts");
    let account = cluster
        .store
        .get(&Key::new(sa, namespace, name))
        .ok_or_else(|| ApiError::not_found("serviceaccounts", "", name))?;
    let uid = account["metadata"]["uid"].as_str().unwrap_or_default();
    let token = cluster
        .auth
        .issue_token(namespace, name, uid, Duration::from_secs(seconds))
        .map_err(|_| ApiError::too_many_requests(60))?;
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_add(seconds);
    let expires = i64::try_from(expires)
        .ok()
        .and_then(|s| k8s_openapi::jiff::Timestamp::from_second(s).ok())
        .map(|t| t.to_string())
        .unwrap_or_default();
    let answer = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": now()},
        "spec": {
            "audiences": request["spec"]["audiences"].as_array().cloned().unwrap_or_else(|| vec![json!("https://kubernetes.default.svc.cluster.local")]),
            "expirationSeconds": seconds,
            "boundObjectRef": request["spec"]["boundObjectRef"],
        },
        "status": {"token": token, "expirationTimestamp": expires},
    });
    Ok(json_body_response(StatusCode::CREATED, &answer))
}

/// A `405` for any other verb on a create-only path.
pub(super) fn create_only() -> Response {
    super::response::error(&ApiError::method_not_allowed(
        "the server does not allow this method on the requested resource",
    ))
    .into_response()
}
