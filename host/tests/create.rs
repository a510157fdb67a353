//! Creating a job's objects against the simulator: idempotent, adopting an earlier attempt's objects, refusing another job's, and leaving Secrets owned by the Job.
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
    let config = Config::from_raw(&Cli::try_parse_from(["executor"]).unwrap().raw).unwrap();
    let payload = JobPayload::parse(&format!(
        r#"{{"id": {id}, "files": {{"a.txt": {{"content": "x"}}}},
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
    assert!(!created.adopted);
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
async fn a_retry_or_a_restarted_executor_adopts_what_the_earlier_attempt_made() {
    let (_sim, client) = setup().await;
    let first = create(&client, "default", &objects("exec-a", 2))
        .await
        .unwrap();
    // A restart: same job, new executor name.
    let again = create(&client, "default", &objects("exec-b", 2))
        .await
        .unwrap();
    assert!(again.adopted);
    assert_eq!(
        again.job.metadata.uid, first.job.metadata.uid,
        "the same Job, not a duplicate"
    );
    let jobs: Api<Job> = Api::namespaced(client, "default");
    assert_eq!(jobs.list(&Default::default()).await.unwrap().items.len(), 1);
}

#[tokio::test]
async fn an_object_of_another_job_with_the_same_name_is_not_adopted() {
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
