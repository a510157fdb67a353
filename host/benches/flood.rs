//! One job prints 1 GB without a newline and another prints `yes` for 60 s while 20 ordinary jobs run: `executor serve` (its embedded queue, the image's four plugins) against the simulator, as a separate process whose peak memory (VmHWM) is read at the end. Prints figures; `cargo bench -p executor --bench flood`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{free_port, serve_process, sim_for_serve, status_kib};
use serde_json::Value;

const ORDINARY: usize = 20;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let (sim, dir, kubeconfig, config) = sim_for_serve(sim::Options::default()).await;
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let token = "flood-bench-token";
    let mut serve = serve_process(
        &common::bench_binary(),
        &kubeconfig,
        &config,
        dir.path(),
        port,
        token,
        ORDINARY + 2,
    )
    .spawn()
    .unwrap();
    let pid = serve.id().unwrap();
    let cli = |args: Vec<String>| {
        let server = server.clone();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_executor"))
                .args(&args)
                .env("EXECUTOR_SERVER", server)
                .env("EXECUTOR_API_TOKEN", token)
                .output()
                .await
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }
    };
    // The queue answers once serve has started.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cli(vec!["jobs".into()]).await.0 {
        assert!(Instant::now() < deadline, "serve never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let submit = |script: &str| {
        let args = vec![
            "submit".into(),
            "--image".into(),
            "alpine:3".into(),
            "--".into(),
            script.to_owned(),
        ];
        async move {
            let (ok, out) = cli(args).await;
            assert!(ok, "submit failed");
            out.trim().to_owned()
        }
    };
    let started = Instant::now();
    // FLOOD_BASELINE=1: the two floods print one line each, for the
    // executor's memory with the ordinary jobs alone.
    let baseline = std::env::var_os("FLOOD_BASELINE").is_some();
    let (flood_script, yes_script) = if baseline {
        ("echo quiet", "echo quiet")
    } else {
        (
            "head -c 1000000000 /dev/zero | tr '\\0' a",
            "timeout 60 yes || true",
        )
    };
    let flood = submit(flood_script).await;
    let yes = submit(yes_script).await;
    let mut ordinary = Vec::new();
    for _ in 0..ORDINARY {
        ordinary.push(
            submit("for i in $(seq 1 30); do echo \"ordinary line $i\"; sleep 1; done").await,
        );
    }
    let all: Vec<String> = [flood.clone(), yes.clone()]
        .into_iter()
        .chain(ordinary.iter().cloned())
        .collect();
    let mut states = Vec::new();
    for id in &all {
        let (_, out) = cli(vec!["logs".into(), "-f".into(), id.clone()]).await;
        drop(out);
        let (_, shown) = cli(vec!["show".into(), "-o".into(), "json".into(), id.clone()]).await;
        let job: Value = serde_json::from_str(&shown).unwrap_or_default();
        let sizes: Vec<usize> = job["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["out"].as_str().map_or(0, str::len))
            .collect();
        states.push((
            id.clone(),
            job["state"].as_str().unwrap_or("?").to_owned(),
            sizes,
        ));
    }
    let elapsed = started.elapsed();
    let peak = status_kib(pid, "VmHWM");
    serve.start_kill().unwrap();
    let _ = serve.wait().await;
    drop(sim);

    for (id, state, sizes) in &states {
        let what = if *id == flood {
            "1 GB without a newline"
        } else if *id == yes {
            "yes for 60 s"
        } else {
            "ordinary"
        };
        if what != "ordinary" {
            println!("job {id} ({what}): {state}; entry sizes {sizes:?} bytes");
        }
    }
    let done = states[2..]
        .iter()
        .filter(|(_, s, _)| s == "completed")
        .count();
    println!("ordinary jobs completed: {done} of {ORDINARY}");
    println!(
        "executor serve peak RSS (VmHWM): {:.1} MiB; all {} jobs ended after {:.1} s",
        peak as f64 / 1024.0,
        all.len(),
        elapsed.as_secs_f64()
    );
}
