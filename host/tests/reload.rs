//! Hot reload of the plugin set: a change is swapped in whole, a broken set is refused while the old one runs on, a ConfigMap's symlink swap is noticed, and jobs running meanwhile each see one set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use executor::config::{Config, RawConfig};
use executor::job::{Runner, Settings};
use executor::k8s::outcome::Outcome;
use executor::ops::{PluginsState, Readiness};
use executor::payload::JobPayload;
use executor::plugins::{Current, JobContext, Plugins, PluginsConfig, Runtime, RuntimeOptions};
use executor::reload::{self, Attempt, Reloaded, Reloader, Trigger};
use executor_tests::components;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use serde_json::{Value, json};
use sim::{Options, Sim};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Enough for any reload to be noticed; a miss fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

/// A configuration of the annotate plugin, once per name in `names`, each
/// setting the job annotation `acme.com/<name>` to `generation`.
fn annotating(names: &[&str], generation: &str) -> String {
    let mut yaml = String::from("plugins:\n");
    for name in names {
        yaml.push_str(&format!(
            "  - name: {name}\n    path: {}\n    settings:\n      job:\n        annotations:\n          acme.com/{name}: \"{generation}\"\n",
            components().path("annotate").display()
        ));
    }
    yaml
}

/// Writes `text` to `path` as editors and `kubectl cp` do: whole, then renamed over.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The plugins of `path`, loaded as `serve` loads them (compiled plugins
/// cached beside the configuration), with their reloader.
fn load(path: &Path, readiness: Option<Readiness>) -> Arc<Reloader> {
    let cache = path.parent().unwrap().join(".cache");
    std::fs::create_dir_all(&cache).unwrap();
    let runtime = Runtime::new(&RuntimeOptions {
        max_instances: 64,
        cache_dir: Some(cache),
    })
    .unwrap();
    let loaded = reload::fingerprint(path).unwrap();
    let plugins = Plugins::load(runtime, &PluginsConfig::from_file(path).unwrap()).unwrap();
    if let Some(readiness) = &readiness {
        readiness.plugins(PluginsState::Loaded {
            names: plugins.info().into_iter().map(|p| p.name).collect(),
            skipped: Vec::new(),
        });
    }
    Arc::new(Reloader::new(
        Current::from(plugins),
        path.to_owned(),
        Some(loaded),
        readiness,
    ))
}

/// The annotations `plugins` give the sample Job.
fn annotations(plugins: &Plugins) -> Value {
    let job: Value = serde_json::from_str(include_str!("../../tests/fixtures/job.json")).unwrap();
    let ctx = JobContext {
        job_id: "1".into(),
        queue: "batches".into(),
        repository: None,
        commit: None,
        step_images: vec!["alpine:3".into()],
        executor_name: "reload-test".into(),
    };
    let outcome = plugins.admit(&ctx, job, &|_: &str| Ok(()));
    outcome.job["metadata"]["annotations"].clone()
}

/// The next reload after the one `attempts` last saw.
async fn next(attempts: &mut watch::Receiver<Option<Attempt>>) -> Attempt {
    tokio::time::timeout(PATIENCE, attempts.changed())
        .await
        .expect("a reload within the patience")
        .unwrap();
    attempts.borrow_and_update().clone().unwrap()
}

#[tokio::test]
async fn a_changed_configuration_is_swapped_in_and_a_started_job_keeps_its_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins.yaml");
    std::fs::write(&path, annotating(&["first"], "1")).unwrap();
    let reloader = load(&path, None);
    let mut attempts = reloader.attempts();
    let stop = CancellationToken::new();
    reloader.clone().spawn(stop.clone());
    // The check once the watch is in place: nothing changed since the load.
    let first = next(&mut attempts).await;
    assert_eq!(first.result, Ok(Reloaded::Unchanged), "{first:?}");

    let started = reloader.current().get();
    replace(&path, &annotating(&["first", "second"], "2"));
    let swapped = next(&mut attempts).await;
    assert_eq!(swapped.trigger, Trigger::File);
    assert_eq!(
        swapped.result,
        Ok(Reloaded::Swapped {
            names: vec!["first".into(), "second".into()]
        })
    );
    let now = annotations(&reloader.current().get());
    assert_eq!(
        (&now["acme.com/first"], &now["acme.com/second"]),
        (&json!("2"), &json!("2"))
    );
    let kept = annotations(&started);
    assert_eq!(kept["acme.com/first"], "1", "a started job keeps its set");
    assert!(kept.get("acme.com/second").is_none(), "{kept}");

    assert_eq!(
        reloader.reload(Trigger::Http).await.unwrap(),
        Reloaded::Unchanged,
        "the same files again are no reload"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_broken_new_set_is_refused_the_old_one_runs_on_and_readiness_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins.yaml");
    std::fs::write(&path, annotating(&["first"], "1")).unwrap();
    let readiness = Readiness::new(Duration::from_secs(15));
    let reloader = load(&path, Some(readiness.clone()));
    let before = reloader.current().get();

    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm but not a component").unwrap();
    replace(
        &path,
        &format!(
            "{}  - name: broken\n    path: {}\n",
            annotating(&["first"], "2"),
            broken.display()
        ),
    );
    let refused = reloader
        .reload(Trigger::Http)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("broken"), "names the plugin: {refused}");
    assert!(
        Arc::ptr_eq(&before, &reloader.current().get()),
        "the old set runs on"
    );
    assert_eq!(
        annotations(&reloader.current().get())["acme.com/first"],
        "1"
    );
    let report = readiness.report(Instant::now());
    let plugins = report.checks.iter().find(|c| c.name == "plugins").unwrap();
    assert!(plugins.ok, "a refused reload is no reason to restart");
    assert!(
        plugins
            .detail
            .contains("the last reload was refused and these run on: ")
            && plugins.detail.contains("broken"),
        "{}",
        plugins.detail
    );
    assert!(
        !plugins.detail.contains('\n'),
        "one line: {}",
        plugins.detail
    );

    // The same broken files again are refused again, not "unchanged".
    assert!(reloader.reload(Trigger::Signal).await.is_err());
    replace(&path, &annotating(&["first"], "3"));
    assert!(matches!(
        reloader.reload(Trigger::Signal).await,
        Ok(Reloaded::Swapped { .. })
    ));
    let report = readiness.report(Instant::now());
    let plugins = report.checks.iter().find(|c| c.name == "plugins").unwrap();
    assert_eq!(plugins.detail, "loaded first");
}

/// Lays out `dir` as the kubelet lays out a ConfigMap volume holding
/// `plugins.yaml`: a timestamped directory, `..data` pointing at it, and
/// the key as a symlink through `..data`.
fn configmap_volume(dir: &Path, generation: &str, text: &str) {
    let data = dir.join(format!("..2026_11_29_{generation}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("plugins.yaml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(data.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let key = dir.join("plugins.yaml");
    if !key.exists() {
        std::os::unix::fs::symlink("..data/plugins.yaml", &key).unwrap();
    }
}

#[tokio::test]
async fn a_configmap_volumes_symlink_swap_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("plugins");
    std::fs::create_dir(&volume).unwrap();
    configmap_volume(&volume, "1", &annotating(&["first"], "1"));
    let path: PathBuf = volume.join("plugins.yaml");
    let reloader = load(&path, None);
    let mut attempts = reloader.attempts();
    let stop = CancellationToken::new();
    reloader.clone().spawn(stop.clone());
    next(&mut attempts).await;

    // The kubelet's update: a new directory, `..data` renamed over, the old
    // directory removed. The key's own symlink never changes.
    configmap_volume(&volume, "2", &annotating(&["first"], "2"));
    std::fs::remove_dir_all(volume.join("..2026_11_29_1")).unwrap();
    let swapped = next(&mut attempts).await;
    assert!(
        matches!(swapped.result, Ok(Reloaded::Swapped { .. })),
        "{swapped:?}"
    );
    assert_eq!(
        annotations(&reloader.current().get())["acme.com/first"],
        "2"
    );
    stop.cancel();
}

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    raw: RawConfig,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_running_through_reloads_each_see_one_whole_set_and_none_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins.yaml");
    let names = ["first", "second", "third"];
    std::fs::write(&path, annotating(&names, "0")).unwrap();
    let reloader = load(&path, None);
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), Options::default())
        .await
        .unwrap();
    let config = Config::from_raw(
        &Flags::parse_from([
            "test",
            "--resource-request-memory=1Mi",
            "--resource-limit-memory=64Mi",
            "--resource-request-cpu=1m",
            "--keep-jobs=true",
        ])
        .raw,
    )
    .unwrap();
    let client = executor::k8s::client::with_limits(
        sim.kube_config().await.unwrap(),
        &config.kubernetes.api,
    )
    .unwrap();
    let runner = Arc::new(Runner::new(
        client.clone(),
        Settings::new(&config, None),
        reloader.current().clone(),
        "reload-test".into(),
    ));

    let spawn = |jobs: &mut tokio::task::JoinSet<Outcome>, id: i64| {
        let runner = runner.clone();
        jobs.spawn(async move {
            let payload = JobPayload::parse(
                &json!({"id": id, "dockerSteps": [{"key": "main", "image": "alpine:3", "commands": ["echo hi"], "dir": "", "env": []}]})
                    .to_string(),
            )
            .unwrap();
            let (events, mut drained) = mpsc::channel(64);
            tokio::spawn(async move { while drained.recv().await.is_some() {} });
            runner
                .run("default", &payload, events, CancellationToken::new())
                .await
                .outcome
        });
    };
    // Two jobs start, then a reload races their admission; six times, each
    // set differing from the one before in every plugin.
    let mut jobs = tokio::task::JoinSet::new();
    for generation in 1..=6 {
        spawn(&mut jobs, generation * 2 - 1);
        spawn(&mut jobs, generation * 2);
        replace(&path, &annotating(&names, &generation.to_string()));
        let reloaded = reloader.reload(Trigger::Http).await.unwrap();
        assert!(matches!(reloaded, Reloaded::Swapped { .. }), "{reloaded:?}");
    }
    // A job that starts after the last reload has the last set.
    spawn(&mut jobs, 13);
    while let Some(outcome) = jobs.join_next().await {
        assert_eq!(outcome.unwrap(), Outcome::Succeeded);
    }

    let created = Api::<Job>::namespaced(client, "default")
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(created.items.len(), 13);
    let mut last = 0;
    for job in &created.items {
        let a = job.metadata.annotations.clone().unwrap_or_default();
        let seen: Vec<Option<&String>> = names
            .iter()
            .map(|n| a.get(&format!("acme.com/{n}")))
            .collect();
        assert!(
            seen[0].is_some() && seen.iter().all(|g| *g == seen[0]),
            "{} saw parts of two sets: {seen:?}",
            job.metadata.name.as_deref().unwrap_or("?")
        );
        if job
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.ends_with("-13"))
        {
            assert_eq!(seen[0].map(String::as_str), Some("6"));
            last += 1;
        }
    }
    assert_eq!(last, 1, "the job after the last reload is among them");
}
