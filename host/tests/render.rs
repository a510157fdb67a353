//! `executor render` as an operator runs it: configuration from the environment, a payload file, golden output, and every object valid against the official Kubernetes schemas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use executor_tests::{components, plugin_cache_home, schemas};
use serde_json::Value;

const EXECUTOR_NAME: &str = "executor-7d9f4c6b5-x2k8p";

fn payload(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/payloads")
        .join(name)
}

/// Runs `executor render` with only `env` as its environment (plus PATH), so
/// that the caller's own `EXECUTOR_*` variables cannot leak in.
fn render(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_executor"))
        .arg("render")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOSTNAME", "executor-7d9f8-abcde")
        .env("XDG_CACHE_HOME", plugin_cache_home())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn list(out: &Output) -> Value {
    assert!(out.status.success(), "render failed: {}", stderr(out));
    serde_norway::from_slice(&out.stdout).unwrap()
}

const SOURCEGRAPH: &[(&str, &str)] = &[
    ("EXECUTOR_FRONTEND_URL", "https://sourcegraph.example.com"),
    ("EXECUTOR_FRONTEND_PASSWORD", "shared-secret-for-queue"),
    ("EXECUTOR_QUEUE_NAME", "batches"),
];

/// Every Kubernetes variable set, to the values an operator might use.
const EVERYTHING: &[(&str, &str)] = &[
    ("EXECUTOR_KUBERNETES_NODE_SELECTOR", "pool=ci, disk=ssd"),
    (
        "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_EXPRESSIONS",
        r#"[{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]"#,
    ),
    (
        "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_FIELDS",
        r#"[{"key": "metadata.name", "operator": "NotIn", "values": ["control-plane-1"]}]"#,
    ),
    (
        "EXECUTOR_KUBERNETES_POD_AFFINITY",
        r#"[{"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["registry-cache"]}]}, "topologyKey": "kubernetes.io/hostname"}]"#,
    ),
    (
        "EXECUTOR_KUBERNETES_POD_ANTI_AFFINITY",
        r#"[{"labelSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "executor"}}, "topologyKey": "kubernetes.io/hostname"}]"#,
    ),
    (
        "EXECUTOR_KUBERNETES_NODE_TOLERATIONS",
        r#"[{"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}]"#,
    ),
    ("EXECUTOR_KUBERNETES_NAMESPACE", "ci-jobs"),
    ("EXECUTOR_POD_NAME", "executor-7d9f8-abcde"),
    ("EXECUTOR_POD_UID", "0b6d3f5e-2f4c-4c1e-9d3a-6f1e2a7b8c9d"),
    ("EXECUTOR_KUBERNETES_RESOURCE_LIMIT_CPU", "4"),
    ("EXECUTOR_KUBERNETES_RESOURCE_LIMIT_MEMORY", "8Gi"),
    ("EXECUTOR_KUBERNETES_RESOURCE_REQUEST_CPU", "1500m"),
    ("EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY", "4Gi"),
    ("KUBERNETES_JOB_DEADLINE", "3600"),
    ("KUBERNETES_RUN_AS_USER", "1000"),
    ("KUBERNETES_RUN_AS_GROUP", "1000"),
    ("KUBERNETES_FS_GROUP", "2000"),
    ("KUBERNETES_KEEP_JOBS", "true"),
    (
        "KUBERNETES_JOB_ANNOTATIONS",
        r#"{"acme.com/cost-center": "platform"}"#,
    ),
    (
        "KUBERNETES_JOB_POD_ANNOTATIONS",
        r#"{"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}"#,
    ),
    (
        "KUBERNETES_IMAGE_PULL_SECRETS",
        "dockerhub-mirror, ghcr-pull",
    ),
    ("KUBERNETES_JOB_VOLUME_SIZE", "20Gi"),
    (
        "KUBERNETES_ADDITIONAL_JOB_VOLUMES",
        r#"[{"name": "ca-certs", "configMap": {"name": "corporate-ca"}}]"#,
    ),
    (
        "KUBERNETES_ADDITIONAL_JOB_VOLUME_MOUNTS",
        r#"[{"name": "ca-certs", "mountPath": "/etc/ssl/certs/corporate", "readOnly": true}]"#,
    ),
    (
        "KUBERNETES_SINGLE_JOB_STEP_IMAGE",
        "registry.acme.com/executor-helper:1.4",
    ),
];

struct Golden {
    name: &'static str,
    env: Vec<(&'static str, &'static str)>,
    payload: &'static str,
}

fn goldens() -> Vec<Golden> {
    vec![
        Golden {
            name: "example-defaults",
            env: SOURCEGRAPH.to_vec(),
            payload: "example.json",
        },
        Golden {
            name: "full-everything",
            env: SOURCEGRAPH.iter().chain(EVERYTHING).copied().collect(),
            payload: "full.json",
        },
        Golden {
            name: "short-embedded-pvc",
            env: vec![("KUBERNETES_JOB_VOLUME_TYPE", "pvc")],
            payload: "short.json",
        },
    ]
}

/// The rendered YAML equals `tests/golden/<name>.yaml`; `UPDATE_GOLDEN=1`
/// rewrites the files (review the diff before committing it).
#[test]
fn rendered_objects_match_the_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for g in goldens() {
        let out = render(
            &g.env,
            &[
                "--job",
                payload(g.payload).to_str().unwrap(),
                "--executor-name",
                EXECUTOR_NAME,
            ],
        );
        assert!(out.status.success(), "{}: {}", g.name, stderr(&out));
        let got = String::from_utf8(out.stdout).unwrap();
        let path = dir.join(format!("{}.yaml", g.name));
        if update {
            std::fs::write(&path, &got).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(got.as_str()) {
            stale.push(format!("{}:\n{got}", path.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "rendered output differs from the golden file(s); rerun with UPDATE_GOLDEN=1 if intended:\n{}",
        stale.join("\n")
    );
}

/// Every object of every golden configuration, masked and not, after
/// plugins too, is valid for the API server's schema with no unknown field.
#[test]
fn rendered_objects_validate_against_the_kubernetes_schemas() {
    let schemas = schemas::kubernetes();
    let plugins = plugins_config(&tempfile::tempdir().unwrap().keep());
    for g in goldens() {
        for extra in [
            &["-o", "json"][..],
            &["-o", "json", "--show-secrets"],
            &["-o", "json", "--plugins", plugins.to_str().unwrap()],
        ] {
            let file = payload(g.payload);
            let mut args = vec!["--job", file.to_str().unwrap()];
            args.extend_from_slice(extra);
            let out = render(&g.env, &args);
            let doc: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{} {extra:?}: {e}\n{}", g.name, stderr(&out)));
            assert_eq!(
                (doc["apiVersion"].as_str(), doc["kind"].as_str()),
                (Some("v1"), Some("List"))
            );
            for item in doc["items"].as_array().unwrap() {
                let problems = schemas.violations(item);
                assert!(
                    problems.is_empty(),
                    "{} {extra:?}: {} {} is invalid:\n{}",
                    g.name,
                    item["kind"],
                    item["metadata"]["name"],
                    problems.join("\n")
                );
            }
        }
    }
}

#[test]
fn the_schemas_catch_what_the_api_server_would_refuse() {
    // Guards the guard: an unknown field and a wrong type are reported.
    let schemas = schemas::kubernetes();
    let out = render(
        SOURCEGRAPH,
        &[
            "--job",
            payload("example.json").to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    let mut job = list(&out)["items"][1].clone();
    assert!(schemas.violations(&job).is_empty());
    job["spec"]["template"]["spec"]["nodeSelecter"] = serde_json::json!({});
    job["spec"]["backoffLimit"] = serde_json::json!("zero");
    let problems = schemas.violations(&job).join("\n");
    assert!(problems.contains("nodeSelecter"), "{problems}");
    assert!(problems.contains("/spec/backoffLimit"), "{problems}");
}

fn plugins_config(dir: &Path) -> PathBuf {
    let c = components();
    let path = dir.join("plugins.yaml");
    std::fs::write(
        &path,
        format!(
            r#"plugins:
  - name: annotate
    path: {annotate}
    settings:
      job:
        annotations:
          acme.com/source: "{{{{repository}}}}@{{{{commit}}}}"
  - name: scheduling-policy
    path: {scheduling}
    settings:
      rules:
        - name: tools-on-their-pool
          match: {{images: ["ghcr.io/acme/**"]}}
          nodeSelector: {{pool: tools}}
      allowedRegistries: [docker.io, ghcr.io/acme, registry.acme.com]
  - name: pull-secrets
    path: {pull}
    settings:
      registries:
        - {{registry: ghcr.io, secrets: [ghcr-pull]}}
"#,
            annotate = c.path("annotate").display(),
            scheduling = c.path("scheduling-policy").display(),
            pull = c.path("pull-secrets").display(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn plugins_change_the_job_the_trail_goes_to_stderr_and_invariants_hold() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugins_config(dir.path());
    let env: Vec<(&str, &str)> = SOURCEGRAPH
        .iter()
        .copied()
        .chain([("EXECUTOR_PLUGINS_CONFIG", plugins.to_str().unwrap())])
        .collect();
    let out = render(
        &env,
        &[
            "--job",
            payload("full.json").to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    let doc = list(&out);
    let job = &doc["items"][2];
    assert_eq!(
        job["metadata"]["annotations"]["acme.com/source"],
        "github.com/acme/monorepo@a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
    );
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["pool"], "tools");
    let pulls: Vec<&str> = pod["imagePullSecrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(pulls, ["sg-executor-batches-88-registry", "ghcr-pull"]);
    let err = stderr(&out);
    for needle in [
        "annotate",
        "scheduling-policy",
        "pull-secrets",
        "decision: allowed",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in stderr:\n{err}");
    }
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("decision"),
        "the trail stays off stdout"
    );
}

#[test]
fn a_denied_job_exits_non_zero_with_the_plugins_message() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugins_config(dir.path());
    let denied = dir.path().join("denied.json");
    std::fs::write(
        &denied,
        r#"{"id": 9, "dockerSteps": [{"image": "quay.io/evil/miner:1", "commands": ["mine"]}]}"#,
    )
    .unwrap();
    let out = render(
        &[("EXECUTOR_PLUGINS_CONFIG", plugins.to_str().unwrap())],
        &["--job", denied.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("denied by plugin `scheduling-policy`"),
        "{err}"
    );
    assert!(err.contains("quay.io/evil/miner:1"), "{err}");
    assert!(out.stdout.is_empty(), "nothing to create, nothing printed");
}

#[test]
fn bad_configuration_lists_every_problem_and_creates_nothing() {
    let out = render(
        &[
            ("EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY", "16Gi"),
            ("EXECUTOR_KUBERNETES_NAMESPACE", "CI_Jobs"),
            ("KUBERNETES_JOB_VOLUME_SIZE", "lots"),
        ],
        &["--job", payload("short.json").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for needle in [
        "3 problem(s)",
        "EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY: \"16Gi\" is above its limit \"12Gi\"",
        "EXECUTOR_KUBERNETES_NAMESPACE: \"CI_Jobs\" is not a namespace name",
        "KUBERNETES_JOB_VOLUME_SIZE: \"lots\" is not a Kubernetes quantity",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn jobs_that_cannot_run_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"id": 1, "cliSteps": [{"command": ["src", "batch", "exec"]}]}"#,
            2,
            "src-cli step(s) (`cliSteps`), which do not run on Kubernetes",
        ),
        (
            r#"{"id": 1, "files": {"../../etc/cron.d/x": {"content": "x"}}}"#,
            2,
            "workspace file \"../../etc/cron.d/x\" leaves the workspace",
        ),
        (
            r#"{"id": 1, "dockerSteps": [{"commands": ["make"]}]}"#,
            2,
            "docker step 0 (step.0) has no image",
        ),
        (r#"{"id": 1, "dockerSteps": "#, 2, "is not valid JSON"),
        (r#"{"dockerSteps": []}"#, 2, "`id` is missing"),
        (
            r#"{"id": 1, "repositoryName": "github.com/a/b", "commit": "abc123"}"#,
            1,
            "no route to it is configured; set EXECUTOR_FRONTEND_URL",
        ),
    ];
    for (i, (text, code, needle)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("{i}.json"));
        std::fs::write(&path, text).unwrap();
        let out = render(&[], &["--job", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(*code), "{text}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{text}: expected {needle:?} in {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn the_queue_comes_from_the_payload_else_the_configured_queue() {
    let short = payload("short.json");
    let name = |env: &[(&str, &str)]| {
        list(&render(
            env,
            &["--job", short.to_str().unwrap(), "-o", "json"],
        ))["items"][1]["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(name(&[]), "sg-executor-default-7");
    assert_eq!(
        name(&[("EXECUTOR_QUEUE_NAME", "codeintel")]),
        "sg-executor-codeintel-7"
    );
}

#[test]
fn secrets_are_masked_unless_asked_for() {
    let example = payload("example.json");
    let masked = render(
        SOURCEGRAPH,
        &["--job", example.to_str().unwrap(), "-o", "json"],
    );
    let text = String::from_utf8_lossy(&masked.stdout).into_owned();
    assert!(
        !text.contains("9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c1b3d5f70") && !text.contains("ghp_secret")
    );
    assert_eq!(
        list(&masked)["items"][0]["stringData"]["token"],
        "<masked: 40 bytes>"
    );
    let shown = list(&render(
        SOURCEGRAPH,
        &[
            "--job",
            example.to_str().unwrap(),
            "-o",
            "json",
            "--show-secrets",
        ],
    ));
    // 40 hex characters, base64-encoded as the API expects.
    assert_eq!(
        shown["items"][0]["data"]["token"],
        "OWYyYzRlNmE4YjBkMWYzZTVhN2M5YjFkM2Y1ZTdhOWMxYjNkNWY3MA=="
    );
}
