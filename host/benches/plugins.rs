//! Plugin benchmarks: the admission chain on a realistic Job (fresh instances per call) and `redact` throughput through the host against the same code run natively.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use executor::k8s::spec::ApiServer;
use executor::plugins::{
    JobContext, LogRecord, PluginSpec, Plugins, PluginsConfig, Runtime, RuntimeOptions, Stream,
};
use executor_tests::{realistic_job, shipped_components};
use serde_json::json;

const LOG_BYTES: usize = 50 * 1024 * 1024;
const BATCH: usize = 1000;

fn ctx() -> JobContext {
    JobContext {
        job_id: "1234".into(),
        queue: "batches".into(),
        repository: Some("github.com/acme/api".into()),
        commit: Some("3f5c9a1e2b7d4c8e9f0a1b2c3d4e5f60718293a4".into()),
        step_images: vec!["alpine:3.20".into(), "ghcr.io/acme/linter:2.1".into()],
        executor_name: "executor-bench".into(),
    }
}

fn spec(name: &str, settings: serde_json::Value) -> PluginSpec {
    let mut s = PluginSpec::new(name, shipped_components().path(name));
    s.settings = settings;
    s
}

/// `EXECUTOR_BENCH_BEFORE`: a directory with the first-party plugins built
/// at an earlier revision (`scripts/bench-before <rev>` makes one), so that
/// before and after are measured side by side in one run by the same host.
fn before() -> Option<std::path::PathBuf> {
    std::env::var_os("EXECUTOR_BENCH_BEFORE").map(Into::into)
}

/// `specs` with each file taken from `dir` instead.
fn from_dir(specs: Vec<PluginSpec>, dir: &std::path::Path) -> Vec<PluginSpec> {
    specs
        .into_iter()
        .map(|mut s| {
            let file = s
                .path
                .file_name()
                .expect("a component file name")
                .to_owned();
            s.path = dir.join(file);
            s
        })
        .collect()
}

fn runtime() -> Arc<Runtime> {
    Runtime::new(&RuntimeOptions {
        max_instances: 64,
        cache_dir: None,
    })
    .unwrap()
}

fn chain(dir: Option<&std::path::Path>) -> Plugins {
    let specs = vec![
        spec(
            "annotate",
            json!({
                "job": {"annotations": {"acme.com/source": "{{repository}}@{{commit}}"}, "labels": {"team": "infra"}},
                "pod": {"labels": {"acme.com/queue": "{{queue}}"}}
            }),
        ),
        spec(
            "scheduling-policy",
            json!({
                "rules": [
                    {"match": {"images": ["ghcr.io/acme/**"]}, "nodeSelector": {"pool": "linters"},
                     "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}]},
                    {"match": {"repositories": ["github.com/acme/*"]},
                     "nodeAffinity": {"required": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}}
                ],
                "allowedRegistries": ["docker.io", "ghcr.io/acme"]
            }),
        ),
        spec(
            "pull-secrets",
            json!({"registries": [{"registry": "ghcr.io", "secrets": ["ghcr-pull"]}], "default": ["mirror"]}),
        ),
    ];
    let plugins = match dir {
        Some(dir) => from_dir(specs, dir),
        None => specs,
    };
    Plugins::load(runtime(), &PluginsConfig { plugins }).unwrap()
}

/// A deterministic build log of about `bytes` bytes: compiler output, test
/// lines, warnings, and a secret every few hundred lines.
fn build_log(bytes: usize) -> Vec<String> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut lines = Vec::new();
    let mut total = 0;
    while total < bytes {
        let n = next();
        let line = match n % 500 {
            0 => format!("export AWS_ACCESS_KEY_ID=AKIA{:016X}", n >> 4)
                .chars()
                .take(40)
                .collect(),
            1 => format!(
                "fetching with token ghp_{:036x}",
                u128::from(n) * 0x1_0000_0001
            ),
            2 => format!("db connect password={:x} host=10.0.0.{}", n, n % 255),
            3..=150 => format!(
                "   Compiling crate-{} v0.{}.{} (/job/repository/crates/crate-{})",
                n % 997,
                n % 17,
                n % 31,
                n % 997
            ),
            151..=300 => format!("test tests::case_{}_{} ... ok", n % 10_007, n % 13),
            301..=380 => format!(
                "warning: unused variable: `value_{}` --> src/module_{}/mod.rs:{}:{}",
                n % 97,
                n % 41,
                n % 2000,
                n % 80
            ),
            381..=450 => format!(
                "npm WARN deprecated package-{}@{}.{}.{}: use something else",
                n % 503,
                n % 9,
                n % 20,
                n % 7
            ),
            _ => format!(
                "[{:>6}ms] step {} of 12: ran make -j4 target-{} in /job/repository (ok)",
                n % 100_000,
                n % 12,
                n % 89
            ),
        };
        total += line.len() + 1;
        lines.push(line);
    }
    lines
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn admission(c: &mut Criterion) {
    let plugins = chain(None);
    let job = realistic_job();
    let out = plugins.admit(&ctx(), job.clone(), &ApiServer);
    assert!(out.allowed() && out.trail.len() == 3, "{:?}", out.message());
    c.bench_function(
        "admission chain (annotate, scheduling-policy, pull-secrets)",
        |b| b.iter(|| black_box(plugins.admit(&ctx(), job.clone(), &ApiServer))),
    );
    // Criterion reports the mean and median; the issue asks for p50 and p99.
    // With a build from before, the two chains take turns call by call, so
    // that both see the same machine.
    let before = before().map(|dir| chain(Some(&dir)));
    if let Some(before) = &before {
        // Both must make the same Job, however they answer.
        let (then, now) = (
            before.admit(&ctx(), job.clone(), &ApiServer),
            plugins.admit(&ctx(), job.clone(), &ApiServer),
        );
        assert_eq!((then.decision, then.job), (now.decision, now.job));
    }
    let time = |plugins: &Plugins| {
        let start = Instant::now();
        black_box(plugins.admit(&ctx(), job.clone(), &ApiServer));
        start.elapsed()
    };
    // The floor: three instances of a test guest that answers at once
    // (an empty patch), so what a plugin costs beyond its own work shows.
    let floor = Plugins::load(
        runtime(),
        &PluginsConfig {
            plugins: ["a", "b", "c"]
                .map(|name| {
                    let mut s = spec("patcher", json!([]));
                    s.name = name.into();
                    s
                })
                .into(),
        },
    )
    .unwrap();
    let (mut now, mut then, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3000 {
        now.push(time(&plugins));
        if let Some(before) = &before {
            then.push(time(before));
        }
        bare.push(time(&floor));
    }
    let summary = |samples: &mut Vec<Duration>| {
        samples.sort();
        format!(
            "p50 {:.1} µs, p99 {:.1} µs",
            percentile(samples, 0.50).as_secs_f64() * 1e6,
            percentile(samples, 0.99).as_secs_f64() * 1e6,
        )
    };
    println!(
        "\nadmission chain of 3 plugins on a {}-byte Job, fresh instances ({} calls): {}",
        job.to_string().len(),
        now.len(),
        summary(&mut now),
    );
    if !then.is_empty() {
        println!("  the same chain built before: {}", summary(&mut then));
    }
    println!(
        "  floor, 3 instances of a guest that answers at once: {}",
        summary(&mut bare)
    );
    println!();
}

fn redact(c: &mut Criterion) {
    let lines = build_log(LOG_BYTES);
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let host_batches: Vec<Vec<LogRecord>> = lines
        .chunks(BATCH)
        .map(|c| {
            c.iter()
                .map(|t| LogRecord {
                    stream: Stream::Stdout,
                    text: t.clone(),
                })
                .collect()
        })
        .collect();
    let native_batches: Vec<Vec<plugin_sdk::LogRecord>> = lines
        .chunks(BATCH)
        .map(|c| c.iter().map(plugin_sdk::LogRecord::stdout).collect())
        .collect();
    let load = |dir: Option<&std::path::Path>| {
        let specs = vec![spec("redact", json!({}))];
        let plugins = match dir {
            Some(dir) => from_dir(specs, dir),
            None => specs,
        };
        Plugins::load(runtime(), &PluginsConfig { plugins }).unwrap()
    };
    let plugins = load(None);
    let before = before().map(|dir| load(Some(&dir)));

    let run = |plugins: &Plugins| {
        let mut session = plugins.log_session(ctx());
        let mut kept = 0;
        for batch in &host_batches {
            kept += session
                .filter("step.kubernetes.step.0", batch.clone())
                .unwrap()
                .len();
        }
        kept
    };
    let run_wasm = || run(&plugins);
    let run_native = || {
        let mut redactor = redact::Redactor::new(redact::Settings::default()).unwrap();
        let mut kept = 0;
        for batch in &native_batches {
            kept += redactor
                .records("step.kubernetes.step.0", batch.clone())
                .len();
        }
        kept
    };
    assert_eq!(run_wasm(), run_native(), "both paths keep the same lines");

    let mut group = c.benchmark_group("redact 50 MB build log");
    group
        .sample_size(10)
        .throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("through the host (wasm)", |b| {
        b.iter(|| black_box(run_wasm()))
    });
    group.bench_function("native Rust", |b| b.iter(|| black_box(run_native())));
    group.finish();

    // Side by side in one run, alternating, best of five each.
    let (mut wasm, mut native, mut then) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        let t = Instant::now();
        black_box(run_wasm());
        wasm = wasm.min(t.elapsed());
        let t = Instant::now();
        black_box(run_native());
        native = native.min(t.elapsed());
        if let Some(before) = &before {
            let t = Instant::now();
            black_box(run(before));
            then = then.min(t.elapsed());
        }
    }
    let mbps = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    println!(
        "\nredact over {:.1} MB ({} lines, batches of {BATCH}): wasm {:.0} MB/s, native {:.0} MB/s, ratio {:.2}x\n",
        bytes as f64 / 1e6,
        lines.len(),
        mbps(wasm),
        mbps(native),
        native.as_secs_f64() / wasm.as_secs_f64()
    );
    if before.is_some() {
        println!(
            "  redact built before: wasm {:.0} MB/s, ratio {:.2}x\n",
            mbps(then),
            native.as_secs_f64() / then.as_secs_f64()
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    admission(&mut c);
    redact(&mut c);
    c.final_summary();
}
