//! Who may call the simulator: HTTPS with the written kubeconfig, 401 without a valid token, RBAC through the real `kubectl` (ServiceAccount, Role, RoleBinding, `auth can-i`, the real 403 wording), and a pod's in-cluster credentials. `scripts/test` installs kubectl.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use sim::{Options, Sim};

use crate::common;

use common::Kubectl;

const TEAM: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: team
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: runner
  namespace: team
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: job-runner
  namespace: team
rules:
- apiGroups: [batch]
  resources: [jobs]
  verbs: [create, get, list, watch]
- apiGroups: [\"\"]
  resources: [pods/log]
  verbs: [get]
- apiGroups: [\"\"]
  resources: [secrets]
  resourceNames: [runner-config]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: runner-runs-jobs
  namespace: team
subjects:
- kind: ServiceAccount
  name: runner
  namespace: team
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: job-runner
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_over_tls_applies_rbac_and_can_i_answers_as_the_account() {
    let c = Kubectl::start().await;
    assert!(c.sim.url().starts_with("https://"));
    let applied = c.apply(TEAM).await;
    assert_eq!(
        applied.trim(),
        "namespace/team created\nserviceaccount/runner created\nrole.rbac.authorization.k8s.io/job-runner created\nrolebinding.rbac.authorization.k8s.io/runner-runs-jobs created"
    );
    let runner = c.as_account("team", "runner").await;
    let can_i = |args: &'static [&'static str]| {
        let runner = runner.clone();
        let c = &c;
        async move {
            let mut all = vec!["auth", "can-i"];
            all.extend_from_slice(args);
            c.run_as(&runner, &all).await
        }
    };
    let (ok, out, _) = can_i(&["create", "jobs", "-n", "team"]).await;
    assert!(ok && out.trim() == "yes", "{out}");
    let (ok, out, _) = can_i(&["get", "pods", "--subresource=log", "-n", "team"]).await;
    assert!(ok && out.trim() == "yes", "{out}");
    let (ok, out, _) = can_i(&["delete", "jobs", "-n", "team"]).await;
    assert!(!ok && out.trim() == "no", "{out}");
    let (ok, out, _) = can_i(&["create", "jobs", "-n", "default"]).await;
    assert!(!ok && out.trim() == "no", "{out}");
    let (ok, out, _) = can_i(&["get", "secrets/runner-config", "-n", "team"]).await;
    assert!(ok && out.trim() == "yes", "{out}");
    let (ok, out, _) = can_i(&["get", "secrets/other", "-n", "team"]).await;
    assert!(!ok && out.trim() == "no", "{out}");

    // The admin (system:masters) may impersonate the account.
    let (ok, out, _) = c
        .run_as(
            &c.kubeconfig,
            &[
                "auth",
                "can-i",
                "create",
                "jobs",
                "-n",
                "team",
                "--as=system:serviceaccount:team:runner",
            ],
        )
        .await;
    assert!(ok && out.trim() == "yes", "{out}");
    let (ok, out, _) = c
        .run_as(
            &c.kubeconfig,
            &[
                "auth",
                "can-i",
                "list",
                "pods",
                "-n",
                "team",
                "--as=system:serviceaccount:team:runner",
            ],
        )
        .await;
    assert!(!ok && out.trim() == "no", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_request_reads_as_the_real_servers_403() {
    let c = Kubectl::start().await;
    c.apply(TEAM).await;
    let runner = c.as_account("team", "runner").await;
    let (ok, _, err) = c.run_as(&runner, &["get", "pods", "-n", "team"]).await;
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): pods is forbidden: User \"system:serviceaccount:team:runner\" cannot list resource \"pods\" in API group \"\" in the namespace \"team\""
    );
    let (ok, _, err) = c
        .run_as(&runner, &["delete", "job", "nightly", "-n", "team"])
        .await;
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): jobs.batch \"nightly\" is forbidden: User \"system:serviceaccount:team:runner\" cannot delete resource \"jobs\" in API group \"batch\" in the namespace \"team\""
    );
    let (ok, _, err) = c.run_as(&runner, &["get", "nodes"]).await;
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): nodes is forbidden: User \"system:serviceaccount:team:runner\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
    );
    let (ok, _, err) = c.run_as(&runner, &["get", "--raw", "/sim/stats"]).await;
    assert!(!ok);
    assert!(
        err.contains(
            "forbidden: User \\\"system:serviceaccount:team:runner\\\" cannot get path \\\"/sim/stats\\\""
        ) || err.contains(
            "forbidden: User \"system:serviceaccount:team:runner\" cannot get path \"/sim/stats\""
        ),
        "{err}"
    );
    // A binding to a role that does not exist says so.
    c.apply(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: dangling
  namespace: team
subjects:
- kind: Group
  name: system:serviceaccounts:team
  apiGroup: rbac.authorization.k8s.io
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: gone
",
    )
    .await;
    let (_, _, err) = c
        .run_as(&runner, &["get", "configmaps", "-n", "team"])
        .await;
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): configmaps is forbidden: User \"system:serviceaccount:team:runner\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team\": RBAC: role.rbac.authorization.k8s.io \"gone\" not found"
    );
}

/// A client with the admin kubeconfig minus its token.
async fn anonymous(sim: &Sim, token: Option<&str>) -> Client {
    let mut config = sim.kube_config().await.unwrap();
    config.auth_info.token = token.map(|t| t.to_owned().into());
    config.default_retry = false;
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn no_token_or_a_wrong_one_is_401_with_the_real_status_and_health_stays_open() {
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), Options::default())
        .await
        .unwrap();
    for token in [None, Some("not-a-token")] {
        let client = anonymous(&sim, token).await;
        for path in ["/api/v1/namespaces/default/pods", "/sim/stats", "/apis"] {
            let req = http::Request::get(path).body(Vec::new()).unwrap();
            let resp = client.send(req.map(Into::into)).await.unwrap();
            assert_eq!(resp.status(), 401, "{path}");
            assert_eq!(resp.headers()["content-type"], "application/json");
            let body = resp.into_body().collect_bytes().await.unwrap();
            let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                status,
                json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})
            );
        }
    }
    let client = anonymous(&sim, None).await;
    for path in ["/healthz", "/readyz", "/livez", "/version"] {
        let req = http::Request::get(path).body(Vec::new()).unwrap();
        let resp = client.send(req.map(Into::into)).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_created_object_comes_back_with_its_content_type() {
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), Options::default())
        .await
        .unwrap();
    let client = Client::try_from(sim.kube_config().await.unwrap()).unwrap();
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "typed"}});
    let req = http::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let resp = client.send(req.map(Into::into)).await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let _: Api<ConfigMap> = Api::default_namespaced(client);
}

#[tokio::test]
async fn the_written_kubeconfig_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), Options::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    sim.write_kubeconfig(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("certificate-authority-data: "));
    assert!(text.contains(sim.admin_token()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_a_default_account_and_pods_mount_its_token() {
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), Options::default())
        .await
        .unwrap();
    let client = Client::try_from(sim.kube_config().await.unwrap()).unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "later"}})).unwrap(),
        )
        .await
        .unwrap();
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), "later");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "later");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let sa = accounts.get_opt("default").await.unwrap();
        let ca = configmaps.get_opt("kube-root-ca.crt").await.unwrap();
        if let (Some(_), Some(ca)) = (sa, ca) {
            assert_eq!(
                ca.data.unwrap()["ca.crt"],
                sim.ca_pem().unwrap(),
                "kube-root-ca.crt holds the CA"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no default account");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let pods: Api<Pod> = Api::namespaced(client.clone(), "later");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "mounts"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]},
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    let spec = created.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let volume = &spec.volumes.unwrap()[0];
    assert!(volume.name.starts_with("kube-api-access-"));
    let mount = &spec.containers[0].volume_mounts.as_ref().unwrap()[0];
    assert_eq!(
        mount.mount_path,
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );

    let opted_out: Pod = serde_json::from_value(json!({
        "metadata": {"name": "no-token"},
        "spec": {"automountServiceAccountToken": false, "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    let created = pods
        .create(&PostParams::default(), &opted_out)
        .await
        .unwrap();
    assert!(created.spec.unwrap().volumes.is_none());

    let missing: Pod = serde_json::from_value(json!({
        "metadata": {"name": "ghost"},
        "spec": {"serviceAccountName": "nobody", "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    let err = pods
        .create(&PostParams::default(), &missing)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected a Status")
    };
    assert_eq!(status.code, 403);
    assert_eq!(
        status.message,
        "pods \"ghost\" is forbidden: error looking up service account later/nobody: serviceaccount \"nobody\" not found"
    );
    let _ = pods.list(&ListParams::default()).await.unwrap();
}

/// The pod's log once it has finished.
async fn finished_log(client: &Client, ns: &str, job: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .unwrap();
        if let Some(p) = list.items.first()
            && matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        {
            let name = p.metadata.name.clone().unwrap();
            return pods.logs(&name, &Default::default()).await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_in_a_pod_finds_the_api_with_its_account_token_and_rbac_applies() {
    let c = Kubectl::start().await;
    c.apply(TEAM).await;
    let client = Client::try_from(c.sim.kube_config().await.unwrap()).unwrap();
    // In-cluster configuration: no kubeconfig, only the mounted token, CA
    // and namespace and the KUBERNETES_SERVICE_* environment.
    let script = "cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; \
                  kubectl auth can-i create jobs; kubectl get pods 2>&1; echo end";
    c.apply(&format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: inside
  namespace: team
spec:
  backoffLimit: 0
  template:
    spec:
      serviceAccountName: runner
      restartPolicy: Never
      containers:
      - name: main
        image: bitnami/kubectl
        command: [sh, -c, {script:?}]
"
    ))
    .await;
    let log = finished_log(&client, "team", "inside").await;
    assert_eq!(
        log.trim(),
        "team\nyes\nError from server (Forbidden): pods is forbidden: User \"system:serviceaccount:team:runner\" cannot list resource \"pods\" in API group \"\" in the namespace \"team\"\nend"
    );
}
