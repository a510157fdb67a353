//! A soak: 2,000 short jobs through `executor serve` (its embedded queue, the image's four plugins) at concurrency 32 against the simulator, with both processes' resident memory after the first 100 jobs, halfway and after all. Prints figures; `cargo bench -p executor --bench soak` (`-- N` for another count; `EXECUTOR_BENCH_BINARY=<path>` to soak another build, such as the image's; `EXECUTOR_BENCH_BEFORE_BINARY=<path>` to soak that build first, in the same run, for a before and after).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{bench_binary, free_port, serve_process, sim_for_serve, status_kib as kib};
use serde_json::{Value, json};

const CONCURRENCY: usize = 32;
const WARM: usize = 100;

fn main() {
    // The before soak runs in a process of its own: the simulator's memory
    // is this process's, and one soak's must not count in the other's.
    if let Some(before) = std::env::var_os("EXECUTOR_BENCH_BEFORE_BINARY") {
        println!("before:");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(std::env::args_os().skip(1))
            .env("EXECUTOR_BENCH_BINARY", before)
            .env_remove("EXECUTOR_BENCH_BEFORE_BINARY")
            .status()
            .unwrap();
        assert!(status.success(), "the before soak failed: {status}");
        println!("after:");
    }
    let jobs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(jobs.max(WARM + 1)));
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn bench(jobs: usize) {
    // The API server keeps Event objects for an hour (`--event-ttl`), so
    // over a run of minutes they only pile up: ~35 KB per job. A TTL that
    // the run outlasts shows whether anything else does.
    let event_ttl = Duration::from_secs(60);
    let options = sim::Options {
        event_ttl,
        ..sim::Options::default()
    };
    let (sim, dir, kubeconfig, config) = sim_for_serve(options).await;
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let token = "soak-bench-token";
    // The default delete budget (10/s) would set the pace, not the executor.
    let mut serve = serve_process(
        &bench_binary(),
        &kubeconfig,
        &config,
        dir.path(),
        port,
        token,
        CONCURRENCY,
    )
    .env("EXECUTOR_KUBERNETES_API_DELETE_QPS", "1000")
    .env("EXECUTOR_KUBERNETES_API_DELETE_BURST", "2000")
    .spawn()
    .unwrap();
    let pid = serve.id().unwrap();
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{server}/api/v1/{path}");
    // The queue answers once serve has started.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let up = http.get(api("jobs")).bearer_auth(token).send().await;
        if up.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "serve never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let submit = |n: usize| {
        let http = http.clone();
        let url = api("jobs");
        async move {
            for i in 0..n {
                let resp = http
                    .post(&url)
                    .bearer_auth(token)
                    .json(&json!({
                        "image": "alpine:3",
                        "commands": [format!("echo soak job {i}; echo token=hunter2 done")],
                    }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 201, "submit");
            }
        }
    };
    // Counts the jobs that ended, by state; a bench may poll.
    let ended = || {
        let http = http.clone();
        let url = api("jobs?limit=10000");
        async move {
            let list: Value = http
                .get(&url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mut done = 0;
            let mut other = Vec::new();
            for job in list["jobs"].as_array().into_iter().flatten() {
                match job["state"].as_str().unwrap_or("?") {
                    "completed" => done += 1,
                    "queued" | "processing" => {}
                    s => other.push(s.to_owned()),
                }
            }
            (done, other)
        }
    };
    let wait_for = |n: usize| async move {
        loop {
            let (done, other) = ended().await;
            assert!(other.is_empty(), "jobs ended otherwise: {other:?}");
            if done >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let me = std::process::id();
    let started = Instant::now();
    submit(WARM).await;
    wait_for(WARM).await;
    let warm = (kib(pid, "VmRSS"), kib(me, "VmRSS"), started.elapsed());
    // Halfway too, so that a level reached during the run (a bounded
    // cache filling up) can be told from growth that goes on.
    let half = jobs / 2;
    submit(half - WARM).await;
    wait_for(half).await;
    let middle = (kib(pid, "VmRSS"), kib(me, "VmRSS"));
    submit(jobs - half).await;
    wait_for(jobs).await;
    let elapsed = started.elapsed();
    let end = (kib(pid, "VmRSS"), kib(me, "VmRSS"));
    let peak = (kib(pid, "VmHWM"), kib(me, "VmHWM"));
    let kept = |name| {
        let resource = sim::cluster::resource("", name);
        sim.cluster.store.select(resource, None, |_| true).len()
    };
    let (events, pods) = (kept("events"), kept("pods"));
    serve.start_kill().unwrap();
    let _ = serve.wait().await;
    drop(sim);

    println!("executor: {}", bench_binary().display());
    println!(
        "{jobs} jobs at concurrency {CONCURRENCY} in {:.1} s ({:.1} jobs/s), all completed",
        elapsed.as_secs_f64(),
        jobs as f64 / elapsed.as_secs_f64()
    );
    for (what, w, m, e, p) in [
        ("executor serve", warm.0, middle.0, end.0, peak.0),
        (
            "simulator (the bench process)",
            warm.1,
            middle.1,
            end.1,
            peak.1,
        ),
    ] {
        println!(
            "{what}: RSS after {WARM} jobs {:.1} MiB, after {half} {:.1} MiB, after {jobs} {:.1} MiB ({:+.1} % on {WARM}, {:+.1} % on {half}), peak {:.1} MiB",
            mib(w),
            mib(m),
            mib(e),
            (e as f64 / w as f64 - 1.0) * 100.0,
            (e as f64 / m as f64 - 1.0) * 100.0,
            mib(p)
        );
    }
    println!(
        "simulator objects at the end: {events} events (TTL {} s), {pods} pods",
        event_ttl.as_secs()
    );
}
