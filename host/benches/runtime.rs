//! The Kubernetes runtime's figures against `executor sim` in its own process: API requests per job, log latency from the pod to the uploader, and the executor's resident memory with 200 jobs at once. Run: `cargo bench -p executor --bench runtime`.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use executor::config::{Config, RawConfig};
use executor::job::log::LogEvent;
use executor::job::{Runner, Settings};
use executor::k8s::outcome::Outcome;
use executor::payload::JobPayload;
use executor::plugins::{Plugins, Runtime, RuntimeOptions};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    raw: RawConfig,
}

const JOBS: usize = 200;
const LINES: usize = 40;

fn vm(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix(" kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let mut sim = Command::new(env!("CARGO_BIN_EXE_executor"))
        .args(["sim", "--listen", "127.0.0.1:0", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .stderr(Stdio::piped())
        .spawn()
        .context("starting executor sim")?;
    let stderr = sim.stderr.take().context("sim stderr")?;
    let mut lines = std::io::BufReader::new(stderr).lines();
    loop {
        let line = lines.next().context("sim exited")??;
        if line.contains("serving") {
            break;
        }
    }
    let idle_rss = vm("VmRSS:");
    let args = [
        "bench",
        "--resource-request-memory=1Mi",
        "--resource-limit-memory=64Mi",
        "--resource-request-cpu=1m",
        "--api-qps=200",
        "--api-burst=400",
    ];
    let config = Config::from_raw(&Flags::parse_from(args).raw)?;
    let client = executor::k8s::client::client(Some(&kubeconfig), &config.kubernetes.api).await?;
    let runtime = Runtime::new(&RuntimeOptions {
        max_instances: 4,
        cache_dir: None,
    })?;
    let runner = Arc::new(Runner::new(
        client.clone(),
        Settings::new(&config, None),
        Arc::new(Plugins::none(runtime)),
        "bench".into(),
    ));
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    // The lines of each job's first batch, apart: they waited for the
    // container's start to reach the executor and for its log request,
    // which later lines did not (the tail's breakdown).
    let first_batches = Arc::new(Mutex::new(Vec::<Duration>::new()));
    // An entry's first batch, in two parts: from its first line's writing
    // (the container's start, to within its shell's start-up) to its
    // follower's start (the `Opened` event: the pod's status written, seen
    // through the watch, the follower spawned), and from there to the
    // hand-off (the log request, the first lines read, the pipeline).
    let to_follower = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let to_hand_off = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..JOBS {
        let runner = runner.clone();
        let latencies = latencies.clone();
        let first_batches = first_batches.clone();
        let (to_follower, to_hand_off) = (to_follower.clone(), to_hand_off.clone());
        tasks.spawn(async move {
            // A line every 50 ms: latency is measured on a live stream.
            let payload = JobPayload::parse(&serde_json::json!({
                "id": id, "dockerSteps": [{"key": "tick", "image": "alpine:3", "dir": "", "env": [],
                "commands": [format!("for i in $(seq 1 {LINES}); do echo line $i; sleep 0.05; done")]}]
            }).to_string())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (events, mut received) = mpsc::channel(64);
            let collect = tokio::spawn(async move {
                let mut lines = 0;
                let mut opened = std::collections::HashMap::new();
                while let Some(event) = received.recv().await {
                    if let LogEvent::Opened { entry, .. } = event {
                        opened.insert(entry, Timestamp::now());
                    }
                    if let LogEvent::Lines { written, entry, .. } = event {
                        let now = Timestamp::now();
                        if let (Some(at), Some(first)) = (opened.remove(&entry), written.iter().min()) {
                            let span = |a: Timestamp, b: Timestamp| b.duration_since(a).unsigned_abs();
                            to_follower.lock().unwrap_or_else(|e| e.into_inner()).push(span(*first, at));
                            to_hand_off.lock().unwrap_or_else(|e| e.into_inner()).push(span(at, now));
                        }
                        let into = if lines == 0 { &first_batches } else { &latencies };
                        let mut l = into.lock().unwrap_or_else(|e| e.into_inner());
                        for at in written {
                            l.push(now.duration_since(at).unsigned_abs());
                            lines += 1;
                        }
                    }
                }
                lines
            });
            let report = runner.run("bench", &payload, events, CancellationToken::new()).await;
            let lines = collect.await?;
            anyhow::ensure!(report.outcome == Outcome::Succeeded, "{}: {}", report.job, report.outcome.message());
            anyhow::ensure!(lines == LINES, "{}: {lines} lines", report.job);
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = started.elapsed();
    let peak_rss = vm("VmHWM:");
    let stats: serde_json::Value = serde_json::from_str(
        &client
            .request_text(http::Request::get("/sim/stats").body(Vec::new())?)
            .await?,
    )?;
    let total = stats["total"].as_u64().unwrap_or(0);
    let watches = stats["requests"]["watch pods"].as_u64().unwrap_or(0);
    let mut later = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut first = first_batches
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut parts =
        [to_follower, to_hand_off].map(|p| p.lock().unwrap_or_else(|e| e.into_inner()).clone());
    parts.iter_mut().for_each(|p| p.sort());
    let mut sorted: Vec<Duration> = later.iter().chain(&first).copied().collect();
    sorted.sort();
    later.sort();
    first.sort();
    println!(
        "runtime: {JOBS} concurrent jobs, {LINES} live lines each, against executor sim in its own process"
    );
    println!("  wall time                 {:.2} s", elapsed.as_secs_f64());
    println!(
        "  API requests              {total} in all, {:.2} per job ({watches} pod watch request(s) in all)",
        total as f64 / JOBS as f64
    );
    println!("    by kind                 {}", stats["requests"]);
    println!(
        "    one watch per job       would add {:.2} per job (a list and a watch each, before any restart)",
        2.0 - (watches as f64 + 1.0) / JOBS as f64
    );
    println!(
        "  log latency (pod write -> uploader hand-off, {} lines)  p50 {:?}  p99 {:?}  max {:?}",
        sorted.len(),
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.99),
        sorted.last().copied().unwrap_or_default()
    );
    for (what, lines) in [
        ("each job's first batch", &first),
        ("the later batches", &later),
    ] {
        println!(
            "    {what:<22}  {} lines  p50 {:?}  p99 {:?}",
            lines.len(),
            percentile(lines, 0.5),
            percentile(lines, 0.99),
        );
    }
    for (what, part) in [
        ("first line -> follower", &parts[0]),
        ("follower -> hand-off", &parts[1]),
    ] {
        println!(
            "      {what:<22}  {} entries  p50 {:?}  p99 {:?}",
            part.len(),
            percentile(part, 0.5),
            percentile(part, 0.99),
        );
    }
    println!(
        "  executor RSS              {:.1} MB before, peak {:.1} MB",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    let _ = sim.kill();
    let _ = sim.wait();
    Ok(())
}
