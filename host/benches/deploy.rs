//! The executor's pod on the simulator, deployed with `kubectl apply -k` as the deploy tests do: start to Ready with the image's four first-party plugins (compiled-plugin cache cold, then warm from a claim the next pod finds), and `/metrics` scrape time and size with 200 jobs running. Prints figures; `cargo bench -p executor --bench deploy`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Deployed, PLUGINS_IMAGE, eventually, image_plugins};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

const JOBS: usize = 200;
const SCRAPES: usize = 100;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

/// The executor pod's name other than `not`, once it exists.
async fn new_pod(pods: &Api<Pod>, not: Option<&str>) -> String {
    let params = ListParams::default().labels("app.kubernetes.io/name=executor");
    loop {
        let list = pods.list(&params).await.unwrap();
        let found = list
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .find(|n| Some(n.as_str()) != not);
        if let Some(name) = found {
            return name;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// From the pod's first sighting to `/readyz` answering 200.
async fn start_to_ready(d: &Deployed, pods: &Api<Pod>, old: Option<&str>) -> (String, Duration) {
    let pod = new_pod(pods, old).await;
    let seen = Instant::now();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/readyz", d.ops);
    loop {
        let ok = http
            .get(&url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            return (pod, seen.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn bench() {
    let plugins = tempfile::tempdir().unwrap();
    image_plugins(plugins.path());
    let d = Deployed::start_with(
        &format!(
            r#"  - target: {{kind: Deployment, name: executor}}
    patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata: {{name: executor}}
      spec:
        template:
          spec:
            containers:
              # The compiled-plugin cache on the queue's claim: the next pod finds it.
              - {{name: executor, env: [{{name: XDG_CACHE_HOME, value: /var/lib/executor/cache}}]}}
            volumes:
              - {{name: plugins, image: {{reference: "{PLUGINS_IMAGE}"}}}}
  - target: {{kind: ConfigMap, name: executor-env}}
    patch: |-
      - {{op: replace, path: /data/EXECUTOR_MAXIMUM_NUM_JOBS, value: "{JOBS}"}}
      - {{op: replace, path: /data/KUBERNETES_KEEP_JOBS, value: "false"}}
"#
        ),
        Some(plugins.path()),
    )
    .await;
    let client = kube::Client::try_from(d.sim.kube_config().await.unwrap()).unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");

    d.ok(&["apply", "-k", &d.kustomization()]).await;
    let (first, cold) = start_to_ready(&d, &pods, None).await;
    d.ok(&["rollout", "restart", "deployment/executor"]).await;
    let (_, warm) = start_to_ready(&d, &pods, Some(&first)).await;
    println!(
        "executor pod, first sighting to /readyz 200, 4 plugins: cold cache {:.0} ms, warm cache {:.0} ms",
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3
    );

    for _ in 0..JOBS {
        d.submit(&["--image", "alpine:3", "--", "sleep 600"]).await;
    }
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/metrics", d.ops);
    let running = format!("executor_jobs_running {JOBS}\n");
    let started = Instant::now();
    eventually(&format!("{JOBS} jobs run"), || async {
        let text = http.get(&url).send().await.unwrap().text().await.unwrap();
        match text.contains(&running) {
            true => Ok(()),
            false => Err(text
                .lines()
                .find(|l| l.starts_with("executor_jobs_running "))
                .unwrap_or("no gauge yet")
                .to_owned()),
        }
    })
    .await;
    println!(
        "{JOBS} jobs submitted and running {:.1} s after the last submit",
        started.elapsed().as_secs_f64()
    );
    let mut times = Vec::with_capacity(SCRAPES);
    let mut size = 0;
    let mut lines = 0;
    for _ in 0..SCRAPES {
        let t = Instant::now();
        let text = http.get(&url).send().await.unwrap().text().await.unwrap();
        times.push(t.elapsed());
        size = text.len();
        lines = text.lines().filter(|l| !l.starts_with('#')).count();
    }
    times.sort();
    println!(
        "/metrics with {JOBS} jobs running, {SCRAPES} scrapes: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {size} bytes, {lines} samples",
        times[SCRAPES / 2].as_secs_f64() * 1e3,
        times[SCRAPES * 99 / 100].as_secs_f64() * 1e3,
        times[SCRAPES - 1].as_secs_f64() * 1e3,
    );
    drop(d.sim);
}
