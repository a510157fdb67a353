//! Long-running workloads with the real `kubectl`: a Deployment rolls out, restarts pod by pod and rolls back; containers restart on a failing liveness probe and back off when they crash; deletion runs the preStop hook before SIGTERM; the Downward API; and the kinds a typical deployment applies. `scripts/test` installs kubectl.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{WatchEvent, WatchParams};
use serde_json::Value;
use sim::Options;
use sim::logs::ContainerId;

use crate::common;

use common::Kubectl;

/// A simulator whose crash-loop back-off starts at 300 ms, so restarts show in seconds.
async fn start() -> Kubectl {
    let options = Options {
        restart_backoff: Duration::from_millis(300),
        ..Options::default()
    };
    Kubectl::with(options).await
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: main
        image: busybox:1.36
        command: ["sleep", "300"]
        readinessProbe:
          exec: {command: ["true"]}
          periodSeconds: 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_out_restarts_pod_by_pod_keeping_two_ready_and_rolls_back() {
    let k = start().await;
    assert_eq!(
        k.apply(DEPLOYMENT).await.trim(),
        "deployment.apps/web created"
    );
    let status = k
        .ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    assert!(
        status.ends_with("deployment \"web\" successfully rolled out\n"),
        "{status}"
    );
    let before: Vec<String> = pod_names(&k.json(&["get", "pods", "-l", "app=web"]).await);
    assert_eq!(before.len(), 2);

    // Watch the Deployment's ready count through the restart.
    let deployments: Api<Deployment> = Api::default_namespaced(k.client().await);
    let rv = deployments
        .get("web")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = deployments
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let watcher = tokio::spawn(async move {
        let mut lowest = i32::MAX;
        while let Some(Ok(event)) = stream.next().await {
            if let WatchEvent::Modified(d) = event {
                let status = d.status.unwrap_or_default();
                lowest = lowest.min(status.ready_replicas.unwrap_or(0));
                let done = status
                    .conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"))
                    && status.updated_replicas == Some(2)
                    && status.replicas == Some(2)
                    && d.metadata.generation == Some(2);
                if done {
                    return lowest;
                }
            }
        }
        lowest
    });
    assert_eq!(
        k.ok(&["rollout", "restart", "deployment/web"]).await.trim(),
        "deployment.apps/web restarted"
    );
    k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    let lowest = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .unwrap()
        .unwrap();
    assert!(lowest >= 2, "the ready count dropped to {lowest}");
    let after = k
        .until(&["get", "pods", "-l", "app=web"], |v| {
            v["items"].as_array().unwrap().len() == 2
        })
        .await;
    let after = pod_names(&after);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );
    let sets = k.json(&["get", "replicasets"]).await;
    let mut revisions: Vec<(String, i64)> = sets["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| {
            (
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                rs["spec"]["replicas"].as_i64().unwrap(),
            )
        })
        .collect();
    revisions.sort();
    assert_eq!(revisions, [("1".into(), 0), ("2".into(), 2)]);

    assert_eq!(
        k.ok(&["rollout", "undo", "deployment/web"]).await.trim(),
        "deployment.apps/web rolled back"
    );
    k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    let d = k.json(&["get", "deployment", "web"]).await;
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_null(),
        "the undo went back to the first template: {d:#}"
    );
    let history = k.ok(&["rollout", "history", "deployment/web"]).await;
    assert!(
        history.contains("2 ") && history.contains("3 "),
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreate_rollout_starts_the_new_pod_once_the_slow_old_one_is_gone() {
    let k = start().await;
    // The old pod takes its time over SIGTERM, as a draining executor does.
    let recreate = DEPLOYMENT
        .replace("replicas: 2", "replicas: 1")
        .replace(
            "type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}",
            "type: Recreate",
        )
        .replace(
            r#"command: ["sleep", "300"]"#,
            r#"command: ["/bin/sh", "-c", "trap 'sleep 1; exit 0' TERM; sleep 300 & wait"]"#,
        );
    k.apply(&recreate).await;
    k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    let before = pod_names(&k.json(&["get", "pods", "-l", "app=web"]).await);
    k.ok(&["rollout", "restart", "deployment/web"]).await;
    let status = k
        .ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    assert!(status.contains("successfully rolled out"), "{status}");
    let after = pod_names(&k.json(&["get", "pods", "-l", "app=web"]).await);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(!before.contains(&after[0]), "{before:?} {after:?}");
}

fn pod_names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

fn container_status(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_probe_restarts_the_container() {
    let k = start().await;
    k.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: unhealthy}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:1.36
    command: ["sleep", "300"]
    livenessProbe:
      exec: {command: ["sh", "-c", "echo not alive; exit 1"]}
      periodSeconds: 1
      failureThreshold: 1
"#,
    )
    .await;
    let pod = k
        .until(&["get", "pod", "unhealthy"], |p| {
            container_status(p)["restartCount"].as_i64() >= Some(2)
        })
        .await;
    let last = &container_status(&pod)["lastState"]["terminated"];
    assert_eq!(last["reason"], "Error", "{pod:#}");
    assert_eq!(last["exitCode"], 143, "SIGTERM ended it: {pod:#}");
    let events = k
        .json(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=unhealthy",
        ])
        .await;
    let messages: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.contains(&"Liveness probe failed: not alive"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"Container main failed liveness probe, will be restarted"),
        "{messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_container_backs_off_in_crash_loop_back_off() {
    let k = start().await;
    k.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  containers:
  - name: main
    image: busybox:1.36
    command: ["sh", "-c", "exit 3"]
"#,
    )
    .await;
    let pod = k
        .until(&["get", "pod", "crash"], |p| {
            container_status(p)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        })
        .await;
    let status = container_status(&pod);
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let message = status["state"]["waiting"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("back-off ")
            && message.ends_with(&format!(
                "restarting failed container=main pod=crash_default({uid})"
            )),
        "{message}"
    );
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 3);
    assert!(status["restartCount"].as_i64() >= Some(1));
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(status["ready"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pod_runs_the_pre_stop_hook_then_sends_sigterm() {
    let k = start().await;
    k.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: graceful}
spec:
  terminationGracePeriodSeconds: 10
  volumes:
  - name: data
    emptyDir: {}
  containers:
  - name: main
    image: busybox:1.36
    volumeMounts: [{name: data, mountPath: /data}]
    command: ["sh", "-c", "trap 'cat /data/order; echo sigterm; exit 0' TERM; echo started; while true; do sleep 0.1; done"]
    lifecycle:
      preStop:
        exec: {command: ["sh", "-c", "echo prestop >> /data/order"]}
"#,
    )
    .await;
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/graceful",
        "--timeout=30s",
    ])
    .await;
    let pods: Api<Pod> = Api::default_namespaced(k.client().await);
    let rv = pods
        .get("graceful")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let stream = pods.watch(&WatchParams::default(), &rv).await.unwrap();
    let deleted = k.ok(&["delete", "pod", "graceful", "--timeout=30s"]).await;
    assert_eq!(deleted.trim(), "pod \"graceful\" deleted");
    // The pod showed its deletion before it went.
    let events: Vec<WatchEvent<Pod>> = stream
        .take_while(|e| std::future::ready(!matches!(e, Ok(WatchEvent::Deleted(_)))))
        .try_collect()
        .await
        .unwrap();
    let marked = events.iter().any(|e| match e {
        WatchEvent::Modified(p) => {
            p.metadata.deletion_timestamp.is_some()
                && p.metadata.deletion_grace_period_seconds == Some(10)
        }
        _ => false,
    });
    assert!(marked, "no MODIFIED event with deletionTimestamp");
    let log = k
        .sim
        .cluster
        .logs
        .get(&ContainerId {
            namespace: "default".into(),
            pod: "graceful".into(),
            container: "main".into(),
        })
        .unwrap();
    let lines: Vec<String> = log
        .read(0)
        .0
        .into_iter()
        .map(|l| l.text.trim_end().to_owned())
        .collect();
    assert_eq!(lines, ["started", "prestop", "sigterm"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_downward_api_fills_env_and_a_volume() {
    let k = start().await;
    k.create(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: downward
  labels: {app: info, tier: back-end}
  annotations: {owner: 'me "too"'}
spec:
  restartPolicy: Never
  volumes:
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
      - {path: name, fieldRef: {fieldPath: metadata.name}}
  containers:
  - name: main
    image: busybox:1.36
    resources:
      requests: {memory: 64Mi}
      limits: {cpu: 500m}
    volumeMounts: [{name: info, mountPath: /etc/info}]
    env:
    - {name: NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
    - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
    - {name: OWNER, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['owner']"}}}
    - {name: CPU, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
    - {name: MEM, valueFrom: {resourceFieldRef: {resource: requests.memory, divisor: 1Mi}}}
    command: ["sh", "-c", "echo $NAME $NS $NODE $SA $IP $TIER $OWNER $CPU $MEM; echo $UID; cat /etc/info/labels; echo; cat /etc/info/annotations; echo; cat /etc/info/name"]
"#,
    )
    .await;
    let pod = k
        .until(&["get", "pod", "downward"], |p| {
            p["status"]["phase"] == "Succeeded"
        })
        .await;
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let node = pod["spec"]["nodeName"].as_str().unwrap();
    assert_eq!(pod["status"]["podIP"], "127.0.0.1");
    let logs = k.ok(&["logs", "downward"]).await;
    assert_eq!(
        logs,
        format!(
            "downward default {node} default 127.0.0.1 back-end me \"too\" 500 64\n{uid}\napp=\"info\"\ntier=\"back-end\"\nowner=\"me \\\"too\\\"\"\ndownward"
        ) + "\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_k_of_a_typical_deployment_creates_every_kind() {
    let k = start().await;
    let dir = k.dir.path().join("deploy");
    std::fs::create_dir(&dir).unwrap();
    let files = [
        (
            "kustomization.yaml",
            "resources: [config.yaml, deployment.yaml, service.yaml, netpol.yaml, pdb.yaml, pvc.yaml]\n",
        ),
        (
            "config.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: exec-config}\ndata: {LOG: info}\nbinaryData: {blob: AAEC}\n",
        ),
        ("deployment.yaml", DEPLOYMENT),
        (
            "service.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n",
        ),
        (
            "netpol.yaml",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{ports: [{port: 8080}]}]\n",
        ),
        (
            "pdb.yaml",
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\nspec:\n  minAvailable: 1\n  selector: {matchLabels: {app: web}}\n",
        ),
        (
            "pvc.yaml",
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let dir = dir.to_string_lossy().into_owned();
    let out = k.ok(&["apply", "-k", &dir]).await;
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "configmap/exec-config created",
            "deployment.apps/web created",
            "networkpolicy.networking.k8s.io/web created",
            "persistentvolumeclaim/data created",
            "poddisruptionbudget.policy/web created",
            "service/web created",
        ]
    );
    let again = k.ok(&["apply", "-k", &dir]).await;
    // kubectl always patches a PDB's selector (its patch strategy is
    // `replace`), so a real server answers "configured" for it too.
    assert!(
        again
            .lines()
            .all(|l| l.ends_with(" unchanged") || l == "poddisruptionbudget.policy/web configured"),
        "{again}"
    );
    let svc = k.json(&["get", "service", "web"]).await;
    let ip = svc["spec"]["clusterIP"].as_str().unwrap();
    assert!(
        ip.starts_with("10.9") || ip.starts_with("10.10") || ip.starts_with("10.11"),
        "{ip}"
    );
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
    let pvc = k
        .until(&["get", "pvc", "data"], |p| p["status"]["phase"] == "Bound")
        .await;
    assert_eq!(
        pvc["spec"]["volumeName"],
        format!("pvc-{}", pvc["metadata"]["uid"].as_str().unwrap())
    );
    let cm = k.json(&["get", "configmap", "exec-config"]).await;
    assert_eq!(cm["binaryData"]["blob"], "AAEC");
    k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;

    // The server's own validation, worded as the real one.
    let bad = k.write(
        "bad.yaml",
        &DEPLOYMENT.replace("labels: {app: web}", "labels: {app: other}"),
    );
    let (ok, _, err) = k.run(&["apply", "-f", &bad]).await;
    assert!(!ok);
    assert!(
        err.contains("spec.template.metadata.labels: Invalid value: ")
            && err.contains("`selector` does not match template `labels`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_readiness_probe_makes_the_pod_ready_and_a_failing_http_liveness_probe_restarts_it()
{
    let k = start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    k.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: server}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: python:3
    command: ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
    ports: [{{name: http, containerPort: {port}}}]
    readinessProbe:
      httpGet: {{path: /, port: http}}
      periodSeconds: 1
    livenessProbe:
      httpGet: {{path: /missing, port: {port}}}
      initialDelaySeconds: 1
      periodSeconds: 1
      failureThreshold: 2
"#
    ))
    .await;
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/server",
        "--timeout=30s",
    ])
    .await;
    let pod = k
        .until(&["get", "pod", "server"], |p| {
            container_status(p)["restartCount"].as_i64() >= Some(1)
        })
        .await;
    assert_eq!(
        container_status(&pod)["lastState"]["terminated"]["reason"],
        "Error"
    );
    let events = k
        .json(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=server,reason=Unhealthy",
        ])
        .await;
    let messages: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.contains(&"Liveness probe failed: HTTP probe failed with statuscode: 404"),
        "{messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_from_brings_whole_config_maps_and_secrets_with_env_winning() {
    let k = start().await;
    k.create(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {MODE: fast, SHARED: from-map, 1bad: skipped}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {TOKEN: t0k}
---
apiVersion: v1
kind: Pod
metadata: {name: env-from}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox:1.36
    envFrom:
    - configMapRef: {name: settings}
    - secretRef: {name: creds}
      prefix: S_
    - configMapRef: {name: absent, optional: true}
    env:
    - {name: SHARED, value: from-env}
    command: ["sh", "-c", "echo $MODE $S_TOKEN $SHARED"]
"#,
    )
    .await;
    k.until(&["get", "pod", "env-from"], |p| {
        p["status"]["phase"] == "Succeeded"
    })
    .await;
    assert_eq!(k.ok(&["logs", "env-from"]).await, "fast t0k from-env\n");
    let events = k
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=InvalidEnvironmentVariableNames",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .await;
    assert_eq!(
        events,
        "Keys [1bad] from the EnvFrom configMap default/settings were skipped since they are considered invalid environment variable names."
    );
}
