//! The host's invariants, re-applied to the Job after the admission plugins: what no plugin may change, whatever it was granted.

use k8s_openapi::api::batch::v1::Job;
use serde_json::{Map, Value};

use super::SpecError;
use crate::config::parse::strict_json;

/// The Job to create, and what the host put back.
#[derive(Debug, Clone, PartialEq)]
pub struct Enforced {
    /// The Job exactly as it will be sent.
    pub job: Job,
    /// JSON pointers of plugin changes that were reverted (RFC 6901).
    pub reverted: Vec<String>,
}

/// Single values the host owns.
const OWNED: &[&str] = &[
    "/apiVersion",
    "/kind",
    "/metadata/name",
    "/metadata/namespace",
    "/metadata/ownerReferences",
    "/spec/backoffLimit",
    "/spec/activeDeadlineSeconds",
    "/spec/template/spec/restartPolicy",
];

/// Label maps in which the host's own keys are restored (others may change).
const LABELS: &[&str] = &["/metadata/labels", "/spec/template/metadata/labels"];

/// Fields of the executor's containers the host owns.
const CONTAINER_FIELDS: &[&str] = &["image", "command", "args", "workingDir"];

/// Re-applies the invariants of `built` (what [`super::build`] made) to
/// `admitted` (what the plugins returned) and checks that the result is a
/// valid `batch/v1` Job with no unknown fields: the identity, the executor's
/// labels and owner references, `restartPolicy: Never`, `backoffLimit: 0`,
/// the deadline, and each executor container's image, command, args and
/// working directory. Removing or reordering those containers is an error.
pub fn enforce(built: &Job, admitted: Value) -> Result<Enforced, SpecError> {
    let host = serde_json::to_value(built).map_err(|e| SpecError::NotAJob(e.to_string()))?;
    let mut out = admitted.clone();
    for pointer in OWNED {
        restore(&mut out, &host, pointer);
    }
    for pointer in LABELS {
        if let Some(Value::Object(labels)) = host.pointer(pointer) {
            let target = object_at(&mut out, pointer);
            for (k, v) in labels {
                target.insert(k.clone(), v.clone());
            }
        }
    }
    for list in ["initContainers", "containers"] {
        let pointer = format!("/spec/template/spec/{list}");
        let wanted: Vec<&Value> = match host.pointer(&pointer) {
            Some(Value::Array(items)) => items.iter().collect(),
            _ => continue,
        };
        let Some(Value::Array(have)) = out.pointer_mut(&pointer) else {
            return Err(SpecError::Containers(format!("has no {list}")));
        };
        let mut last = None;
        for want in wanted {
            let name = want.get("name").and_then(Value::as_str).unwrap_or_default();
            let Some(at) = have
                .iter()
                .position(|c| c.get("name").and_then(Value::as_str) == Some(name))
            else {
                return Err(SpecError::Containers(format!(
                    "lacks the container {name:?} of {list}"
                )));
            };
            if last.is_some_and(|l| at < l) {
                return Err(SpecError::Containers(format!(
                    "moves the container {name:?} of {list}"
                )));
            }
            last = Some(at);
            if let Some(Value::Object(c)) = have.get_mut(at) {
                for field in CONTAINER_FIELDS {
                    match want.get(*field) {
                        Some(v) => c.insert((*field).to_owned(), v.clone()),
                        None => c.remove(*field),
                    };
                }
            }
        }
    }
    let reverted = json_patch::diff(&admitted, &out)
        .0
        .iter()
        .map(|op| op.path().to_string())
        .collect();
    let text = serde_json::to_string(&out).map_err(|e| SpecError::NotAJob(e.to_string()))?;
    let job = strict_json::<Job>(&text, "a batch/v1 Job").map_err(SpecError::NotAJob)?;
    Ok(Enforced { job, reverted })
}

/// Makes `out` hold at `pointer` what `host` holds there (or nothing).
fn restore(out: &mut Value, host: &Value, pointer: &str) {
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return;
    };
    match host.pointer(pointer) {
        Some(v) => {
            object_at(out, parent).insert(key.to_owned(), v.clone());
        }
        None => {
            if let Some(Value::Object(p)) = out.pointer_mut(parent) {
                p.remove(key);
            }
        }
    }
}

/// The object at `pointer` (keys without `/` or `~`), made on the way where
/// missing or not an object.
fn object_at<'v>(root: &'v mut Value, pointer: &str) -> &'v mut Map<String, Value> {
    let mut at = as_object(root);
    for key in pointer.split('/').skip(1) {
        at = as_object(
            at.entry(key.to_owned())
                .or_insert_with(|| Value::Object(Map::new())),
        );
    }
    at
}

/// `v` as an object, replacing whatever else it was.
fn as_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(map) => map,
        _ => unreachable!("replaced by an object just above"),
    }
}
