//! kubectl's imperative commands (`create secret|configmap|job|deployment|serviceaccount|role|rolebinding|...`, `run`), which send protobuf bodies, work against the simulator over TLS; answers are JSON. `scripts/test` installs kubectl.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;

use crate::common;

use common::Kubectl;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_secret_generic_and_configmap_from_literals() {
    let k = Kubectl::start().await;
    let (ok, out, log) = k
        .run(&[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=a=b",
            "--from-literal=empty=",
            "-v=8",
        ])
        .await;
    assert!(ok, "kubectl create secret failed: {log}");
    assert_eq!(out.trim(), "secret/s created");
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "kubectl sent the Secret as protobuf: {log}"
    );
    let secret = k.json(&["get", "secret", "s"]).await;
    assert_eq!(secret["data"]["a"], "Yg==");
    assert_eq!(secret["data"]["empty"], "");
    assert_eq!(secret["type"], "Opaque");

    let out = k
        .ok(&[
            "create",
            "configmap",
            "c",
            "--from-literal=k=v",
            "--from-literal=other=w",
        ])
        .await;
    assert_eq!(out.trim(), "configmap/c created");
    let map = k.json(&["get", "configmap", "c"]).await;
    assert_eq!(map["data"], serde_json::json!({"k": "v", "other": "w"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_job_runs_it_and_its_log_says_hi() {
    let k = Kubectl::start().await;
    let out = k
        .ok(&["create", "job", "hi", "--image=busybox", "--", "echo", "hi"])
        .await;
    assert_eq!(out.trim(), "job.batch/hi created");
    let waited = k
        .ok(&[
            "wait",
            "--for=condition=complete",
            "job/hi",
            "--timeout=60s",
        ])
        .await;
    assert_eq!(waited.trim(), "job.batch/hi condition met");
    assert_eq!(k.ok(&["logs", "job/hi"]).await, "hi\n");
    let job = k.json(&["get", "job", "hi"]).await;
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"], serde_json::json!(["echo", "hi"]));
    assert_eq!(container["resources"], serde_json::json!({}));
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_deployment_with_two_replicas_rolls_out() {
    let k = Kubectl::start().await;
    let out = k
        .ok(&[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=2",
            "--port=8080",
            "--",
            "sleep",
            "3600",
        ])
        .await;
    assert_eq!(out.trim(), "deployment.apps/web created");
    k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    let deployment = k.json(&["get", "deployment", "web"]).await;
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["status"]["readyReplicas"], 2);
    let ports = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert_eq!(
        ports,
        &serde_json::json!([{"containerPort": 8080, "protocol": "TCP"}])
    );
    k.ok(&["delete", "deployment", "web", "--wait=false"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_serviceaccount_role_and_rolebinding_grant_what_they_say() {
    let k = Kubectl::start().await;
    assert_eq!(
        k.ok(&["create", "serviceaccount", "bot"]).await.trim(),
        "serviceaccount/bot created"
    );
    assert_eq!(
        k.ok(&[
            "create",
            "role",
            "reader",
            "--verb=get",
            "--verb=list",
            "--resource=pods"
        ])
        .await
        .trim(),
        "role.rbac.authorization.k8s.io/reader created"
    );
    let as_bot = ["--as=system:serviceaccount:default:bot"];
    let can = |verb: &'static str| {
        let k = &k;
        async move {
            let (_, out, _) = k
                .run(&[&["auth", "can-i", verb, "pods"], &as_bot[..]].concat())
                .await;
            out.trim().to_owned()
        }
    };
    assert_eq!(can("get").await, "no");
    assert_eq!(
        k.ok(&[
            "create",
            "rolebinding",
            "bot-reads",
            "--role=reader",
            "--serviceaccount=default:bot",
        ])
        .await
        .trim(),
        "rolebinding.rbac.authorization.k8s.io/bot-reads created"
    );
    assert_eq!(can("get").await, "yes");
    assert_eq!(can("delete").await, "no");
    let role = k.json(&["get", "role", "reader"]).await;
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])
    );
    let binding = k.json(&["get", "rolebinding", "bot-reads"]).await;
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "bot", "namespace": "default"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_namespace_cluster_rbac_and_a_service() {
    let k = Kubectl::start().await;
    assert_eq!(
        k.ok(&["create", "namespace", "team"]).await.trim(),
        "namespace/team created"
    );
    assert_eq!(
        k.ok(&[
            "create",
            "clusterrole",
            "viewer",
            "--verb=get",
            "--resource=nodes"
        ])
        .await
        .trim(),
        "clusterrole.rbac.authorization.k8s.io/viewer created"
    );
    assert_eq!(
        k.ok(&[
            "create",
            "clusterrolebinding",
            "viewers",
            "--clusterrole=viewer",
            "--group=ops",
        ])
        .await
        .trim(),
        "clusterrolebinding.rbac.authorization.k8s.io/viewers created"
    );
    assert_eq!(
        k.ok(&[
            "create",
            "service",
            "clusterip",
            "api",
            "--tcp=80:8080",
            "-n",
            "team"
        ])
        .await
        .trim(),
        "service/api created"
    );
    assert_eq!(
        k.ok(&[
            "create",
            "poddisruptionbudget",
            "api",
            "--selector=app=api",
            "--min-available=1",
            "-n",
            "team"
        ])
        .await
        .trim(),
        "poddisruptionbudget.policy/api created"
    );
    let budget = k.json(&["get", "pdb", "api", "-n", "team"]).await;
    assert_eq!(budget["spec"]["minAvailable"], 1);
    let service = k.json(&["get", "service", "api", "-n", "team"]).await;
    assert_eq!(service["spec"]["ports"][0]["port"], 80);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080);
    assert!(
        service["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| !ip.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_starts_a_pod() {
    let k = Kubectl::start().await;
    let out = k
        .ok(&[
            "run",
            "once",
            "--image=busybox",
            "--restart=Never",
            "--env=GREETING=ran",
            "--labels=app=once,tier=test",
            "--port=8080",
            "--",
            "sh",
            "-c",
            "echo $GREETING",
        ])
        .await;
    assert_eq!(out.trim(), "pod/once created");
    let pod = k.json(&["get", "pod", "once"]).await;
    assert_eq!(pod["metadata"]["labels"]["tier"], "test");
    assert_eq!(
        pod["spec"]["containers"][0]["env"],
        serde_json::json!([{"name": "GREETING", "value": "ran"}])
    );
    k.ok(&[
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "pod/once",
        "--timeout=60s",
    ])
    .await;
    assert_eq!(k.ok(&["logs", "once"]).await, "ran\n");
}

/// A client that accepts only protobuf gets the real server's 406: the
/// simulator answers in JSON only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_accepting_only_protobuf_is_told_the_media_types_served() {
    let k = Kubectl::start().await;
    let client = kube::Client::try_from(k.sim.kube_config().await.unwrap()).unwrap();
    let request = http::Request::get("/api/v1/namespaces/default/configmaps")
        .header("Accept", "application/vnd.kubernetes.protobuf")
        .body(Vec::new())
        .unwrap();
    let err = client.request_text(request).await.unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err}");
    };
    assert_eq!(status.code, 406);
    assert_eq!(status.reason, "NotAcceptable");
    assert_eq!(
        status.message,
        "only the following media types are accepted: application/json"
    );
    let both = http::Request::get("/api/v1/namespaces/default/configmaps")
        .header(
            "Accept",
            "application/vnd.kubernetes.protobuf, application/json",
        )
        .body(Vec::new())
        .unwrap();
    let list: Value = serde_json::from_str(&client.request_text(both).await.unwrap()).unwrap();
    assert_eq!(list["kind"], "ConfigMapList");
}

/// A protobuf envelope (`k8s\0` + `runtime.Unknown`) around `message`, as
/// client-go writes it.
fn protobuf<M: prost::Message>(api_version: &str, kind: &str, message: &M) -> Vec<u8> {
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    use prost::Message as _;
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(message.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [b"k8s\0".as_slice(), &unknown.encode_to_vec()].concat()
}

/// A typed client's update (PUT) and delete (DeleteOptions) in protobuf
/// work as their JSON forms; a field the simulator does not convert is a 415
/// naming the message, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_updates_and_deletes_work_and_unconverted_fields_are_refused() {
    use k8s_pb::api::core::v1 as core;
    let k = Kubectl::start().await;
    let client = kube::Client::try_from(k.sim.kube_config().await.unwrap()).unwrap();
    let send = |method: &str, path: &str, body: Vec<u8>| {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header("Content-Type", "application/vnd.kubernetes.protobuf")
            .header(
                "Accept",
                "application/vnd.kubernetes.protobuf, application/json",
            )
            .body(body)
            .unwrap()
    };
    k.ok(&["create", "configmap", "c", "--from-literal=k=v"])
        .await;
    let meta = |name: &str| k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    };
    let updated = core::ConfigMap {
        metadata: Some(meta("c")),
        data: [("k".to_owned(), "w".to_owned())].into(),
        binary_data: [("raw".to_owned(), vec![0, 1, 2])].into(),
        ..Default::default()
    };
    let body = protobuf("v1", "ConfigMap", &updated);
    let text = client
        .request_text(send("PUT", "/api/v1/namespaces/default/configmaps/c", body))
        .await
        .unwrap();
    let map: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(map["data"], serde_json::json!({"k": "w"}));
    assert_eq!(map["binaryData"], serde_json::json!({"raw": "AAEC"}));

    let mut pod = core::Pod {
        metadata: Some(meta("p")),
        ..Default::default()
    };
    pod.spec = Some(core::PodSpec {
        containers: vec![core::Container {
            name: Some("c".into()),
            image: Some("busybox".into()),
            ..Default::default()
        }],
        ephemeral_containers: vec![Default::default()],
        ..Default::default()
    });
    let body = protobuf("v1", "Pod", &pod);
    let err = client
        .request_text(send("POST", "/api/v1/namespaces/default/pods", body))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err}");
    };
    assert_eq!(status.code, 415);
    assert!(
        status.message.contains("io.k8s.api.core.v1.PodSpec"),
        "{}",
        status.message
    );
    let (found, _, _) = k.run(&["get", "pod", "p"]).await;
    assert!(!found, "nothing is stored");

    let options = k8s_pb::apimachinery::pkg::apis::meta::v1::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: Some("Background".into()),
        ..Default::default()
    };
    let body = protobuf("meta.k8s.io/v1", "DeleteOptions", &options);
    client
        .request_text(send(
            "DELETE",
            "/api/v1/namespaces/default/configmaps/c",
            body,
        ))
        .await
        .unwrap();
    let (found, _, _) = k.run(&["get", "configmap", "c"]).await;
    assert!(!found, "the ConfigMap is gone");
}
