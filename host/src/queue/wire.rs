//! The queue protocol's request and reply bodies (queue-protocol.md), shared by the client and the embedded queue so both speak exactly one wire format.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The version this executor reports in dequeue and heartbeat bodies.
pub const EXECUTOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `POST {queue}/dequeue` and `POST dequeue` (multi-queue: `queues` set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DequeueRequest {
    /// Who asks.
    pub executor_name: String,
    /// The executor's version.
    #[serde(default)]
    pub version: String,
    /// Multi-queue mode: the queues to take from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<String>>,
    /// Resources the executor offers (informational).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "numCPUs")]
    pub num_cpus: Option<u32>,
    /// Memory the executor offers (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Disk the executor offers (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_space: Option<String>,
}

/// A job id as the protocol carries it: Sourcegraph sends ints or strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for JobId {
    /// An integer, as per-job requests carry it (`jobId`); heartbeats send
    /// strings through [`ids_as_strings`].
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

/// Heartbeat V2 sends job ids as strings.
fn ids_as_strings<S: serde::Serializer>(ids: &[JobId], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(|id| id.0.to_string()))
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Int(i64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Int(i) => Ok(JobId(i)),
            Either::Text(t) => {
                t.trim().parse().map(JobId).map_err(|_| {
                    serde::de::Error::custom(format!("job id {t:?} is not an integer"))
                })
            }
        }
    }
}

/// A job id in multi-queue mode: `"<id>-<queue>"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueuedId {
    /// The id within the queue.
    pub id: i64,
    /// The queue.
    pub queue: String,
}

impl fmt::Display for QueuedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.id, self.queue)
    }
}

impl Serialize for QueuedId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for QueuedId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.split_once('-')
            .and_then(|(id, queue)| {
                Some(QueuedId {
                    id: id.parse().ok()?,
                    queue: queue.to_owned(),
                })
            })
            .filter(|q| !q.queue.is_empty())
            .ok_or_else(|| {
                serde::de::Error::custom(format!("job id {text:?} is not of the form <id>-<queue>"))
            })
    }
}

/// Telemetry every heartbeat carries; Sourcegraph shows it on its executors page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Telemetry {
    /// `std::env::consts::OS`.
    #[serde(default)]
    pub os: String,
    /// `std::env::consts::ARCH`.
    #[serde(default)]
    pub architecture: String,
    /// Not applicable on Kubernetes: empty.
    #[serde(default)]
    pub docker_version: String,
    /// This executor's version.
    #[serde(default)]
    pub executor_version: String,
    /// Not applicable: empty.
    #[serde(default)]
    pub git_version: String,
    /// Not applicable: empty.
    #[serde(default)]
    pub ignite_version: String,
    /// Not applicable: empty.
    #[serde(default)]
    pub src_cli_version: String,
    /// Prometheus text exposition of the executor's metrics (may be empty).
    #[serde(default)]
    pub prometheus_metrics: String,
}

impl Telemetry {
    /// This process's telemetry.
    pub fn current() -> Telemetry {
        Telemetry {
            os: std::env::consts::OS.to_owned(),
            architecture: std::env::consts::ARCH.to_owned(),
            executor_version: EXECUTOR_VERSION.to_owned(),
            ..Telemetry::default()
        }
    }
}

/// `POST {queue}/heartbeat` (single-queue mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatRequest {
    /// `"V2"`.
    #[serde(default)]
    pub version: String,
    /// Who beats.
    pub executor_name: String,
    /// The jobs it runs.
    #[serde(default, serialize_with = "ids_as_strings")]
    pub job_ids: Vec<JobId>,
    /// Telemetry.
    #[serde(flatten)]
    pub telemetry: Telemetry,
}

/// The reply to a single-queue heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatReply {
    /// The jobs the queue still believes this executor owns.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        serialize_with = "ids_as_strings"
    )]
    pub known_ids: Vec<JobId>,
    /// The jobs to cancel.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        serialize_with = "ids_as_strings"
    )]
    pub cancel_ids: Vec<JobId>,
}

/// The jobs of one queue in a multi-queue heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueJobIds {
    /// The queue.
    pub queue_name: String,
    /// Its jobs run by this executor.
    #[serde(default, serialize_with = "ids_as_strings")]
    pub job_ids: Vec<JobId>,
}

/// `POST heartbeat` (multi-queue mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultiHeartbeatRequest {
    /// Who beats.
    pub executor_name: String,
    /// The queues it serves.
    #[serde(default)]
    pub queue_names: Vec<String>,
    /// Its jobs, by queue.
    #[serde(default)]
    pub job_ids_by_queue: Vec<QueueJobIds>,
    /// Telemetry.
    #[serde(flatten)]
    pub telemetry: Telemetry,
}

/// The reply to a multi-queue heartbeat: ids are `"<id>-<queue>"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultiHeartbeatReply {
    /// Still owned.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub known_ids: Vec<QueuedId>,
    /// To cancel.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub cancel_ids: Vec<QueuedId>,
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// One execution log entry: a container's command and its whole output so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionLogEntry {
    /// `setup.workspace`, `step.kubernetes.<key>`, ...
    pub key: String,
    /// The command, redacted.
    #[serde(default)]
    pub command: Vec<String>,
    /// RFC 3339: when the step was first seen running.
    pub start_time: String,
    /// Set when the step ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The whole output so far, redacted, each line prefixed `stdout: ` or `stderr: `.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<String>,
    /// Set when the step ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
}

/// `POST {queue}/addExecutionLogEntry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddEntryRequest {
    /// Who writes.
    pub executor_name: String,
    /// The job.
    pub job_id: JobId,
    /// The entry.
    #[serde(flatten)]
    pub entry: ExecutionLogEntry,
}

/// `POST {queue}/updateExecutionLogEntry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateEntryRequest {
    /// Who writes.
    pub executor_name: String,
    /// The job.
    pub job_id: JobId,
    /// The entry, as `addExecutionLogEntry` numbered it.
    pub entry_id: i64,
    /// Its new state.
    #[serde(flatten)]
    pub entry: ExecutionLogEntry,
}

/// `POST {queue}/markComplete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarkCompleteRequest {
    /// Who writes.
    pub executor_name: String,
    /// The job.
    pub job_id: JobId,
}

/// `POST {queue}/markErrored` and `POST {queue}/markFailed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarkFailedRequest {
    /// Who writes.
    pub executor_name: String,
    /// The job.
    pub job_id: JobId,
    /// Why.
    pub error_message: String,
}

/// The header that carries the job id on per-job calls.
pub const JOB_ID_HEADER: &str = "X-Sourcegraph-Job-ID";
/// The header that carries the executor name on per-job calls.
pub const EXECUTOR_NAME_HEADER: &str = "X-Sourcegraph-Executor-Name";
/// The `Authorization` scheme of the shared executor secret.
pub const EXECUTOR_SCHEME: &str = "token-executor";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_arrive_as_ints_or_strings() {
        let r: HeartbeatReply =
            serde_json::from_str(r#"{"knownIds":["12",13],"cancelIds":null}"#).unwrap();
        assert_eq!(r.known_ids, vec![JobId(12), JobId(13)]);
        assert!(r.cancel_ids.is_empty());
        let e = serde_json::from_str::<HeartbeatReply>(r#"{"knownIds":["x"]}"#).unwrap_err();
        assert!(e.to_string().contains("\"x\" is not an integer"), "{e}");
    }

    #[test]
    fn heartbeats_send_ids_as_strings() {
        let body = serde_json::to_value(HeartbeatRequest {
            version: "V2".into(),
            executor_name: "e".into(),
            job_ids: vec![JobId(12)],
            telemetry: Telemetry::current(),
        })
        .unwrap();
        assert_eq!(body["jobIds"], serde_json::json!(["12"]));
        assert_eq!(body["os"], std::env::consts::OS);
    }

    #[test]
    fn multi_queue_ids_carry_their_queue() {
        let r: MultiHeartbeatReply =
            serde_json::from_str(r#"{"knownIds":["12-batches"],"cancelIds":["3-code-intel"]}"#)
                .unwrap();
        assert_eq!(r.known_ids[0].to_string(), "12-batches");
        assert_eq!(r.cancel_ids[0].queue, "code-intel");
        assert!(serde_json::from_str::<MultiHeartbeatReply>(r#"{"knownIds":["12"]}"#).is_err());
    }

    #[test]
    fn entries_flatten_into_the_request() {
        let body = serde_json::to_value(AddEntryRequest {
            executor_name: "e".into(),
            job_id: JobId(7),
            entry: ExecutionLogEntry {
                key: "setup.workspace".into(),
                start_time: "2026-01-01T00:00:00Z".into(),
                ..Default::default()
            },
        })
        .unwrap();
        assert_eq!(body["jobId"], 7);
        assert_eq!(body["key"], "setup.workspace");
        assert!(body.get("exitCode").is_none());
    }
}
