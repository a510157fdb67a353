//! The whole product in one process: the embedded queue, the worker and the simulator, driven through the user API as a user would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use executor::config::{Config, RawConfig};
use executor::embedded::{Embedded, EmbeddedOptions};
use executor::job::{Runner, Settings};
use executor::plugins::{Plugins, PluginsConfig, Runtime, RuntimeOptions};
use executor::queue::client::{ClientOptions, QueueClient};
use executor::worker::{Summary, Worker, WorkerOptions};
use executor_tests::components;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use serde_json::{Value, json};
use sim::{Options, Sim};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    raw: RawConfig,
}

/// The embedded queue on a fixed address and database, restartable.
struct Queue {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    token: String,
    password: String,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Queue {
    async fn start() -> Queue {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut q = Queue {
            dir,
            addr,
            token: String::new(),
            password: String::new(),
            stop: CancellationToken::new(),
            task: None,
        };
        q.serve(listener);
        q
    }

    fn open(&self) -> Embedded {
        Embedded::open(EmbeddedOptions {
            db_path: self.dir.path().join("queue.db"),
            ..EmbeddedOptions::default()
        })
        .unwrap()
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let embedded = self.open();
        self.token = embedded.api_token().to_owned();
        self.password = embedded.executor_password().to_owned();
        self.stop = CancellationToken::new();
        let stop = self.stop.clone();
        self.task = Some(tokio::spawn(async move {
            embedded.serve(listener, stop).await.unwrap();
        }));
    }

    /// Stops serving: connections are refused until [`Queue::restart`].
    async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn http(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    async fn submit(&self, body: Value) -> i64 {
        let resp = self
            .http()
            .post(format!("{}/api/v1/jobs", self.url()))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
        resp.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    async fn job(&self, id: i64, since: Option<u64>) -> Value {
        let url = match since {
            Some(v) => format!("{}/api/v1/jobs/{id}?since={v}&wait=30", self.url()),
            None => format!("{}/api/v1/jobs/{id}", self.url()),
        };
        let resp = self
            .http()
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Waits, by long polls, until `until` holds for the job.
    async fn wait(&self, id: i64, what: &str, until: impl Fn(&Value) -> bool) -> Value {
        let mut job = self.job(id, None).await;
        for _ in 0..40 {
            if until(&job) {
                return job;
            }
            job = self.job(id, job["version"].as_u64()).await;
        }
        panic!("job {id}: never {what}: {job:#}");
    }

    async fn ended(&self, id: i64) -> Value {
        self.wait(id, "ended", |j| {
            matches!(
                j["state"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
        })
        .await
    }

    async fn cancel(&self, id: i64) {
        let resp = self
            .http()
            .post(format!("{}/api/v1/jobs/{id}/cancel", self.url()))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    }
}

fn out(job: &Value, key: &str) -> String {
    job["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == key)
        .and_then(|e| e["out"].as_str())
        .unwrap_or("")
        .to_owned()
}

fn all_out(job: &Value) -> String {
    job["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["out"].as_str())
        .collect()
}

/// The first-party annotate, scheduling-policy and redact plugins, built from
/// source, and the test plugin that misbehaves as a job's image asks
/// (`misbehave/<mode>:1`).
fn plugins(dir: &std::path::Path) -> Plugins {
    let c = components();
    let yaml = format!(
        r#"plugins:
  - name: annotate
    path: {annotate}
    settings:
      job:
        annotations:
          acme.com/queue: "{{{{queue}}}}"
  - name: scheduling-policy
    path: {policy}
    failurePolicy: fail
    settings:
      allowedRegistries: [docker.io]
  - name: redact
    path: {redact}
  - name: misbehave
    path: {misbehave}
    settings: {{admit: by-image, filter: by-image}}
"#,
        annotate = c.path("annotate").display(),
        policy = c.path("scheduling-policy").display(),
        redact = c.path("redact").display(),
        misbehave = c.path("misbehave").display(),
    );
    let path = dir.join("plugins.yaml");
    std::fs::write(&path, yaml).unwrap();
    let runtime = Runtime::new(&RuntimeOptions {
        max_instances: 16,
        cache_dir: Some(executor_tests::plugin_cache()),
    })
    .unwrap();
    Plugins::load(runtime, &PluginsConfig::from_file(&path).unwrap()).unwrap()
}

struct Stack {
    sim: Sim,
    queue: Queue,
    kube: kube::Client,
}

/// A worker on `stack`, configured by `flags` (on top of small requests).
async fn worker(
    stack: &Stack,
    flags: &[&str],
    tune: impl FnOnce(&mut WorkerOptions),
) -> (CancellationToken, JoinHandle<Summary>) {
    hurried_worker(stack, flags, tune, CancellationToken::new()).await
}

/// A worker whose drain `hurry` cuts short (a second Ctrl-C).
async fn hurried_worker(
    stack: &Stack,
    flags: &[&str],
    tune: impl FnOnce(&mut WorkerOptions),
    hurry: CancellationToken,
) -> (CancellationToken, JoinHandle<Summary>) {
    let args = [
        "test",
        "--resource-request-memory=1Mi",
        "--resource-limit-memory=64Mi",
        "--resource-request-cpu=1m",
    ]
    .into_iter()
    .chain(flags.iter().copied());
    let mut config = Config::from_raw(&Flags::parse_from(args).raw).unwrap();
    config.queue.frontend_url = Some(stack.queue.url().parse().unwrap());
    config.queue.frontend_password = Some(stack.queue.password.clone());
    let name = format!("serve-test-{}", uuid::Uuid::new_v4().simple());
    let queue = QueueClient::new(ClientOptions {
        base: stack.queue.url().parse().unwrap(),
        password: stack.queue.password.clone(),
        executor_name: name.clone(),
        queues: vec!["default".into()],
        multi_queue: false,
        outage_limit: Duration::from_secs(300),
    })
    .unwrap();
    let mut options = WorkerOptions::from_config(&config.queue);
    options.poll_interval = Duration::from_millis(100);
    options.heartbeat_interval = Duration::from_millis(500);
    tune(&mut options);
    let routes = config.queue.frontend_url.clone();
    let runner = Arc::new(Runner::new(
        stack.kube.clone(),
        Settings::new(&config, routes),
        Arc::new(plugins(stack.queue.dir.path())),
        name,
    ));
    let stop = CancellationToken::new();
    let handle = tokio::spawn(
        Worker::new(queue, runner, options)
            .hurried_by(hurry)
            .run(stop.clone()),
    );
    (stop, handle)
}

async fn stack() -> Stack {
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), Options::default())
        .await
        .unwrap();
    let kube = executor::k8s::client::with_limits(
        sim.kube_config().await.unwrap(),
        &executor::config::ApiLimits {
            qps: 100,
            burst: 200,
            delete_qps: 100,
            delete_burst: 200,
        },
    )
    .unwrap();
    Stack {
        sim,
        queue: Queue::start().await,
        kube,
    }
}

fn short(commands: &[&str]) -> Value {
    json!({"image": "alpine:3", "commands": commands})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_job_completes_with_the_plugins_change_and_its_secret_redacted() {
    let stack = stack().await;
    let (stop, worker) = worker(&stack, &["--keep-jobs=true"], |_| {}).await;
    let id = stack
        .queue
        .submit(json!({
            "image": "alpine:3",
            "commands": ["echo \"deploying with $API_KEY\"", "echo done"],
            "secrets": {"API_KEY": "hunter2"},
        }))
        .await;
    let job = stack.queue.ended(id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let step = out(&job, "step.kubernetes.main");
    assert!(step.contains("stdout: deploying with "), "{step}");
    assert!(step.contains("stdout: done"), "{step}");
    assert!(!all_out(&job).contains("hunter2"), "{job:#}");
    let admission = out(&job, "setup.admission");
    assert!(
        admission.contains("annotate (enforce): mutated: add /metadata/annotations"),
        "{admission}"
    );

    let jobs: Api<Job> = Api::namespaced(stack.kube.clone(), "default");
    let created = jobs.list(&Default::default()).await.unwrap();
    assert_eq!(created.items.len(), 1);
    let annotations = created.items[0].metadata.annotations.clone().unwrap();
    assert_eq!(annotations["acme.com/queue"], "default");

    stop.cancel();
    let summary = worker.await.unwrap();
    assert_eq!(summary.completed, 1);
    drop(stack.sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_denied_by_a_plugin_fails_with_the_plugins_message() {
    let stack = stack().await;
    let (stop, worker) = worker(&stack, &[], |_| {}).await;
    let id = stack
        .queue
        .submit(json!({"image": "evil.example.com/miner:1", "commands": ["true"]}))
        .await;
    let job = stack.queue.ended(id).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let message = job["message"].as_str().unwrap();
    assert!(
        message.contains("denied by plugin `scheduling-policy`")
            && message.contains("evil.example.com"),
        "{message}"
    );
    assert!(out(&job, "setup.admission").contains("scheduling-policy (enforce): denied"));
    stop.cancel();
    assert_eq!(worker.await.unwrap().failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_makes_the_job_invalid_fails_it_naming_the_plugin() {
    let stack = stack().await;
    let (stop, worker) = worker(&stack, &[], |_| {}).await;
    for (mode, words) in [
        (
            "annotations-huge",
            "metadata.annotations: Too long: may not be more than 262144 bytes",
        ),
        (
            "annotations-number",
            "at metadata.annotations: invalid type",
        ),
    ] {
        let id = stack
            .queue
            .submit(json!({"image": format!("misbehave/{mode}:1"), "commands": ["true"]}))
            .await;
        let job = stack.queue.ended(id).await;
        assert_eq!(job["state"], "failed", "{mode}: {job:#}");
        let message = job["message"].as_str().unwrap();
        assert!(
            message.contains("plugin `misbehave`")
                && message.contains("returned from admit")
                && message.contains(words),
            "{mode}: {message}"
        );
    }
    stop.cancel();
    assert_eq!(worker.await.unwrap().failed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_payload_fails_that_job_and_the_worker_carries_on() {
    let stack = stack().await;
    let bad = stack
        .queue
        .open_store_insert(r#"{"dockerSteps": [{"key": "x", "commands": ["true"]}]}"#);
    let (stop, worker) = worker(&stack, &[], |_| {}).await;
    let job = stack.queue.ended(bad).await;
    assert_eq!(job["state"], "failed");
    let message = job["message"].as_str().unwrap();
    assert!(message.contains("image"), "{message}");
    let good = stack.queue.submit(short(&["echo fine"])).await;
    let job = stack.queue.ended(good).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    stop.cancel();
    let summary = worker.await.unwrap();
    assert_eq!((summary.failed, summary.completed), (1, 1));
}

impl Queue {
    /// Enqueues `payload` as is, past the user API's validation, as a
    /// foreign queue implementation could.
    fn open_store_insert(&self, payload: &str) -> i64 {
        // The serving queue and this handle share the database file.
        self.open().store().insert_raw("default", payload).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_through_the_queue_stops_the_job_and_keeps_its_log() {
    let stack = stack().await;
    let (stop, worker) = worker(&stack, &[], |_| {}).await;
    let id = stack
        .queue
        .submit(short(&["echo started", "sleep 600"]))
        .await;
    stack
        .queue
        .wait(id, "started", |j| {
            out(j, "step.kubernetes.main").contains("stdout: started")
        })
        .await;
    stack.queue.cancel(id).await;
    let job = stack.queue.ended(id).await;
    assert_eq!(job["state"], "cancelled", "{job:#}");
    assert!(out(&job, "step.kubernetes.main").contains("stdout: started"));
    let jobs: Api<Job> = Api::namespaced(stack.kube.clone(), "default");
    assert!(
        jobs.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    stop.cancel();
    let summary = worker.await.unwrap();
    assert_eq!(
        (summary.failed, summary.cancelled),
        (0, 1),
        "a cancelled job is counted as cancelled, not failed: {summary:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_lets_running_jobs_finish_then_hands_the_rest_back() {
    let stack = stack().await;
    let (stop, worker) = worker(&stack, &[], |o| {
        o.max_jobs = 2;
        o.drain_timeout = Duration::from_secs(15);
    })
    .await;
    let short_job = stack
        .queue
        .submit(short(&["echo one", "sleep 2", "echo two"]))
        .await;
    let long_job = stack
        .queue
        .submit(short(&["echo started", "sleep 600"]))
        .await;
    for id in [short_job, long_job] {
        stack
            .queue
            .wait(id, "logging", |j| {
                !out(j, "step.kubernetes.main").is_empty()
            })
            .await;
    }
    stop.cancel();
    let queued_after = stack.queue.submit(short(&["true"])).await;
    let summary = worker.await.unwrap();
    assert_eq!((summary.completed, summary.errored), (1, 1), "{summary:?}");

    let done = stack.queue.job(short_job, None).await;
    assert_eq!(done["state"], "completed", "{done:#}");
    assert!(out(&done, "step.kubernetes.main").contains("stdout: two"));
    let back = stack.queue.job(long_job, None).await;
    assert_eq!(back["state"], "queued", "handed back for a retry: {back:#}");
    assert_eq!(back["attempts"], 1);
    assert_eq!(
        stack.queue.job(queued_after, None).await["state"],
        "queued",
        "nothing is dequeued after the stop"
    );
    let jobs: Api<Job> = Api::namespaced(stack.kube.clone(), "default");
    assert!(
        jobs.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stop_cancels_the_running_jobs_and_hands_them_back_without_waiting_for_the_drain()
{
    let stack = stack().await;
    let hurry = CancellationToken::new();
    // A drain no test waits out: only the second stop can end this worker.
    let (stop, worker) = hurried_worker(
        &stack,
        &[],
        |o| o.drain_timeout = Duration::from_secs(24 * 3600),
        hurry.clone(),
    )
    .await;
    let id = stack
        .queue
        .submit(short(&["echo started", "sleep 600"]))
        .await;
    stack
        .queue
        .wait(id, "started", |j| {
            out(j, "step.kubernetes.main").contains("stdout: started")
        })
        .await;
    stop.cancel();
    hurry.cancel();
    let summary = worker.await.unwrap();
    assert_eq!(summary.errored, 1, "handed back to the queue: {summary:?}");
    let back = stack.queue.job(id, None).await;
    assert_eq!(back["state"], "queued", "handed back for a retry: {back:#}");
    assert!(out(&back, "step.kubernetes.main").contains("stdout: started"));
    let jobs: Api<Job> = Api::namespaced(stack.kube.clone(), "default");
    assert!(
        jobs.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "the job's Job is deleted, so its processes stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_outage_and_restart_lose_no_log_line_and_no_result() {
    let mut stack = stack().await;
    let (stop, worker) = worker(&stack, &[], |_| {}).await;
    let lines = "for i in $(seq 1 300); do echo line-$i; done";
    let running = stack
        .queue
        .submit(short(&["echo before", "sleep 3", lines]))
        .await;
    stack
        .queue
        .wait(running, "started", |j| {
            out(j, "step.kubernetes.main").contains("before")
        })
        .await;
    // Queued behind nothing, but submitted just before the outage: it must
    // survive the restart too.
    let queued = stack.queue.submit(short(&["echo after"])).await;

    stack.queue.stop().await;
    // The job ends while the queue is away: its pod succeeds in the cluster.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(stack.kube.clone(), "default");
    let cond = |p: Option<&k8s_openapi::api::core::v1::Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Succeeded")
    };
    let list = pods.list(&Default::default()).await.unwrap();
    let name = list
        .items
        .iter()
        .find(|p| !cond(Some(p)))
        .and_then(|p| p.metadata.name.clone());
    if let Some(name) = name {
        kube::runtime::wait::await_condition(pods.clone(), &name, cond)
            .await
            .unwrap();
    }
    stack.queue.restart().await;

    let job = stack.queue.ended(running).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let step = out(&job, "step.kubernetes.main");
    let got: Vec<&str> = step
        .lines()
        .filter_map(|l| l.strip_prefix("stdout: line-"))
        .collect();
    let want: Vec<String> = (1..=300).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "every line once, in order");
    let job = stack.queue.ended(queued).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    stop.cancel();
    assert_eq!(worker.await.unwrap().completed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_exits_by_itself_after_its_total_number_of_jobs() {
    let stack = stack().await;
    let first = stack.queue.submit(short(&["echo one"])).await;
    let (_stop, worker) = worker(&stack, &[], |o| o.num_total_jobs = Some(1)).await;
    // No stop: the worker ends once its one job is reported (a generous
    // bound, so that a worker that never stops fails instead of hanging).
    let summary = tokio::time::timeout(Duration::from_secs(300), worker)
        .await
        .expect("the worker did not stop after its one job")
        .unwrap();
    assert_eq!((summary.taken, summary.completed), (1, 1), "{summary:?}");
    assert_eq!(stack.queue.job(first, None).await["state"], "completed");
    let second = stack.queue.submit(short(&["echo two"])).await;
    assert_eq!(
        stack.queue.job(second, None).await["state"],
        "queued",
        "nobody takes jobs any more"
    );
}
