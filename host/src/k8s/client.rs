//! The Kubernetes client: from `EXECUTOR_KUBERNETES_CONFIG_PATH` if set, else in-cluster, else the default kubeconfig.

use std::path::Path;

use tower::buffer::BufferLayer;

use super::throttle::{RetryPolicy, Throttle};
use crate::config::ApiLimits;
use crate::ops::LastAnswer;

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
pub async fn client(
    config_path: Option<&Path>,
    limits: &ApiLimits,
) -> Result<kube::Client, ClientError> {
    Ok(with_limits(config(config_path).await?, limits)?)
}

/// The configuration [`client`] uses: `config_path`, else in-cluster, else
/// the default kubeconfig.
pub async fn config(config_path: Option<&Path>) -> Result<kube::Config, ClientError> {
    let mut config = match config_path {
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
    // This client's own layer retries, with the configured budget; kube's
    // would retry 429s and 503s a second time underneath it.
    config.default_retry = false;
    Ok(config)
}

/// A client for `config` whose requests go through [`Throttle`] with `limits`.
pub fn with_limits(config: kube::Config, limits: &ApiLimits) -> Result<kube::Client, kube::Error> {
    observed(config, limits, None)
}

/// [`with_limits`], marking every reply that is not a server error in
/// `answered` (the operations port's readiness).
pub fn observed(
    config: kube::Config,
    limits: &ApiLimits,
    answered: Option<LastAnswer>,
) -> Result<kube::Client, kube::Error> {
    build(config, limits, RetryPolicy::default(), answered)
}

/// [`with_limits`] with its own retry budget (tests that need an outage to
/// be felt at once, rather than after the default eight attempts).
pub fn with_retry(
    config: kube::Config,
    limits: &ApiLimits,
    retry: RetryPolicy,
) -> Result<kube::Client, kube::Error> {
    build(config, limits, retry, None)
}

fn build(
    config: kube::Config,
    limits: &ApiLimits,
    retry: RetryPolicy,
    answered: Option<LastAnswer>,
) -> Result<kube::Client, kube::Error> {
    let builder = kube::client::ClientBuilder::try_from(config)?;
    Ok(builder
        .with_layer(&BufferLayer::new(1024))
        .with_layer(&Throttle::new(limits, retry, answered))
        .build())
}
