//! Deleting one job's objects: its Job (the pod, Secrets and PVC follow in the background), or, after a failed create, everything that was made; retried, counted, and a typed error when it cannot be done.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::DeleteParams;
use kube::{Api, Client};

use super::spec::JobObjects;

/// Why a job's objects could not be deleted; they are then left to
/// `ttlSecondsAfterFinished` and the next start's sweep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TeardownError {
    /// The API server kept refusing or failing.
    #[error("deleting {kind} {name} failed: {message}")]
    Delete {
        /// `Job` or `Secret`.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// The last error.
        message: String,
    },
    /// More than one object could not be deleted.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<TeardownError>),
}

/// Deletes the objects of this executor's jobs in one namespace.
#[derive(Clone)]
pub struct Teardown {
    jobs: Api<Job>,
    secrets: Api<Secret>,
}

impl Teardown {
    /// For the jobs in `namespace`.
    pub fn new(client: &Client, namespace: &str) -> Teardown {
        Teardown {
            jobs: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client.clone(), namespace),
        }
    }

    /// Deletes the Job (Background: its pod, Secrets and PVC go with it),
    /// retrying beyond the client's own retries; a failure is logged and
    /// counted, and returned.
    pub async fn job(&self, name: &str) -> Result<(), TeardownError> {
        let mut last = String::new();
        for attempt in 1..=5u32 {
            match self.jobs.delete(name, &DeleteParams::background()).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) => {
                    last = e.to_string();
                    tracing::warn!(job = %name, attempt, error = %e, "deleting the Job failed");
                    tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
                }
            }
        }
        metrics::counter!(crate::ops::metrics::TEARDOWN_FAILURES).increment(1);
        tracing::error!(job = %name, error = %last, "the Job could not be deleted; ttlSecondsAfterFinished and the next start's sweep remain");
        Err(TeardownError::Delete {
            kind: "Job",
            name: name.to_owned(),
            message: last,
        })
    }

    /// After a failed create: whatever was created goes (Secrets may not
    /// have their owner reference yet).
    pub async fn all(&self, objects: &JobObjects) -> Result<(), TeardownError> {
        let mut problems = Vec::new();
        if let Some(name) = &objects.job.metadata.name
            && let Err(e) = self.job(name).await
        {
            problems.push(e);
        }
        for name in objects
            .secrets
            .iter()
            .filter_map(|s| s.metadata.name.as_ref())
        {
            match self.secrets.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => problems.push(TeardownError::Delete {
                    kind: "Secret",
                    name: name.clone(),
                    message: e.to_string(),
                }),
            }
        }
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(TeardownError::Several(problems)),
        }
    }
}
