//! Whether a Job document is one the API server would accept, judged as it would (typed decoding without unknown fields, then the metadata rules), so that a plugin's bad change is caught where it is made.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_rules::metadata;

use crate::config::parse::strict_json;

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
}
