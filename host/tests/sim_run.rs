//! The objects `executor render` prints, run for real in the cluster simulator: the Secret and Job of a payload do what the payload asks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use clap::Parser;
use executor::config::{Config, RawConfig};
use executor::k8s::spec::{self, Inputs};
use executor::payload::JobPayload;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, LogParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    raw: RawConfig,
}

/// Waits, by watching, until the Job is Complete or Failed; returns which.
async fn outcome(jobs: &Api<Job>, name: &str) -> String {
    let finished = |j: &Job| {
        j.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            .map(|c| c.type_.clone())
    };
    let fut = async {
        loop {
            let current = jobs.get(name).await.unwrap();
            if let Some(kind) = finished(&current) {
                return kind;
            }
            let rv = current.metadata.resource_version.clone().unwrap();
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(5);
            let mut stream = jobs.watch(&params, &rv).await.unwrap().boxed();
            while let Some(event) = stream.try_next().await.unwrap() {
                if let WatchEvent::Modified(j) = event
                    && let Some(kind) = finished(&j)
                {
                    return kind;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("job {name} never finished"))
}

#[tokio::test]
async fn a_rendered_job_runs_its_steps_on_its_workspace_files_with_its_secrets() {
    let sim = sim::Sim::start("127.0.0.1:0".parse().unwrap(), sim::Options::default())
        .await
        .unwrap();
    let client = Client::try_from(sim.kube_config().await.unwrap()).unwrap();
    let config = Config::from_raw(&Cli::try_parse_from(["executor"]).unwrap().raw).unwrap();
    // No repository: files and steps only (the embedded queue's short form).
    // The secret env value and the secret-bearing command travel through the Secret.
    let payload = JobPayload::parse(
        r#"{"id": 42, "version": 2,
            "files": {"scripts/hello.sh": {"content": "ZWNobyAiaGVsbG8gZnJvbSAkKHB3ZCkiCg=="}},
            "dockerSteps": [
              {"key": "greet", "image": "busybox:1.36", "dir": "scripts", "commands": ["sh hello.sh", "echo \"token $API_TOKEN\"", "echo pid $$ > /dev/null"],
               "env": ["API_TOKEN=tok_supersecret"]},
              {"image": "busybox:1.36", "commands": ["test -f scripts/hello.sh && echo second step sees the workspace", "echo 'call tok_supersecret' | wc -c"]}
            ],
            "redactedValues": {"tok_supersecret": "[REDACTED]"}}"#,
    )
    .unwrap();
    let objects = spec::build(
        &Inputs {
            config: &config.kubernetes,
            queue: "batches",
            executor_name: "sim-test",
            instance: "sim-test",
            routes: None,
        },
        &payload,
    )
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    for s in &objects.secrets {
        secrets.create(&PostParams::default(), s).await.unwrap();
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let name = objects.job.metadata.name.clone().unwrap();
    jobs.create(&PostParams::default(), &objects.job)
        .await
        .unwrap();
    assert_eq!(outcome(&jobs, &name).await, "Complete");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await
        .unwrap()
        .items
        .remove(0);
    let pod_name = pod.metadata.name.unwrap();
    let log = |container: &'static str| {
        let pods = pods.clone();
        let pod_name = pod_name.clone();
        async move {
            pods.logs(
                &pod_name,
                &LogParams {
                    container: Some(container.into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(
        log("step-0").await,
        "hello from /job/scripts\ntoken tok_supersecret\n"
    );
    assert_eq!(
        log("step-1").await,
        format!(
            "second step sees the workspace\n{}\n",
            "call tok_supersecret\n".len()
        )
    );
}
