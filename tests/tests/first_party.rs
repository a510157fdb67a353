//! The first-party plugins as the executor runs them: built components, through the host, on a realistic Job and log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ctx, load, spec};
use executor::k8s::spec::validate;
use executor::plugins::{Decision, LogRecord, Step, Stream};
use executor_tests::realistic_job;
use serde_json::json;

fn chain() -> executor::plugins::Plugins {
    load(vec![
        spec(
            "annotate",
            json!({
                "job": {"annotations": {"acme.com/source": "{{repository}}@{{commit}}"}},
                "pod": {"labels": {"acme.com/queue": "{{queue}}"}}
            }),
        ),
        spec(
            "scheduling-policy",
            json!({
                "rules": [{"match": {"images": ["ghcr.io/acme/**"]},
                           "nodeSelector": {"pool": "linters"},
                           "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}]}],
                "allowedRegistries": ["docker.io", "ghcr.io/acme"]
            }),
        ),
        spec(
            "pull-secrets",
            json!({"registries": [{"registry": "ghcr.io", "secrets": ["ghcr-pull"]}]}),
        ),
    ])
}

#[test]
fn the_admission_chain_applies_each_plugin_in_scope() {
    let out = chain().admit(&ctx(), realistic_job(), &validate);
    assert!(out.allowed(), "{:?}", out.message());
    let job = &out.job;
    assert_eq!(
        job["metadata"]["annotations"]["acme.com/source"],
        "github.com/acme/api@3f5c9a1e2b7d4c8e9f0a1b2c3d4e5f60718293a4"
    );
    let pod = &job["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["acme.com/queue"], "batches");
    assert_eq!(pod["spec"]["nodeSelector"]["pool"], "linters");
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "dedicated");
    assert_eq!(
        pod["spec"]["imagePullSecrets"],
        json!([{"name": "ghcr-pull"}])
    );
    let steps: Vec<_> = out
        .trail
        .iter()
        .map(|t| (t.plugin.as_str(), t.step.clone()))
        .collect();
    assert_eq!(
        steps,
        [
            ("annotate", Step::Mutated),
            ("scheduling-policy", Step::Mutated),
            ("pull-secrets", Step::Mutated)
        ]
    );
    // Everything else is untouched: undo the three patches and the original comes back.
    let mut undone = job.clone();
    for path in [
        "/metadata/annotations/acme.com~1source",
        "/spec/template/metadata/labels/acme.com~1queue",
        "/spec/template/spec/nodeSelector",
        "/spec/template/spec/tolerations",
        "/spec/template/spec/imagePullSecrets",
    ] {
        let (parent, key) = path.rsplit_once('/').unwrap();
        undone
            .pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(&key.replace("~1", "/"));
    }
    assert_eq!(undone, realistic_job());
}

#[test]
fn an_image_from_another_registry_is_denied_by_name() {
    let mut job = realistic_job();
    job["spec"]["template"]["spec"]["initContainers"][2]["image"] = json!("quay.io/evil/miner:1");
    let out = chain().admit(&ctx(), job, &validate);
    let Decision::Denied { plugin, message } = &out.decision else {
        panic!("{:?}", out.decision)
    };
    assert_eq!(plugin, "scheduling-policy");
    assert!(
        message.contains("\"quay.io/evil/miner:1\"") && message.contains("\"step-1\""),
        "{message}"
    );
    assert_eq!(out.trail.len(), 2, "pull-secrets must not run after a deny");
}

#[test]
fn redact_masks_secrets_in_the_log_across_batches() {
    let plugins = load(vec![spec(
        "redact",
        json!({"literals": ["hunter2"], "dropLines": ["^TRACE "]}),
    )]);
    let mut session = plugins.log_session(ctx());
    let batch = |texts: &[&str]| {
        texts
            .iter()
            .map(|t| LogRecord {
                stream: Stream::Stderr,
                text: (*t).into(),
            })
            .collect()
    };
    let first = session
        .filter(
            "step.kubernetes.step.0",
            batch(&[
                "login with hunter2",
                "TRACE noise",
                "AKIAIOSFODNN7EXAMPLE",
                "-----BEGIN OPENSSH PRIVATE KEY-----",
            ]),
        )
        .unwrap();
    let second = session
        .filter(
            "step.kubernetes.step.0",
            batch(&[
                "b3BlbnNzaC1rZXk",
                "-----END OPENSSH PRIVATE KEY-----",
                "done",
            ]),
        )
        .unwrap();
    let text: Vec<&str> = first
        .iter()
        .chain(&second)
        .map(|r| r.text.as_str())
        .collect();
    assert_eq!(
        text,
        [
            "login with [REDACTED]",
            "[REDACTED]",
            "[REDACTED]",
            "[REDACTED]",
            "[REDACTED]",
            "done"
        ]
    );
    assert!(
        first.iter().all(|r| r.stream == Stream::Stderr),
        "the stream is kept"
    );
}
