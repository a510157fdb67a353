//! The start-up sweep: Jobs and Secrets an earlier life of this executor (same instance, another executor name) left behind are deleted.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};

use super::spec::{LABEL_EXECUTOR, LABEL_INSTANCE, MANAGED_BY, label_value};

/// Why the sweep could not finish.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {kind} of earlier lives of this executor: {source}")]
pub struct SweepError {
    action: &'static str,
    kind: &'static str,
    source: kube::Error,
}

/// What the sweep deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Jobs (their pods and owned Secrets go with them).
    pub jobs: Vec<String>,
    /// Secrets whose Job never got created.
    pub secrets: Vec<String>,
}

/// Deletes, in `namespace`, what executors of `instance` other than
/// `executor_name` created: a process that was killed never deleted its
/// Jobs. Executors of other instances (other replicas) are left alone.
pub async fn sweep(
    client: &Client,
    namespace: &str,
    instance: &str,
    executor_name: &str,
) -> Result<Swept, SweepError> {
    let selector = format!(
        "app.kubernetes.io/managed-by={MANAGED_BY},{LABEL_INSTANCE}={},{LABEL_EXECUTOR}!={}",
        label_value(instance),
        label_value(executor_name)
    );
    let params = ListParams::default().labels(&selector);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let err = |action, kind| {
        move |source| SweepError {
            action,
            kind,
            source,
        }
    };
    let mut swept = Swept::default();
    for job in jobs.list(&params).await.map_err(err("list", "Jobs"))? {
        let Some(name) = job.metadata.name else {
            continue;
        };
        match jobs.delete(&name, &DeleteParams::background()).await {
            Ok(_) => swept.jobs.push(name),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(err("delete", "Jobs")(e)),
        }
    }
    // Secrets with a Job go with it; these never had one, or their owner
    // reference was not set yet when the executor died.
    for secret in secrets
        .list(&params)
        .await
        .map_err(err("list", "Secrets"))?
    {
        let Some(name) = secret.metadata.name else {
            continue;
        };
        let owned = secret
            .metadata
            .owner_references
            .is_some_and(|refs| refs.iter().any(|r| r.kind == "Job"));
        if owned {
            continue;
        }
        match secrets.delete(&name, &DeleteParams::background()).await {
            Ok(_) => swept.secrets.push(name),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(err("delete", "Secrets")(e)),
        }
    }
    if !swept.jobs.is_empty() || !swept.secrets.is_empty() {
        tracing::info!(jobs = ?swept.jobs, secrets = ?swept.secrets, "deleted what an earlier life of this executor left");
    }
    Ok(swept)
}
