//! API errors as the real server reports them: a `meta/v1` `Status` with the right code, reason, details and causes.

use serde_json::{Value, json};

/// One field-level cause of an `Invalid` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueDuplicate`, ...
    pub reason: &'static str,
    /// The offending field, e.g. `spec.template.spec.restartPolicy`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// The object an error is about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Details {
    /// The object's kind (the resource name, as the real server puts it).
    pub kind: String,
    /// The object's group ("" for core).
    pub group: String,
    /// The object's name.
    pub name: String,
    /// Field causes (for `Invalid`).
    pub causes: Vec<Cause>,
}

/// An error answered with a `Status` object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, ...
    pub reason: &'static str,
    /// The human-readable message.
    pub message: String,
    /// What the error is about, when it is about an object.
    pub details: Option<Box<Details>>,
    /// Seconds for a `Retry-After` header (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> ApiError {
        ApiError {
            code,
            reason,
            message,
            details: None,
            retry_after: None,
        }
    }

    /// `404 NotFound`: `jobs.batch "x" not found`.
    pub fn not_found(resource: &str, group: &str, name: &str) -> ApiError {
        let qualified = qualified(resource, group);
        ApiError::new(404, "NotFound", format!("{qualified} \"{name}\" not found")).about(
            resource,
            group,
            name,
            Vec::new(),
        )
    }

    /// `409 AlreadyExists`.
    pub fn already_exists(resource: &str, group: &str, name: &str) -> ApiError {
        let qualified = qualified(resource, group);
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{qualified} \"{name}\" already exists"),
        )
        .about(resource, group, name, Vec::new())
    }

    /// `409 Conflict` on a stale `resourceVersion`.
    pub fn conflict(resource: &str, group: &str, name: &str) -> ApiError {
        let qualified = qualified(resource, group);
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .about(resource, group, name, Vec::new())
    }

    /// `422 Invalid` with field causes.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> ApiError {
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let list = if list.len() == 1 {
            list.concat()
        } else {
            format!("[{}]", list.join(", "))
        };
        let qualified = qualified(kind, group);
        ApiError::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {list}"),
        )
        .about(kind, group, name, causes)
    }

    /// The error with the object it is about in its details.
    fn about(self, kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> ApiError {
        ApiError {
            details: Some(Box::new(Details {
                kind: kind.to_owned(),
                group: group.to_owned(),
                name: name.to_owned(),
                causes,
            })),
            ..self
        }
    }

    /// `401 Unauthorized`: no valid credentials.
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized".into())
    }

    /// `403 Forbidden` about `resource` (empty for a non-resource path) and
    /// `name`, worded as apimachinery's `NewForbidden`.
    pub fn forbidden(resource: &str, group: &str, name: &str, why: &str) -> ApiError {
        let message = if resource.is_empty() {
            format!("forbidden: {why}")
        } else if name.is_empty() {
            format!("{} is forbidden: {why}", qualified(resource, group))
        } else {
            format!(
                "{} {name:?} is forbidden: {why}",
                qualified(resource, group)
            )
        };
        ApiError::new(403, "Forbidden", message).about(resource, group, name, Vec::new())
    }

    /// `400 BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message.into())
    }

    /// `422 Invalid` without field causes (a patch that cannot apply).
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(422, "Invalid", message.into())
    }

    /// `429 TooManyRequests` with `Retry-After`.
    pub fn too_many_requests(retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later"
                    .into(),
            )
        }
    }

    /// `503 ServiceUnavailable`.
    pub fn unavailable(retry_after: Option<u64>) -> ApiError {
        ApiError {
            retry_after,
            ..ApiError::new(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request".into(),
            )
        }
    }

    /// `405 MethodNotAllowed`.
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message.into())
    }

    /// `410 Gone` for a watch or list from a compacted `resourceVersion`.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message.into())
    }

    /// `415 UnsupportedMediaType`.
    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json; got {content_type:?}"
            ),
        )
    }

    /// `415 UnsupportedMediaType` for a body in a known media type whose
    /// content the simulator cannot take without losing part of it.
    pub fn unsupported_body(message: impl Into<String>) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", message.into())
    }

    /// `406 NotAcceptable`: no media type in `Accept` is one the server answers in.
    pub fn not_acceptable(accepted: &str) -> ApiError {
        ApiError::new(
            406,
            "NotAcceptable",
            format!("only the following media types are accepted: {accepted}"),
        )
    }

    /// `500 InternalError` (also what injected faults answer).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message.into())
    }

    /// A `404` for a path the server does not serve at all.
    pub fn no_route(path: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource (path {path})"),
        )
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        if let Some(d) = &self.details {
            // Empty fields are left out, as Go's `omitempty` leaves them.
            if !d.name.is_empty() {
                details.insert("name".into(), json!(d.name));
            }
            if !d.group.is_empty() {
                details.insert("group".into(), json!(d.group));
            }
            if !d.kind.is_empty() {
                details.insert("kind".into(), json!(d.kind));
            }
        }
        if let Some(causes) = self
            .details
            .as_ref()
            .map(|d| &d.causes)
            .filter(|c| !c.is_empty())
        {
            details.insert(
                "causes".into(),
                causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect(),
            );
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

/// A field cause.
pub fn cause(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> Cause {
    Cause {
        reason,
        field: field.into(),
        message: message.into(),
    }
}
