//! The executor as a pod of the simulator, as an operator deploys it: its image maps to the binary built from this repository, it finds the API server with in-cluster configuration alone, works with its ServiceAccount's permissions, and is refused in the real server's words without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::{LogParams, PostParams};
use serde_json::json;
use sim::images::ImageMapping;
use sim::{Options, Sim};

/// The executor's image, as a Deployment names it.
const IMAGE: &str = "sourcegraph/executor:in-cluster-test";

async fn cluster() -> (Sim, kube::Client) {
    let options = Options {
        images: vec![ImageMapping {
            image: "sourcegraph/executor:*".to_owned(),
            command: PathBuf::from(env!("CARGO_BIN_EXE_executor")),
        }],
        ..Options::default()
    };
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let client = kube::Client::try_from(sim.kube_config().await.unwrap()).unwrap();
    (sim, client)
}

/// A pod running `executor run` on a one-step job from a ConfigMap, with
/// no kubeconfig: only what the kubelet gives every pod.
async fn run_executor_pod(client: &kube::Client) -> (String, String) {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let payload = json!({"id": 7, "dockerSteps": [{"image": "alpine:3", "commands": ["echo hello from a job the executor made"]}]});
    let map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "job"},
        "data": {"payload.json": payload.to_string()}
    });
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(map).unwrap(),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "executor"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "executor",
                "image": IMAGE,
                "args": ["run", "--job", "/config/payload.json",
                         "--resource-request-memory=1Mi", "--resource-limit-memory=64Mi"],
                "volumeMounts": [{"name": "job", "mountPath": "/config"}]
            }],
            "volumes": [{"name": "job", "configMap": {"name": "job"}}]
        }
    });
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .unwrap();
    let ended = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.phase.as_deref())
            .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
    };
    tokio::time::timeout(
        Duration::from_secs(120),
        kube::runtime::wait::await_condition(pods.clone(), "executor", ended),
    )
    .await
    .expect("the executor's pod ends within two minutes")
    .unwrap();
    let phase = pods
        .get("executor")
        .await
        .unwrap()
        .status
        .unwrap()
        .phase
        .unwrap();
    let params = LogParams {
        container: Some("executor".to_owned()),
        ..LogParams::default()
    };
    let log = pods.logs("executor", &params).await.unwrap();
    (phase, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_role_binding_the_executor_in_a_pod_runs_a_job_through_the_in_cluster_api() {
    let (_sim, client) = cluster().await;
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "executor"},
        "rules": [
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "delete", "get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete", "get", "list"]}
        ]
    });
    Api::<Role>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(role).unwrap(),
        )
        .await
        .unwrap();
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "executor"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "executor"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]
    });
    Api::<RoleBinding>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(binding).unwrap(),
        )
        .await
        .unwrap();

    let (phase, log) = run_executor_pod(&client).await;
    assert_eq!(phase, "Succeeded", "the executor's log:\n{log}");
    assert!(
        log.contains("hello from a job the executor made"),
        "the job's own output reaches the executor's log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_role_binding_the_executor_in_a_pod_is_refused_in_the_api_servers_words() {
    let (_sim, client) = cluster().await;
    let (phase, log) = run_executor_pod(&client).await;
    assert_eq!(phase, "Failed", "the executor's log:\n{log}");
    assert!(
        log.contains(
            r#"jobs.batch is forbidden: User "system:serviceaccount:default:default" cannot list resource "jobs" in API group "batch" in the namespace "default""#
        ),
        "the executor says what it may not do, as the API server words it:\n{log}"
    );
}
