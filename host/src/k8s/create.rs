//! Creating a job's objects idempotently: a retry or a restarted executor finds what an earlier attempt made (409 → adopt when it is this job's), and the Secrets end up owned by the Job.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::spec::{JobObjects, LABEL_JOB_ID, LABEL_QUEUE, owned_by};

/// What [`create`] made.
#[derive(Debug, Clone)]
pub struct Created {
    /// The Job as the API server has it (with its uid).
    pub job: Job,
    /// Whether the Job already existed from an earlier attempt at this job.
    pub adopted: bool,
}

/// Why the objects could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The API server refused or failed.
    #[error("cannot {action} {kind} {name}: {source}")]
    Api {
        /// What was being done.
        action: &'static str,
        /// `Job` or `Secret`.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// The error.
        source: kube::Error,
    },
    /// An object of that name exists and belongs to something else.
    #[error(
        "{kind} {namespace}/{name} already exists and is not this job's (its labels say queue {queue:?}, job id {job_id:?}); refusing to adopt it"
    )]
    Foreign {
        /// `Job` or `Secret`.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its queue label (`(none)` when absent).
        queue: String,
        /// Its job id label (`(none)` when absent).
        job_id: String,
    },
    /// The built objects lack a name (a bug in the builder).
    #[error("the {0} to create has no name")]
    Unnamed(&'static str),
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Whether `labels` mark the object as the same job as `want` (queue and
/// id; the executor name differs after a restart, and that is the point).
fn same_job(
    have: Option<&std::collections::BTreeMap<String, String>>,
    want: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    let get = |m: Option<&std::collections::BTreeMap<String, String>>, k: &str| {
        m.and_then(|m| m.get(k)).cloned()
    };
    [LABEL_QUEUE, LABEL_JOB_ID]
        .iter()
        .all(|k| get(have, k).is_some() && get(have, k) == get(want, k))
}

/// Creates the Secrets, then the Job, then makes the Job the Secrets' owner
/// (so deleting the Job deletes them). Objects left by an earlier attempt at
/// the same job are adopted; objects of another job are an error.
pub async fn create(
    client: &Client,
    namespace: &str,
    objects: &JobObjects,
) -> Result<Created, CreateError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    for secret in &objects.secrets {
        let name = secret
            .metadata
            .name
            .clone()
            .ok_or(CreateError::Unnamed("Secret"))?;
        match secrets.create(&PostParams::default(), secret).await {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => {
                let existing = secrets
                    .get(&name)
                    .await
                    .map_err(|source| CreateError::Api {
                        action: "read",
                        kind: "Secret",
                        name: name.clone(),
                        source,
                    })?;
                if !same_job(
                    existing.metadata.labels.as_ref(),
                    secret.metadata.labels.as_ref(),
                ) {
                    return Err(foreign(
                        "Secret",
                        namespace,
                        &name,
                        existing.metadata.labels.as_ref(),
                    ));
                }
                tracing::info!(secret = %name, "adopting the Secret of an earlier attempt");
            }
            Err(source) => {
                return Err(CreateError::Api {
                    action: "create",
                    kind: "Secret",
                    name,
                    source,
                });
            }
        }
    }
    let name = objects
        .job
        .metadata
        .name
        .clone()
        .ok_or(CreateError::Unnamed("Job"))?;
    let (job, adopted) = match jobs.create(&PostParams::default(), &objects.job).await {
        Ok(job) => (job, false),
        Err(e) if is_conflict(&e) => {
            let existing = jobs.get(&name).await.map_err(|source| CreateError::Api {
                action: "read",
                kind: "Job",
                name: name.clone(),
                source,
            })?;
            if !same_job(
                existing.metadata.labels.as_ref(),
                objects.job.metadata.labels.as_ref(),
            ) {
                return Err(foreign(
                    "Job",
                    namespace,
                    &name,
                    existing.metadata.labels.as_ref(),
                ));
            }
            tracing::info!(job = %name, "adopting the Job of an earlier attempt");
            (existing, true)
        }
        Err(source) => {
            return Err(CreateError::Api {
                action: "create",
                kind: "Job",
                name,
                source,
            });
        }
    };
    if let Some(owner) = owned_by(&job) {
        let patch = json!({"metadata": {"ownerReferences": [owner]}});
        for secret in &objects.secrets {
            let secret_name = secret.metadata.name.clone().unwrap_or_default();
            secrets
                .patch(&secret_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|source| CreateError::Api {
                    action: "set the owner of",
                    kind: "Secret",
                    name: secret_name.clone(),
                    source,
                })?;
        }
    }
    Ok(Created { job, adopted })
}

fn foreign(
    kind: &'static str,
    namespace: &str,
    name: &str,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> CreateError {
    CreateError::Foreign {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        queue: labels
            .and_then(|l| l.get(LABEL_QUEUE))
            .cloned()
            .unwrap_or_else(|| "(none)".into()),
        job_id: labels
            .and_then(|l| l.get(LABEL_JOB_ID))
            .cloned()
            .unwrap_or_else(|| "(none)".into()),
    }
}
