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
    e: Embedded,
    queue: String,
    req: T,
}

/// The body of a per-job write names its job and the executor writing it.
trait ForJob: DeserializeOwned {
    fn job_id(&self) -> JobId;
    fn executor_name(&self) -> &str;
}

macro_rules! for_job {
    ($($request:ty),*) => {$(
        impl ForJob for $request {
            fn job_id(&self) -> JobId {
                self.job_id
            }

            fn executor_name(&self) -> &str {
                &self.executor_name
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
        Ok(JobWrite {
            e: e.clone(),
            queue,
            req,
        })
    }
}

impl<T: ForJob> JobWrite<T> {
    /// The protocol's answer to a write on a job the executor does not hold:
    /// log writes say it with a 500, `mark*` with a 404.
    fn not_held(&self, status: StatusCode) -> HttpError {
        HttpError::new(
            status,
            format!(
                "job {} is not processing in queue {} for executor {}",
                self.req.job_id(),
                self.queue,
                self.req.executor_name()
            ),
        )
    }
}

async fn add_entry(write: JobWrite<AddEntryRequest>) -> Result<Json<i64>, HttpError> {
    let (q, r) = (write.queue.clone(), write.req.clone());
    let added = blocking(&write.e, move |s| {
        s.add_entry(&q, r.job_id.0, &r.executor_name, &r.entry)
    })
    .await?;
    added
        .map(Json)
        .ok_or_else(|| write.not_held(StatusCode::INTERNAL_SERVER_ERROR))
}

async fn update_entry(write: JobWrite<UpdateEntryRequest>) -> Result<StatusCode, HttpError> {
    let (q, r) = (write.queue.clone(), write.req.clone());
    let updated = blocking(&write.e, move |s| {
        s.update_entry(&q, r.job_id.0, &r.executor_name, r.entry_id, &r.entry)
    })
    .await?;
    updated
        .then_some(StatusCode::NO_CONTENT)
        .ok_or_else(|| write.not_held(StatusCode::INTERNAL_SERVER_ERROR))
}

async fn mark_complete(write: JobWrite<MarkCompleteRequest>) -> Result<StatusCode, HttpError> {
    mark(write, None).await
}

async fn mark_errored(write: JobWrite<MarkFailedRequest>) -> Result<StatusCode, HttpError> {
    let how = Some((true, write.req.error_message.clone()));
    mark(write, how).await
}

async fn mark_failed(write: JobWrite<MarkFailedRequest>) -> Result<StatusCode, HttpError> {
    let how = Some((false, write.req.error_message.clone()));
    mark(write, how).await
}

/// Ends an attempt: `failure` is `None` for success, else (retryable, message).
async fn mark<T: ForJob>(
    write: JobWrite<T>,
    failure: Option<(bool, String)>,
) -> Result<StatusCode, HttpError> {
    let now = SystemTime::now();
    let job = write.req.job_id();
    let (q, name) = (write.queue.clone(), write.req.executor_name().to_owned());
    let state = blocking(&write.e, move |s| {
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
            tracing::info!(job = job.0, queue = %write.queue, executor = %write.req.executor_name(), state = %state, "job attempt ended");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(write.not_held(StatusCode::NOT_FOUND)),
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
