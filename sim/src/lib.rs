//! A Kubernetes API server on loopback for the resources the executor uses, with the real server's paths, JSON, status codes and watch semantics; the executor's test bed and embedded cluster.

pub mod api;
pub mod auth;
pub mod cluster;
pub mod controller;
pub mod defaults;
pub mod expansion;
pub mod faults;
pub mod images;
pub mod kubelet;
pub mod logs;
pub mod nodes;
pub mod quantity;
pub mod resources;
pub mod scheduler;
pub mod selector;
pub mod serviceaccounts;
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
        "{0} is not a loopback address; the simulator's containers run on this host, so it listens on loopback only"
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
    /// The certificates or TLS configuration could not be made.
    #[error(transparent)]
    Tls(#[from] auth::tls::TlsError),
}

/// How the API is served.
enum Serving {
    /// Plain HTTP (`insecure_http`).
    Plain(tokio::net::TcpListener),
    /// HTTPS with the generated certificate.
    Tls(auth::tls::TlsListener),
}

/// A running simulator; stops when dropped.
pub struct Sim {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The cluster it serves.
    pub cluster: Arc<Cluster>,
    task: tokio::task::JoinHandle<()>,
    controllers: tokio::task::JoinHandle<()>,
    accounts: tokio::task::JoinHandle<()>,
    kubelet: Arc<kubelet::Kubelet>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.task.abort();
        self.controllers.abort();
        self.accounts.abort();
        self.kubelet.stop_all();
    }
}

impl Sim {
    /// Starts serving on `addr` (port 0: any free port) on the current Tokio
    /// runtime: HTTPS with a CA made now, unless `options.insecure_http`.
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
        let insecure = options.insecure_http;
        let cluster = Cluster::new(options);
        cluster.set_address(addr.to_string());
        if let Err(e) = kubelet::Kubelet::sandbox_check() {
            tracing::error!(error = %e, "containers cannot be sandboxed here; every pod will fail with RunContainerError");
        }
        let serving = if insecure {
            Serving::Plain(listener)
        } else {
            let certs = auth::tls::Certificates::generate(addr)?;
            cluster.auth.set_ca(certs.ca_pem.clone());
            Serving::Tls(auth::tls::TlsListener::new(listener, &certs)?)
        };
        let accounts = serviceaccounts::spawn(&cluster);
        let kubelet = Arc::new(kubelet::Kubelet::in_scratch_dir());
        let controllers = controller::spawn(&cluster, &kubelet);
        let app = api::router(cluster.clone());
        let task = tokio::spawn(async move {
            let served = match serving {
                Serving::Plain(listener) => axum::serve(listener, app).await,
                Serving::Tls(listener) => axum::serve(listener, app).await,
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "the simulator's server stopped");
            }
        });
        tracing::info!(%addr, tls = !insecure, "cluster simulator listening");
        Ok(Sim {
            addr,
            cluster,
            task,
            controllers,
            accounts,
            kubelet,
        })
    }

    /// `https://127.0.0.1:port` (`http://` when serving plain HTTP).
    pub fn url(&self) -> String {
        let scheme = if self.cluster.auth.ca_pem().is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The admin identity's bearer token (user `admin` in `system:masters`).
    pub fn admin_token(&self) -> &str {
        self.cluster.auth.admin_token()
    }

    /// The CA the API's certificate is signed by (PEM); `None` over plain HTTP.
    pub fn ca_pem(&self) -> Option<&str> {
        self.cluster.auth.ca_pem()
    }

    /// The `kube` client configuration for this simulator (what
    /// [`Self::kubeconfig`] says, without a file): it trusts the CA and
    /// sends the admin token.
    pub async fn kube_config(&self) -> Result<kube::Config, kube::config::KubeconfigError> {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig())?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await
    }

    /// A kubeconfig that points `kubectl`, `kube` and the official clients
    /// at this simulator as the admin, in namespace `default`. It holds a
    /// token: write it to a file only its owner can read.
    pub fn kubeconfig(&self) -> String {
        self.kubeconfig_with_token("admin", self.admin_token())
    }

    /// Writes [`Self::kubeconfig`] to `path`, readable and writable by its
    /// owner only (it holds the admin token), also when the file existed.
    pub fn write_kubeconfig(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(self.kubeconfig().as_bytes())
    }

    /// A kubeconfig like [`Self::kubeconfig`] for another identity's token
    /// (a ServiceAccount's, from `kubectl create token`).
    pub fn kubeconfig_with_token(&self, user: &str, token: &str) -> String {
        use base64::Engine;
        let trust = match self.ca_pem() {
            Some(pem) => format!(
                "    certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(pem)
            ),
            // The official JavaScript client loads a plain `http://` server
            // only when told not to verify TLS.
            None => "    insecure-skip-tls-verify: true\n".to_owned(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {url}\n{trust}contexts:\n- name: sim\n  context:\n    cluster: sim\n    user: {user:?}\n    namespace: default\ncurrent-context: sim\nusers:\n- name: {user:?}\n  user:\n    token: {token:?}\n",
            url = self.url()
        )
    }
}
