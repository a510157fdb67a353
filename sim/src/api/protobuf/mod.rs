//! Request bodies in Kubernetes protobuf (`application/vnd.kubernetes.protobuf`, what kubectl's typed commands send): the envelope, the kinds taken, decoded with Kubernetes' own bindings (k8s-pb) and converted into the JSON every handler reads. Answers stay JSON.

mod convert;
mod kinds;

use axum::http::{HeaderMap, header};
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use prost::Message;
use serde_json::{Value, json};

use crate::resources::Resource;
use crate::status::ApiError;
use convert::{ConvertError, ToJson};

/// The media type of Kubernetes protobuf.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The four bytes a Kubernetes protobuf envelope starts with.
const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body was refused.
#[derive(Debug, thiserror::Error)]
enum ProtobufError {
    #[error("the protobuf body does not start with the Kubernetes magic bytes")]
    NoMagic,
    #[error("cannot decode the protobuf envelope: {0}")]
    Envelope(prost::DecodeError),
    #[error("cannot decode {kind} from protobuf: {source}")]
    Decode {
        kind: String,
        source: prost::DecodeError,
    },
    #[error("the protobuf body is {0}-encoded; the simulator takes it unencoded, or JSON")]
    Encoded(String),
    #[error(
        "the simulator does not take {0} as protobuf; send it as JSON (Content-Type: application/json)"
    )]
    Kind(String),
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

impl From<ProtobufError> for ApiError {
    fn from(e: ProtobufError) -> ApiError {
        match e {
            ProtobufError::NoMagic | ProtobufError::Envelope(_) | ProtobufError::Decode { .. } => {
                ApiError::bad_request(e.to_string())
            }
            ProtobufError::Encoded(_) | ProtobufError::Kind(_) | ProtobufError::Convert(_) => {
                ApiError::unsupported_body(e.to_string())
            }
        }
    }
}

/// Whether the request's body is Kubernetes protobuf.
pub fn is_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().starts_with(MEDIA_TYPE))
}

/// Whether `Accept` names protobuf and nothing else (the simulator answers
/// in JSON only; a client that also takes JSON, as kubectl does, gets JSON).
pub fn accepts_only_protobuf(headers: &HeaderMap) -> bool {
    let mut types = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or_default().trim())
        .filter(|t| !t.is_empty())
        .peekable();
    types.peek().is_some() && types.all(|t| t == MEDIA_TYPE)
}

/// The envelope (`runtime.Unknown`): the type it names and the message.
struct Envelope {
    api_version: String,
    kind: String,
    raw: Vec<u8>,
}

fn unwrap(body: &[u8]) -> Result<Envelope, ProtobufError> {
    let inner = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(inner)
        .map_err(ProtobufError::Envelope)?;
    if let Some(encoding) = unknown.content_encoding.filter(|e| !e.is_empty()) {
        return Err(ProtobufError::Encoded(encoding));
    }
    let type_meta = unknown.type_meta.unwrap_or_default();
    Ok(Envelope {
        api_version: type_meta.api_version.unwrap_or_default(),
        kind: type_meta.kind.unwrap_or_default(),
        raw: unknown.raw.unwrap_or_default(),
    })
}

/// Decodes `raw` as `M` and converts it, naming `kind` if it cannot.
fn convert<M: Message + Default + ToJson>(raw: &[u8], kind: &str) -> Result<Value, ProtobufError> {
    let message = M::decode(raw).map_err(|source| ProtobufError::Decode {
        kind: kind.to_owned(),
        source,
    })?;
    Ok(message.to_json()?)
}

/// The object of `resource` a protobuf body holds, as the JSON a client
/// would have sent: `apiVersion` and `kind` from the envelope, which must
/// name `resource`'s kind (`400` otherwise, in the real server's words).
pub fn object(resource: &Resource, body: &[u8]) -> Result<Value, ApiError> {
    let envelope = unwrap(body)?;
    let expected = resource.api_version();
    if !envelope.api_version.is_empty() && envelope.api_version != expected {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({expected})",
            envelope.api_version
        )));
    }
    if !envelope.kind.is_empty() && envelope.kind != resource.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({}) does not match the expected kind ({})",
            envelope.kind, resource.kind
        )));
    }
    let raw = envelope.raw.as_slice();
    let kind = resource.kind;
    let mut object = match (resource.group, kind) {
        ("", "Secret") => convert::<core::Secret>(raw, kind),
        ("", "ConfigMap") => convert::<core::ConfigMap>(raw, kind),
        ("", "Namespace") => convert::<core::Namespace>(raw, kind),
        ("", "ServiceAccount") => convert::<core::ServiceAccount>(raw, kind),
        ("", "Service") => convert::<core::Service>(raw, kind),
        ("", "Pod") => convert::<core::Pod>(raw, kind),
        ("batch", "Job") => convert::<batch::Job>(raw, kind),
        ("apps", "Deployment") => convert::<apps::Deployment>(raw, kind),
        ("policy", "PodDisruptionBudget") => convert::<policy::PodDisruptionBudget>(raw, kind),
        ("rbac.authorization.k8s.io", "Role") => convert::<rbac::Role>(raw, kind),
        ("rbac.authorization.k8s.io", "ClusterRole") => convert::<rbac::ClusterRole>(raw, kind),
        ("rbac.authorization.k8s.io", "RoleBinding") => convert::<rbac::RoleBinding>(raw, kind),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            convert::<rbac::ClusterRoleBinding>(raw, kind)
        }
        _ => Err(ProtobufError::Kind(format!("{kind} ({expected})"))),
    }?;
    object["apiVersion"] = json!(expected);
    object["kind"] = json!(kind);
    Ok(object)
}

/// A protobuf `DeleteOptions` (typed clients send one with every delete).
pub fn delete_options(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = unwrap(body)?;
    Ok(convert::<meta::DeleteOptions>(
        &envelope.raw,
        "DeleteOptions",
    )?)
}

/// A protobuf SelfSubjectAccessReview (`kubectl auth can-i`).
pub fn self_subject_access_review(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = unwrap(body)?;
    let mut review =
        convert::<authz::SelfSubjectAccessReview>(&envelope.raw, "SelfSubjectAccessReview")?;
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectAccessReview");
    Ok(review)
}

/// A protobuf TokenRequest (`kubectl create token`).
pub fn token_request(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = unwrap(body)?;
    let mut request = convert::<authn::TokenRequest>(&envelope.raw, "TokenRequest")?;
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    Ok(request)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cluster::resource;
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};

    fn envelope<M: Message>(api_version: &str, kind: &str, message: &M) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(message.encode_to_vec()),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        [MAGIC, unknown.encode_to_vec().as_slice()].concat()
    }

    fn meta(name: &str) -> Option<meta::ObjectMeta> {
        Some(meta::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        })
    }

    #[test]
    fn a_secret_becomes_its_json_with_base64_data() {
        let secret = core::Secret {
            metadata: meta("s"),
            data: [("a".to_owned(), b"b".to_vec())].into(),
            r#type: Some(String::new()),
            ..Default::default()
        };
        let body = envelope("v1", "Secret", &secret);
        let object = object(resource("", "secrets"), &body).unwrap();
        assert_eq!(
            object,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "Yg=="}})
        );
    }

    #[test]
    fn a_body_of_another_kind_is_refused_as_the_real_server_words_it() {
        let body = envelope("v1", "ConfigMap", &core::ConfigMap::default());
        let err = object(resource("", "secrets"), &body).unwrap_err();
        assert_eq!(err.code, 400);
        let body = envelope("batch/v1", "Secret", &core::Secret::default());
        let err = object(resource("", "secrets"), &body).unwrap_err();
        assert_eq!(
            err.message,
            "the API version in the data (batch/v1) does not match the expected API version (v1)"
        );
    }

    #[test]
    fn a_field_the_simulator_does_not_convert_is_refused_not_dropped() {
        let mut pod = core::Pod {
            metadata: meta("p"),
            ..Default::default()
        };
        pod.spec = Some(core::PodSpec {
            ephemeral_containers: vec![Default::default()],
            ..Default::default()
        });
        let body = envelope("v1", "Pod", &pod);
        let err = object(resource("", "pods"), &body).unwrap_err();
        assert_eq!(err.code, 415);
        assert_eq!(err.reason, "UnsupportedMediaType");
        assert_eq!(
            err.message,
            "the protobuf body sets a field of io.k8s.api.core.v1.PodSpec that the simulator does not convert; send this object as JSON (Content-Type: application/json)"
        );
    }

    #[test]
    fn a_body_without_the_magic_bytes_is_a_bad_request() {
        let err = object(resource("", "secrets"), b"{}").unwrap_err();
        assert_eq!(err.code, 400);
    }
}
