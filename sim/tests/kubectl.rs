//! The real `kubectl` against the simulator: the commands an operator uses on Jobs work and read as on a real cluster. `scripts/test` installs kubectl when it is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;

use crate::common;

use common::Kubectl;

fn job(name: &str, extra_spec: &str, container: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n{extra_spec}      containers:\n      - name: main\n{container}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_wait_logs_get_and_delete_a_job() {
    let k = Kubectl::start().await;
    let yaml = job(
        "hello",
        "",
        "        image: busybox:1.36\n        command: [\"sh\", \"-c\", \"echo hello; echo from kubectl\"]\n",
    );
    assert_eq!(k.apply(&yaml).await.trim(), "job.batch/hello created");
    assert_eq!(k.apply(&yaml).await.trim(), "job.batch/hello unchanged");
    let waited = k
        .ok(&[
            "wait",
            "--for=condition=complete",
            "job/hello",
            "--timeout=30s",
        ])
        .await;
    assert_eq!(waited.trim(), "job.batch/hello condition met");
    assert_eq!(
        k.ok(&["logs", "-f", "job/hello"]).await,
        "hello\nfrom kubectl\n"
    );

    let doc: Value =
        serde_json::from_str(&k.ok(&["get", "jobs,pods", "-o", "json"]).await).unwrap();
    let kinds: Vec<&str> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Job", "Pod"]);
    assert_eq!(doc["items"][0]["status"]["succeeded"], 1);
    assert_eq!(doc["items"][1]["status"]["phase"], "Succeeded");

    let deleted = k
        .ok(&["delete", "job", "hello", "--cascade=background"])
        .await;
    assert_eq!(deleted.trim(), "job.batch \"hello\" deleted");
    let left: Value =
        serde_json::from_str(&k.ok(&["get", "jobs,pods", "-o", "json"]).await).unwrap();
    assert_eq!(
        left["items"],
        serde_json::json!([]),
        "the pod went with the job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_an_unschedulable_one_and_a_pull_failure_read_as_on_a_cluster() {
    let k = Kubectl::start().await;
    k.apply(&job(
        "fails",
        "",
        "        image: busybox\n        command: [\"sh\", \"-c\", \"exit 7\"]\n",
    ))
    .await;
    k.apply(&job(
        "nowhere",
        "      nodeSelector:\n        pool: gpu\n",
        "        image: busybox\n        command: [\"true\"]\n",
    ))
    .await;
    k.apply(&job(
        "nopull",
        "",
        "        image: sim.invalid/missing:1\n        command: [\"true\"]\n",
    ))
    .await;

    let waited = k
        .ok(&[
            "wait",
            "--for=condition=failed",
            "job/fails",
            "--timeout=30s",
        ])
        .await;
    assert_eq!(waited.trim(), "job.batch/fails condition met");
    let exit = k
        .ok(&[
            "get",
            "pods",
            "-l",
            "job-name=fails",
            "-o",
            "jsonpath={.items[0].status.containerStatuses[0].state.terminated.exitCode}",
        ])
        .await;
    assert_eq!(exit, "7");

    let (ok, _, err) = k
        .run(&[
            "wait",
            "--for=condition=PodScheduled=false",
            "pods",
            "-l",
            "job-name=nowhere",
            "--timeout=30s",
        ])
        .await;
    assert!(ok, "{err}");
    let why = k
        .ok(&[
            "get",
            "pods",
            "-l",
            "job-name=nowhere",
            "-o",
            "jsonpath={.items[0].status.conditions[0].message}",
        ])
        .await;
    assert!(
        why.starts_with(
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
        ),
        "{why}"
    );

    let pulling = k
        .ok(&[
            "get",
            "pods",
            "-l",
            "job-name=nopull",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])
        .await;
    let (ok, _, err) = k
        .run(&[
            "wait",
            "--for=jsonpath={.status.containerStatuses[0].state.waiting.reason}=ImagePullBackOff",
            &format!("pod/{pulling}"),
            "--timeout=30s",
        ])
        .await;
    assert!(ok, "{err}");
    let (ok, _, err) = k.run(&["logs", &format!("pod/{pulling}")]).await;
    assert!(!ok);
    assert!(
        err.contains("is waiting to start: trying and failing to pull image"),
        "{err}"
    );
}
