//! The embedded queue's model: job states, the views of jobs, entries, executors and repositories, and the user API's bodies; the store returns these types and the API serves them (the CLI reads them too). No I/O here.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::queue::wire::{ExecutionLogEntry, Telemetry};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for an executor.
    Queued,
    /// Dequeued by an executor that heartbeats for it.
    Processing,
    /// Ran to success.
    Completed,
    /// The protocol's retryable failure. This queue requeues or fails an
    /// errored job at once, so no stored job is in this state; it exists so
    /// that every state of the protocol has a name.
    Errored,
    /// Ran and failed, or was given up on.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Processing,
        JobState::Completed,
        JobState::Errored,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// Whether the job will not change any more.
    pub fn terminal(&self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }

    /// Its name, as stored and as serialized.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Processing => "processing",
            JobState::Completed => "completed",
            JobState::Errored => "errored",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = JobState::ALL.iter().map(JobState::as_str).collect();
                format!(
                    "{s:?} is not a job state; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// `POST /api/v1/jobs`: either a full protocol `payload`, or the short form
/// (`image`, `commands` and the optional rest) that becomes a one-step job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmitRequest {
    /// The queue (`default` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// A full job payload (queue-protocol.md); `id`, `queue` and `token` are set by the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Short form: the image of the single step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Short form: its shell commands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    /// Short form: a registered repository to clone into the workspace root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Short form: the revision of `repository` to check out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Short form: environment of the step.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Short form: environment whose values are also redacted from the logs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
}

/// The reply to a submission (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Submitted {
    /// The job's id (unique across queues).
    pub id: i64,
    /// Its queue.
    pub queue: String,
}

/// A job without its payload and log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSummary {
    /// The job's id.
    pub id: i64,
    /// Its queue.
    pub queue: String,
    /// Its state.
    pub state: JobState,
    /// How many times it was requeued (executor resets and errors).
    pub attempts: u32,
    /// The executor that dequeued it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    /// Why it was requeued, failed or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A cancellation waits for the executor to stop the job.
    #[serde(default)]
    pub cancel_requested: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: the start of its last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339: when it reached a terminal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

impl JobSummary {
    /// How many times the job was run: every requeue followed a run, and
    /// the last attempt counts once it was dequeued. (A job cancelled while
    /// waiting to be run again is counted as if its last attempt ran.)
    pub fn runs(&self) -> u32 {
        let last = match self.state {
            JobState::Queued => false,
            JobState::Processing | JobState::Completed | JobState::Errored | JobState::Failed => {
                true
            }
            JobState::Cancelled => self.started_at.is_some(),
        };
        self.attempts.saturating_add(u32::from(last))
    }
}

/// One execution log entry of a job: what the executor sent, and its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryView {
    /// The entry's id.
    pub id: i64,
    /// The entry as the executor last sent it.
    #[serde(flatten)]
    pub entry: ExecutionLogEntry,
}

/// `GET /api/v1/jobs/{id}`: a job with its log and payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDetail {
    /// The summary's fields.
    #[serde(flatten)]
    pub summary: JobSummary,
    /// Bumped by every change of the job or its entries; `?since=` waits for a higher one.
    pub version: i64,
    /// Its execution log, oldest first; with `?since=V&entries=changed`,
    /// only the entries written after version V (merge them by `id`).
    pub entries: Vec<EntryView>,
    /// The payload as an executor gets it, without the token.
    pub payload: Value,
}

/// A repository the git route serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    /// The name payloads use (`repositoryName`), e.g. `github.com/acme/api`.
    pub name: String,
    /// Where it is: a local path, `file://`, or `http(s)://` (then clients are redirected).
    pub url: String,
}

/// An executor the queue heard from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorView {
    /// Its name.
    pub name: String,
    /// RFC 3339: its last heartbeat.
    pub last_seen: String,
    /// What its last heartbeat reported.
    pub telemetry: Telemetry,
}

/// `GET /api/v1/jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<JobSummary>,
}

/// `GET /api/v1/repositories`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryList {
    /// By name.
    pub repositories: Vec<Repository>,
}

/// `GET /api/v1/executors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorList {
    /// By name.
    pub executors: Vec<ExecutorView>,
}

/// Every error reply of the embedded queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// Whether `name` can name a queue: 1 to 63 of `[a-z0-9-]`.
pub(crate) fn valid_queue(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn states_round_trip_by_name() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
            assert_eq!(serde_json::to_value(state).unwrap(), json!(state.as_str()));
        }
        assert!(
            "done"
                .parse::<JobState>()
                .unwrap_err()
                .contains("expected one of queued")
        );
        assert!(!JobState::Processing.terminal() && JobState::Cancelled.terminal());
    }
}
