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

/// `message` with the steps it names by container (`step-0`) named as the
/// job's log names them (`step.kubernetes.main`): a plugin sees the Job,
/// whose containers are numbered, while the user knows the steps by key.
pub fn name_steps(message: &str, payload: &JobPayload) -> String {
    let named: Vec<String> = payload
        .steps
        .iter()
        .enumerate()
        .filter(|(i, _)| mentions(message, &format!("step-{i}")))
        .map(|(i, step)| format!("container step-{i} is step.kubernetes.{}", step.key))
        .collect();
    if named.is_empty() {
        message.to_owned()
    } else {
        format!("{message} ({})", named.join(", "))
    }
}

/// Whether `name` appears in `text` as a whole word (`step-1` is not in `step-10`).
fn mentions(text: &str, name: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(name).any(|(at, _)| {
        !text[..at].chars().next_back().is_some_and(part)
            && !text[at + name.len()..].chars().next().is_some_and(part)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_denial_that_names_a_step_container_also_names_the_step_as_the_log_does() {
        let payload = JobPayload::parse(
            r#"{"id": 1, "dockerSteps": [{"key": "main", "image": "a", "commands": ["x"]}]}"#,
        )
        .unwrap();
        assert_eq!(
            name_steps(
                r#"denied by plugin `p`: image "e/m:1" of container "step-0" is not allowed"#,
                &payload
            ),
            r#"denied by plugin `p`: image "e/m:1" of container "step-0" is not allowed (container step-0 is step.kubernetes.main)"#
        );
        assert_eq!(
            name_steps("nothing about step-01", &payload),
            "nothing about step-01"
        );
    }
}
