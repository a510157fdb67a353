//! Creating a job's objects against the simulator: a retry replaces an earlier attempt's objects with its own, never another job's, and Secrets end up owned by the Job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use clap::Parser;
use executor::config::{Config, RawConfig};
use executor::k8s::create::{CreateError, create};
use executor::k8s::spec::{self, Inputs, JobObjects};
use executor::payload::JobPayload;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    raw: RawConfig,
}

async fn setup() -> (sim::Sim, Client) {
    let sim = sim::Sim::start("127.0.0.1:0".parse().unwrap(), sim::Options::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, sim.kubeconfig()).unwrap();
    let client = executor::k8s::client::client(Some(&path), &Default::default())
        .await
        .unwrap();
    (sim, client)
}

fn objects(executor_name: &str, id: i64) -> JobObjects {
    objects_with_token(executor_name, id, "token-of-the-first-attempt")
}

fn objects_with_token(executor_name: &str, id: i64, token: &str) -> JobObjects {
    let config = Config::from_raw(&Cli::try_parse_from(["executor"]).unwrap().raw).unwrap();
    let payload = JobPayload::parse(&format!(
        r#"{{"id": {id}, "token": "{token}", "files": {{"a.txt": {{"content": "x"}}}},
            "dockerSteps": [{{"image": "busybox", "commands": ["sleep 600"]}}]}}"#
    ))
    .unwrap();
    spec::build(
        &Inputs {
            config: &config.kubernetes,
            queue: "batches",
            executor_name,
            instance: "create-test",
            routes: None,
        },
        &payload,
    )
    .unwrap()
}

#[tokio::test]
async fn secrets_are_owned_by_the_job_and_go_with_it() {
    let (_sim, client) = setup().await;
    let objects = objects("exec-a", 1);
    let created = create(&client, "default", &objects).await.unwrap();
    assert!(!created.replaced);
    let uid = created.job.metadata.uid.clone().unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let name = objects.secrets[0].metadata.name.clone().unwrap();
    let secret = secrets.get(&name).await.unwrap();
    let owner = &secret.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Job", uid.as_str())
    );

    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.delete(
        &created.job.metadata.name.unwrap(),
        &DeleteParams::background(),
    )
    .await
    .unwrap();
    assert!(
        secrets.get_opt(&name).await.unwrap().is_none(),
        "garbage-collected with the Job"
    );
}

#[tokio::test]
async fn a_retry_or_a_restarted_executor_gets_fresh_objects_not_the_earlier_attempts() {
    let (_sim, client) = setup().await;
    let first = create(&client, "default", &objects("exec-a", 2))
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let listed = secrets.list(&Default::default()).await.unwrap().items;
    let old_secret_uids: Vec<_> = listed.iter().map(|s| s.metadata.uid.clone()).collect();
    // A retry (the queue reset the job): same job, another executor, a new token.
    let retry = objects_with_token("exec-b", 2, "token-of-the-retry");
    let again = create(&client, "default", &retry).await.unwrap();
    assert!(again.replaced);
    assert_ne!(
        again.job.metadata.uid, first.job.metadata.uid,
        "the retry's own Job, not the earlier attempt's"
    );
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let listed = jobs.list(&Default::default()).await.unwrap().items;
    assert_eq!(listed.len(), 1, "no duplicate");
    let labels = listed[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(spec::LABEL_EXECUTOR).map(String::as_str),
        Some("exec-b"),
        "{labels:?}"
    );
    for secret in &retry.secrets {
        let name = secret.metadata.name.clone().unwrap();
        let now = secrets.get(&name).await.unwrap();
        assert!(
            !old_secret_uids.contains(&now.metadata.uid),
            "{name} was made afresh"
        );
        let text = serde_json::to_string(&now.data).unwrap();
        assert!(
            !text.contains(&b64("token-of-the-first-attempt")),
            "{name}: {text}"
        );
    }
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn an_object_of_another_job_with_the_same_name_is_not_replaced() {
    let (_sim, client) = setup().await;
    let objects = objects("exec-a", 3);
    let mut impostor = objects.job.clone();
    impostor
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(spec::LABEL_JOB_ID.into(), "999".into());
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &impostor)
        .await
        .unwrap();
    let err = create(&client, "default", &objects).await.unwrap_err();
    assert!(
        matches!(err, CreateError::Foreign { kind: "Job", .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("its labels say queue \"batches\", job id \"999\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_kubeconfig_is_named() {
    let Err(err) = executor::k8s::client::client(
        Some(std::path::Path::new("/nonexistent/kubeconfig")),
        &Default::default(),
    )
    .await
    else {
        panic!("a client from a kubeconfig that does not exist");
    };
    assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
}
