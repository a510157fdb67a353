//! Two executors on one host (an `executor run` beside another): each claims its own instance, so the second's start-up sweep leaves the first's running Job alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;

use crate::common;

use common::free_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_executor_on_the_same_host_never_sweeps_the_first_ones_running_job() {
    let sim = sim::Sim::start("127.0.0.1:0".parse().unwrap(), sim::Options::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let release = free_port();
    let job = |id: u32, command: &str| {
        let path = dir.path().join(format!("job-{id}.json"));
        let payload = serde_json::json!({
            "id": id,
            "dockerSteps": [{"image": "busybox", "commands": [command]}],
        });
        std::fs::write(&path, payload.to_string()).unwrap();
        path
    };
    let run = |payload: &std::path::Path| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_executor"))
            .arg("run")
            .arg("--job")
            .arg(payload)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .env("EXECUTOR_DATA_DIR", dir.path().join("state"))
            .env("EXECUTOR_DEBUG_LISTEN", "off")
            .env_remove("EXECUTOR_POD_NAME")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let first = run(&job(
        1,
        &format!(
            "until bash -c 'exec 3<>/dev/tcp/127.0.0.1/{release}' 2>/dev/null; do sleep 0.1; done; echo first done"
        ),
    ));

    let client = kube::Client::try_from(sim.kube_config().await.unwrap()).unwrap();
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=executor");
    let deadline = Instant::now() + Duration::from_secs(30);
    let first_job = loop {
        if let Some(j) = jobs.list(&managed).await.unwrap().items.pop() {
            break j.metadata.uid.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the first run never created its Job"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let second = run(&job(2, "echo second done"))
        .wait_with_output()
        .await
        .unwrap();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let left = jobs.list(&managed).await.unwrap().items;
    assert!(
        left.iter()
            .any(|j| j.metadata.uid.as_deref() == Some(first_job.as_str())
                && j.metadata.deletion_timestamp.is_none()),
        "the second run's sweep deleted the first run's Job: {:?}",
        left.iter().map(|j| &j.metadata.name).collect::<Vec<_>>()
    );

    let _listening = std::net::TcpListener::bind(("127.0.0.1", release)).unwrap();
    let first = tokio::time::timeout(Duration::from_secs(60), first.wait_with_output())
        .await
        .expect("the first run ends once released")
        .unwrap();
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success() && out.contains("first done"),
        "{out}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
}
