//! The embedded queue's user API (`/api/v1`): submit, list, show (with long poll) and cancel jobs, register repositories; its bodies live in `model`, so the CLI reads them with the same types.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Embedded;
use super::auth::ApiAuth;
use super::git;
use super::model::{
    ExecutorList, JobDetail, JobList, JobState, JobSummary, Repository, RepositoryList,
    SubmitRequest, Submitted, valid_queue,
};
use super::reply::{HttpError, blocking, parse_json};
use super::revision;
use super::store::CancelOutcome;
use crate::payload::JobPayload;

/// The queue a job goes to when the request names none.
pub const DEFAULT_QUEUE: &str = "default";
/// The longest a long poll (`?wait=`) waits.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

pub(super) fn routes() -> Router<Embedded> {
    Router::new()
        .route("/api/v1/jobs", post(submit).get(list))
        .route("/api/v1/jobs/{id}", get(show))
        .route("/api/v1/jobs/{id}/cancel", post(cancel))
        .route(
            "/api/v1/repositories",
            post(put_repository).get(list_repositories),
        )
        .route("/api/v1/repositories/{*name}", delete(remove_repository))
        .route("/api/v1/executors", get(list_executors))
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
    let mut payload = build_payload(req)?;
    let mut probe = payload.clone();
    probe.insert("id".into(), json!(0));
    probe.insert("queue".into(), json!(queue));
    let parsed = JobPayload::parse(&Value::Object(probe).to_string())
        .map_err(|err| HttpError::bad_request(err.to_string()))?;
    if let Some(repo) = parsed.repository {
        let name = git::normalize(&repo.name);
        let lookup = name.clone();
        let Some(registered) = blocking(&e, move |s| s.repository(&lookup)).await? else {
            return Err(HttpError::bad_request(format!(
                "repository {name} is not registered; register it with `executor repos add {name} <clone URL or path>` (POST /api/v1/repositories)"
            )));
        };
        // Resolved here, where the repository can be asked, rather than
        // failing at checkout in the pod; the job then runs that commit.
        let source = git::Source::of(&registered.url).map_err(HttpError::bad_request)?;
        let commit = revision::resolve(&source, &name, &repo.commit)
            .await
            .map_err(|err| HttpError::bad_request(err.to_string()))?;
        payload.insert("commit".into(), json!(commit));
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
    entries: Option<EntriesWanted>,
}

/// Which entries a job's view carries: all of them (the default, what
/// clients that predate the choice expect), or with `since` only those
/// written after it, for followers that merge by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum EntriesWanted {
    All,
    Changed,
}

async fn show(
    State(e): State<Embedded>,
    _: ApiAuth,
    id: Result<Path<i64>, PathRejection>,
    query: Result<Query<ShowQuery>, QueryRejection>,
) -> Result<Json<JobDetail>, HttpError> {
    let id = job_id(id)?;
    let Query(q) = query.map_err(|err| HttpError::bad_request(err.body_text()))?;
    let since = q.since;
    let entries_since = since.filter(|_| q.entries == Some(EntriesWanted::Changed));
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before the read, so a write between the read and the wait still wakes us.
    let mut changes = e.store().subscribe();
    loop {
        // Every write anywhere wakes every poll: check this job's version
        // (one row, on a reader, never waiting for the writer) before
        // reading what changed.
        let version = blocking(&e, move |s| s.version(id))
            .await?
            .ok_or_else(|| unknown_job(id))?;
        if since.is_none_or(|since| version > since) || tokio::time::Instant::now() >= deadline {
            return changed(&e, id, entries_since).await;
        }
        tokio::select! {
            woken = tokio::time::timeout_at(deadline, changes.changed()) => {
                if !matches!(woken, Ok(Ok(()))) {
                    // The deadline: the job as it is.
                    return changed(&e, id, entries_since).await;
                }
            }
            () = e.stopping() => return changed(&e, id, entries_since).await,
        }
    }
}

/// The job with the entries written after `since` (all without it): a
/// follower polling with the last version it saw gets each entry once per
/// change, not every entry at every change.
async fn changed(e: &Embedded, id: i64, since: Option<i64>) -> Result<Json<JobDetail>, HttpError> {
    let detail = blocking(e, move |s| s.job(id, since))
        .await?
        .ok_or_else(|| unknown_job(id))?;
    Ok(Json(detail))
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
    let source = git::Source::of(&given.url).map_err(HttpError::bad_request)?;
    revision::check(&source)
        .await
        .map_err(|err| HttpError::bad_request(err.to_string()))?;
    let repo = Repository {
        name,
        url: given.url,
    };
    let stored = repo.clone();
    blocking(&e, move |s| s.put_repository(&stored)).await?;
    let url = git::shown(&repo.url);
    tracing::info!(repository = %repo.name, url = %url, "repository registered");
    Ok((
        StatusCode::CREATED,
        Json(Repository {
            name: repo.name,
            url,
        }),
    ))
}

async fn list_repositories(
    State(e): State<Embedded>,
    _: ApiAuth,
) -> Result<Json<RepositoryList>, HttpError> {
    let repositories = blocking(&e, |s| s.repositories()).await?;
    // The URLs' credentials are for the git route only: answers end up in
    // terminals and CI logs.
    let repositories = repositories
        .into_iter()
        .map(|r| Repository {
            url: git::shown(&r.url),
            name: r.name,
        })
        .collect();
    Ok(Json(RepositoryList { repositories }))
}

async fn remove_repository(
    State(e): State<Embedded>,
    _: ApiAuth,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Repository>, HttpError> {
    let Path(name) = name.map_err(|err| HttpError::bad_request(err.body_text()))?;
    let name = git::normalize(&name);
    let lookup = name.clone();
    let removed = blocking(&e, move |s| s.remove_repository(&lookup))
        .await?
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::NOT_FOUND,
                format!("repository {name} is not registered (`executor repos list` shows those that are)"),
            )
        })?;
    tracing::info!(repository = %removed.name, "repository unregistered");
    Ok(Json(Repository {
        url: git::shown(&removed.url),
        name: removed.name,
    }))
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
}
