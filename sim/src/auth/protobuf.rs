//! The access requests `kubectl` sends as protobuf (SelfSubjectAccessReview for `auth can-i`, TokenRequest for `create token`), decoded with Kubernetes' own bindings (k8s-pb) into the JSON the handlers read.

use prost::Message;
use serde_json::{Value, json};

use crate::status::ApiError;

/// The media type kubectl uses for protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The four bytes a Kubernetes protobuf envelope starts with.
const MAGIC: &[u8] = b"k8s\0";

/// The object inside a protobuf envelope (`runtime.Unknown`).
fn unwrap(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let inner = body.strip_prefix(MAGIC).ok_or_else(|| {
        ApiError::bad_request("the protobuf body does not start with the Kubernetes magic bytes")
    })?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(inner)
        .map_err(|e| ApiError::bad_request(format!("cannot decode the protobuf envelope: {e}")))?;
    Ok(unknown.raw.unwrap_or_default())
}

/// A protobuf SelfSubjectAccessReview as its JSON form.
pub fn self_subject_access_review(body: &[u8]) -> Result<Value, ApiError> {
    let raw = unwrap(body)?;
    let review = k8s_pb::api::authorization::v1::SelfSubjectAccessReview::decode(raw.as_slice())
        .map_err(|e| {
            ApiError::bad_request(format!("cannot decode SelfSubjectAccessReview: {e}"))
        })?;
    let spec = review.spec.unwrap_or_default();
    let mut out = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}});
    if let Some(r) = spec.resource_attributes {
        out["spec"]["resourceAttributes"] = json!({
            "namespace": r.namespace, "verb": r.verb, "group": r.group, "version": r.version,
            "resource": r.resource, "subresource": r.subresource, "name": r.name,
        });
    }
    if let Some(n) = spec.non_resource_attributes {
        out["spec"]["nonResourceAttributes"] = json!({"path": n.path, "verb": n.verb});
    }
    Ok(out)
}

/// A protobuf TokenRequest as its JSON form.
pub fn token_request(body: &[u8]) -> Result<Value, ApiError> {
    let raw = unwrap(body)?;
    let request = k8s_pb::api::authentication::v1::TokenRequest::decode(raw.as_slice())
        .map_err(|e| ApiError::bad_request(format!("cannot decode TokenRequest: {e}")))?;
    let spec = request.spec.unwrap_or_default();
    let mut out = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": spec.audiences}});
    if let Some(seconds) = spec.expiration_seconds {
        out["spec"]["expirationSeconds"] = json!(seconds);
    }
    Ok(out)
}
