//! Whether a Job document is one the API server would accept, judged as it would (typed decoding without unknown fields, then the metadata rules), so that a plugin's bad change is caught where it is made.

use std::collections::{BTreeMap, HashSet};

use json_patch::jsonptr::PointerBuf;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_rules::metadata;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::parse::strict_json;
use crate::plugins::JobCheck;

/// `Ok` when the API server would accept `text` as a `batch/v1` Job, as far
/// as plugins can change it; else every reason, as the API server words it.
pub fn validate(text: &str) -> Result<(), String> {
    let job = strict_json::<Job>(text, "a batch/v1 Job").map_err(|e| format!("it {e}"))?;
    let mut problems = meta("metadata", &job.metadata);
    if let Some(template) = job.spec.as_ref().and_then(|s| s.template.metadata.as_ref()) {
        problems.extend(meta("spec.template.metadata", template));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// [`validate`] as the admission chain's check: it also judges, one by one,
/// the parts of a Job that plugins may change by default, exactly as
/// [`validate`] judges them within the whole (typed, without unknown fields,
/// then the metadata rules), so that a chain of small patches is not judged
/// by a parse of the whole Job.
pub struct ApiServer;

/// How a part of a Job is judged alone.
enum Part {
    Labels,
    Annotations,
    Typed(fn(&Value) -> bool),
}

/// The parts, by path (`*`: any key or index). A change anywhere else is
/// judged with the whole Job.
const PARTS: &[(&[&str], Part)] = &[
    (&["metadata", "labels"], Part::Labels),
    (&["metadata", "annotations"], Part::Annotations),
    (&["spec", "template", "metadata", "labels"], Part::Labels),
    (
        &["spec", "template", "metadata", "annotations"],
        Part::Annotations,
    ),
    (
        &["spec", "template", "spec", "affinity"],
        Part::Typed(strict::<Affinity>),
    ),
    (
        &["spec", "template", "spec", "tolerations"],
        Part::Typed(strict::<Vec<Toleration>>),
    ),
    (
        &["spec", "template", "spec", "nodeSelector"],
        Part::Typed(strict::<BTreeMap<String, String>>),
    ),
    (
        &["spec", "template", "spec", "imagePullSecrets"],
        Part::Typed(strict::<Vec<LocalObjectReference>>),
    ),
    (
        &["spec", "template", "spec", "priorityClassName"],
        Part::Typed(strict::<String>),
    ),
    (
        &["spec", "template", "spec", "containers", "*", "resources"],
        Part::Typed(strict::<ResourceRequirements>),
    ),
    (
        &[
            "spec",
            "template",
            "spec",
            "initContainers",
            "*",
            "resources",
        ],
        Part::Typed(strict::<ResourceRequirements>),
    ),
];

/// Whether `value` decodes as a `T` (or `null`, as for every optional
/// field) without unknown fields.
fn strict<T: DeserializeOwned>(value: &Value) -> bool {
    decode::<T>(value).is_some()
}

/// `value` decoded as an optional `T`, if it decodes without unknown fields.
fn decode<T: DeserializeOwned>(value: &Value) -> Option<Option<T>> {
    let mut unknown = false;
    let mut note = |_: serde_ignored::Path<'_>| unknown = true;
    let decoded = Option::<T>::deserialize(serde_ignored::Deserializer::new(value, &mut note));
    decoded.ok().filter(|_| !unknown)
}

impl JobCheck for ApiServer {
    fn check(&self, text: &str) -> Result<(), String> {
        validate(text)
    }

    fn parts_valid(&self, job: &Value, paths: &[Vec<String>]) -> bool {
        // Many changes to one part are judged once.
        let mut judged: HashSet<&[String]> = HashSet::new();
        paths.iter().all(|path| {
            let Some((keys, part)) = PARTS.iter().find(|(keys, _)| {
                keys.len() <= path.len() && keys.iter().zip(path).all(|(k, p)| *k == "*" || k == p)
            }) else {
                return false;
            };
            let at = &path[..keys.len()];
            if !judged.insert(at) {
                return true;
            }
            let pointer = PointerBuf::from_tokens(at.iter().map(String::as_str));
            part_valid(job.pointer(pointer.as_str()), part)
        })
    }
}

/// Whether `value`, the part of a Job that `part` describes, would be
/// accepted; an absent part is, as every one is optional.
fn part_valid(value: Option<&Value>, part: &Part) -> bool {
    let Some(value) = value else {
        return true;
    };
    match part {
        Part::Typed(valid) => valid(value),
        Part::Labels | Part::Annotations => {
            let Some(map) = decode::<BTreeMap<String, String>>(value) else {
                return false;
            };
            let map = map.unwrap_or_default();
            let pairs = map.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            match part {
                Part::Labels => metadata::labels("", pairs).is_empty(),
                _ => metadata::annotations("", pairs).is_empty(),
            }
        }
    }
}

fn meta(field: &str, meta: &ObjectMeta) -> Vec<String> {
    let mut problems = metadata::labels(&format!("{field}.labels"), pairs(&meta.labels));
    problems.extend(metadata::annotations(
        &format!("{field}.annotations"),
        pairs(&meta.annotations),
    ));
    problems
}

fn pairs(map: &Option<BTreeMap<String, String>>) -> impl Iterator<Item = (&str, &str)> {
    map.iter().flatten().map(|(k, v)| (k.as_str(), v.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(metadata: serde_json::Value) -> String {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
               "spec": {"template": {"metadata": {"labels": {"app": "x"}},
                                     "spec": {"containers": [{"name": "main"}]}}}})
        .to_string()
    }

    #[test]
    fn a_job_the_api_server_would_accept_passes() {
        assert_eq!(
            validate(&job(json!({"name": "j", "annotations": {"a": "b"}}))),
            Ok(())
        );
    }

    #[test]
    fn wrong_types_unknown_fields_and_metadata_rules_are_named() {
        let err = validate(&job(json!({"annotations": 42}))).unwrap_err();
        assert!(
            err.starts_with("it is not a batch/v1 Job at metadata.annotations: invalid type"),
            "{err}"
        );
        let err = validate(&job(json!({"color": "red"}))).unwrap_err();
        assert!(err.contains("unknown field(s) metadata.color"), "{err}");
        let big = "a".repeat(300 * 1024);
        let err = validate(&job(
            json!({"annotations": {"k": big}, "labels": {"a": "b c"}}),
        ))
        .unwrap_err();
        assert!(
            err.contains("metadata.labels: Invalid value: \"b c\""),
            "{err}"
        );
        assert!(
            err.contains("metadata.annotations: Too long: may not be more than 262144 bytes"),
            "{err}"
        );
    }

    /// Judged alone, each part gets the verdict the whole Job gets: valid
    /// and invalid changes alike, in every kind of part.
    #[test]
    fn a_part_judged_alone_agrees_with_the_whole_job() {
        let base: Value =
            serde_json::from_str(&job(json!({"name": "j", "labels": {"a": "b"}}))).unwrap();
        let cases: Vec<(&str, Value)> = vec![
            ("/metadata/labels/team", json!("infra")),
            ("/metadata/labels/team", json!("b c")),
            ("/metadata/labels/team", json!(42)),
            (
                "/metadata/annotations",
                json!({"k": "a".repeat(300 * 1024)}),
            ),
            ("/metadata/annotations", json!({"example.com/x": "y"})),
            ("/spec/template/metadata/labels/app", json!("-bad-")),
            (
                "/spec/template/spec/tolerations",
                json!([{"key": "gpu", "effect": "NoSchedule"}]),
            ),
            (
                "/spec/template/spec/tolerations",
                json!([{"colour": "red"}]),
            ),
            ("/spec/template/spec/tolerations", json!("oops")),
            ("/spec/template/spec/nodeSelector", json!({"disk": "ssd"})),
            ("/spec/template/spec/nodeSelector", json!({"disk": 1})),
            (
                "/spec/template/spec/affinity",
                json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}]}}),
            ),
            (
                "/spec/template/spec/affinity",
                json!({"nodeAffinity": {"preferred": []}}),
            ),
            (
                "/spec/template/spec/imagePullSecrets",
                json!([{"name": "regcred"}]),
            ),
            ("/spec/template/spec/priorityClassName", json!(7)),
            (
                "/spec/template/spec/containers/0/resources",
                json!({"limits": {"cpu": "1"}}),
            ),
            (
                "/spec/template/spec/containers/0/resources",
                json!({"limits": {"cpu": 1}}),
            ),
            (
                "/spec/template/spec/containers/0/resources",
                json!({"limit": {}}),
            ),
        ];
        for (pointer, value) in cases {
            let mut changed = base.clone();
            let keys: Vec<String> = pointer.split('/').skip(1).map(str::to_owned).collect();
            let (last, parent) = keys.split_last().unwrap();
            let parent_pointer: String = parent.iter().map(|k| format!("/{k}")).collect();
            changed.pointer_mut(&parent_pointer).unwrap()[last.as_str()] = value.clone();
            let whole = validate(&changed.to_string());
            assert_eq!(
                ApiServer.parts_valid(&changed, &[keys]),
                whole.is_ok(),
                "{pointer} = {value}: the whole Job: {whole:?}"
            );
        }
    }

    #[test]
    fn a_change_outside_the_known_parts_is_left_to_the_whole_job() {
        let base: Value = serde_json::from_str(&job(json!({"name": "j"}))).unwrap();
        for path in [
            "/spec/template/spec/hostNetwork",
            "/metadata",
            "/spec/template/metadata",
        ] {
            let keys: Vec<String> = path.split('/').skip(1).map(str::to_owned).collect();
            assert!(!ApiServer.parts_valid(&base, &[keys]), "{path}");
        }
    }
}
