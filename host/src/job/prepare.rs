//! The first stage: a job's objects built from its payload and admitted by the plugins, with the host's invariants re-applied; nothing touches the cluster yet.

use std::sync::Arc;

use crate::k8s::spec::{self, AdmitError, Inputs, JobObjects, SpecError};
use crate::plugins::{JobContext, Plugins, TrailEntry};

use crate::payload::JobPayload;

/// Why a job cannot be run as given.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Its objects cannot be built from the payload and the configuration.
    #[error(transparent)]
    Build(#[from] SpecError),
    /// A plugin denied the Job, failed with policy `fail`, or left
    /// something that is not a Job the executor can run.
    #[error(transparent)]
    Admit(#[from] AdmitError),
    /// The admission chain's thread panicked.
    #[error("admission crashed: {0}")]
    Crashed(#[source] tokio::task::JoinError),
}

/// What admission made of a job: the objects to create, or why not, and
/// what each plugin did on the way.
pub struct Admission {
    /// The objects with the plugins' changes and the host's invariants.
    pub result: Result<JobObjects, PrepareError>,
    /// What each plugin did, for the job's log.
    pub trail: Vec<TrailEntry>,
}

/// Builds the job's objects.
pub fn build(inputs: &Inputs<'_>, payload: &JobPayload) -> Result<JobObjects, PrepareError> {
    Ok(spec::build(inputs, payload)?)
}

/// Runs the admission chain on `built`, on a blocking thread: plugins run
/// synchronously, bounded by their deadlines.
pub async fn admit(plugins: Arc<Plugins>, ctx: JobContext, built: JobObjects) -> Admission {
    let span = tracing::Span::current();
    // What the plugins log names the job they admit.
    let admit = move || span.in_scope(|| spec::admit(&plugins, &ctx, built));
    let admission = match tokio::task::spawn_blocking(admit).await {
        Ok(admission) => admission,
        Err(e) => {
            return Admission {
                result: Err(PrepareError::Crashed(e)),
                trail: Vec::new(),
            };
        }
    };
    let result = match admission.result {
        Ok(admitted) => {
            if !admitted.reverted.is_empty() {
                tracing::warn!(reverted = ?admitted.reverted, "plugins changed what the executor owns; reverted");
            }
            Ok(admitted.objects)
        }
        Err(e) => Err(e.into()),
    };
    Admission {
        result,
        trail: admission.outcome.trail,
    }
}
