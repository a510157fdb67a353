//! A Kubernetes API server on loopback for the resources the executor uses, with the real server's paths, JSON, status codes and watch semantics; the executor's test bed and embedded cluster.

pub mod api;
pub mod cluster;
pub mod controller;
pub mod defaults;
pub mod expansion;
pub mod faults;
pub mod kubelet;
pub mod logs;
pub mod nodes;
pub mod quantity;
pub mod resources;
pub mod scheduler;
pub mod selector;
pub mod stats;
pub mod status;
pub mod store;
pub mod validate;
pub mod workloads;

use std::net::SocketAddr;
use std::sync::Arc;

pub use cluster::{Cluster, Options};

/// Why the simulator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address is not on loopback.
    #[error(
        "{0} is not a loopback address; the simulator serves plain HTTP and listens on loopback only"
    )]
    NotLoopback(SocketAddr),
    /// Binding failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running simulator; stops when dropped.
pub struct Sim {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The cluster it serves.
    pub cluster: Arc<Cluster>,
    task: tokio::task::JoinHandle<()>,
    controllers: tokio::task::JoinHandle<()>,
    kubelet: Arc<kubelet::Kubelet>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.task.abort();
        self.controllers.abort();
        self.kubelet.stop_all();
    }
}

impl Sim {
    /// Starts serving on `addr` (port 0: any free port) on the current Tokio runtime.
    pub async fn start(addr: SocketAddr, options: Options) -> Result<Sim, SimError> {
        if !addr.ip().is_loopback() {
            return Err(SimError::NotLoopback(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        let cluster = Cluster::new(options);
        cluster.set_address(addr.to_string());
        let kubelet = Arc::new(kubelet::Kubelet::in_scratch_dir());
        let controllers = controller::spawn(&cluster, &kubelet);
        let app = api::router(cluster.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the simulator's server stopped");
            }
        });
        tracing::info!(%addr, "cluster simulator listening");
        Ok(Sim {
            addr,
            cluster,
            task,
            controllers,
            kubelet,
        })
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `kube` client configuration for this simulator (what
    /// [`Self::kubeconfig`] says, without a file).
    pub async fn kube_config(&self) -> Result<kube::Config, kube::config::KubeconfigError> {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig())?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await
    }

    /// A kubeconfig that points `kubectl` and `kube` at this simulator, in
    /// namespace `default`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {url}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\ncurrent-context: sim\nusers:\n- name: sim\n  user: {{}}\n",
            url = self.url()
        )
    }
}
