//! The author CLI (`executor plugin check|run|filter|bench`) as a user runs it: the real binary, real components, real files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use executor_tests::{components, plugin_cache_home, workspace};
use serde_json::{Value, json};

use crate::common;

fn executor(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_executor"))
        .args(args)
        .env("XDG_CACHE_HOME", plugin_cache_home())
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the command failed with `code` and said `needle` on stderr.
fn fails_with(out: &Output, code: i32, needle: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
    assert!(
        stderr(out).contains(needle),
        "expected {needle:?} in:\n{}",
        stderr(out)
    );
}

fn wasm(name: &str) -> String {
    components().path(name).display().to_string()
}

fn job_file() -> String {
    workspace()
        .join("tests/fixtures/job.json")
        .display()
        .to_string()
}

fn write_config(dir: &Path, yaml: &str) -> String {
    let path = dir.join("plugins.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

/// A configuration of two admission plugins, `annotate` then `pull-secrets`.
fn two_admitters(dir: &Path) -> String {
    write_config(
        dir,
        &format!(
            "plugins:\n  - name: annotate\n    path: {}\n    settings: {{job: {{labels: {{queue: '{{{{queue}}}}'}}}}}}\n  - name: pull-secrets\n    path: {}\n    settings: {{registries: [{{registry: ghcr.io, secrets: [ghcr]}}]}}\n",
            wasm("annotate"),
            wasm("pull-secrets")
        ),
    )
}

#[test]
fn check_names_hooks_size_and_accepts_settings() {
    let out = executor(
        &[
            "plugin",
            "check",
            &wasm("redact"),
            "--settings",
            "{literals: [x]}",
            "-o",
            "json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["hooks"], json!(["logs"]));
    assert_eq!(v["contract"], "0.4.0");
    assert_eq!(
        v["sizeBytes"].as_u64().unwrap(),
        std::fs::metadata(components().path("redact"))
            .unwrap()
            .len()
    );
    assert!(v["compileMs"].as_f64().unwrap() > 0.0);
    assert_eq!(v["settingsAccepted"], true);

    let text = executor(&["plugin", "check", &wasm("misbehave")], None);
    assert!(
        stdout(&text).contains("hooks:    admission, logs\ncontract: executor:plugin@0.1.0\n"),
        "{}",
        stdout(&text)
    );
}

#[test]
fn check_reports_bad_input_plainly() {
    let out = executor(&["plugin", "check", &wasm("other-world")], None);
    fails_with(&out, 2, "is not an executor plugin");

    let out = executor(
        &[
            "plugin",
            "check",
            &wasm("annotate"),
            "--settings",
            "{job: {labels: {a: '{{oops}}'}}}",
        ],
        None,
    );
    fails_with(
        &out,
        2,
        "refused its settings: invalid settings: job.labels.a: unknown placeholder {{oops}}",
    );

    let out = executor(
        &[
            "plugin",
            "check",
            &wasm("annotate"),
            "--settings",
            "{not yaml",
        ],
        None,
    );
    fails_with(
        &out,
        2,
        "--settings: the argument is not valid JSON or YAML",
    );
}

#[test]
fn run_prints_the_decision_the_job_and_each_patch_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_admitters(dir.path());
    let out = executor(
        &[
            "plugin",
            "run",
            &config,
            "--job",
            &job_file(),
            "--queue",
            "gpu",
            "-o",
            "json",
        ],
        None,
    );
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["allowed", "job", "message", "patches", "warnings"]);
    assert_eq!(v["allowed"], true);
    assert_eq!(v["message"], Value::Null);
    assert_eq!(v["job"]["metadata"]["labels"]["queue"], "gpu");
    assert_eq!(
        v["patches"][0],
        json!({"plugin": "annotate", "patch": [{"op": "add", "path": "/metadata/labels/queue", "value": "gpu"}]})
    );
    assert_eq!(v["patches"][1]["plugin"], "pull-secrets");
    assert_eq!(
        v["patches"][1]["patch"][0]["path"],
        "/spec/template/spec/imagePullSecrets"
    );
}

#[test]
fn run_exits_non_zero_when_denied_and_reads_yaml_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let job: Value = serde_json::from_str(&std::fs::read_to_string(job_file()).unwrap()).unwrap();
    let yaml_job = dir.path().join("job.yaml");
    std::fs::write(&yaml_job, serde_json::to_string(&job).unwrap()).unwrap();
    let out = executor(
        &[
            "plugin",
            "run",
            &wasm("scheduling-policy"),
            "--settings",
            "{allowedRegistries: [quay.io]}",
            "--job",
            yaml_job.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("decision: refused: denied by plugin `scheduling-policy`: image \"sourcegraph/batcheshelper:6.0.0\""), "{text}");

    let not_a_job = dir.path().join("pod.yaml");
    std::fs::write(&not_a_job, "kind: Pod\n").unwrap();
    let out = executor(
        &[
            "plugin",
            "run",
            &wasm("annotate"),
            "--job",
            not_a_job.to_str().unwrap(),
        ],
        None,
    );
    fails_with(&out, 2, "is a Pod; expected a batch/v1 Job");
}

#[test]
fn a_config_lists_every_problem_in_one_round_keys_pins_and_settings_alike() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "plugins:\n  - name: a\n    path: {}\n    timeoutMS: 10\n    settings: {{job: {{labels: {{a: '{{{{oops}}}}'}}}}}}\n  - name: b\n    path: nowhere.wasm\n    mode: strict\n  - name: c\n    path: {}\n    sha256: {}\n",
            wasm("annotate"),
            wasm("redact"),
            "0".repeat(64)
        ),
    );
    // `check`, `run` and `filter` read a configuration alike.
    for args in [
        &["plugin", "check", &config][..],
        &["plugin", "run", &config, "--job", &job_file()],
        &["plugin", "filter", &config],
    ] {
        let out = executor(args, Some(""));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("has 5 problem(s)"), "{args:?}: {err}");
        for needle in [
            "plugins[0] (a): timeoutMS: unknown key",
            "plugins[1] (b): mode: \"strict\" is not a mode",
            "nowhere.wasm does not exist",
            // Found only by loading: the pin and the settings of the
            // entries whose keys are wrong or right alike.
            "plugin `a` refused its settings: invalid settings: job.labels.a: unknown placeholder {{oops}}",
            "plugin `c`:",
        ] {
            assert!(
                err.contains(needle),
                "{args:?}: missing {needle:?} in:\n{err}"
            );
        }
        assert!(
            err.contains(&format!("the configuration pins {}", "0".repeat(64))),
            "{err}"
        );
    }
}

#[test]
fn check_takes_a_configuration_file_and_reports_each_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_admitters(dir.path());
    let out = executor(&["plugin", "check", &config], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("plugin:   annotate") && text.contains("plugin:   pull-secrets"),
        "{text}"
    );
    let out = executor(&["plugin", "check", &config, "-o", "json"], None);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["annotate", "pull-secrets"]);
    assert!(v["plugins"][0]["sha256"].is_string());
}

#[test]
fn a_denial_shows_the_reason_without_the_job_or_empty_patches() {
    let args = |output: &'static str| {
        vec![
            "plugin".to_owned(),
            "run".into(),
            wasm("misbehave"),
            "--settings".into(),
            "{admit: deny}".into(),
            "--job".into(),
            job_file(),
            "-o".into(),
            output.into(),
        ]
    };
    let json_args = args("json");
    let out = executor(
        &json_args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["allowed"], false);
    assert!(
        v["message"].as_str().unwrap().contains("is not welcome"),
        "{v}"
    );
    assert_eq!(v["patches"], json!([]), "a denial changes nothing");

    let text_args = args("text");
    let out = executor(
        &text_args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("decision: refused:"), "{text}");
    assert!(
        !text.contains("---") && !text.contains("apiVersion"),
        "a refused Job is not printed:\n{text}"
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    // The reader is gone before the first write: `executor ... | head -0`.
    let run = |args: &[&str], input: String| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_executor"))
            .args(args)
            .env("XDG_CACHE_HOME", plugin_cache_home())
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let mut stdin = child.stdin.take().unwrap();
        // The command may stop reading as soon as its output is refused.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    };
    let log = "password=hunter2\n".repeat(10_000);
    let out = run(&["plugin", "filter", &wasm("redact")], log);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");

    // A denial keeps its status: a closed pipe is no reason to change it.
    let out = run(
        &[
            "plugin",
            "run",
            &wasm("misbehave"),
            "--settings",
            "{admit: deny}",
            "--job",
            &job_file(),
        ],
        String::new(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Broken pipe"), "{}", stderr(&out));

    // `plugin test` keeps its verdict too (every case passes here).
    let wasm_dir = components()
        .path("annotate")
        .parent()
        .unwrap()
        .display()
        .to_string();
    let plugins = workspace().join("plugins").display().to_string();
    let out = run(
        &["plugin", "test", &plugins, "--wasm-dir", &wasm_dir],
        String::new(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // What the plugins log still goes to stderr; no error does.
    assert!(!stderr(&out).contains("error"), "{}", stderr(&out));
}

#[test]
fn plugin_logs_on_a_pipe_carry_no_colour_codes() {
    let out = executor(
        &[
            "plugin",
            "run",
            &wasm("misbehave"),
            "--settings",
            "{admit: chatty}",
            "--job",
            &job_file(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("message 0"),
        "the plugin's log is shown: {err}"
    );
    assert!(!err.contains('\u{1b}'), "escape codes on a pipe: {err:?}");
}

#[test]
fn filter_masks_a_log_from_stdin_line_by_line() {
    let log = "building\npassword=hunter2\nAKIAIOSFODNN7EXAMPLE leaked\nDEBUG x\ndone\n";
    let out = executor(
        &[
            "plugin",
            "filter",
            &wasm("redact"),
            "--settings",
            "{dropLines: ['^DEBUG']}",
            "--batch-lines",
            "2",
        ],
        Some(log),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "building\npassword=[REDACTED]\n[REDACTED] leaked\ndone\n"
    );

    let out = executor(
        &["plugin", "filter", &wasm("redact"), "-o", "json"],
        Some("token: abc\n"),
    );
    assert_eq!(
        stdout(&out),
        "{\"stream\":\"stdout\",\"text\":\"token: [REDACTED]\"}\n"
    );
}

#[test]
fn filter_gives_marked_lines_to_plugins_as_stderr() {
    let log = "E token: abc\nbuilding\n";
    let out = executor(
        &[
            "plugin",
            "filter",
            &wasm("redact"),
            "--stderr-prefix",
            "E ",
            "-o",
            "json",
        ],
        Some(log),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "{\"stream\":\"stderr\",\"text\":\"token: [REDACTED]\"}\n{\"stream\":\"stdout\",\"text\":\"building\"}\n"
    );
    let out = executor(
        &["plugin", "filter", &wasm("redact"), "--stderr-prefix", "E "],
        Some(log),
    );
    assert_eq!(stdout(&out), "E token: [REDACTED]\nbuilding\n");
}

#[test]
fn filter_withholds_the_log_when_a_plugin_fails() {
    let out = executor(
        &[
            "plugin",
            "filter",
            &wasm("misbehave"),
            "--settings",
            "{filter: trap}",
        ],
        Some("secret\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("plugin `misbehave` trapped in filter"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bench_times_each_admission_plugin_its_instances_and_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_admitters(dir.path());
    let args = [
        "plugin",
        "bench",
        &config,
        "--job",
        &job_file(),
        "--iterations",
        "5",
        "--warmup",
        "1",
    ];
    let out = executor(&args, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "annotate",
        "pull-secrets",
        "instance",
        "admit",
        "whole chain",
        "p50",
        "p99",
        "decision: allowed",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }

    let out = executor(&[&args[..], &["-o", "json"]].concat(), None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["hook"], "admission");
    assert_eq!(v["decision"], "allowed");
    let plugins = v["plugins"].as_array().unwrap();
    let names: Vec<&str> = plugins
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["annotate", "pull-secrets"]);
    for p in plugins.iter().chain([&v]) {
        for figures in [&p["instance"], &p["admit"], &p["chain"]] {
            if figures.is_null() {
                continue;
            }
            assert_eq!(figures["count"], 5, "{p}");
            for key in ["p50Us", "p90Us", "p99Us", "maxUs", "meanUs"] {
                assert!(figures[key].as_f64().unwrap() > 0.0, "{key} in {p}");
            }
        }
    }
    assert!(plugins[1]["admit"]["p50Us"].as_f64().unwrap() > 0.0);
    assert!(v["chain"]["p99Us"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_of_a_refused_job_says_which_plugins_did_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "plugins:\n  - name: scheduling-policy\n    path: {}\n    settings: {{allowedRegistries: [quay.io]}}\n  - name: annotate\n    path: {}\n",
            wasm("scheduling-policy"),
            wasm("annotate")
        ),
    );
    let out = executor(
        &[
            "plugin",
            "bench",
            &config,
            "--job",
            &job_file(),
            "--iterations",
            "2",
            "--warmup",
            "0",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("decision: denied by plugin `scheduling-policy`"),
        "{text}"
    );
    assert!(
        text.contains("did not run: the chain stopped before it"),
        "{text}"
    );
}

#[test]
fn bench_of_a_log_filter_reports_batches_and_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("build.log");
    let lines: String = (0..2500)
        .map(|i| format!("step {i}: compiling crate-{i} password=hunter{i}\n"))
        .collect();
    std::fs::write(&log, &lines).unwrap();
    let args = [
        "plugin",
        "bench",
        &wasm("redact"),
        "--log",
        log.to_str().unwrap(),
        "--batch-lines",
        "1000",
        "--iterations",
        "2",
    ];
    let out = executor(&args, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "redact",
        "first batch",
        "warm batch",
        "p50",
        "p99",
        "MB/s",
        "lines/s",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }

    let out = executor(&[&args[..], &["-o", "json"]].concat(), None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["hook"], "logs");
    assert_eq!(v["lines"], 2500);
    assert_eq!(v["logBytes"], lines.len());
    assert_eq!(v["batches"], 3);
    assert_eq!(v["plugins"][0]["name"], "redact");
    assert!(v["plugins"][0]["instance"]["p50Us"].as_f64().unwrap() > 0.0);
    // One first batch per pass (a fresh session each), the other two warm.
    assert_eq!(v["firstBatch"]["count"], 2);
    assert_eq!(v["warmBatch"]["count"], 4);
    assert!(v["warmBatch"]["p99Us"].as_f64().unwrap() > 0.0);
    assert!(v["throughput"]["mbPerSecond"].as_f64().unwrap() > 0.0);
    assert!(v["throughput"]["linesPerSecond"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_wants_exactly_one_input_fit_for_its_plugins() {
    let job = job_file();
    let redact = wasm("redact");
    fails_with(
        &executor(&["plugin", "bench", &redact], None),
        2,
        "the following required arguments were not provided",
    );
    fails_with(
        &executor(
            &["plugin", "bench", &redact, "--job", &job, "--log", &job],
            None,
        ),
        2,
        "cannot be used with",
    );
    fails_with(
        &executor(
            &[
                "plugin",
                "bench",
                &redact,
                "--job",
                &job,
                "--batch-lines",
                "5",
            ],
            None,
        ),
        2,
        "--log",
    );
    fails_with(
        &executor(&["plugin", "bench", &redact, "--job", &job], None),
        2,
        "no plugin of the target has the admission hook; benchmark it with --log",
    );
}

#[test]
fn sim_refuses_to_listen_beyond_loopback_and_says_what_is_wrong_with_its_files() {
    fails_with(
        &executor(&["sim", "--listen", "0.0.0.0:0"], None),
        2,
        "0.0.0.0:0 is not a loopback address",
    );
    let dir = tempfile::tempdir().unwrap();
    let faults = dir.path().join("faults.yaml");
    std::fs::write(&faults, "errors: 5\n").unwrap();
    fails_with(
        &executor(
            &[
                "sim",
                "--listen",
                "127.0.0.1:0",
                "--faults",
                faults.to_str().unwrap(),
            ],
            None,
        ),
        2,
        "not a fault configuration: errors: invalid type",
    );
    let nodes = dir.path().join("nodes.yaml");
    std::fs::write(&nodes, "nodes: []\n").unwrap();
    fails_with(
        &executor(
            &[
                "sim",
                "--listen",
                "127.0.0.1:0",
                "--nodes",
                nodes.to_str().unwrap(),
            ],
            None,
        ),
        2,
        "no nodes; expected at least one",
    );
}

#[test]
fn sim_stops_on_sigterm_as_on_ctrl_c_and_leaves_no_directory_behind() {
    for signal in ["-INT", "-TERM"] {
        let tmp = tempfile::tempdir().unwrap();
        let (mut sim, _, _) = common::start_until(
            Command::new(env!("CARGO_BIN_EXE_executor"))
                .args(["sim", "--listen", "127.0.0.1:0"])
                // Where its kubelet keeps pods' volumes (ServiceAccount tokens).
                .env("TMPDIR", tmp.path())
                .env_remove("RUST_LOG")
                .stdout(Stdio::null()),
            "cluster simulator serving",
        );
        let scratch = || {
            std::fs::read_dir(tmp.path())
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("executor-sim-"))
                .count()
        };
        assert_eq!(scratch(), 1, "the kubelet's directory, while it runs");
        let sent = Command::new("kill")
            .args([signal, &sim.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = common::eventually_blocking("the simulator exits", || {
            sim.try_wait().unwrap().ok_or("it still runs".to_owned())
        });
        assert!(status.success(), "after {signal}: {status}");
        assert_eq!(
            scratch(),
            0,
            "{signal} leaves the kubelet's directory behind"
        );
    }
}

#[test]
fn the_first_party_plugins_pass_their_own_test_files() {
    let dir = components().path("annotate");
    let out = executor(
        &[
            "plugin",
            "test",
            &workspace().join("plugins").display().to_string(),
            "--wasm-dir",
            &dir.parent().unwrap().display().to_string(),
        ],
        None,
    );
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{said}{}", stderr(&out));
    for plugin in ["annotate", "scheduling-policy", "pull-secrets", "redact"] {
        assert!(
            said.contains(&format!("plugins/{plugin}/{plugin}.test.yaml\n")),
            "{said}"
        );
    }
    assert!(said.contains(" passed, 0 failed\n"), "{said}");
    assert!(!said.contains("FAIL"), "{said}");
}

#[test]
fn plugin_test_fails_a_wrong_expectation_with_a_readable_diff() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("redact.test.yaml");
    std::fs::write(
        &suite,
        format!(
            r#"plugin: {redact}
settings: {{literals: [hunter2]}}
cases:
  - name: masks the literal
    log: ["key hunter2", "plain"]
    expect:
      output: ["key [REDACTED]", "plain"]
  - name: a wrong expectation
    log: ["key hunter2"]
    expect:
      output: ["key ***"]
  - name: a job case with the wrong decision
    job: {job}
    expect:
      decision: denied
"#,
            redact = wasm("redact"),
            job = job_file(),
        ),
    )
    .unwrap();
    let out = executor(&["plugin", "test", &suite.display().to_string()], None);
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{said}{}", stderr(&out));
    assert!(said.contains("  ok    masks the literal\n"), "{said}");
    assert!(said.contains("  FAIL  a wrong expectation\n"), "{said}");
    assert!(
        said.contains("output differs (- expected, + got):\n")
            && said.contains("          - - key ***\n")
            && said.contains("          + - key [REDACTED]\n"),
        "{said}"
    );
    assert!(
        said.contains("decision: expected denied, got allowed"),
        "{said}"
    );
    assert!(
        said.ends_with("3 case(s) in 1 file(s): 1 passed, 2 failed\n"),
        "{said}"
    );

    let json = executor(
        &["plugin", "test", &suite.display().to_string(), "-o", "json"],
        None,
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(
        (doc["passed"].as_u64(), doc["failed"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(doc["files"][0]["cases"][1]["passed"], false);
}

#[test]
fn plugin_test_says_what_is_wrong_with_a_test_file() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("x.test.yaml");
    std::fs::write(
        &suite,
        "plugin: nowhere.wasm\ncases:\n  - name: c\n    log: [a]\n    expect: {outptu: [a]}\n",
    )
    .unwrap();
    fails_with(
        &executor(&["plugin", "test", &suite.display().to_string()], None),
        2,
        "unknown field `outptu`",
    );
    std::fs::write(
        &suite,
        "plugin: nowhere.wasm\ncases:\n  - name: c\n    log: [a]\n    expect: {output: [a]}\n",
    )
    .unwrap();
    fails_with(
        &executor(&["plugin", "test", &suite.display().to_string()], None),
        2,
        "nowhere.wasm does not exist (build it first, or point --wasm-dir at it)",
    );
    fails_with(
        &executor(
            &[
                "plugin",
                "test",
                &dir.path().join("none").display().to_string(),
            ],
            None,
        ),
        2,
        "none",
    );
}
