//! The Kubernetes runtime against the simulator: jobs run to the outcome a user expects, with every log line once, in order, in its container's entry, under API faults, cancellation and a killed executor.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use executor::config::{Config, RawConfig};
use executor::job::log::LogEvent;
use executor::job::{Report, Runner, Settings};
use executor::k8s::outcome::Outcome;
use executor::k8s::throttle::RetryPolicy;
use executor::payload::JobPayload;
use executor::plugins::{Plugins, Runtime, RuntimeOptions};
use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;
use kube::runtime::WatchStreamExt;
use serde_json::{Value, json};
use sim::faults::{ErrorRule, FaultConfig};
use sim::{Options, Sim};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    raw: RawConfig,
}

/// Settings every test shares: small requests so that a hundred pods fit.
const BASE: &[&str] = &[
    "--resource-request-memory=1Mi",
    "--resource-limit-memory=64Mi",
    "--resource-request-cpu=1m",
];

async fn start(options: Options, flags: &[&str]) -> (Sim, Arc<Runner>) {
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let runner = runner(&sim, flags).await;
    (sim, runner)
}

/// A runner on `sim` configured by `BASE` and `flags`.
async fn runner(sim: &Sim, flags: &[&str]) -> Arc<Runner> {
    runner_with_retry(sim, flags, RetryPolicy::default()).await
}

/// [`runner`] whose client retries a failed request per `retry`.
async fn runner_with_retry(sim: &Sim, flags: &[&str], retry: RetryPolicy) -> Arc<Runner> {
    let args = std::iter::once("test")
        .chain(BASE.iter().copied())
        .chain(flags.iter().copied());
    let config = Config::from_raw(&Flags::parse_from(args).raw).unwrap();
    let client = executor::k8s::client::with_retry(
        sim.kube_config().await.unwrap(),
        &config.kubernetes.api,
        retry,
    )
    .unwrap();
    let runtime = Runtime::new(&RuntimeOptions {
        max_instances: 4,
        cache_dir: None,
    })
    .unwrap();
    Arc::new(Runner::new(
        client,
        Settings::new(&config, None),
        Arc::new(Plugins::none(runtime)),
        format!("runtime-test-{}", uuid::Uuid::new_v4().simple()),
    ))
}

fn payload(id: i64, steps: Value, redacted: Value) -> JobPayload {
    let steps: Vec<Value> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!({"key": s[0], "image": "alpine:3", "commands": s[1], "dir": "", "env": []}))
        .collect();
    JobPayload::parse(
        &json!({"id": id, "dockerSteps": steps, "redactedValues": redacted}).to_string(),
    )
    .unwrap()
}

/// One entry as the uploader saw it.
#[derive(Debug, Default)]
struct Entry {
    key: String,
    lines: Vec<String>,
    exit_code: Option<i32>,
}

/// Runs `payload`; `on_event` may cancel.
async fn run_with(
    runner: &Runner,
    payload: &JobPayload,
    cancel: CancellationToken,
    mut on_event: impl FnMut(&LogEvent) + Send + 'static,
) -> (Report, Vec<Entry>) {
    let (events, mut received) = mpsc::channel(64);
    let collector = tokio::spawn(async move {
        let mut entries: BTreeMap<usize, Entry> = BTreeMap::new();
        while let Some(event) = received.recv().await {
            on_event(&event);
            match event {
                LogEvent::Opened { entry, key, .. } => entries.entry(entry).or_default().key = key,
                LogEvent::Lines { entry, records, .. } => entries
                    .entry(entry)
                    .or_default()
                    .lines
                    .extend(records.into_iter().map(|r| r.text)),
                LogEvent::Closed {
                    entry, exit_code, ..
                } => entries.entry(entry).or_default().exit_code = Some(exit_code),
            }
        }
        entries.into_values().collect::<Vec<_>>()
    });
    let report = runner.run("default", payload, events, cancel).await;
    (report, collector.await.unwrap())
}

async fn run(runner: &Runner, payload: &JobPayload) -> (Report, Vec<Entry>) {
    run_with(runner, payload, CancellationToken::new(), |_| {}).await
}

async fn remaining(sim: &Sim) -> (Vec<String>, Vec<String>) {
    let client = kube::Client::try_from(sim.kube_config().await.unwrap()).unwrap();
    let params = ListParams::default().labels("app.kubernetes.io/managed-by=executor");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let names = |items: Vec<Option<String>>| items.into_iter().flatten().collect::<Vec<_>>();
    (
        names(
            jobs.list(&params)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|j| j.metadata.name)
                .collect(),
        ),
        names(
            secrets
                .list(&params)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|s| s.metadata.name)
                .collect(),
        ),
    )
}

#[tokio::test]
async fn two_steps_succeed_with_each_steps_lines_in_order_in_its_own_entry() {
    let (sim, runner) = start(Options::default(), &[]).await;
    let job = payload(
        1,
        json!([
            [
                "first",
                [
                    "for i in $(seq 1 200); do echo first-$i; done",
                    "echo token=hunter2"
                ]
            ],
            ["second", ["echo second-1", "echo second-2"]],
        ]),
        json!({"hunter2": "[REDACTED]"}),
    );
    let (report, entries) = run(&runner, &job).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(report.teardown, Ok(()));
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "setup.workspace",
            "step.kubernetes.first",
            "step.kubernetes.second"
        ]
    );
    let mut first: Vec<String> = (1..=200).map(|i| format!("first-{i}")).collect();
    first.push("token=[REDACTED]".into());
    assert_eq!(entries[1].lines, first, "in order, redacted");
    assert_eq!(entries[2].lines, ["second-1", "second-2"]);
    assert!(entries.iter().all(|e| e.exit_code == Some(0)));
    let (jobs, secrets) = remaining(&sim).await;
    assert!(
        jobs.is_empty() && secrets.is_empty(),
        "left: {jobs:?} {secrets:?}"
    );
}

#[tokio::test]
async fn a_failing_step_fails_the_job_with_its_exit_code_and_keeps_its_output() {
    let (_sim, runner) = start(Options::default(), &[]).await;
    let job = payload(
        2,
        json!([
            ["boom", ["echo before", "exit 3"]],
            ["never", ["echo never"]]
        ]),
        json!({}),
    );
    let (report, entries) = run(&runner, &job).await;
    assert_eq!(
        report.outcome.message(),
        "step-0 (step.kubernetes.boom) failed with exit code 3"
    );
    assert!(
        report.outcome.permanent(),
        "markFailed: a retry cannot help"
    );
    assert_eq!(entries.len(), 2, "the second step never ran: {entries:?}");
    assert_eq!(entries[1].lines, ["before"]);
    assert_eq!(entries[1].exit_code, Some(3));
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_errors_the_job_after_the_grace() {
    let (_sim, runner) = start(
        Options {
            image_pull_retry: Duration::from_millis(200),
            ..Options::default()
        },
        &["--image-pull-grace=1s"],
    )
    .await;
    let mut job = payload(3, json!([["x", ["true"]]]), json!({}));
    job.steps[0].image = "sim.invalid/missing:1".into();
    let started = Instant::now();
    let (report, _) = run(&runner, &job).await;
    let took = started.elapsed();
    let message = report.outcome.message();
    assert!(
        message.starts_with("image \"sim.invalid/missing:1\" of step-0 could not be pulled"),
        "{message}"
    );
    assert!(
        !report.outcome.permanent(),
        "markErrored: the queue may retry"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(11),
        "ends after the grace, well before any deadline: {took:?}"
    );
}

#[tokio::test]
async fn an_unschedulable_job_errors_at_the_pending_timeout_with_the_schedulers_words() {
    let (_sim, runner) = start(
        Options::default(),
        &["--node-selector=pool=gpu", "--pod-pending-timeout=1s"],
    )
    .await;
    let job = payload(4, json!([["x", ["true"]]]), json!({}));
    let (report, entries) = run(&runner, &job).await;
    let Outcome::Unschedulable { message, waited } = &report.outcome else {
        panic!("{:?}", report.outcome);
    };
    assert!(*waited >= Duration::from_secs(1));
    assert!(
        message.contains("didn't match Pod's node affinity/selector"),
        "{message}"
    );
    assert!(!report.outcome.permanent());
    assert!(entries.is_empty());
}

#[tokio::test]
async fn the_jobs_deadline_stops_it() {
    let (_sim, runner) = start(Options::default(), &["--job-deadline=1"]).await;
    let job = payload(5, json!([["slow", ["echo going", "sleep 60"]]]), json!({}));
    let (report, entries) = run(&runner, &job).await;
    assert_eq!(report.outcome, Outcome::DeadlineExceeded);
    assert!(report.outcome.permanent());
    assert_eq!(entries[1].lines, ["going"], "what it printed is kept");
}

#[tokio::test]
async fn cancellation_mid_step_deletes_the_job_and_keeps_the_lines_so_far() {
    let (sim, runner) = start(Options::default(), &[]).await;
    let job = payload(
        6,
        json!([["long", ["echo started", "sleep 60", "echo never"]]]),
        json!({}),
    );
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let (report, entries) = run_with(&runner, &job, cancel, move |e| {
        if let LogEvent::Lines { records, .. } = e
            && records.iter().any(|r| r.text == "started")
        {
            trigger.cancel();
        }
    })
    .await;
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(report.outcome.message(), "the job was cancelled");
    assert_eq!(entries[1].lines, ["started"]);
    let (jobs, secrets) = remaining(&sim).await;
    assert!(
        jobs.is_empty() && secrets.is_empty(),
        "left: {jobs:?} {secrets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_api_faults_fifty_jobs_of_ten_thousand_lines_lose_and_repeat_nothing() {
    let rule = |verb: Option<&str>, code: u16, rate: f64| ErrorRule {
        verb: verb.map(str::to_owned),
        resource: None,
        rate,
        code,
        retry_after: (code == 429).then_some(1),
    };
    let faults = FaultConfig {
        errors: vec![
            rule(Some("log"), 500, 0.1),
            rule(Some("get"), 500, 0.1),
            rule(Some("create"), 429, 0.1),
            rule(Some("delete"), 503, 0.1),
            rule(Some("list"), 500, 0.1),
        ],
        watch_close_seconds: Some(2),
        log_cut_bytes: Some(16 * 1024),
        ..FaultConfig::default()
    };
    let (sim, runner) = start(
        Options {
            faults,
            ..Options::default()
        },
        &["--api-qps=200", "--api-burst=400"],
    )
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..50 {
        let runner = runner.clone();
        tasks.spawn(async move {
            let job = payload(100 + id, json!([["count", ["seq 1 10000"]]]), json!({}));
            run(&runner, &job).await
        });
    }
    let expected: Vec<String> = (1..=10_000).map(|i| i.to_string()).collect();
    while let Some(done) = tasks.join_next().await {
        let (report, entries) = done.unwrap();
        assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.job);
        let lines = &entries[1].lines;
        assert_eq!(
            lines.len(),
            10_000,
            "{}: no line lost or repeated",
            report.job
        );
        assert!(lines == &expected, "{}: lines out of order", report.job);
    }
    let stats = sim.cluster.stats.snapshot();
    assert!(
        stats["requests"]["log pods"].as_u64().unwrap_or(0) > 50,
        "the cuts forced resumes: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_jobs_share_one_pod_watch() {
    let (sim, runner) = start(Options::default(), &["--api-qps=500", "--api-burst=1000"]).await;
    let up = Arc::new(tokio::sync::Semaphore::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..100 {
        let runner = runner.clone();
        let up = up.clone();
        tasks.spawn(async move {
            let job = payload(
                1000 + id,
                json!([["wait", ["echo up", "sleep 3"]]]),
                json!({}),
            );
            run_with(&runner, &job, CancellationToken::new(), move |e| {
                if let LogEvent::Lines { records, .. } = e
                    && records.iter().any(|r| r.text == "up")
                {
                    up.add_permits(1);
                }
            })
            .await
        });
    }
    // Every job's pod has started and its log is being followed.
    let _ = up.acquire_many(100).await.unwrap();
    let stats = sim.cluster.stats.snapshot();
    assert_eq!(
        stats["open"]["watch pods"],
        json!(1),
        "one pod watch: {stats}"
    );
    while let Some(done) = tasks.join_next().await {
        let (report, _) = done.unwrap();
        assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.job);
    }
    let stats = sim.cluster.stats.snapshot();
    assert_eq!(
        stats["requests"]["watch pods"],
        json!(1),
        "never one watch per job: {stats}"
    );
}

/// `executor run` as a process, against `sim`, as instance `host`.
fn executor_run(
    sim_kubeconfig: &std::path::Path,
    job: &std::path::Path,
) -> tokio::process::Command {
    // Runs in one directory share its instance slots: the run after a
    // killed one gets the killed one's instance back.
    let state = sim_kubeconfig.with_file_name("state");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_executor"));
    cmd.arg("run")
        .arg("--job")
        .arg(job)
        .arg("--kubeconfig")
        .arg(sim_kubeconfig)
        .args(BASE)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOSTNAME", "executor-restart-test")
        .env("EXECUTOR_DATA_DIR", state)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn a_killed_executor_leaves_no_job_or_secret_once_restarted() {
    use tokio::io::AsyncBufReadExt;
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), Options::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig()).unwrap();
    // A secret env value puts a Secret beside the Job.
    let long = dir.path().join("long.json");
    std::fs::write(
        &long,
        json!({"id": 1, "redactedValues": {"s3cr3t": "***"}, "dockerSteps": [
            {"key": "long", "image": "alpine:3", "dir": "", "env": ["TOKEN=s3cr3t"],
             "commands": ["echo started", "sleep 120"]}]})
        .to_string(),
    )
    .unwrap();
    let mut first = executor_run(&kubeconfig, &long).spawn().unwrap();
    let mut stdout = tokio::io::BufReader::new(first.stdout.take().unwrap()).lines();
    assert_eq!(
        stdout.next_line().await.unwrap().as_deref(),
        Some("started")
    );
    first.start_kill().unwrap(); // SIGKILL: no teardown runs
    first.wait().await.unwrap();
    let (jobs, secrets) = remaining(&sim).await;
    assert_eq!(
        (jobs.len(), secrets.len()),
        (1, 1),
        "the killed run left its objects"
    );

    let short = dir.path().join("short.json");
    std::fs::write(
        &short,
        json!({"id": 2, "dockerSteps": [
            {"key": "short", "image": "alpine:3", "dir": "", "env": [], "commands": ["echo ok"]}]})
        .to_string(),
    )
    .unwrap();
    let second = executor_run(&kubeconfig, &short).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "deleted 1 Job(s) and 0 Secret(s) left by an earlier run of executor-restart-test-"
        ),
        "{stderr}"
    );
    let (jobs, secrets) = remaining(&sim).await;
    assert!(
        jobs.is_empty() && secrets.is_empty(),
        "left: {jobs:?} {secrets:?}"
    );
}

#[tokio::test]
async fn deleting_the_executors_pod_deletes_its_jobs() {
    use k8s_openapi::api::core::v1::Pod;
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), Options::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(sim.kube_config().await.unwrap()).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let me: Pod = serde_json::from_value(json!({
        "metadata": {"name": "executor-0"},
        "spec": {"containers": [{"name": "executor", "image": "executor", "command": ["sleep", "120"]}]}
    }))
    .unwrap();
    let me = pods.create(&Default::default(), &me).await.unwrap();
    let uid = me.metadata.uid.unwrap();
    let uid = format!("--pod-uid={uid}");
    let runner = runner(&sim, &["--pod-name=executor-0", &uid]).await;
    let job = payload(
        7,
        json!([["long", ["echo started", "sleep 120"]]]),
        json!({}),
    );
    let deleter = pods.clone();
    let (report, entries) = run_with(&runner, &job, CancellationToken::new(), move |e| {
        if let LogEvent::Lines { records, .. } = e
            && records.iter().any(|r| r.text == "started")
        {
            let pods = deleter.clone();
            tokio::spawn(async move {
                pods.delete("executor-0", &Default::default())
                    .await
                    .unwrap();
            });
        }
    })
    .await;
    assert!(
        matches!(&report.outcome, Outcome::PodLost { reason, .. } if reason == "Deleted"),
        "{:?}",
        report.outcome
    );
    assert_eq!(entries[1].lines, ["started"]);
    let (jobs, secrets) = remaining(&sim).await;
    assert!(
        jobs.is_empty() && secrets.is_empty(),
        "left: {jobs:?} {secrets:?}"
    );
}

#[tokio::test]
async fn a_line_longer_than_what_is_kept_is_cut_with_a_note_and_the_log_goes_on() {
    let (_sim, runner) = start(Options::default(), &[]).await;
    // 1 MB without a newline (the runtime stores it in 16 KiB parts, the
    // kubelet serves it as one line), then a newline and one more line.
    let job = payload(
        40,
        json!([[
            "long",
            ["head -c 1000000 /dev/zero | tr '\\0' a; echo; echo after"]
        ]]),
        json!({}),
    );
    let (report, entries) = run(&runner, &job).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    let lines = &entries[1].lines;
    assert_eq!(
        lines.len(),
        2,
        "{:?}",
        lines.iter().map(String::len).collect::<Vec<_>>()
    );
    assert!(lines[0].starts_with("aaaa"), "the kept part comes first");
    assert!(
        lines[0].len() < executor::k8s::logs::MAX_LINE + 200,
        "{}",
        lines[0].len()
    );
    assert!(
        lines[0].ends_with("bytes long; at most 65536 of a line are kept]"),
        "{}",
        &lines[0][lines[0].len() - 120..]
    );
    let length: usize = lines[0]
        .rsplit("line cut, ")
        .next()
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    // The runtime's parts come with a timestamp each: a little over 1 MB.
    assert!(
        (1_000_000..1_010_000).contains(&length),
        "the note gives the line's length: {length}"
    );
    assert_eq!(lines[1], "after");
}

/// Sets the simulator's faults, as `PUT /sim/faults` does.
async fn set_faults(sim: &Sim, faults: Value) {
    let client = kube::Client::try_from(sim.kube_config().await.unwrap()).unwrap();
    let request = http::Request::put("/sim/faults")
        .header("content-type", "application/json")
        .body(faults.to_string().into_bytes())
        .unwrap();
    client.request_text(request).await.unwrap();
}

/// Every `pods/log` request fails: the API server cannot give a log.
fn logs_unavailable() -> Options {
    Options {
        faults: FaultConfig {
            errors: vec![ErrorRule {
                verb: Some("log".into()),
                resource: None,
                rate: 1.0,
                code: 500,
                retry_after: None,
            }],
            ..FaultConfig::default()
        },
        ..Options::default()
    }
}

/// A client that feels an outage at once: each failed request fails the
/// call, as the default's eight attempts would only after about 6 s.
fn no_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 1,
        ..RetryPolicy::default()
    }
}

#[tokio::test]
async fn a_log_outage_as_long_as_the_step_loses_no_line_once_the_api_answers_again() {
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), logs_unavailable())
        .await
        .unwrap();
    let runner = runner_with_retry(&sim, &[], no_retries()).await;
    // The step outlasts the eleven failed reads (about 13 s without
    // retries) after which a follower used to give up, running or not;
    // logs come back only once the step has ended.
    let job = payload(
        41,
        json!([["slow", ["echo one", "sleep 20", "echo two"]]]),
        json!({}),
    );
    let pods: Api<Pod> = Api::namespaced(
        kube::Client::try_from(sim.kube_config().await.unwrap()).unwrap(),
        "default",
    );
    let ((report, entries), ()) = tokio::join!(run(&runner, &job), async {
        let succeeded =
            |p: &Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded");
        let pods = kube::runtime::watcher(pods, kube::runtime::watcher::Config::default())
            .applied_objects();
        futures::pin_mut!(pods);
        while let Some(pod) = pods.try_next().await.unwrap() {
            if succeeded(&pod) {
                break;
            }
        }
        set_faults(&sim, json!({})).await;
    });
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(entries[1].lines, ["one", "two"]);
}

#[tokio::test]
async fn a_log_the_api_never_gives_ends_with_a_line_saying_it_may_be_incomplete() {
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), logs_unavailable())
        .await
        .unwrap();
    let runner = runner_with_retry(&sim, &[], no_retries()).await;
    let job = payload(42, json!([["quiet", ["echo lost"]]]), json!({}));
    let (report, entries) = run(&runner, &job).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "the step itself ran");
    let [note] = entries[1].lines.as_slice() else {
        panic!("one note: {:?}", entries[1].lines);
    };
    assert!(
        note.starts_with("[executor: this step's log may be incomplete: "),
        "{note}"
    );
    assert!(
        note.contains("500 injected fault") && !note.contains("Status {"),
        "the API's answer in brief: {note}"
    );
    assert_eq!(entries[1].exit_code, Some(0));
}
