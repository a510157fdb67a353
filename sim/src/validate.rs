//! Decoding and validating request bodies as the real server does: typed decoding (unknown fields warned about or refused), defaults, and the field checks of each kind.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, Node, PersistentVolumeClaim, Pod, PodSpec, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::resources::Resource;
use crate::selector::{validate_label_key, validate_label_value};
use crate::status::{ApiError, Cause, cause};
use k8s_rules::field_path::dotted;
use k8s_rules::metadata::TOTAL_ANNOTATION_SIZE_LIMIT;
use k8s_rules::names::is_dns1123_subdomain_shape;

/// A decoded body: the object as the server stores it, and the warnings
/// (unknown fields) to send back in `Warning` headers.
pub struct Decoded {
    /// The object, normalised through its type (unknown fields dropped).
    pub object: Value,
    /// `unknown field "spec.foo"` for each dropped field.
    pub warnings: Vec<String>,
}

/// Decodes `body` as an object of `resource`. With `strict`
/// (`fieldValidation=Strict`) an unknown field is a `400`; otherwise it is
/// dropped with a warning, as the real server does by default.
pub fn decode(resource: &Resource, body: &[u8], strict: bool) -> Result<Decoded, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request could not be decoded as JSON: {e}"
        ))
    })?;
    decode_value(resource, value, strict)
}

/// [`decode`] for a body already parsed (a patched object).
pub fn decode_value(
    resource: &Resource,
    mut value: Value,
    strict: bool,
) -> Result<Decoded, ApiError> {
    if !value.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of the request is not a {} object",
            resource.kind
        )));
    }
    let api_version = resource.api_version();
    match value.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            value["apiVersion"] = json!(api_version);
        }
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match value.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            value["kind"] = json!(resource.kind);
        }
        Some(k) if k == resource.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                resource.kind
            )));
        }
    }
    let (object, unknown) = match resource.kind {
        "Job" => typed::<Job>(resource, &value),
        "Pod" => typed::<Pod>(resource, &value),
        "Secret" => typed::<Secret>(resource, &value),
        "ConfigMap" => typed::<ConfigMap>(resource, &value),
        "PersistentVolumeClaim" => typed::<PersistentVolumeClaim>(resource, &value),
        "Event" => typed::<Event>(resource, &value),
        "Namespace" => typed::<Namespace>(resource, &value),
        "Node" => typed::<Node>(resource, &value),
        "ServiceAccount" => typed::<ServiceAccount>(resource, &value),
        "Role" => typed::<Role>(resource, &value),
        "ClusterRole" => typed::<ClusterRole>(resource, &value),
        "RoleBinding" => typed::<RoleBinding>(resource, &value),
        "ClusterRoleBinding" => typed::<ClusterRoleBinding>(resource, &value),
        "SelfSubjectAccessReview" => typed::<SelfSubjectAccessReview>(resource, &value),
        "Deployment" => typed::<Deployment>(resource, &value),
        "ReplicaSet" => typed::<ReplicaSet>(resource, &value),
        "Service" => typed::<Service>(resource, &value),
        "NetworkPolicy" => typed::<NetworkPolicy>(resource, &value),
        "PodDisruptionBudget" => typed::<PodDisruptionBudget>(resource, &value),
        other => Err(ApiError::internal(format!("no decoder for {other}"))),
    }?;
    let mut object = object;
    if resource.kind == "Secret" {
        merge_string_data(&mut object);
    }
    quantities(resource, &object)?;
    let warnings: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if strict && !warnings.is_empty() {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            warnings.join(", ")
        )));
    }
    Ok(Decoded { object, warnings })
}

/// Every container's resource quantities parse; the real server fails
/// these while decoding, hence `400`.
fn quantities(resource: &Resource, object: &Value) -> Result<(), ApiError> {
    let spec = match resource.kind {
        "Pod" => &object["spec"],
        "Job" | "Deployment" | "ReplicaSet" => &object["spec"]["template"]["spec"],
        _ => return Ok(()),
    };
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            for kind in ["limits", "requests"] {
                for (name, q) in c["resources"][kind].as_object().into_iter().flatten() {
                    if crate::quantity::resource_amount(name, q).is_none() {
                        return Err(ApiError::bad_request(format!(
                            "{kind_name} in version \"{version}\" cannot be handled as a {kind_name}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got {q} in {list}/{}/resources/{kind}/{name})",
                            c["name"].as_str().unwrap_or_default(),
                            kind_name = resource.kind,
                            version = resource.version,
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The server writes a Secret's `stringData` into `data` (base64) and never
/// stores `stringData` itself.
fn merge_string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(string_data) = secret.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    if let Some(map) = string_data.as_object() {
        for (k, v) in map {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
            secret["data"][k] = json!(encoded);
        }
    }
}

fn typed<T: DeserializeOwned + Serialize>(
    resource: &Resource,
    value: &Value,
) -> Result<(Value, Vec<String>), ApiError> {
    let mut unknown = Vec::new();
    let text = value.to_string();
    let mut json = serde_json::Deserializer::from_str(&text);
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(dotted(&path));
    let ignoring = serde_ignored::Deserializer::new(&mut json, &mut record);
    let typed: T = serde_path_to_error::deserialize(ignoring).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {path}: {err}",
            kind = resource.kind,
            version = resource.version,
            path = e.path(),
            err = e.inner()
        ))
    })?;
    let object = serde_json::to_value(&typed).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((object, unknown))
}

/// The field checks of `resource` on `object`, all at once; `422 Invalid`
/// with every cause.
pub fn validate(resource: &Resource, object: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    metadata(resource, object, &mut causes);
    match resource.kind {
        "Job" => job(object, &mut causes),
        "Pod" => {
            if let Ok(spec) = serde_json::from_value::<PodSpec>(object["spec"].clone()) {
                pod_spec(&spec, "spec", &mut causes);
            }
        }
        "Secret" => secret(object, &mut causes),
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => {
            crate::auth::validation::validate(resource.kind, object, &mut causes)
        }
        "Deployment" | "ReplicaSet" => {
            match serde_json::from_value::<PodSpec>(object["spec"]["template"]["spec"].clone()) {
                Ok(spec) => pod_spec(&spec, "spec.template.spec", &mut causes),
                Err(_) => causes.push(cause(
                    "FieldValueRequired",
                    "spec.template.spec.containers",
                    "Required value",
                )),
            }
            crate::workloads::validate::check(resource.kind, object, &mut causes);
        }
        other => {
            crate::workloads::validate::check(other, object, &mut causes);
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            resource.kind,
            resource.group,
            name,
            causes,
        ))
    }
}

fn metadata(resource: &Resource, object: &Value, causes: &mut Vec<Cause>) {
    let meta = &object["metadata"];
    match meta["name"].as_str() {
        None | Some("") => causes.push(cause(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        )),
        Some(name) if resource.group == "rbac.authorization.k8s.io" => {
            if let Some(e) = crate::auth::validation::path_segment_name(name) {
                causes.push(cause(
                    "FieldValueInvalid",
                    "metadata.name",
                    format!("Invalid value: {name:?}: {e}"),
                ));
            }
        }
        Some(name) => {
            let label = matches!(resource.kind, "Namespace" | "Job");
            let max = if label { 63 } else { 253 };
            let shape = if label {
                !name.contains('.') && is_dns1123_subdomain_shape(name)
            } else {
                is_dns1123_subdomain_shape(name)
            };
            if name.len() > max || !shape {
                let what = if label {
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
                } else {
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                };
                causes.push(cause(
                    "FieldValueInvalid",
                    "metadata.name",
                    format!("Invalid value: {name:?}: {what} (at most {max} characters)"),
                ));
            }
        }
    }
    for path in ["metadata.labels", "spec.template.metadata.labels"] {
        let at = path.split('.').fold(object, |v, k| &v[k]);
        if let Some(labels) = at.as_object() {
            for (k, v) in labels {
                if let Err(e) = validate_label_key(k) {
                    causes.push(cause(
                        "FieldValueInvalid",
                        path,
                        format!("Invalid value: {k:?}: {e}"),
                    ));
                }
                if let Err(e) = validate_label_value(k, v.as_str().unwrap_or_default()) {
                    causes.push(cause(
                        "FieldValueInvalid",
                        path,
                        format!("Invalid value: {v}: {e}"),
                    ));
                }
            }
        }
    }
    if let Some(annotations) = meta["annotations"].as_object() {
        let size: usize = annotations
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if size > TOTAL_ANNOTATION_SIZE_LIMIT {
            causes.push(cause(
                "FieldValueTooLong",
                "metadata.annotations",
                format!(
                    "Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes (got {size})"
                ),
            ));
        }
        for k in annotations.keys() {
            if let Err(e) = validate_label_key(k) {
                causes.push(cause(
                    "FieldValueInvalid",
                    "metadata.annotations",
                    format!("Invalid value: {k:?}: {e}"),
                ));
            }
        }
    }
}

fn job(object: &Value, causes: &mut Vec<Cause>) {
    let template = &object["spec"]["template"];
    match serde_json::from_value::<PodSpec>(template["spec"].clone()) {
        Ok(spec) => {
            match spec.restart_policy.as_deref() {
                Some("Never" | "OnFailure") => {}
                Some(other) => causes.push(cause(
                    "FieldValueNotSupported",
                    "spec.template.spec.restartPolicy",
                    format!(
                        "Unsupported value: {other:?}: supported values: \"OnFailure\", \"Never\""
                    ),
                )),
                None => causes.push(cause(
                    "FieldValueRequired",
                    "spec.template.spec.restartPolicy",
                    "Required value: supported values: \"OnFailure\", \"Never\"",
                )),
            }
            pod_spec(&spec, "spec.template.spec", causes);
        }
        Err(_) => causes.push(cause(
            "FieldValueRequired",
            "spec.template.spec.containers",
            "Required value",
        )),
    }
    for (field, min) in [
        ("backoffLimit", 0),
        ("activeDeadlineSeconds", 1),
        ("ttlSecondsAfterFinished", 0),
    ] {
        if let Some(n) = object["spec"][field].as_i64()
            && n < min
        {
            causes.push(cause(
                "FieldValueInvalid",
                format!("spec.{field}"),
                format!("Invalid value: {n}: must be greater than or equal to {min}"),
            ));
        }
    }
}

fn pod_spec(spec: &PodSpec, path: &str, causes: &mut Vec<Cause>) {
    if spec.containers.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            format!("{path}.containers"),
            "Required value",
        ));
    }
    let mut volumes = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if !volumes.insert(v.name.as_str()) {
            causes.push(cause(
                "FieldValueDuplicate",
                format!("{path}.volumes[{i}].name"),
                format!("Duplicate value: {:?}", v.name),
            ));
        }
    }
    let mut names = BTreeSet::new();
    let lists = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let at = format!("{path}.{list}[{i}]");
            if c.name.is_empty()
                || c.name.len() > 63
                || c.name.contains('.')
                || !is_dns1123_subdomain_shape(&c.name)
            {
                causes.push(cause("FieldValueInvalid", format!("{at}.name"), format!("Invalid value: {:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'", c.name)));
            } else if !names.insert(c.name.as_str()) {
                causes.push(cause(
                    "FieldValueDuplicate",
                    format!("{at}.name"),
                    format!("Duplicate value: {:?}", c.name),
                ));
            }
            if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
                causes.push(cause(
                    "FieldValueRequired",
                    format!("{at}.image"),
                    "Required value",
                ));
            }
            if let Some(r) = &c.resources {
                for (name, request) in r.requests.iter().flatten() {
                    let limit = r.limits.as_ref().and_then(|l| l.get(name));
                    let amount = |q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
                        crate::quantity::resource_amount(name, &Value::String(q.0.clone()))
                    };
                    if let Some(limit) = limit
                        && amount(request) > amount(limit)
                    {
                        causes.push(cause(
                            "FieldValueInvalid",
                            format!("{at}.resources.requests"),
                            format!("Invalid value: {:?}: must be less than or equal to {name} limit of {}", request.0, limit.0),
                        ));
                    }
                }
            }
            for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
                if !volumes.contains(m.name.as_str()) {
                    causes.push(cause(
                        "FieldValueNotFound",
                        format!("{at}.volumeMounts[{j}].name"),
                        format!("Not found: {:?}", m.name),
                    ));
                }
                if m.mount_path.is_empty() {
                    causes.push(cause(
                        "FieldValueRequired",
                        format!("{at}.volumeMounts[{j}].mountPath"),
                        "Required value",
                    ));
                }
            }
        }
    }
}

fn secret(object: &Value, causes: &mut Vec<Cause>) {
    let mut total = 0usize;
    for field in ["data", "stringData"] {
        if let Some(map) = object[field].as_object() {
            for (k, v) in map {
                total += v.as_str().map_or(0, str::len);
                if k.is_empty()
                    || !k
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                {
                    causes.push(cause("FieldValueInvalid", format!("{field}[{k}]"), format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'")));
                }
            }
        }
    }
    // Base64 inflates by 4/3; the limit is on the decoded bytes.
    if total * 3 / 4 > 1024 * 1024 {
        causes.push(cause(
            "FieldValueTooLong",
            "data",
            "Too long: must have at most 1048576 bytes",
        ));
    }
}
