//! `cargo bench -p sim --bench pods [-- N]`: N Jobs (default 500) with a short command created at once; prints how fast the simulator runs them and what the API served.

use std::collections::HashSet;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    // Enough room for every pod at once: 500 pods over 5 nodes.
    let options = sim::Options {
        nodes: (1..=5)
            .map(|i| sim::cluster::node(&format!("bench-{i}"), "64", "256Gi"))
            .collect(),
        ..sim::Options::default()
    };
    let sim = sim::Sim::start("127.0.0.1:0".parse()?, options).await?;
    let client = Client::try_from(sim.kube_config().await?)?;
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let rv = jobs
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut watch = jobs.watch(&WatchParams::default(), &rv).await?.boxed();
    let started = Instant::now();
    let creator = jobs.clone();
    let creates = futures::stream::iter(0..n)
        .map(move |i| {
            let jobs = creator.clone();
            async move {
                let job: Job = serde_json::from_value(json!({
                    "metadata": {"name": format!("bench-{i}")},
                    "spec": {"backoffLimit": 0, "template": {"spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "busybox", "command": ["/bin/sh", "-c", "echo done"]}],
                    }}},
                }))?;
                jobs.create(&PostParams::default(), &job).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>();
    let created = tokio::spawn(creates);
    let mut done = HashSet::new();
    while done.len() < n {
        let Some(event) = watch.try_next().await? else {
            anyhow::bail!("the watch ended after {} of {n} jobs", done.len());
        };
        if let WatchEvent::Modified(j) = event {
            let complete = j
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                    })
                });
            if complete {
                done.insert(j.metadata.name.unwrap_or_default());
            }
        }
    }
    let elapsed = started.elapsed();
    created.await??;
    let stats = sim.cluster.stats.snapshot();
    let total = stats["total"].as_u64().unwrap_or(0);
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!("jobs: {n}, all finished in {:.2} s", elapsed.as_secs_f64());
    println!("pods/s: {:.0}", n as f64 / elapsed.as_secs_f64());
    println!(
        "API requests served: {total} ({:.0}/s)",
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "peak RSS of simulator + client: {}",
        rss.trim_start_matches("VmHWM:").trim()
    );
    Ok(())
}
