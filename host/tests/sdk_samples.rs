//! The plugin SDK's sample Jobs (`plugin_sdk::testing::jobs`) are what `executor render` makes at its default configuration, so a policy that passes its SDK tests admits real jobs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use executor_tests::workspace;
use k8s_openapi::api::batch::v1::Job;
use plugin_sdk::testing::jobs;
use serde_json::Value;

/// The executor name in the samples: the one `plugin_sdk::testing::context()` gives.
const EXECUTOR_NAME: &str = "executor-7d9f-0c4b";

/// Only what a job that clones needs: a route to the repository. Everything
/// else is the executor's default.
const FRONTEND: &[(&str, &str)] = &[
    ("EXECUTOR_FRONTEND_URL", "https://sourcegraph.example.com"),
    ("EXECUTOR_FRONTEND_PASSWORD", "sample-shared-secret"),
    ("EXECUTOR_QUEUE_NAME", "batches"),
];

struct Sample {
    /// The file in `plugin-sdk/src/testing/jobs/` (without `.json`), also the payload's name.
    name: &'static str,
    env: Vec<(&'static str, &'static str)>,
    /// The SDK's accessor for it.
    sdk: fn() -> Job,
}

fn samples() -> Vec<Sample> {
    let with = |extra: &[(&'static str, &'static str)]| {
        FRONTEND.iter().chain(extra).copied().collect::<Vec<_>>()
    };
    vec![
        Sample {
            name: "basic",
            env: vec![("EXECUTOR_QUEUE_NAME", "batches")],
            sdk: jobs::basic,
        },
        Sample {
            name: "clone",
            env: with(&[]),
            sdk: jobs::clone,
        },
        Sample {
            name: "steps",
            env: with(&[]),
            sdk: jobs::steps,
        },
        Sample {
            name: "secrets",
            env: with(&[]),
            sdk: jobs::secrets,
        },
        Sample {
            name: "pvc",
            env: with(&[("KUBERNETES_JOB_VOLUME_TYPE", "pvc")]),
            sdk: jobs::pvc,
        },
    ]
}

fn samples_dir() -> PathBuf {
    workspace().join("plugin-sdk/src/testing/jobs")
}

/// The Job `executor render` makes of `tests/payloads/sdk/<name>.json`, as
/// the pretty JSON the sample files hold.
fn rendered(sample: &Sample) -> String {
    let payload = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/payloads/sdk")
        .join(format!("{}.json", sample.name));
    let out = Command::new(env!("CARGO_BIN_EXE_executor"))
        .args(["render", "-o", "json", "--executor-name", EXECUTOR_NAME])
        .arg("--job")
        .arg(&payload)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOSTNAME", EXECUTOR_NAME)
        .envs(sample.env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render of {} failed: {}",
        payload.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "Job")
        .unwrap()
        .clone();
    serde_json::to_string_pretty(&job).unwrap() + "\n"
}

/// Each sample file equals what the executor renders today. When the Job
/// layout changes on purpose, `UPDATE_SDK_SAMPLES=1 cargo test -p executor
/// --test integration sdk_samples::` rewrites them (review the diff: plugin authors' tests
/// run against these files).
#[test]
fn the_sdk_sample_jobs_are_what_the_executor_renders() {
    let update = std::env::var_os("UPDATE_SDK_SAMPLES").is_some();
    let mut stale = Vec::new();
    for sample in samples() {
        let got = rendered(&sample);
        let path = samples_dir().join(format!("{}.json", sample.name));
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if want != got {
            let diff = similar::TextDiff::from_lines(&want, &got)
                .unified_diff()
                .context_radius(2)
                .header(&path.display().to_string(), "executor render")
                .to_string();
            stale.push(diff);
        }
    }
    assert!(
        stale.is_empty(),
        "the SDK's sample Jobs differ from what the executor renders; plugin authors would test against a stale Job. \
         Rerun with UPDATE_SDK_SAMPLES=1 and review the change:\n{}",
        stale.join("\n")
    );
}

/// The SDK hands out each file under the name the docs give it.
#[test]
fn each_sdk_accessor_returns_its_own_sample() {
    for sample in samples() {
        let text =
            std::fs::read_to_string(samples_dir().join(format!("{}.json", sample.name))).unwrap();
        let file: Job = serde_json::from_str(&text).unwrap();
        assert_eq!((sample.sdk)(), file, "jobs::{}", sample.name);
    }
    assert_eq!(plugin_sdk::testing::job(), jobs::clone());
}

/// The samples cover what the docs promise: steps apart from the
/// executor's containers, real resources, secrets by reference, a PVC.
#[test]
fn the_samples_show_what_policies_meet_in_real_jobs() {
    use plugin_sdk::containers::{self, Role};
    let steps = jobs::steps();
    let roles: Vec<(String, Role)> = containers::all(&steps)
        .map(|c| (c.container.name.clone(), c.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("setup-workspace".to_owned(), Role::Setup),
            ("step-0".into(), Role::Step(0)),
            ("step-1".into(), Role::Step(1)),
            ("step-2".into(), Role::Step(2)),
            ("main".into(), Role::Main),
        ]
    );
    for c in containers::all(&jobs::basic()) {
        let memory = c
            .container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("memory"));
        assert!(
            memory.is_some(),
            "{} has no memory request, but every container the executor renders has one",
            c.container.name
        );
    }
    let secrets = serde_json::to_string(&jobs::secrets()).unwrap();
    assert!(secrets.contains("secretKeyRef") && !secrets.contains("ghp_sample"));
    let pvc = serde_json::to_value(jobs::pvc()).unwrap();
    assert!(pvc["spec"]["template"]["spec"]["volumes"][0]["ephemeral"].is_object());
}
