//! The embedded queue's user API (`/api/v1`): submit, list, show (with long poll) and cancel jobs, register repositories; its bodies are public so the CLI reads them with the same types.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::store::CancelOutcome;
use super::{Embedded, HttpError, blocking, credential, git, parse_json, same_secret, valid_queue};
use crate::payload::JobPayload;
use crate::queue::wire::{ExecutionLogEntry, Telemetry};

/// The queue a job goes to when the request names none.
pub const DEFAULT_QUEUE: &str = "default";
/// The longest a long poll (`?wait=`) waits.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

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
    /// Its execution log, oldest first.
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

pub(super) fn routes() -> Router<Embedded> {
    Router::new()
        .route("/api/v1/jobs", post(submit).get(list))
        .route("/api/v1/jobs/{id}", get(show))
        .route("/api/v1/jobs/{id}/cancel", post(cancel))
        .route(
            "/api/v1/repositories",
            post(put_repository).get(list_repositories),
        )
        .route("/api/v1/executors", get(list_executors))
}

/// A caller holding the API token.
struct ApiAuth;

impl FromRequestParts<Embedded> for ApiAuth {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, e: &Embedded) -> Result<Self, HttpError> {
        match credential(&parts.headers) {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("Bearer") && same_secret(token, e.api_token()) =>
            {
                Ok(ApiAuth)
            }
            Some(_) => Err(HttpError::unauthorized("the API token is wrong")),
            None => Err(HttpError::unauthorized(
                "missing `Authorization: Bearer <API token>`",
            )),
        }
    }
}

async fn submit(
    State(e): State<Embedded>,
    _: ApiAuth,
    body: Bytes,
) -> Result<(StatusCode, Json<Submitted>), HttpError> {
    let req: SubmitRequest = parse_json(&body)?;
    let queue = req
        .queue
        .clone()
        .unwrap_or_else(|| DEFAULT_QUEUE.to_owned());
    if !valid_queue(&queue) {
        return Err(HttpError::bad_request(format!(
            "queue {queue:?} is not a queue name; expected 1 to 63 of [a-z0-9-]"
        )));
    }
    let payload = build_payload(req)?;
    let mut probe = payload.clone();
    probe.insert("id".into(), json!(0));
    probe.insert("queue".into(), json!(queue));
    let parsed = JobPayload::parse(&Value::Object(probe).to_string())
        .map_err(|err| HttpError::bad_request(err.to_string()))?;
    if let Some(repo) = parsed.repository {
        let name = git::normalize(&repo.name);
        let lookup = name.clone();
        if blocking(&e, move |s| s.repository(&lookup))
            .await?
            .is_none()
        {
            return Err(HttpError::bad_request(format!(
                "repository {name} is not registered; register it with POST /api/v1/repositories"
            )));
        }
    }
    let text = Value::Object(payload).to_string();
    let (q, now) = (queue.clone(), SystemTime::now());
    let id = blocking(&e, move |s| s.enqueue(&q, &text, now)).await?;
    tracing::info!(job = id, queue = %queue, "job submitted");
    Ok((StatusCode::CREATED, Json(Submitted { id, queue })))
}

/// The payload to store: a full one as given, or the short form's one step.
fn build_payload(req: SubmitRequest) -> Result<Map<String, Value>, HttpError> {
    let short = req.image.is_some()
        || !req.commands.is_empty()
        || req.repository.is_some()
        || req.commit.is_some()
        || !req.env.is_empty()
        || !req.secrets.is_empty();
    match (req.payload, short) {
        (Some(_), true) => Err(HttpError::bad_request(
            "give either `payload` or the short form (`image`, `commands`, ...), not both",
        )),
        (Some(Value::Object(mut payload)), false) => {
            // The queue sets these at dequeue; a submitted token would be a lie.
            for key in ["id", "queue", "token"] {
                payload.remove(key);
            }
            Ok(payload)
        }
        (Some(other), false) => Err(HttpError::bad_request(format!(
            "`payload` must be a JSON object, not {other}"
        ))),
        (None, _) => short_payload(
            req.image,
            req.commands,
            req.repository,
            req.commit,
            &req.env,
            &req.secrets,
        ),
    }
}

fn short_payload(
    image: Option<String>,
    commands: Vec<String>,
    repository: Option<String>,
    commit: Option<String>,
    env: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
) -> Result<Map<String, Value>, HttpError> {
    let image = image
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| HttpError::bad_request("`image` is required (or give a full `payload`)"))?;
    if commands.is_empty() {
        return Err(HttpError::bad_request(
            "`commands` must list at least one command",
        ));
    }
    if let Some(bad) = env.keys().chain(secrets.keys()).find(|k| !env_name(k)) {
        return Err(HttpError::bad_request(format!(
            "environment variable name {bad:?} is not valid; expected [A-Za-z_][A-Za-z0-9_]*"
        )));
    }
    if let Some(both) = env.keys().find(|k| secrets.contains_key(*k)) {
        return Err(HttpError::bad_request(format!(
            "{both} is given both in `env` and in `secrets`"
        )));
    }
    let vars: Vec<String> = env
        .iter()
        .chain(secrets)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    // An empty secret would redact every position of every line.
    let redacted: Map<String, Value> = secrets
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (v.clone(), json!(format!("${{{{ secrets.{k} }}}}"))))
        .collect();
    let mut payload = Map::new();
    payload.insert("version".into(), json!(2));
    match (repository, commit) {
        (Some(repository), Some(commit)) => {
            payload.insert("repositoryName".into(), json!(repository));
            payload.insert("repositoryDirectory".into(), json!(""));
            payload.insert("commit".into(), json!(commit));
        }
        (Some(repository), None) => {
            return Err(HttpError::bad_request(format!(
                "`repository` {repository} needs `commit`, the revision to check out"
            )));
        }
        (None, Some(_)) => {
            return Err(HttpError::bad_request(
                "`commit` is given without `repository`",
            ));
        }
        (None, None) => {}
    }
    payload.insert(
        "dockerSteps".into(),
        json!([{"key": "main", "image": image, "commands": commands, "dir": "", "env": vars}]),
    );
    payload.insert("redactedValues".into(), Value::Object(redacted));
    Ok(payload)
}

fn env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    queue: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
}

async fn list(
    State(e): State<Embedded>,
    _: ApiAuth,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobList>, HttpError> {
    let Query(q) = query.map_err(|err| HttpError::bad_request(err.body_text()))?;
    let state = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::parse::<JobState>)
        .transpose()
        .map_err(HttpError::bad_request)?;
    let queue = q.queue.filter(|s| !s.is_empty());
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let jobs = blocking(&e, move |s| s.jobs(queue.as_deref(), state, limit)).await?;
    Ok(Json(JobList { jobs }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShowQuery {
    since: Option<i64>,
    wait: Option<u64>,
}

async fn show(
    State(e): State<Embedded>,
    _: ApiAuth,
    id: Result<Path<i64>, PathRejection>,
    query: Result<Query<ShowQuery>, QueryRejection>,
) -> Result<Json<JobDetail>, HttpError> {
    let id = job_id(id)?;
    let Query(q) = query.map_err(|err| HttpError::bad_request(err.body_text()))?;
    let since = q.since.unwrap_or(i64::MIN);
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before the read, so a write between the read and the wait still wakes us.
    let mut changes = e.store().subscribe();
    loop {
        let detail = blocking(&e, move |s| s.job(id))
            .await?
            .ok_or_else(|| unknown_job(id))?;
        if detail.version > since || tokio::time::Instant::now() >= deadline {
            return Ok(Json(detail));
        }
        tokio::select! {
            changed = tokio::time::timeout_at(deadline, changes.changed()) => {
                if !matches!(changed, Ok(Ok(()))) {
                    return Ok(Json(detail));
                }
            }
            () = e.stopping() => return Ok(Json(detail)),
        }
    }
}

async fn cancel(
    State(e): State<Embedded>,
    _: ApiAuth,
    id: Result<Path<i64>, PathRejection>,
) -> Result<(StatusCode, Json<JobSummary>), HttpError> {
    let id = job_id(id)?;
    let now = SystemTime::now();
    match blocking(&e, move |s| s.cancel(id, now)).await? {
        None => Err(unknown_job(id)),
        Some(CancelOutcome::Cancelled(summary) | CancelOutcome::Requested(summary)) => {
            tracing::info!(job = id, state = %summary.state, "job cancellation");
            Ok((StatusCode::ACCEPTED, Json(summary)))
        }
        Some(CancelOutcome::Terminal(summary)) => Err(HttpError::new(
            StatusCode::CONFLICT,
            format!("job {id} is already {}", summary.state),
        )),
    }
}

async fn put_repository(
    State(e): State<Embedded>,
    _: ApiAuth,
    body: Bytes,
) -> Result<(StatusCode, Json<Repository>), HttpError> {
    let given: Repository = parse_json(&body)?;
    let name = git::normalize(&given.name);
    if name.is_empty()
        || name
            .split('/')
            .any(|part| part == "." || part == ".." || part.chars().any(char::is_control))
    {
        return Err(HttpError::bad_request(format!(
            "repository name {:?} is not valid; expected e.g. github.com/acme/api",
            given.name
        )));
    }
    git::Source::of(&given.url).map_err(HttpError::bad_request)?;
    let repo = Repository {
        name,
        url: given.url,
    };
    let stored = repo.clone();
    blocking(&e, move |s| s.put_repository(&stored)).await?;
    tracing::info!(repository = %repo.name, url = %repo.url, "repository registered");
    Ok((StatusCode::CREATED, Json(repo)))
}

async fn list_repositories(
    State(e): State<Embedded>,
    _: ApiAuth,
) -> Result<Json<RepositoryList>, HttpError> {
    let repositories = blocking(&e, |s| s.repositories()).await?;
    Ok(Json(RepositoryList { repositories }))
}

async fn list_executors(
    State(e): State<Embedded>,
    _: ApiAuth,
) -> Result<Json<ExecutorList>, HttpError> {
    let executors = blocking(&e, |s| s.executors()).await?;
    Ok(Json(ExecutorList { executors }))
}

fn job_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, HttpError> {
    id.map(|Path(id)| id)
        .map_err(|_| HttpError::bad_request("the job id must be an integer"))
}

fn unknown_job(id: i64) -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, format!("job {id} does not exist"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn short(req: SubmitRequest) -> Result<Map<String, Value>, String> {
        build_payload(req).map_err(|e| e.to_string())
    }

    #[test]
    fn the_short_form_is_one_step_with_secrets_redacted() {
        let payload = short(SubmitRequest {
            image: Some("alpine:3".into()),
            commands: vec!["echo hi".into()],
            repository: Some("github.com/acme/api".into()),
            commit: Some("main".into()),
            env: BTreeMap::from([("A".into(), "1".into())]),
            secrets: BTreeMap::from([("TOKEN".into(), "s3cr3t".into())]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            Value::Object(payload),
            json!({"version": 2, "repositoryName": "github.com/acme/api", "repositoryDirectory": "",
                   "commit": "main",
                   "dockerSteps": [{"key": "main", "image": "alpine:3", "commands": ["echo hi"], "dir": "",
                                    "env": ["A=1", "TOKEN=s3cr3t"]}],
                   "redactedValues": {"s3cr3t": "${{ secrets.TOKEN }}"}})
        );
    }

    #[test]
    fn short_forms_that_cannot_be_a_job_are_refused_by_name() {
        let base = SubmitRequest {
            image: Some("alpine".into()),
            commands: vec!["true".into()],
            ..Default::default()
        };
        for (req, needle) in [
            (
                SubmitRequest {
                    repository: Some("r".into()),
                    ..base.clone()
                },
                "`repository` r needs `commit`",
            ),
            (
                SubmitRequest {
                    commit: Some("c".into()),
                    ..base.clone()
                },
                "`commit` is given without `repository`",
            ),
            (
                SubmitRequest {
                    env: BTreeMap::from([("A=B".into(), "x".into())]),
                    ..base.clone()
                },
                "name \"A=B\" is not valid",
            ),
            (
                SubmitRequest {
                    env: BTreeMap::from([("A".into(), "x".into())]),
                    secrets: BTreeMap::from([("A".into(), "y".into())]),
                    ..base.clone()
                },
                "A is given both",
            ),
            (
                SubmitRequest {
                    commands: vec![],
                    ..base.clone()
                },
                "`commands` must list",
            ),
            (
                SubmitRequest {
                    payload: Some(json!({})),
                    ..base.clone()
                },
                "not both",
            ),
            (
                SubmitRequest {
                    payload: Some(json!([])),
                    ..Default::default()
                },
                "must be a JSON object",
            ),
            (SubmitRequest::default(), "`image` is required"),
        ] {
            let err = short(req).unwrap_err();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }

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
