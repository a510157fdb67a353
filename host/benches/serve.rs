//! The whole path (embedded queue → worker → simulator → upload → markComplete) with trivial steps: jobs per second at concurrency 1, 8 and 32, and the executor's own overhead per job. Prints figures; `cargo bench -p executor --bench serve`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use executor::config::{Config, RawConfig};
use executor::embedded::{Embedded, EmbeddedOptions};
use executor::job::{Runner, Settings};
use executor::plugins::{Plugins, Runtime, RuntimeOptions};
use executor::queue::client::{ClientOptions, QueueClient};
use executor::worker::{JobTimings, Worker, WorkerOptions};
use serde_json::json;
use sim::{Options, Sim};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    raw: RawConfig,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("whole path, trivial steps (`true`), no plugins, simulator with 3 nodes");
    println!(
        "{:>11} {:>5} {:>9} {:>13} {:>13} {:>14} {:>14} {:>11} {:>16} {:>12}",
        "concurrency",
        "jobs",
        "jobs/s",
        "start p50 ms",
        "start p99 ms",
        "finish p50 ms",
        "finish p99 ms",
        "ran p50 ms",
        "uploaded p50 ms",
        "main p50 ms"
    );
    for (concurrency, jobs) in [(1, 20), (8, 64), (32, 128)] {
        runtime.block_on(round(concurrency, jobs));
    }
    println!(
        "start: dequeue answered → create request sent; finish: the cluster done (pod end seen, last log event read) → markComplete sent"
    );
    println!(
        "ran / uploaded: the cluster done → the runner / the uploader returned (finish waits for both)"
    );
    println!(
        "main: last log event → pod end seen (the pod's `main` container runs after the last step's log ends: the cluster's time, not the executor's)"
    );
}

async fn round(concurrency: usize, jobs: usize) {
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), Options::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(EmbeddedOptions {
        db_path: dir.path().join("queue.db"),
        ..EmbeddedOptions::default()
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let password = embedded.executor_password().to_owned();
    let token = embedded.api_token().to_owned();
    let stop_queue = CancellationToken::new();
    let server = tokio::spawn(embedded.serve(listener, stop_queue.clone()));

    let config = Config::from_raw(
        &Flags::parse_from([
            "bench",
            "--resource-request-memory=1Mi",
            "--resource-limit-memory=64Mi",
            "--resource-request-cpu=1m",
            "--api-qps=1000",
            "--api-burst=2000",
            "--api-delete-qps=1000",
            "--api-delete-burst=2000",
        ])
        .raw,
    )
    .unwrap();
    let kube = executor::k8s::client::with_limits(
        sim.kube_config().await.unwrap(),
        &config.kubernetes.api,
    )
    .unwrap();
    let name = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let queue = QueueClient::new(ClientOptions {
        base: url.parse().unwrap(),
        password,
        executor_name: name.clone(),
        queues: vec!["default".into()],
        multi_queue: false,
        outage_limit: Duration::from_secs(60),
    })
    .unwrap();
    let (observer, mut timings) = mpsc::unbounded_channel::<JobTimings>();
    let mut options = WorkerOptions::from_config(&config.queue);
    options.max_jobs = concurrency;
    options.poll_interval = Duration::from_millis(50);
    options.observer = Some(observer);
    let runner = Arc::new(Runner::new(
        kube,
        Settings::new(&config, None),
        Arc::new(Plugins::none(
            Runtime::new(&RuntimeOptions {
                max_instances: 4,
                cache_dir: None,
            })
            .unwrap(),
        )),
        name,
    ));

    let http = reqwest::Client::new();
    for _ in 0..jobs {
        let resp = http
            .post(format!("{url}/api/v1/jobs"))
            .bearer_auth(&token)
            .json(&json!({"image": "alpine:3", "commands": ["true"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let stop = CancellationToken::new();
    let started = Instant::now();
    let worker = tokio::spawn(Worker::new(queue, runner, options).run(stop.clone()));
    let mut start = Vec::new();
    let mut finish = Vec::new();
    let mut ran = Vec::new();
    let mut uploaded = Vec::new();
    let mut main = Vec::new();
    for _ in 0..jobs {
        let t = timings.recv().await.unwrap();
        if let Some(c) = t.created {
            start.push(c.duration_since(t.dequeued));
        }
        if let Some(done) = t.cluster_done() {
            finish.push(t.reporting.saturating_duration_since(done));
            ran.push(t.ran.saturating_duration_since(done));
            uploaded.push(t.uploaded.saturating_duration_since(done));
        }
        if let (Some(l), Some(e)) = (t.last_event, t.ended) {
            main.push(e.saturating_duration_since(l));
        }
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let summary = worker.await.unwrap();
    assert_eq!(summary.completed as usize, jobs, "{summary:?}");
    stop_queue.cancel();
    server.await.unwrap().unwrap();
    drop(sim);
    let ms = |v: &mut Vec<Duration>, q: f64| {
        v.sort();
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{:>11} {:>5} {:>9.1} {:>13.2} {:>13.2} {:>14.2} {:>14.2} {:>11.2} {:>16.2} {:>12.2}",
        concurrency,
        jobs,
        jobs as f64 / elapsed.as_secs_f64(),
        ms(&mut start, 0.5),
        ms(&mut start, 0.99),
        ms(&mut finish, 0.5),
        ms(&mut finish, 0.99),
        ms(&mut ran, 0.5),
        ms(&mut uploaded, 0.5),
        ms(&mut main, 0.5),
    );
}
