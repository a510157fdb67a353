//! Creating a job's objects: a retry or a restarted executor replaces what an earlier attempt at the same job left (409 → delete, wait, create), never another job's, and the Secrets end up owned by the Job.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::{Api, Client};
use serde_json::json;

use super::spec::{JobObjects, LABEL_JOB_ID, LABEL_QUEUE, owned_by};

/// What [`create`] made.
#[derive(Debug, Clone)]
pub struct Created {
    /// The Job as the API server has it (with its uid).
    pub job: Job,
    /// Whether an earlier attempt's objects were deleted to make these.
    pub replaced: bool,
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
        "{kind} {namespace}/{name} already exists and is not this job's (its labels say queue {queue:?}, job id {job_id:?}); refusing to replace it"
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
    /// An earlier attempt's object did not go in time.
    #[error(
        "{kind} {name} of an earlier attempt at this job is still being deleted after {waited:?}; a new attempt needs its own"
    )]
    StillDeleting {
        /// `Job` or `Secret`.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// How long it was waited for.
        waited: Duration,
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
/// (so deleting the Job deletes them). Objects an earlier attempt at the same
/// job left are deleted first and made afresh: they hold that attempt's job
/// token (no longer valid), may belong to another executor's pod watch, or be
/// a kept Job that already ended. Objects of another job are an error.
pub async fn create(
    client: &Client,
    namespace: &str,
    objects: &JobObjects,
) -> Result<Created, CreateError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let mut replaced = false;
    for secret in &objects.secrets {
        let (_, earlier) = create_fresh(&secrets, "Secret", namespace, secret).await?;
        replaced |= earlier;
    }
    let (job, earlier) = create_fresh(&jobs, "Job", namespace, &objects.job).await?;
    replaced |= earlier;
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
    Ok(Created { job, replaced })
}

/// How long an earlier attempt's object may take to go (a Job waits for its
/// pods with foreground deletion, and they for their grace period).
const REPLACE_WITHIN: Duration = Duration::from_secs(120);

/// Creates `object`; when an earlier attempt at the same job left one of
/// that name, deletes it (foreground: a Job's pods go first), waits until it
/// is gone, and creates it again. Whether one was replaced.
async fn create_fresh<K>(
    api: &Api<K>,
    kind: &'static str,
    namespace: &str,
    object: &K,
) -> Result<(K, bool), CreateError>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let name = object
        .meta()
        .name
        .clone()
        .ok_or(CreateError::Unnamed(kind))?;
    let api_error = |action: &'static str, source| CreateError::Api {
        action,
        kind,
        name: name.clone(),
        source,
    };
    let deadline = tokio::time::Instant::now() + REPLACE_WITHIN;
    let mut replaced = false;
    let mut pause = Duration::from_millis(50);
    loop {
        match api.create(&PostParams::default(), object).await {
            Ok(created) => return Ok((created, replaced)),
            Err(e) if is_conflict(&e) => {}
            Err(source) => return Err(api_error("create", source)),
        }
        let existing = api.get_opt(&name).await.map_err(|e| api_error("read", e))?;
        if let Some(existing) = existing {
            let have = existing.meta().labels.as_ref();
            if !same_job(have, object.meta().labels.as_ref()) {
                return Err(foreign(kind, namespace, &name, have));
            }
            if existing.meta().deletion_timestamp.is_none() {
                tracing::info!(kind, name = %name, "replacing what an earlier attempt at this job left");
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Foreground),
                    preconditions: existing.meta().uid.clone().map(|uid| Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(&name, &params).await {
                    Ok(_) => {}
                    // Gone already, or replaced by someone else meanwhile:
                    // the next create says which.
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(api_error("delete", e)),
                }
                replaced = true;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CreateError::StillDeleting {
                    kind,
                    name: name.clone(),
                    waited: REPLACE_WITHIN,
                });
            }
            // The API has no watch verb in the executor's Role for these:
            // poll, backing off, until the old object is gone.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
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
