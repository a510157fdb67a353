//! The queue protocol's routes (queue-protocol.md) over the store, and the status codes the protocol gives each answer; who may call them is `auth`'s.

use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use super::Embedded;
use super::auth::{Caller, ExecutorAuth};
use super::model::valid_queue;
use super::reply::{HttpError, blocking, parse_json};
use super::store::{Beat, Finish};
use crate::queue::wire::{
    AddEntryRequest, DequeueRequest, HeartbeatReply, HeartbeatRequest, JobId, MarkCompleteRequest,
    MarkFailedRequest, MultiHeartbeatReply, MultiHeartbeatRequest, QueuedId, Telemetry,
    UpdateEntryRequest,
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
    telemetry: Telemetry,
) -> Result<Beat, HttpError> {
    if executor.trim().is_empty() {
        return Err(HttpError::bad_request("`executorName` is empty"));
    }
    let now = SystemTime::now();
    blocking(e, move |s| s.heartbeat(&executor, &jobs, &telemetry, now)).await
}

/// A per-job write (log entries, `mark*`): the queue of its path and its
/// body, which the caller may write (a job token writes only its own job).
struct JobWrite<T> {
    queue: String,
    req: T,
}

/// The body of a per-job write names its job.
trait ForJob: DeserializeOwned {
    fn job_id(&self) -> JobId;
}

macro_rules! for_job {
    ($($request:ty),*) => {$(
        impl ForJob for $request {
            fn job_id(&self) -> JobId {
                self.job_id
            }
        }
    )*};
}

for_job!(
    AddEntryRequest,
    UpdateEntryRequest,
    MarkCompleteRequest,
    MarkFailedRequest
);

impl<T: ForJob> FromRequest<Embedded> for JobWrite<T> {
    type Rejection = Response;

    // In the order the handlers took them as arguments: the caller, the path,
    // the body; the job is checked once the body names it.
    async fn from_request(req: Request, e: &Embedded) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let caller = Caller::from_request_parts(&mut parts, e)
            .await
            .map_err(IntoResponse::into_response)?;
        let Path(queue) = Path::<String>::from_request_parts(&mut parts, e)
            .await
            .map_err(IntoResponse::into_response)?;
        let body = Bytes::from_request(Request::from_parts(parts, body), e)
            .await
            .map_err(IntoResponse::into_response)?;
        let req: T = parse_json(&body).map_err(IntoResponse::into_response)?;
        caller
            .may_write(req.job_id())
            .map_err(IntoResponse::into_response)?;
        Ok(JobWrite { queue, req })
    }
}

/// The protocol's answer to a write on a job the executor does not hold:
/// log writes say it with a 500, `mark*` with a 404.
fn not_held(status: StatusCode, queue: &str, job: JobId, executor: &str) -> HttpError {
    HttpError::new(
        status,
        format!("job {job} is not processing in queue {queue} for executor {executor}"),
    )
}

async fn add_entry(
    State(e): State<Embedded>,
    JobWrite { queue, req }: JobWrite<AddEntryRequest>,
) -> Result<Json<i64>, HttpError> {
    let (q, r) = (queue.clone(), req.clone());
    let added = blocking(&e, move |s| {
        s.add_entry(&q, r.job_id.0, &r.executor_name, &r.entry)
    })
    .await?;
    added.map(Json).ok_or_else(|| {
        not_held(
            StatusCode::INTERNAL_SERVER_ERROR,
            &queue,
            req.job_id,
            &req.executor_name,
        )
    })
}

async fn update_entry(
    State(e): State<Embedded>,
    JobWrite { queue, req }: JobWrite<UpdateEntryRequest>,
) -> Result<StatusCode, HttpError> {
    let (q, r) = (queue.clone(), req.clone());
    let updated = blocking(&e, move |s| {
        s.update_entry(&q, r.job_id.0, &r.executor_name, r.entry_id, &r.entry)
    })
    .await?;
    if updated {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_held(
            StatusCode::INTERNAL_SERVER_ERROR,
            &queue,
            req.job_id,
            &req.executor_name,
        ))
    }
}

async fn mark_complete(
    State(e): State<Embedded>,
    JobWrite { queue, req }: JobWrite<MarkCompleteRequest>,
) -> Result<StatusCode, HttpError> {
    mark(&e, queue, req.job_id, req.executor_name, None).await
}

async fn mark_errored(
    State(e): State<Embedded>,
    JobWrite { queue, req }: JobWrite<MarkFailedRequest>,
) -> Result<StatusCode, HttpError> {
    let how = Some((true, req.error_message));
    mark(&e, queue, req.job_id, req.executor_name, how).await
}

async fn mark_failed(
    State(e): State<Embedded>,
    JobWrite { queue, req }: JobWrite<MarkFailedRequest>,
) -> Result<StatusCode, HttpError> {
    let how = Some((false, req.error_message));
    mark(&e, queue, req.job_id, req.executor_name, how).await
}

/// Ends an attempt: `failure` is `None` for success, else (retryable, message).
async fn mark(
    e: &Embedded,
    queue: String,
    job: JobId,
    executor: String,
    failure: Option<(bool, String)>,
) -> Result<StatusCode, HttpError> {
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
        None => Err(not_held(StatusCode::NOT_FOUND, &queue, job, &executor)),
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
