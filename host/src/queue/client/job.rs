//! One job's writes (log entries, `mark*`) and their retry policy: jittered exponential backoff through network errors, timeouts and 5xx, until success, a 4xx, the job gone or the outage limit.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::error::{ClientError, encode, quote, status_error};
use super::{Inner, JobRef, QueueClient};
use crate::ops::metrics::QUEUE_RETRIES;
use crate::queue::wire::{
    AddEntryRequest, EXECUTOR_NAME_HEADER, ExecutionLogEntry, JOB_ID_HEADER, JobId,
    MarkCompleteRequest, MarkFailedRequest, UpdateEntryRequest,
};

/// Retries past this many are logged at most once per [`RETRY_LOG_EVERY`].
const RETRIES_LOGGED: u32 = 3;
const RETRY_LOG_EVERY: Duration = Duration::from_secs(30);

impl QueueClient {
    /// The client of one job's writes. `token` is the payload's; cancelling
    /// `gone` stops any retry in progress with [`ClientError::Gone`].
    pub fn job(&self, job: JobRef, token: Option<String>, gone: CancellationToken) -> JobClient {
        let auth = match token.filter(|t| !t.is_empty()) {
            Some(token) => HeaderValue::try_from(format!("Bearer {token}"))
                .map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
                .ok(),
            None => Some(self.inner.executor_auth.clone()),
        };
        JobClient {
            inner: self.inner.clone(),
            job,
            auth,
            gone,
        }
    }
}

/// Writes of one job: its log entries and its end. Cheap to clone.
#[derive(Clone)]
pub struct JobClient {
    inner: Arc<Inner>,
    job: JobRef,
    /// `None` when the job's token cannot be a header value.
    auth: Option<HeaderValue>,
    gone: CancellationToken,
}

impl JobClient {
    /// The job written to.
    pub fn job(&self) -> &JobRef {
        &self.job
    }

    /// `addExecutionLogEntry`: the new entry's id.
    pub async fn add_entry(&self, e: &ExecutionLogEntry) -> Result<i64, ClientError> {
        let call = "addExecutionLogEntry";
        let request = AddEntryRequest {
            executor_name: self.inner.executor_name.clone(),
            job_id: JobId(self.job.id),
            entry: e.clone(),
        };
        let (url, reply) = self.call(call, &request).await?;
        serde_json::from_slice::<JobId>(&reply)
            .map(|id| id.0)
            .map_err(|err| ClientError::BadReply {
                call,
                path: url.path().to_owned(),
                reason: format!(
                    "expected the entry id as an integer, got {}: {err}",
                    quote(&reply)
                ),
            })
    }

    /// `updateExecutionLogEntry`: the entry's whole new state.
    pub async fn update_entry(
        &self,
        entry_id: i64,
        e: &ExecutionLogEntry,
    ) -> Result<(), ClientError> {
        let request = UpdateEntryRequest {
            executor_name: self.inner.executor_name.clone(),
            job_id: JobId(self.job.id),
            entry_id,
            entry: e.clone(),
        };
        self.call("updateExecutionLogEntry", &request)
            .await
            .map(drop)
    }

    /// `markComplete`: the job succeeded.
    pub async fn mark_complete(&self) -> Result<(), ClientError> {
        let request = MarkCompleteRequest {
            executor_name: self.inner.executor_name.clone(),
            job_id: JobId(self.job.id),
        };
        self.call("markComplete", &request).await.map(drop)
    }

    /// `markErrored`: the job failed for a reason a retry may not meet.
    pub async fn mark_errored(&self, message: &str) -> Result<(), ClientError> {
        self.mark("markErrored", message).await
    }

    /// `markFailed`: the job failed for good.
    pub async fn mark_failed(&self, message: &str) -> Result<(), ClientError> {
        self.mark("markFailed", message).await
    }

    async fn mark(&self, call: &'static str, message: &str) -> Result<(), ClientError> {
        let request = MarkFailedRequest {
            executor_name: self.inner.executor_name.clone(),
            job_id: JobId(self.job.id),
            error_message: message.to_owned(),
        };
        self.call(call, &request).await.map(drop)
    }

    /// Sends one per-job call until it succeeds, is refused (4xx), the job is
    /// gone or the outage limit passes; returns the URL and the reply body.
    async fn call(
        &self,
        call: &'static str,
        request: &impl serde::Serialize,
    ) -> Result<(Url, Bytes), ClientError> {
        let inner = &self.inner;
        let url = inner.url(&[".executors", "queue", &self.job.queue, call]);
        let gone = || ClientError::Gone {
            call,
            path: url.path().to_owned(),
            job: self.job.clone(),
        };
        let auth = self.auth.clone().ok_or_else(|| ClientError::BadToken {
            job: self.job.clone(),
        })?;
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        headers.insert(JOB_ID_HEADER, HeaderValue::from(self.job.id));
        headers.insert(EXECUTOR_NAME_HEADER, inner.name_header.clone());
        let body = encode(call, &url, request)?;

        let started = Instant::now();
        let mut backoff = inner.backoff();
        let mut attempt: u32 = 0;
        let mut logged_at: Option<Instant> = None;
        loop {
            attempt += 1;
            if self.gone.is_cancelled() {
                return Err(gone());
            }
            let result = tokio::select! {
                biased;
                () = self.gone.cancelled() => return Err(gone()),
                r = inner.once(call, Method::POST, &url, headers.clone(), Some(body.clone())) => r,
            };
            let failure = match result {
                Ok((status, reply)) if status.is_success() => {
                    if attempt > 1 {
                        tracing::info!(call, job = %self.job, attempt, elapsed = ?started.elapsed(), "queue call succeeded after retries");
                    }
                    return Ok((url, reply));
                }
                Ok((status, reply)) => status_error(call, &url, status, &reply),
                Err(e) => e,
            };
            if !failure.retryable() {
                return Err(failure);
            }
            // Without a maximum of tries the backoff never ends; the limit
            // below is what stops it.
            let wait = backoff.next().unwrap_or(inner.tuning.max_retry_delay);
            let elapsed = started.elapsed();
            if elapsed + wait > inner.outage_limit {
                tracing::warn!(call, job = %self.job, attempt, ?elapsed, error = %failure, "queue call gave up at the outage limit");
                return Err(ClientError::OutageLimit {
                    call,
                    path: url.path().to_owned(),
                    attempts: attempt,
                    elapsed,
                    last: failure.to_string(),
                });
            }
            metrics::counter!(QUEUE_RETRIES, "call" => call).increment(1);
            let now = Instant::now();
            if attempt <= RETRIES_LOGGED
                || logged_at.is_none_or(|t| now.duration_since(t) >= RETRY_LOG_EVERY)
            {
                logged_at = Some(now);
                tracing::warn!(call, job = %self.job, status = failure.status(), attempt, ?wait, error = %failure, "queue call failed; retrying");
            }
            tokio::select! {
                biased;
                () = self.gone.cancelled() => return Err(gone()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

impl Inner {
    /// Half the maximum with up to 100% jitter added: waits stay within
    /// `first_retry_delay..=max_retry_delay` and spread out between executors.
    pub(super) fn backoff(&self) -> backon::ExponentialBackoff {
        let t = &self.tuning;
        backon::ExponentialBuilder::new()
            .with_min_delay(t.first_retry_delay)
            .with_max_delay((t.max_retry_delay / 2).max(t.first_retry_delay))
            .with_jitter()
            .without_max_times()
            .build()
    }
}
