//! An operator's configuration as the real binary takes it: the seed's own names, Sourcegraph's log settings, warnings for what it does not read, and `executor config`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn payload(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/payloads")
        .join(name)
}

/// `executor <args>` with only `env` as its environment (plus PATH), so
/// that the caller's own `EXECUTOR_*` variables cannot leak in.
fn executor(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_executor"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOSTNAME", "executor-7d9f8-abcde")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The images of the rendered Job's setup and main containers.
fn helper_images(out: &Output) -> (String, String) {
    assert!(out.status.success(), "render failed: {}", stderr(out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "Job")
        .unwrap();
    let pod = &job["spec"]["template"]["spec"];
    (
        pod["initContainers"][0]["image"]
            .as_str()
            .unwrap()
            .to_owned(),
        pod["containers"][0]["image"].as_str().unwrap().to_owned(),
    )
}

fn render(env: &[(&str, &str)]) -> Output {
    let job = payload("short.json");
    executor(
        env,
        &["render", "-o", "json", "--job", job.to_str().unwrap()],
    )
}

#[test]
fn the_seeds_name_for_the_step_image_reaches_the_job() {
    let seed = (
        "KUBERNETES_SINGLE_JOB_STEP_IMAGE",
        "registry.acme.com/helper:2",
    );
    let earlier = ("KUBERNETES_JOB_STEP_IMAGE", "registry.acme.com/helper:1");
    let image = |name: &str| (name.to_owned(), name.to_owned());

    assert_eq!(
        helper_images(&render(&[seed])),
        image("registry.acme.com/helper:2")
    );
    assert_eq!(
        helper_images(&render(&[earlier])),
        image("registry.acme.com/helper:1"),
        "the earlier name still works"
    );
    let both = render(&[seed, earlier]);
    assert_eq!(helper_images(&both), image("registry.acme.com/helper:2"));
    assert!(
        stderr(&both).contains("warning: KUBERNETES_JOB_STEP_IMAGE=\"registry.acme.com/helper:1\" is ignored: KUBERNETES_SINGLE_JOB_STEP_IMAGE=\"registry.acme.com/helper:2\" is set too"),
        "{}",
        stderr(&both)
    );
    assert_eq!(
        helper_images(&render(&[])),
        image("sourcegraph/batcheshelper:insiders")
    );
}

#[test]
fn a_command_that_runs_jobs_warns_about_variables_it_does_not_read() {
    let out = render(&[
        ("EXECUTOR_MAXIMUM_NUM_JOB", "8"),
        ("EXECUTOR_USE_FIRECRACKER", "true"),
        ("KUBERNETES_SINGLE_JOB_POD", "false"),
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for needle in [
        "warning: EXECUTOR_MAXIMUM_NUM_JOB is not a variable this executor knows; did you mean EXECUTOR_MAXIMUM_NUM_JOBS?",
        "warning: EXECUTOR_USE_FIRECRACKER is ignored: only Sourcegraph's VM and Docker executors read it",
        "warning: KUBERNETES_SINGLE_JOB_POD=false is ignored: this executor runs each job as one pod",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(
        !err.contains("KUBERNETES_SERVICE_HOST") && !err.contains("KUBERNETES_PORT_443_TCP"),
        "the kubelet's own variables are not the operator's mistakes:\n{err}"
    );
}

/// `executor config -o json`'s settings, by variable.
fn settings(out: &Output) -> std::collections::BTreeMap<String, Value> {
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", stderr(out)));
    doc["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["variable"].as_str().unwrap().to_owned(), s.clone()))
        .collect()
}

#[test]
fn config_shows_every_setting_its_value_and_where_it_came_from_with_secrets_masked() {
    let out = executor(
        &[
            ("EXECUTOR_FRONTEND_URL", "https://sourcegraph.example.com"),
            ("EXECUTOR_FRONTEND_PASSWORD", "hunter2-shared-secret"),
            ("EXECUTOR_QUEUE_NAME", "batches"),
            ("KUBERNETES_JOB_STEP_IMAGE", "registry.acme.com/helper:1"),
            ("SRC_LOG_FORMAT", "json"),
        ],
        &["config", "-o", "json", "--maximum-num-jobs", "4"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("hunter2"), "the secret is masked: {text}");
    let s = settings(&out);
    let row = |v: &str| {
        let r = &s[v];
        (r["value"].clone(), r["source"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        row("EXECUTOR_FRONTEND_PASSWORD"),
        ("***".into(), "environment".into())
    );
    assert_eq!(
        row("EXECUTOR_MAXIMUM_NUM_JOBS"),
        ("4".into(), "flag".into())
    );
    assert_eq!(
        row("EXECUTOR_KUBERNETES_NAMESPACE"),
        ("default".into(), "default".into())
    );
    assert_eq!(row("SRC_LOG_FORMAT"), ("json".into(), "environment".into()));
    assert_eq!(
        row("EXECUTOR_KUBERNETES_NODE_NAME"),
        (Value::Null, "default".into())
    );
    // The step image in force, and the name it was given under.
    assert_eq!(
        row("KUBERNETES_SINGLE_JOB_STEP_IMAGE"),
        ("registry.acme.com/helper:1".into(), "environment".into())
    );
    assert_eq!(
        s["KUBERNETES_SINGLE_JOB_STEP_IMAGE"]["via"],
        "KUBERNETES_JOB_STEP_IMAGE"
    );
    // Whose each name is.
    assert_eq!(s["KUBERNETES_SINGLE_JOB_POD"]["origin"], "seed");
    assert_eq!(s["SRC_LOG_LEVEL"]["origin"], "sourcegraph");
    assert_eq!(s["EXECUTOR_DRAIN_TIMEOUT"]["origin"], "executor");

    // The table says the same for people.
    let table = executor(
        &[("EXECUTOR_FRONTEND_PASSWORD", "hunter2-shared-secret")],
        &["config", "--namespace", "ci"],
    );
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(!text.contains("hunter2"), "{text}");
    let line = |v: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{v} ")))
            .unwrap_or_else(|| panic!("no {v} in:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("EXECUTOR_KUBERNETES_NAMESPACE"),
        "EXECUTOR_KUBERNETES_NAMESPACE seed ci flag (--namespace)"
    );
    assert_eq!(
        line("EXECUTOR_FRONTEND_PASSWORD"),
        "EXECUTOR_FRONTEND_PASSWORD Sourcegraph *** environment"
    );
    assert_eq!(
        line("KUBERNETES_JOB_DEADLINE"),
        "KUBERNETES_JOB_DEADLINE seed 1200 default"
    );
}

#[test]
fn config_exits_2_listing_every_problem_as_serve_would() {
    let env = [
        ("EXECUTOR_MAXIMUM_NUM_JOBS", "0"),
        ("SRC_LOG_LEVEL", "verbose"),
        ("SRC_LOG_FORMAT", "xml"),
    ];
    let out = executor(&env, &["config"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for needle in [
        "invalid configuration (3 problem(s))",
        "EXECUTOR_MAXIMUM_NUM_JOBS: \"0\" is out of range",
        "SRC_LOG_LEVEL: \"verbose\" is not a log level; expected one of dbug, info, warn, eror, crit",
        "SRC_LOG_FORMAT: \"xml\" is not a log format",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let serve = executor(&env, &["serve"]);
    assert_eq!(serve.status.code(), Some(2));
    assert!(
        stderr(&serve).contains("invalid configuration (3 problem(s))"),
        "{}",
        stderr(&serve)
    );

    let json = executor(&env, &["config", "-o", "json"]);
    assert_eq!(json.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["problems"].as_array().unwrap().len(), 3, "{doc}");
}

#[tokio::test]
async fn json_logs_of_a_job_carry_the_executor_name_job_id_and_queue() {
    let sim = sim::Sim::start("127.0.0.1:0".parse().unwrap(), sim::Options::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig()).unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        r#"{"id": 31, "dockerSteps": [{"key": "hello", "image": "alpine:3", "dir": "", "env": [], "commands": ["echo hello"]}]}"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_executor"))
        .args(["run", "--queue", "batches", "--job"])
        .arg(&job)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOSTNAME", "executor-json-logs")
        .env("EXECUTOR_DATA_DIR", &state)
        .env("SRC_LOG_FORMAT", "json")
        .env("SRC_LOG_LEVEL", "info")
        .output()
        .await
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    // `run` prints its entries' headers for people; the log's lines are JSON.
    let lines: Vec<Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let creating = lines
        .iter()
        .find(|l| l["message"] == "creating")
        .unwrap_or_else(|| panic!("no `creating` event in:\n{err}"));
    assert_eq!(creating["job.id"], 31, "{creating}");
    assert_eq!(creating["job.queue"], "batches", "{creating}");
    assert!(
        creating["executor.name"]
            .as_str()
            .unwrap()
            .starts_with("executor-json-logs-"),
        "{creating}"
    );
    assert_eq!(creating["level"], "INFO");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "done" && l["job.id"] == 31),
        "{err}"
    );
}

#[test]
fn serve_with_json_logs_says_its_start_as_json_lines_and_keeps_the_generated_token_out() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins.yaml");
    std::fs::write(&plugins, "plugins: []\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_executor"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("EXECUTOR_DATA_DIR", dir.path())
        // Killed below, it cannot remove its simulator's kubelet directory:
        // keep that in this test's.
        .env("TMPDIR", dir.path())
        .env("EXECUTOR_PLUGINS_CONFIG", &plugins)
        .env("EXECUTOR_LISTEN", "127.0.0.1:0")
        .env("EXECUTOR_DEBUG_LISTEN", "127.0.0.1:0")
        .env("EXECUTOR_MAXIMUM_NUM_JOB", "2")
        .env("SRC_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let last = line.contains("plugins:");
        said.push(line);
        if last {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let events: Vec<Value> = said
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default())
        .collect();
    assert!(
        events.iter().any(|e| e["level"] == "WARN"
            && e["message"]
                .as_str()
                .unwrap()
                .contains("did you mean EXECUTOR_MAXIMUM_NUM_JOBS?")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("queue:")),
        "{messages:#?}"
    );
    let address: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("serve.json")).unwrap()).unwrap();
    let token = address["token"].as_str().unwrap();
    assert!(
        !said.iter().any(|l| l.contains(token)),
        "the generated token is in the log: {said:#?}"
    );
    // Where the token is, never the token itself.
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("token:") && m.contains("serve.json")),
        "{messages:#?}"
    );
}
