//! The Kubernetes client: from `EXECUTOR_KUBERNETES_CONFIG_PATH` if set, else in-cluster, else the default kubeconfig.

use std::path::Path;

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig given cannot be read or used.
    #[error("cannot use the kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// Neither in-cluster configuration nor a default kubeconfig was found.
    #[error(
        "no Kubernetes configuration: not in a pod, and no kubeconfig ($KUBECONFIG or ~/.kube/config): {0}"
    )]
    Infer(#[from] kube::config::InferConfigError),
    /// The configuration cannot make a client.
    #[error("cannot make a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client for `config_path`, or, without one, for the pod's service account
/// when in a cluster, else for the default kubeconfig.
pub async fn client(config_path: Option<&Path>) -> Result<kube::Client, ClientError> {
    let config = match config_path {
        Some(path) => {
            let err = |source| ClientError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(err)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(err)?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}
