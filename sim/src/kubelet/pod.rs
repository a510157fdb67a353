//! One pod's life on the kubelet, in stages: the first status, the volumes, the init containers in order, then the containers together, and the phase they end in.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::container::ContainerRun;
use super::files::MountError;
use super::restart::run_restarting;
use super::status::{INIT, MAIN, PodStatus, Slot, StatusSink, waiting};
use super::volumes::{Volumes, prepare_volumes};
use crate::cluster::{Cluster, resource};
use crate::store::Key;

/// The pod's init containers and containers, as specs.
struct Containers {
    init: Vec<Value>,
    main: Vec<Value>,
}

impl Containers {
    fn of(pod: &Value) -> Containers {
        let list = |name: &str| pod["spec"][name].as_array().cloned().unwrap_or_default();
        Containers {
            init: list("initContainers"),
            main: list("containers"),
        }
    }
}

/// How the init containers ended.
enum Initialized {
    /// All succeeded; the containers start.
    Done,
    /// One failed, or the pod was stopped: nothing else runs.
    Over,
}

/// Runs `pod` (its volumes under `dir`, its claims' under `claims`) until its containers end or it is stopped.
pub(super) async fn run_pod(
    cluster: &Arc<Cluster>,
    pod: &Value,
    dir: &Path,
    claims: &Path,
    mut stopped: watch::Receiver<bool>,
) {
    let containers = Containers::of(pod);
    let mut status = PodStatus::initial(cluster, pod, &containers.init, &containers.main);
    status.write();
    let volumes = match prepare_volumes(cluster, pod, dir, claims).await {
        Ok(v) => v,
        Err(e) => return mount_failed(cluster, pod, &containers, status, &e, stopped).await,
    };
    let init = run_init_containers(
        cluster,
        pod,
        &containers,
        &volumes,
        &mut status,
        &mut stopped,
    );
    if let Initialized::Over = init.await {
        return;
    }
    status.condition("Initialized", true, None);
    status.status["phase"] = json!("Running");
    status.write();
    let status = Arc::new(tokio::sync::Mutex::new(status));
    let Some(codes) = run_containers(cluster, pod, &containers, &volumes, &status, &stopped).await
    else {
        return;
    };
    let mut status = status.lock().await;
    let ok = codes.iter().all(|c| *c == 0);
    status.status["phase"] = json!(if ok { "Succeeded" } else { "Failed" });
    status.condition("Ready", false, Some("PodCompleted"));
    status.condition("ContainersReady", false, Some("PodCompleted"));
    status.condition("PodReadyToStartContainers", false, None);
    status.write();
}

/// The real kubelet retries mounts and leaves the pod in `ContainerCreating`
/// with a `FailedMount` Event; so does this one, until the pod is stopped.
async fn mount_failed(
    cluster: &Cluster,
    pod: &Value,
    containers: &Containers,
    mut status: PodStatus,
    error: &MountError,
    mut stopped: watch::Receiver<bool>,
) {
    for index in 0..containers.init.len() {
        let slot = Slot { list: INIT, index };
        status.set_container(slot, waiting("PodInitializing", None), false);
    }
    for index in 0..containers.main.len() {
        let slot = Slot { list: MAIN, index };
        status.set_container(slot, waiting("ContainerCreating", None), false);
    }
    status.write();
    cluster.event(pod, "Warning", "FailedMount", &error.to_string());
    let _ = stopped.changed().await;
}

/// Runs the init containers one after the other; a failure fails the pod.
async fn run_init_containers(
    cluster: &Arc<Cluster>,
    pod: &Value,
    containers: &Containers,
    volumes: &Volumes,
    status: &mut PodStatus,
    stopped: &mut watch::Receiver<bool>,
) -> Initialized {
    let restart_never = pod["spec"]["restartPolicy"].as_str() == Some("Never");
    for (index, container) in containers.init.iter().enumerate() {
        let run = ContainerRun {
            cluster,
            pod,
            container,
            volumes,
            slot: Slot { list: INIT, index },
        };
        match run_restarting(&run, &mut StatusSink::Own(status), stopped, None).await {
            Some(0) => {}
            Some(_) => {
                // Only under `Never` does a failed init container end here.
                status.status["phase"] = json!("Failed");
                if restart_never {
                    status.condition("Initialized", false, Some("ContainersNotInitialized"));
                }
                status.write();
                return Initialized::Over;
            }
            None => return Initialized::Over,
        }
    }
    Initialized::Done
}

/// Runs the containers together; their exit codes, or `None` when the pod
/// was stopped first.
async fn run_containers(
    cluster: &Arc<Cluster>,
    pod: &Value,
    containers: &Containers,
    volumes: &Volumes,
    status: &Arc<tokio::sync::Mutex<PodStatus>>,
    stopped: &watch::Receiver<bool>,
) -> Option<Vec<i32>> {
    let mut tasks = Vec::new();
    for (index, container) in containers.main.iter().enumerate() {
        let cluster = cluster.clone();
        let pod = pod.clone();
        let container = container.clone();
        let volumes = volumes.clone();
        let mut sink = StatusSink::Shared(status.clone());
        let stopped = stopped.clone();
        let shared = status.clone();
        tasks.push(tokio::spawn(async move {
            let run = ContainerRun {
                cluster: &cluster,
                pod: &pod,
                container: &container,
                volumes: &volumes,
                slot: Slot { list: MAIN, index },
            };
            run_restarting(&run, &mut sink, &stopped, Some(&shared)).await
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.ok().flatten());
    }
    codes.into_iter().collect()
}

/// A pod whose deletion waited for its containers is removed now that they
/// have stopped, as the kubelet's final delete does.
pub(super) fn remove_if_deleted(cluster: &Cluster, pod: &Value) {
    let pods = resource("", "pods");
    let key = Key::new(
        pods,
        pod["metadata"]["namespace"].as_str().unwrap_or_default(),
        pod["metadata"]["name"].as_str().unwrap_or_default(),
    );
    let uid = &pod["metadata"]["uid"];
    let terminating = cluster.store.get(&key).is_some_and(|p| {
        &p["metadata"]["uid"] == uid && p["metadata"].get("deletionTimestamp").is_some()
    });
    if terminating {
        // Through the cluster, so that the pod's dependents are collected.
        let _ = cluster.delete_with_grace(pods, &key, "Background", Some(0));
    }
}
