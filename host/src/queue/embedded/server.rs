//! The queue protocol's routes (queue-protocol.md) over the store: who may call them, and the status codes the protocol gives each answer.

use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::store::{Finish, TokenCheck};
use super::{Embedded, HttpError, blocking, credential, parse_json, same_secret, valid_queue};
use crate::queue::wire::{
    AddEntryRequest, DequeueRequest, EXECUTOR_NAME_HEADER, EXECUTOR_SCHEME, HeartbeatReply,
    HeartbeatRequest, JOB_ID_HEADER, JobId, MarkCompleteRequest, MarkFailedRequest,
    MultiHeartbeatReply, MultiHeartbeatRequest, QueuedId, UpdateEntryRequest,
};

pub(super) fn routes() -> Router<Embedded> {
    Router::new()
        .route("/.executors/test/auth", get(test_auth))
        .route("/.executors/queue/dequeue", post(dequeue_multi))
        .route("/.executors/queue/heartbeat", post(heartbeat_multi))
        .route("/.executors/queue/{queue}/dequeue", post(dequeue))
        .route("/.executors/queue/{queue}/heartbeat", post(heartbeat))
        .route(
            "/.executors/queue/{queue}/addExecutionLogEntry",
            post(add_entry),
        )
        .route(
            "/.executors/queue/{queue}/updateExecutionLogEntry",
            post(update_entry),
        )
        .route(
            "/.executors/queue/{queue}/markComplete",
            post(mark_complete),
        )
        .route("/.executors/queue/{queue}/markErrored", post(mark_errored))
        .route("/.executors/queue/{queue}/markFailed", post(mark_failed))
        // `get` answers HEAD too.
        .route("/.executors/files/{bucket}/{*key}", get(files))
}

/// A caller holding the executors' shared secret.
pub(super) struct ExecutorAuth;

impl FromRequestParts<Embedded> for ExecutorAuth {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, e: &Embedded) -> Result<Self, HttpError> {
        match credential(&parts.headers) {
            Some((scheme, secret)) if scheme.eq_ignore_ascii_case(EXECUTOR_SCHEME) => {
                if same_secret(secret, e.executor_password()) {
                    Ok(ExecutorAuth)
                } else {
                    Err(HttpError::unauthorized("the executor secret is wrong"))
                }
            }
            _ => Err(HttpError::unauthorized(format!(
                "missing `Authorization: {EXECUTOR_SCHEME} <secret>`"
            ))),
        }
    }
}

/// Who makes a per-job call (log entries, mark*, git, files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Caller {
    /// The shared secret: any job.
    Executor,
    /// A job token, checked against the job of `X-Sourcegraph-Job-ID`.
    Job {
        /// That job.
        id: i64,
    },
}

impl Caller {
    /// Refuses a body about another job than the token's.
    fn may_write(&self, job: JobId) -> Result<(), HttpError> {
        match self {
            Caller::Job { id } if *id != job.0 => Err(HttpError::forbidden(format!(
                "the job token is for job {id}, not job {job}"
            ))),
            _ => Ok(()),
        }
    }
}

impl FromRequestParts<Embedded> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, e: &Embedded) -> Result<Self, HttpError> {
        let Some((scheme, secret)) = credential(&parts.headers) else {
            return Err(HttpError::unauthorized(
                "missing `Authorization: Bearer <job token>`",
            ));
        };
        if scheme.eq_ignore_ascii_case(EXECUTOR_SCHEME) {
            return if same_secret(secret, e.executor_password()) {
                Ok(Caller::Executor)
            } else {
                Err(HttpError::unauthorized("the executor secret is wrong"))
            };
        }
        if !scheme.eq_ignore_ascii_case("Bearer") {
            return Err(HttpError::unauthorized(format!(
                "`Authorization: {scheme}` is not accepted; expected Bearer <job token> or {EXECUTOR_SCHEME} <secret>"
            )));
        }
        let id = header_text(&parts.headers, JOB_ID_HEADER)
            .and_then(|text| text.parse::<i64>().ok())
            .ok_or_else(|| {
                HttpError::bad_request(format!("`{JOB_ID_HEADER}` is missing or not an integer"))
            })?;
        if header_text(&parts.headers, EXECUTOR_NAME_HEADER).is_none_or(str::is_empty) {
            return Err(HttpError::bad_request(format!(
                "`{EXECUTOR_NAME_HEADER}` is missing or empty"
            )));
        }
        let token = secret.to_owned();
        match blocking(e, move |s| s.check_token(id, &token)).await? {
            TokenCheck::Valid => Ok(Caller::Job { id }),
            TokenCheck::OtherJob => Err(HttpError::forbidden(format!(
                "the job token is not the token of job {id}"
            ))),
            TokenCheck::Unknown => Err(HttpError::unauthorized(
                "the job token is unknown or its job has ended",
            )),
        }
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

async fn test_auth(_: ExecutorAuth) -> StatusCode {
    StatusCode::OK
}

async fn dequeue(
    State(e): State<Embedded>,
    _: ExecutorAuth,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Response, HttpError> {
    let req: DequeueRequest = parse_json(&body)?;
    take(&e, vec![queue], req.executor_name).await
}

async fn dequeue_multi(
    State(e): State<Embedded>,
    _: ExecutorAuth,
    body: Bytes,
) -> Result<Response, HttpError> {
    let req: DequeueRequest = parse_json(&body)?;
    let queues = req.queues.filter(|q| !q.is_empty()).ok_or_else(|| {
        HttpError::bad_request("`queues` must name at least one queue in multi-queue mode")
    })?;
    take(&e, queues, req.executor_name).await
}

async fn take(e: &Embedded, queues: Vec<String>, executor: String) -> Result<Response, HttpError> {
    if let Some(bad) = queues.iter().find(|q| !valid_queue(q)) {
        return Err(HttpError::bad_request(format!(
            "queue {bad:?} is not a queue name; expected 1 to 63 of [a-z0-9-]"
        )));
    }
    if executor.trim().is_empty() {
        return Err(HttpError::bad_request("`executorName` is empty"));
    }
    let now = SystemTime::now();
    let name = executor.clone();
    match blocking(e, move |s| s.dequeue(&queues, &name, now)).await? {
        None => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(job) => {
            tracing::info!(job = job.id, queue = %job.queue, executor = %executor, "job dequeued");
            Ok(([(header::CONTENT_TYPE, "application/json")], job.body).into_response())
        }
    }
}

async fn heartbeat(
    State(e): State<Embedded>,
    _: ExecutorAuth,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Json<HeartbeatReply>, HttpError> {
    let req: HeartbeatRequest = parse_json(&body)?;
    let jobs = req.job_ids.iter().map(|id| (id.0, queue.clone())).collect();
    let beat = beat(&e, req.executor_name, jobs, req.telemetry).await?;
    let ids = |jobs: Vec<(i64, String)>| jobs.into_iter().map(|(id, _)| JobId(id)).collect();
    Ok(Json(HeartbeatReply {
        known_ids: ids(beat.known),
        cancel_ids: ids(beat.cancel),
    }))
}

async fn heartbeat_multi(
    State(e): State<Embedded>,
    _: ExecutorAuth,
    body: Bytes,
) -> Result<Json<MultiHeartbeatReply>, HttpError> {
    let req: MultiHeartbeatRequest = parse_json(&body)?;
    let jobs = req
        .job_ids_by_queue
        .iter()
        .flat_map(|q| q.job_ids.iter().map(|id| (id.0, q.queue_name.clone())))
        .collect();
    let beat = beat(&e, req.executor_name, jobs, req.telemetry).await?;
    let ids = |jobs: Vec<(i64, String)>| {
        jobs.into_iter()
            .map(|(id, queue)| QueuedId { id, queue })
            .collect()
    };
    Ok(Json(MultiHeartbeatReply {
        known_ids: ids(beat.known),
        cancel_ids: ids(beat.cancel),
    }))
}

async fn beat(
    e: &Embedded,
    executor: String,
    jobs: Vec<(i64, String)>,
    telemetry: crate::queue::wire::Telemetry,
) -> Result<super::store::Beat, HttpError> {
    if executor.trim().is_empty() {
        return Err(HttpError::bad_request("`executorName` is empty"));
    }
    let now = SystemTime::now();
    blocking(e, move |s| s.heartbeat(&executor, &jobs, &telemetry, now)).await
}

/// The protocol's answer to a log write on a job the executor does not hold.
fn not_held(queue: &str, job: JobId, executor: &str) -> HttpError {
    HttpError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("job {job} is not processing in queue {queue} for executor {executor}"),
    )
}

async fn add_entry(
    State(e): State<Embedded>,
    caller: Caller,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Json<i64>, HttpError> {
    let req: AddEntryRequest = parse_json(&body)?;
    caller.may_write(req.job_id)?;
    let (q, r) = (queue.clone(), req.clone());
    let added = blocking(&e, move |s| {
        s.add_entry(&q, r.job_id.0, &r.executor_name, &r.entry)
    })
    .await?;
    added
        .map(Json)
        .ok_or_else(|| not_held(&queue, req.job_id, &req.executor_name))
}

async fn update_entry(
    State(e): State<Embedded>,
    caller: Caller,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<StatusCode, HttpError> {
    let req: UpdateEntryRequest = parse_json(&body)?;
    caller.may_write(req.job_id)?;
    let (q, r) = (queue.clone(), req.clone());
    let updated = blocking(&e, move |s| {
        s.update_entry(&q, r.job_id.0, &r.executor_name, r.entry_id, &r.entry)
    })
    .await?;
    if updated {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_held(&queue, req.job_id, &req.executor_name))
    }
}

async fn mark_complete(
    State(e): State<Embedded>,
    caller: Caller,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<StatusCode, HttpError> {
    let req: MarkCompleteRequest = parse_json(&body)?;
    mark(&e, caller, queue, req.job_id, req.executor_name, None).await
}

async fn mark_errored(
    State(e): State<Embedded>,
    caller: Caller,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<StatusCode, HttpError> {
    let req: MarkFailedRequest = parse_json(&body)?;
    let how = Some((true, req.error_message));
    mark(&e, caller, queue, req.job_id, req.executor_name, how).await
}

async fn mark_failed(
    State(e): State<Embedded>,
    caller: Caller,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<StatusCode, HttpError> {
    let req: MarkFailedRequest = parse_json(&body)?;
    let how = Some((false, req.error_message));
    mark(&e, caller, queue, req.job_id, req.executor_name, how).await
}

/// Ends an attempt: `failure` is `None` for success, else (retryable, message).
async fn mark(
    e: &Embedded,
    caller: Caller,
    queue: String,
    job: JobId,
    executor: String,
    failure: Option<(bool, String)>,
) -> Result<StatusCode, HttpError> {
    caller.may_write(job)?;
    let now = SystemTime::now();
    let (q, name) = (queue.clone(), executor.clone());
    let state = blocking(e, move |s| {
        let how = match &failure {
            None => Finish::Complete,
            Some((true, message)) => Finish::Errored(message),
            Some((false, message)) => Finish::Failed(message),
        };
        s.finish(&q, job.0, &name, how, now)
    })
    .await?;
    match state {
        Some(state) => {
            tracing::info!(job = job.0, queue = %queue, executor = %executor, state = %state, "job attempt ended");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(HttpError::new(
            StatusCode::NOT_FOUND,
            format!("job {job} is not processing in queue {queue} for executor {executor}"),
        )),
    }
}

async fn files(_: Caller, Path((bucket, key)): Path<(String, String)>) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        format!(
            "{bucket}/{key}: the embedded queue stores no files; give workspace files inline with `content`"
        ),
    )
}
