//! The operations port as a kubelet and Prometheus meet it, on the whole product in one process (the embedded queue, the worker, the simulator): liveness that ignores outages, readiness that says why, metrics on /metrics and on every heartbeat.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use executor::config::{Config, RawConfig};
use executor::embedded::{Embedded, EmbeddedOptions};
use executor::job::{Runner, Settings};
use executor::ops::{self, PluginsState, Readiness};
use executor::plugins::{Plugins, PluginsConfig, Runtime, RuntimeOptions};
use executor::queue::client::{ClientOptions, QueueClient};
use executor::worker::{Summary, Worker, WorkerOptions};
use executor_tests::components;
use serde_json::{Value, json};
use sim::{Options, Sim};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    raw: RawConfig,
}

const POLL: Duration = Duration::from_millis(100);
const HEARTBEAT: Duration = Duration::from_millis(200);
/// Long enough for a slow build machine, short enough to fail a hang.
const DEADLINE: Duration = Duration::from_secs(120);

/// The embedded queue, stoppable.
struct Queue {
    _dir: tempfile::TempDir,
    url: String,
    token: String,
    password: String,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Queue {
    async fn start() -> Queue {
        let dir = tempfile::tempdir().unwrap();
        let embedded = Embedded::open(EmbeddedOptions {
            db_path: dir.path().join("queue.db"),
            ..EmbeddedOptions::default()
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (token, password) = (
            embedded.api_token().to_owned(),
            embedded.executor_password().to_owned(),
        );
        let stop = CancellationToken::new();
        let serving = stop.clone();
        let task = tokio::spawn(async move { embedded.serve(listener, serving).await.unwrap() });
        Queue {
            _dir: dir,
            url,
            token,
            password,
            stop,
            task: Some(task),
        }
    }

    /// Stops serving: connections are refused from now on.
    async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let resp = request.send().await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }
}

/// One executor as `executor serve` assembles it, with its operations port.
struct Executor {
    ops: SocketAddr,
    stop: CancellationToken,
    worker: JoinHandle<Summary>,
    shutdown: CancellationToken,
}

/// An executor taking jobs from `queue_url` (reachable or not), with the
/// annotate plugin when `plugin` is set.
async fn executor(sim: &Sim, queue_url: &str, password: &str, plugin: bool) -> Executor {
    let config = Config::from_raw(
        &Flags::parse_from([
            "test",
            "--resource-request-memory=1Mi",
            "--resource-limit-memory=64Mi",
            "--resource-request-cpu=1m",
            "--debug-listen=127.0.0.1:0",
        ])
        .raw,
    )
    .unwrap();
    let readiness = Readiness::new(ops::readiness::window(POLL, HEARTBEAT));
    let shutdown = CancellationToken::new();
    let listener = ops::server::bind(config.ops.listen.unwrap()).await.unwrap();
    let ops_addr = listener.local_addr().unwrap();
    tokio::spawn(ops::server::serve(
        listener,
        readiness.clone(),
        ops::server::ReloadSlot::default(),
        shutdown.clone(),
    ));

    let kube = executor::k8s::client::observed(
        sim.kube_config().await.unwrap(),
        &config.kubernetes.api,
        Some(readiness.api()),
    )
    .unwrap();
    tokio::spawn(ops::ping::api_server(
        kube.clone(),
        readiness.api(),
        readiness.window() / 3,
        shutdown.clone(),
    ));
    let plugins = if plugin {
        annotate()
    } else {
        Plugins::none(runtime())
    };
    readiness.plugins(PluginsState::Loaded {
        names: plugins.info().into_iter().map(|p| p.name).collect(),
        skipped: vec![],
    });

    let name = format!("ops-test-{}", uuid::Uuid::new_v4().simple());
    let queue = QueueClient::new(ClientOptions {
        base: queue_url.parse().unwrap(),
        password: password.to_owned(),
        executor_name: name.clone(),
        queues: vec!["default".into()],
        multi_queue: false,
        outage_limit: Duration::from_secs(300),
    })
    .unwrap()
    .answers_to(readiness.queue());
    let mut options = WorkerOptions::from_config(&config.queue);
    options.poll_interval = POLL;
    options.heartbeat_interval = HEARTBEAT;
    let routes = Some(queue_url.parse().unwrap());
    let runner = Arc::new(Runner::new(
        kube,
        Settings::new(&config, routes),
        Arc::new(plugins),
        name,
    ));
    let stop = CancellationToken::new();
    let worker = tokio::spawn(Worker::new(queue, runner, options).run(stop.clone()));
    Executor {
        ops: ops_addr,
        stop,
        worker,
        shutdown,
    }
}

impl Executor {
    async fn get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::get(format!("http://{}{path}", self.ops))
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// Polls `path` until `until` holds for its status and body.
    async fn wait(&self, path: &str, what: &str, until: impl Fn(u16, &str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (status, body) = self.get(path).await;
            if until(status, &body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never {what}; last {status}:\n{body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) -> Summary {
        self.stop.cancel();
        let summary = self.worker.await.unwrap();
        self.shutdown.cancel();
        summary
    }
}

fn runtime() -> Arc<Runtime> {
    Runtime::new(&RuntimeOptions {
        max_instances: 4,
        cache_dir: Some(executor_tests::plugin_cache()),
    })
    .unwrap()
}

fn annotate() -> Plugins {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins.yaml");
    std::fs::write(
        &path,
        format!(
            "plugins:\n  - name: annotate\n    path: {}\n    settings:\n      job:\n        annotations:\n          acme.com/queue: \"{{{{queue}}}}\"\n",
            components().path("annotate").display()
        ),
    )
    .unwrap();
    Plugins::load(runtime(), &PluginsConfig::from_file(&path).unwrap()).unwrap()
}

async fn sim() -> Sim {
    Sim::start("127.0.0.1:0".parse().unwrap(), Options::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_holds_while_the_queue_is_unreachable_and_readiness_says_it_never_answered() {
    let sim = sim().await;
    // An address where nothing listens.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let unreachable = format!("http://{}", gone.local_addr().unwrap());
    drop(gone);
    let executor = executor(&sim, &unreachable, "secret", false).await;

    let body = executor
        .wait("/readyz", "heard from the API server", |_, body| {
            body.contains("[+]kubernetes ok")
        })
        .await;
    let (status, body_now) = executor.get("/readyz").await;
    assert_eq!(status, 503, "not ready without the queue:\n{body_now}");
    assert!(
        body.contains("[-]queue failed: no answer yet\n")
            && body.ends_with("readyz check failed\n"),
        "the reason is in the body:\n{body}"
    );
    assert_eq!(
        executor.get("/healthz").await,
        (200, "ok\n".to_owned()),
        "liveness does not depend on the queue"
    );
    executor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_passes_when_all_answer_and_fails_once_the_queue_is_down_past_the_window() {
    let sim = sim().await;
    let mut queue = Queue::start().await;
    let executor = executor(&sim, &queue.url, &queue.password, false).await;
    let ready = executor
        .wait("/readyz", "passed", |status, _| status == 200)
        .await;
    for check in ["config", "plugins", "kubernetes", "queue", "draining"] {
        assert!(ready.contains(&format!("[+]{check} ok")), "{ready}");
    }

    queue.stop().await;
    let body = executor
        .wait(
            "/readyz",
            "failed after the queue went away",
            |status, _| status == 503,
        )
        .await;
    assert!(
        body.contains("[-]queue failed: no answer for") && body.contains("[+]kubernetes ok"),
        "only the queue fails, with how long it has been silent:\n{body}"
    );
    assert_eq!(executor.get("/healthz").await.0, 200);
    executor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_shows_in_the_metrics_and_in_the_executors_heartbeat() {
    // The only test in this binary that finishes a job: the recorder is
    // the process's, so its counts are this test's.
    assert!(ops::metrics::install());
    let sim = sim().await;
    let queue = Queue::start().await;
    let executor = executor(&sim, &queue.url, &queue.password, true).await;
    let job = queue
        .api(
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(json!({"image": "alpine:3", "commands": ["echo one", "echo two"]})),
        )
        .await;
    let id = job["id"].as_i64().unwrap();

    let finished = r#"executor_jobs_finished_total{outcome="succeeded"} 1"#;
    let metrics = executor
        .wait("/metrics", "counted the job", |_, body| {
            body.contains(finished)
        })
        .await;
    for series in [
        "# HELP executor_jobs_finished_total Jobs finished",
        "# TYPE executor_job_duration_seconds histogram",
        r#"executor_job_duration_seconds_bucket{outcome="succeeded",le=""#,
        r#"executor_job_duration_seconds_count{outcome="succeeded"} 1"#,
        r#"executor_pod_pending_seconds_bucket{le=""#,
        r#"executor_plugin_calls_total{plugin="annotate",hook="admit"} 1"#,
        r#"executor_plugin_call_duration_seconds_bucket{plugin="annotate",hook="admit",le="#,
        r#"executor_queue_requests_total{call="markComplete",code="2"#,
        r#"executor_queue_requests_total{call="dequeue",code="#,
        r#"executor_kube_requests_total{verb="POST",code="201"}"#,
        "executor_jobs_running 0",
        "executor_log_lines_total",
        "executor_log_uploaded_bytes_total",
        "executor_log_upload_delay_seconds_bucket",
    ] {
        assert!(metrics.contains(series), "no {series:?} in:\n{metrics}");
    }
    let job = queue
        .api(reqwest::Method::GET, &format!("/api/v1/jobs/{id}"), None)
        .await;
    assert_eq!(job["state"], "completed", "{job:#}");

    // The heartbeats after the job carry the same text.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let list = queue
            .api(reqwest::Method::GET, "/api/v1/executors", None)
            .await;
        let carried = list["executors"].as_array().unwrap().iter().any(|e| {
            e["telemetry"]["prometheusMetrics"]
                .as_str()
                .is_some_and(|m| m.contains(finished))
        });
        if carried {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeat carried the metrics: {list:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(executor.stop().await.completed, 1);
}

#[tokio::test]
async fn a_busy_operations_port_is_an_error_naming_the_variable_and_the_way_out() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = ops::server::bind(addr).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("EXECUTOR_DEBUG_LISTEN: cannot listen on {addr}: "))
            && err.contains("port 0 picks a free one")
            && err.contains("`off`"),
        "{err}"
    );
}

#[test]
fn serve_stops_at_start_when_its_operations_port_is_busy() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_executor"))
        .arg("serve")
        .env("EXECUTOR_DATA_DIR", dir.path())
        .env("HOME", dir.path())
        .env("KUBECONFIG", "")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("EXECUTOR_FRONTEND_URL")
        .env("EXECUTOR_LISTEN", "127.0.0.1:0")
        .env("EXECUTOR_DEBUG_LISTEN", &addr)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: EXECUTOR_DEBUG_LISTEN: cannot listen on {addr}"
        )),
        "{stderr}"
    );
}
