//! Admission plugin that sets labels and annotations on the Job and its pod template, with placeholders from the job's context.

use std::collections::BTreeMap;

use plugin_sdk::{Admission, Error, Job, JobContext, JobView, Patch, Plugin, Verdict, names};
use serde::{Deserialize, Serialize};

/// Labels and annotations for one object.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Labels to set (values may hold placeholders).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations to set (values may hold placeholders).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The plugin's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Set on the Job itself.
    #[serde(default)]
    pub job: Metadata,
    /// Set on the pod template (and so on the pod).
    #[serde(default)]
    pub pod: Metadata,
    /// Whether to replace a value that is already set (default: true).
    #[serde(default = "yes")]
    pub overwrite: bool,
}

fn yes() -> bool {
    true
}

/// A value with its placeholders split out, parsed once at `init`.
#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Queue,
    JobId,
    Repository,
    Commit,
    Executor,
}

const PLACEHOLDERS: &str = "{{queue}}, {{job_id}}, {{repository}}, {{commit}}, {{executor}}";

fn parse_template(where_: &str, value: &str) -> Result<Vec<Part>, Error> {
    let mut parts = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_owned()));
        }
        let Some(len) = rest[start..].find("}}") else {
            return Err(Error::new(format!(
                "{where_}: unclosed `{{{{` in {value:?}"
            )));
        };
        let name = rest[start + 2..start + len].trim();
        parts.push(match name {
            "queue" => Part::Queue,
            "job_id" => Part::JobId,
            "repository" => Part::Repository,
            "commit" => Part::Commit,
            "executor" => Part::Executor,
            other => {
                return Err(Error::new(format!(
                    "{where_}: unknown placeholder {{{{{other}}}}}; expected one of {PLACEHOLDERS}"
                )));
            }
        });
        rest = &rest[start + len + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(parts)
}

fn render(parts: &[Part], ctx: &JobContext) -> String {
    let mut out = String::new();
    for part in parts {
        out.push_str(match part {
            Part::Text(text) => text,
            Part::Queue => &ctx.queue,
            Part::JobId => &ctx.job_id,
            Part::Repository => ctx.repository.as_deref().unwrap_or(""),
            Part::Commit => ctx.commit.as_deref().unwrap_or(""),
            Part::Executor => &ctx.executor_name,
        });
    }
    out
}

/// Checks a label or annotation key.
fn check_key(where_: &str, key: &str) -> Result<(), Error> {
    if names::label_key(key).is_ok() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "{where_}: {key:?} is not a valid key; expected an optional DNS subdomain prefix and '/', \
             then at most 63 characters of [A-Za-z0-9._-] starting and ending with a letter or digit"
        )))
    }
}

/// Turns a rendered value into a valid label value: characters outside
/// `[A-Za-z0-9._-]` become `_`, the ends are trimmed to alphanumerics and the
/// result is cut to 63 characters. Returns whether anything changed.
fn label_value(value: &str) -> (String, bool) {
    let mapped: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut out = mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    if out.len() > 63 {
        out.truncate(63);
        out = out
            .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
            .to_owned();
    }
    let changed = out != value;
    (out, changed)
}

struct Target {
    labels: Vec<(String, Vec<Part>)>,
    annotations: Vec<(String, Vec<Part>)>,
}

impl Target {
    fn build(which: &str, meta: Metadata) -> Result<Target, Error> {
        let compile = |kind: &str, map: BTreeMap<String, String>| {
            map.into_iter()
                .map(|(key, value)| {
                    let where_ = format!("{which}.{kind}.{key}");
                    check_key(&where_, &key)?;
                    Ok((key, parse_template(&where_, &value)?))
                })
                .collect::<Result<Vec<_>, Error>>()
        };
        Ok(Target {
            labels: compile("labels", meta.labels)?,
            annotations: compile("annotations", meta.annotations)?,
        })
    }

    fn apply(
        &self,
        which: &str,
        meta: &mut Meta,
        ctx: &JobContext,
        overwrite: bool,
        warnings: &mut Vec<String>,
    ) {
        let set = |map: &mut BTreeMap<String, String>, key: &str, value: String| {
            if overwrite || !map.contains_key(key) {
                map.insert(key.to_owned(), value);
            }
        };
        if !self.labels.is_empty() {
            let labels = meta.labels.get_or_insert_default();
            for (key, parts) in &self.labels {
                let rendered = render(parts, ctx);
                let (value, changed) = label_value(&rendered);
                if changed {
                    warnings.push(format!(
                        "{which} label {key}: {rendered:?} is not a valid label value, set as {value:?}"
                    ));
                }
                set(labels, key, value);
            }
        }
        if !self.annotations.is_empty() {
            let annotations = meta.annotations.get_or_insert_default();
            for (key, parts) in &self.annotations {
                set(annotations, key, render(parts, ctx));
            }
        }
    }
}

/// The plugin: compiled settings.
pub struct Annotate {
    job: Target,
    pod: Target,
    overwrite: bool,
}

impl Plugin for Annotate {
    type Settings = Settings;

    fn init(settings: Settings) -> Result<Self, Error> {
        Ok(Annotate {
            job: Target::build("job", settings.job)?,
            pod: Target::build("pod", settings.pod)?,
            overwrite: settings.overwrite,
        })
    }
}

/// The labels and annotations of an object: all the plugin reads of a Job.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
}

/// The parts of the Job the plugin reads, in one parse.
#[derive(Default, Deserialize)]
struct Doc {
    metadata: Option<Meta>,
    spec: Option<Spec>,
}

#[derive(Default, Deserialize)]
struct Spec {
    template: Option<Template>,
}

#[derive(Default, Deserialize)]
struct Template {
    metadata: Option<Meta>,
}

impl Admission for Annotate {
    fn admit(&self, ctx: &JobContext, job: &mut Job) -> Result<Verdict, Error> {
        plugin_sdk::admit_by_review(self, ctx, job)
    }

    fn review(
        &self,
        ctx: &JobContext,
        job: &JobView<'_>,
        patch: &mut Patch,
    ) -> Result<Verdict, Error> {
        let doc: Doc = job.get("")?.unwrap_or_default();
        let mut warnings = Vec::new();
        let mut meta = doc.metadata.clone().unwrap_or_default();
        self.job
            .apply("job", &mut meta, ctx, self.overwrite, &mut warnings);
        patch.diff("/metadata", doc.metadata.as_ref(), &meta)?;
        if !self.pod.labels.is_empty() || !self.pod.annotations.is_empty() {
            let before = doc.spec.and_then(|s| s.template).and_then(|t| t.metadata);
            let mut meta = before.clone().unwrap_or_default();
            self.pod
                .apply("pod", &mut meta, ctx, self.overwrite, &mut warnings);
            patch.diff("/spec/template/metadata", before.as_ref(), &meta)?;
        }
        Ok(Verdict::allow().with_warnings(warnings))
    }
}

plugin_sdk::export_plugin!(Annotate: admission);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{Harness, context, job};
    use serde_json::json;

    fn admit(settings: serde_json::Value) -> plugin_sdk::testing::Admitted {
        let h = Harness::<Annotate>::new(settings).unwrap();
        h.admit(&context(), &job()).unwrap()
    }

    #[test]
    fn sets_job_and_pod_metadata_with_placeholders() {
        let out = admit(json!({
            "job": {"annotations": {"acme.com/source": "{{repository}}@{{commit}}"}, "labels": {"team": "infra"}},
            "pod": {"labels": {"acme.com/queue": "{{queue}}-{{job_id}}"}}
        }));
        assert!(out.allowed && out.mutated);
        let annotations = out.job.metadata.annotations.unwrap();
        assert_eq!(
            annotations["acme.com/source"],
            "github.com/acme/api@3f5c9a1e2b7d4c8e9f0a1b2c3d4e5f60718293a4"
        );
        assert_eq!(out.job.metadata.labels.unwrap()["team"], "infra");
        let pod_labels = out
            .job
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .labels
            .unwrap();
        assert_eq!(pod_labels["acme.com/queue"], "batches-42");
    }

    #[test]
    fn invalid_label_values_are_made_valid_with_a_warning() {
        let out = admit(json!({"job": {"labels": {"repo": "{{repository}}"}}}));
        assert_eq!(
            out.job.metadata.labels.unwrap()["repo"],
            "github.com_acme_api"
        );
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    }

    #[test]
    fn overwrite_false_keeps_existing_values() {
        let out = admit(
            json!({"overwrite": false, "job": {"labels": {"executor.sourcegraph.com/queue": "x", "new": "y"}}}),
        );
        let labels = out.job.metadata.labels.unwrap();
        assert_eq!(labels["executor.sourcegraph.com/queue"], "batches");
        assert_eq!(labels["new"], "y");
    }

    #[test]
    fn no_settings_means_no_change() {
        let h = Harness::<Annotate>::from_json("null").unwrap();
        let out = h.admit(&context(), &job()).unwrap();
        assert!(out.allowed && !out.mutated);
    }

    #[test]
    fn bad_settings_are_refused_with_the_offending_value() {
        let err = Harness::<Annotate>::new(json!({"job": {"labels": {"x": "{{branch}}"}}}))
            .err()
            .unwrap();
        assert!(
            err.message()
                .contains("job.labels.x: unknown placeholder {{branch}}"),
            "{err}"
        );
        let err = Harness::<Annotate>::new(json!({"pod": {"annotations": {"-bad": "v"}}}))
            .err()
            .unwrap();
        assert!(err.message().contains("pod.annotations.-bad"), "{err}");
        let err = Harness::<Annotate>::new(json!({"jobs": {}})).err().unwrap();
        assert!(err.message().contains("unknown field `jobs`"), "{err}");
    }
}
