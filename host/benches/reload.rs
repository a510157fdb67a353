//! Reload of the four first-party plugins with a warm compile cache: the time to swap, and admission latency on two threads while reloads run against without. Prints figures; `cargo bench -p executor --bench reload`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use executor::k8s::spec::ApiServer;
use executor::plugins::{Current, JobContext, Plugins, PluginsConfig, Runtime, RuntimeOptions};
use executor::reload::{self, Reloaded, Reloader, Trigger};
use executor_tests::{realistic_job, shipped_components};

/// Admission threads: one per core of the project's standard machine.
const THREADS: usize = 2;

/// How many reloads each phase times; `cargo test --bench reload` runs the
/// bench once as a smoke test, with fewer.
fn reloads() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        50
    } else {
        3
    }
}

/// The four plugins as `examples/plugins.yaml` configures them; `generation`
/// changes an annotation, so that every reload has a new set to load.
fn config(generation: usize) -> String {
    let path = |name: &str| shipped_components().path(name).display().to_string();
    format!(
        r#"plugins:
  - name: annotate
    path: {annotate}
    settings:
      job:
        annotations:
          acme.com/source: "{{{{repository}}}}@{{{{commit}}}}"
          acme.com/generation: "{generation}"
      pod:
        labels:
          acme.com/queue: "{{{{queue}}}}"
          acme.com/job: "{{{{job_id}}}}"
  - name: scheduling-policy
    path: {scheduling}
    failurePolicy: fail
    settings:
      rules:
        - name: linters-on-their-pool
          match: {{images: ["ghcr.io/acme/**"]}}
          nodeSelector: {{pool: linters}}
          tolerations:
            - {{key: dedicated, operator: Equal, value: ci, effect: NoSchedule}}
      allowedRegistries: [docker.io, ghcr.io/acme]
  - name: pull-secrets
    path: {pull}
    failurePolicy: ignore
    settings:
      registries:
        - {{registry: ghcr.io, secrets: [ghcr-pull]}}
        - {{registry: "*.dkr.ecr.*.amazonaws.com", secrets: [ecr-pull]}}
  - name: redact
    path: {redact}
    timeoutMs: 1000
    settings:
      literals: []
      dropLines: ["^DEBUG "]
"#,
        annotate = path("annotate"),
        scheduling = path("scheduling-policy"),
        pull = path("pull-secrets"),
        redact = path("redact"),
    )
}

/// Writes the configuration whole, then renames it over, as an editor does.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn ctx() -> JobContext {
    JobContext {
        job_id: "1234".into(),
        queue: "batches".into(),
        repository: Some("github.com/acme/api".into()),
        commit: Some("3f5c9a1e2b7d4c8e9f0a1b2c3d4e5f60718293a4".into()),
        step_images: vec!["alpine:3.20".into()],
        executor_name: "executor-bench".into(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `p50 …, p99 …, max …` of `samples`.
fn figures(mut samples: Vec<Duration>, unit: &str) -> String {
    samples.sort();
    let scale = if unit == "ms" { 1e3 } else { 1e6 };
    let show = |d: Duration| format!("{:.1} {unit}", d.as_secs_f64() * scale);
    format!(
        "p50 {}, p99 {}, max {}",
        show(percentile(&samples, 0.50)),
        show(percentile(&samples, 0.99)),
        show(*samples.last().unwrap())
    )
}

/// The sample Job admitted in a loop on [`THREADS`] threads until `stop`,
/// each taking the set in force as a job does; every admission's latency.
fn admit_until(current: &Current, stop: &AtomicBool) -> Vec<Duration> {
    thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let (job, ctx) = (realistic_job(), ctx());
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let job = job.clone();
                        let started = Instant::now();
                        let plugins = current.get();
                        let outcome = plugins.admit(&ctx, job, &ApiServer);
                        samples.push(started.elapsed());
                        // A job keeps its set to its end: dropping the last
                        // reference to a replaced set belongs there, not to
                        // admission, so it stays out of the timing.
                        drop(plugins);
                        assert!(outcome.allowed(), "{:?}", outcome.message());
                    }
                    samples
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

fn main() {
    let reloads = reloads();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins.yaml");
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    replace(&path, &config(0));
    let runtime = Runtime::new(&RuntimeOptions {
        max_instances: 64,
        cache_dir: Some(cache),
    })
    .unwrap();

    // The first load compiles and fills the cache; every reload after finds it warm.
    let started = Instant::now();
    let loaded = reload::fingerprint(&path).unwrap();
    let plugins = Plugins::load(runtime, &PluginsConfig::from_file(&path).unwrap()).unwrap();
    let cold = started.elapsed();
    let names: Vec<String> = plugins.info().into_iter().map(|p| p.name).collect();
    let reloader = Reloader::new(Current::from(plugins), path.clone(), Some(loaded), None);
    let current = reloader.current().clone();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut generation = 0;
    let mut reload = || {
        generation += 1;
        replace(&path, &config(generation));
        let started = Instant::now();
        let result = tokio.block_on(reloader.reload(Trigger::Http)).unwrap();
        let took = started.elapsed();
        assert!(matches!(result, Reloaded::Swapped { .. }), "{result:?}");
        (took, generation)
    };
    println!(
        "\nreload of {} plugins ({}); first load, compiling into an empty cache: {:.2} s",
        names.len(),
        names.join(", "),
        cold.as_secs_f64()
    );

    // (a) The swap alone: read and hash the files, load the set from the
    // cache, run each plugin's init, swap.
    let swaps: Vec<Duration> = (0..reloads).map(|_| reload().0).collect();
    let info = current.get().info();
    assert!(
        info.iter().all(|p| p.cached),
        "a reload compiled instead of using the cache: {info:?}"
    );
    println!(
        "swap (Reloader::reload, changed configuration, cache warm), {reloads} reloads: {}",
        figures(swaps, "ms")
    );

    // (b) Admission latency without reloads, then while reloads run back to
    // back, on the same threads for about as long.
    let stop = AtomicBool::new(false);
    let during = Instant::now();
    let (with_reloads, (reload_times, last)) = thread::scope(|scope| {
        let admitting = scope.spawn(|| admit_until(&current, &stop));
        let mut times = Vec::new();
        let mut last = 0;
        for _ in 0..reloads {
            let (took, generation) = reload();
            times.push(took);
            last = generation;
        }
        stop.store(true, Ordering::Relaxed);
        (admitting.join().unwrap(), (times, last))
    });
    let during = during.elapsed();
    let job = current.get().admit(&ctx(), realistic_job(), &ApiServer).job;
    assert_eq!(
        job["metadata"]["annotations"]["acme.com/generation"],
        last.to_string(),
        "the last reload is in force"
    );

    stop.store(false, Ordering::Relaxed);
    let quiet = thread::scope(|scope| {
        let admitting = scope.spawn(|| admit_until(&current, &stop));
        thread::sleep(during);
        stop.store(true, Ordering::Relaxed);
        admitting.join().unwrap()
    });

    let rate = |n: usize| n as f64 / during.as_secs_f64();
    println!(
        "admission chain on {THREADS} threads (Current::get, then admit the sample Job), {:.1} s each:",
        during.as_secs_f64()
    );
    println!(
        "  without reloads:      {} admissions ({:.0}/s): {}",
        quiet.len(),
        rate(quiet.len()),
        figures(quiet, "µs")
    );
    println!(
        "  during {reloads} reloads:  {} admissions ({:.0}/s): {}",
        with_reloads.len(),
        rate(with_reloads.len()),
        figures(with_reloads, "µs")
    );
    println!("  the reloads meanwhile: {}\n", figures(reload_times, "ms"));
}
