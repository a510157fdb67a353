//! The kubelet: starts a bound pod once and stops it on deletion; how a pod and its containers run lives in `pod` and `container`, and the kubelet reaches the cluster only through the store, events and the container log registry.

mod container;
mod downward;
mod env;
mod files;
mod pod;
mod probe;
mod projected;
mod restart;
mod sandbox;
mod security;
mod status;
mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::watch;

use crate::cluster::Cluster;

pub use container::MISSING_IMAGE_PREFIX;

/// Where the kubelet keeps pods' volumes, and what it runs.
pub struct Kubelet {
    root: PathBuf,
    running: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl Kubelet {
    /// A kubelet keeping volumes under `root`.
    pub fn new(root: PathBuf) -> Kubelet {
        Kubelet {
            root,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// A kubelet keeping volumes in a fresh private directory of its own:
    /// an unpredictable name, mode 0700, so that no other local user (nor a
    /// guess) reaches pods' Secrets.
    pub fn in_scratch_dir() -> Kubelet {
        use std::os::unix::fs::DirBuilderExt;
        let random = uuid::Uuid::new_v4().simple().to_string();
        let root = std::env::temp_dir().join(format!("executor-sim-{random}"));
        if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&root) {
            tracing::error!(error = %e, dir = %root.display(), "cannot make the kubelet's directory");
        }
        Kubelet::new(root)
    }

    /// Whether containers can be sandboxed here (bubblewrap with user, PID,
    /// IPC and UTS namespaces); when not, every container fails to start
    /// with `RunContainerError` and this message.
    pub fn sandbox_check() -> Result<(), String> {
        sandbox::check()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<bool>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `pod` if it is bound to a node, not finished, and not running yet.
    pub fn ensure(&self, cluster: &Arc<Cluster>, pod: &Value) {
        let Some(uid) = pod["metadata"]["uid"].as_str() else {
            return;
        };
        let bound = pod["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let done = matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        if !bound || done || pod["metadata"].get("deletionTimestamp").is_some() {
            return;
        }
        let mut running = self.running();
        if running.contains_key(uid) {
            return;
        }
        let (stop, stopped) = watch::channel(false);
        running.insert(uid.to_owned(), stop);
        let cluster = cluster.clone();
        let pod = pod.clone();
        let dir = self.root.join(uid);
        let claims = self.root.join("claims");
        tokio::spawn(async move {
            pod::run_pod(&cluster, &pod, &dir, &claims, stopped).await;
            pod::remove_if_deleted(&cluster, &pod);
            let _ = tokio::fs::remove_dir_all(dir).await;
        });
    }

    /// Stops every pod (when the simulator stops).
    pub fn stop_all(&self) {
        let running: Vec<_> = self.running().drain().collect();
        for (_, stop) in running {
            let _ = stop.send(true);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }

    /// Stops the processes of pod `uid` (preStop hooks, SIGTERM, then
    /// SIGKILL after the grace period); whether its run was still going.
    pub fn stop(&self, uid: &str) -> bool {
        let mut running = self.running();
        // Asked again while it stops, it is still running; once its run has
        // ended (the receiver is gone) the entry goes.
        let alive = running.get(uid).is_some_and(|stop| stop.send(true).is_ok());
        if !alive {
            running.remove(uid);
        }
        alive
    }
}
