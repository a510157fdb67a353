//! The labels and annotations of the Job and of its pod, created when absent, so that a plugin adds one in one line.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;

/// The Job's own labels.
pub fn labels_mut(job: &mut Job) -> &mut BTreeMap<String, String> {
    job.metadata.labels.get_or_insert_default()
}

/// The Job's own annotations.
pub fn annotations_mut(job: &mut Job) -> &mut BTreeMap<String, String> {
    job.metadata.annotations.get_or_insert_default()
}

/// The pod's labels (`spec.template.metadata.labels`): what node and pod
/// selectors, NetworkPolicies and cost tools see.
pub fn pod_labels_mut(job: &mut Job) -> &mut BTreeMap<String, String> {
    pod_metadata(job).labels.get_or_insert_default()
}

/// The pod's annotations (`spec.template.metadata.annotations`): what the
/// cluster autoscaler, service meshes and other admission webhooks read.
pub fn pod_annotations_mut(job: &mut Job) -> &mut BTreeMap<String, String> {
    pod_metadata(job).annotations.get_or_insert_default()
}

fn pod_metadata(job: &mut Job) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    job.spec
        .get_or_insert_default()
        .template
        .metadata
        .get_or_insert_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_labels_and_annotations_are_made_where_absent_and_kept_where_present() {
        let mut job = crate::testing::jobs::basic();
        pod_labels_mut(&mut job).insert("team".into(), "infra".into());
        pod_annotations_mut(&mut job).insert("a".into(), "b".into());
        annotations_mut(&mut job).insert("c".into(), "d".into());
        let meta = job
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap();
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "infra");
        assert_eq!(
            labels["executor.sourcegraph.com/job-id"], "42",
            "the executor's labels stay"
        );
        assert_eq!(meta.annotations.as_ref().unwrap()["a"], "b");
        assert_eq!(job.metadata.annotations.as_ref().unwrap()["c"], "d");

        let mut empty = Job::default();
        labels_mut(&mut empty).insert("x".into(), "y".into());
        pod_labels_mut(&mut empty).insert("x".into(), "y".into());
        assert_eq!(empty.metadata.labels.unwrap()["x"], "y");
    }
}
