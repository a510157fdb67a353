//! The last stage: stop a pod the executor must stop, drain the logs, fold the log pipeline's result into the outcome, and say whether the Job is left to delete.

use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};

use super::follow::Entries;
use crate::k8s::outcome::Outcome;
use crate::k8s::teardown::{Teardown, TeardownError};
use crate::plugins::PluginError;

/// How long the log of a pod that ended by itself may take to drain;
/// followers end on their own (the container ended, the pod went, the API
/// kept failing), so this bounds only a stream that hangs.
const DRAIN: Duration = Duration::from_secs(300);
/// ...and of a pod the executor stopped (its containers get SIGTERM).
const DRAIN_STOPPED: Duration = Duration::from_secs(10);

/// How following ended, and what is still reading.
pub struct Ending {
    /// The outcome as following saw it.
    pub outcome: Outcome,
    /// The log followers, which may still be reading.
    pub followers: JoinSet<()>,
    /// The job's log pipeline.
    pub pipeline: JoinHandle<Result<(), PluginError>>,
}

/// A job at its end.
pub struct Finished {
    /// How it ended, the log pipeline's verdict included.
    pub outcome: Outcome,
    /// Whether the Job was deleted here, and if so whether that worked.
    pub deleted: Option<Result<(), TeardownError>>,
}

/// Ends the job of Job `name`. A pod the cluster ended has told its logs;
/// one the executor must stop (cancelled, over its runtime) is deleted
/// first, then drained.
pub async fn finish(
    name: &str,
    ending: Ending,
    entries: &Entries,
    teardown: &Teardown,
    keep_jobs: bool,
) -> Finished {
    let Ending {
        outcome,
        mut followers,
        pipeline,
    } = ending;
    let stop = !matches!(outcome, Outcome::Succeeded | Outcome::StepFailed { .. });
    let mut deleted = None;
    if stop
        && (!keep_jobs
            || matches!(
                outcome,
                Outcome::Cancelled | Outcome::RuntimeExceeded { .. }
            ))
    {
        deleted = Some(teardown.job(name).await);
    }
    let drain = if stop { DRAIN_STOPPED } else { DRAIN };
    if tokio::time::timeout(drain, async {
        while followers.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(job = %name, left = followers.len(), "logs did not drain in time; dropping their followers");
        followers.abort_all();
    }
    let mut outcome = match outcome {
        Outcome::StepFailed {
            container,
            exit_code,
        } => Outcome::StepFailed {
            container: entries.describe(&container),
            exit_code,
        },
        other => other,
    };
    match pipeline.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if !matches!(outcome, Outcome::Cancelled) => {
            outcome = Outcome::LogFilterFailed(e.to_string());
        }
        Ok(Err(_)) => {}
        Err(e) => tracing::error!(job = %name, error = %e, "log pipeline crashed"),
    }
    Finished { outcome, deleted }
}
