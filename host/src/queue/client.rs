//! The queue protocol client: every call of queue-protocol.md, with retries.
//!
//! Polling calls (`dequeue`, `heartbeat`, the auth test) make one attempt: the
//! caller's loop is their retry. Per-job writes (log entries, `mark*`) retry
//! network errors, timeouts and 5xx with jittered exponential backoff until
//! they succeed, get a 4xx, the job is gone, or the outage limit passes, so a
//! queue outage of minutes only delays them.
//!
//! `addExecutionLogEntry` is not idempotent: when a reply is lost after the
//! server stored the entry, the retry stores it again. The protocol gives no
//! way to tell, so a duplicate entry is the price of never losing one.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::wire::{
    AddEntryRequest, DequeueRequest, EXECUTOR_NAME_HEADER, EXECUTOR_SCHEME, EXECUTOR_VERSION,
    ExecutionLogEntry, HeartbeatReply, HeartbeatRequest, JOB_ID_HEADER, JobId, MarkCompleteRequest,
    MarkFailedRequest, MultiHeartbeatReply, MultiHeartbeatRequest, QueueJobIds, Telemetry,
    UpdateEntryRequest,
};

/// How long per-job writes keep retrying through an outage unless configured.
pub const DEFAULT_OUTAGE_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Error bodies are quoted in messages up to this many bytes.
const QUOTED_BODY: usize = 512;

/// Retries past this many are logged at most once per [`RETRY_LOG_EVERY`].
const RETRIES_LOGGED: u32 = 3;
const RETRY_LOG_EVERY: Duration = Duration::from_secs(30);

/// Where the queue is and who this executor is.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `EXECUTOR_FRONTEND_URL`: every route sits under `<base>/.executors/`.
    pub base: Url,
    /// `EXECUTOR_FRONTEND_PASSWORD`, the secret shared with the queue.
    pub password: String,
    /// `<hostname>-<uuid>`, made once per process.
    pub executor_name: String,
    /// The queues to take jobs from; exactly one in single-queue mode.
    pub queues: Vec<String>,
    /// Multi-queue mode (`EXECUTOR_QUEUE_NAMES`): dequeue and heartbeat name
    /// the queues in their bodies instead of their paths.
    pub multi_queue: bool,
    /// How long per-job writes keep retrying ([`DEFAULT_OUTAGE_LIMIT`]).
    pub outage_limit: Duration,
}

impl ClientOptions {
    /// [`DEFAULT_OUTAGE_LIMIT`], where the options are written.
    pub const DEFAULT_OUTAGE_LIMIT: Duration = DEFAULT_OUTAGE_LIMIT;
}

/// Delays and timeouts; [`Tuning::default`] is what production uses, tests
/// shorten them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// The shortest wait before a retry (250 ms).
    pub first_retry_delay: Duration,
    /// The longest wait between retries, jitter included (10 s).
    pub max_retry_delay: Duration,
    /// Connecting gives up after this (5 s).
    pub connect_timeout: Duration,
    /// A whole request, reply body included, gives up after this (30 s).
    pub request_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            first_retry_delay: Duration::from_millis(250),
            max_retry_delay: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A job: its id is unique only within its queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobRef {
    /// The queue it came from.
    pub queue: String,
    /// Its id in that queue.
    pub id: i64,
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.queue, self.id)
    }
}

/// A job taken from the queue, before its payload is validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dequeued {
    /// Which job.
    pub job: JobRef,
    /// Its token for per-job calls, when the payload carries one.
    pub token: Option<String>,
    /// The payload's raw JSON text, for `JobPayload::parse`.
    pub body: String,
}

/// What the queue said about the running jobs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// The jobs it still believes this executor owns.
    pub known: Vec<JobRef>,
    /// The jobs to cancel.
    pub cancel: Vec<JobRef>,
}

/// Why a queue call failed. Messages name the call and the URL path.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The options cannot make a client.
    #[error("queue client options: {0}")]
    Options(String),
    /// No reply: connection refused or dropped, timeout, TLS.
    #[error("{call} {path}: {reason}")]
    Transport {
        /// The call, e.g. `markComplete`.
        call: &'static str,
        /// The URL path.
        path: String,
        /// What went wrong, with its causes.
        reason: String,
    },
    /// The queue answered with an unexpected status.
    #[error("{call} {path}: HTTP {status}: {body}")]
    Status {
        /// The call.
        call: &'static str,
        /// The URL path.
        path: String,
        /// The status code.
        status: u16,
        /// The start of the reply body.
        body: String,
    },
    /// A successful reply that cannot be read.
    #[error("{call} {path}: unexpected reply: {reason}")]
    BadReply {
        /// The call.
        call: &'static str,
        /// The URL path.
        path: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A dequeued job without a usable id (or queue, in multi-queue mode):
    /// it cannot even be failed.
    #[error("dequeue {path}: unusable job payload: {reason}")]
    BadPayload {
        /// The URL path.
        path: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The job's token cannot be sent in a header.
    #[error("job {job}: its token is not a valid header value")]
    BadToken {
        /// The job.
        job: JobRef,
    },
    /// The worker said the queue no longer knows the job: retrying stopped.
    #[error("{call} {path}: job {job} is no longer known to the queue; gave up")]
    Gone {
        /// The call.
        call: &'static str,
        /// The URL path.
        path: String,
        /// The job.
        job: JobRef,
    },
    /// Retries went on for the whole outage limit.
    #[error(
        "{call} {path}: gave up after {attempts} attempts in {elapsed:?} (outage limit): {last}"
    )]
    OutageLimit {
        /// The call.
        call: &'static str,
        /// The URL path.
        path: String,
        /// Attempts made.
        attempts: u32,
        /// Time since the first attempt.
        elapsed: Duration,
        /// The last failure.
        last: String,
    },
}

impl ClientError {
    /// The HTTP status the queue answered, if that is what failed.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether a later attempt of the same call may succeed.
    fn retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// The client of one queue service, cheap to clone.
#[derive(Clone)]
pub struct QueueClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    executor_name: String,
    queues: Vec<String>,
    multi_queue: bool,
    executor_auth: HeaderValue,
    name_header: HeaderValue,
    outage_limit: Duration,
    tuning: Tuning,
}

impl QueueClient {
    /// A client with production delays and timeouts.
    pub fn new(opts: ClientOptions) -> Result<Self, ClientError> {
        Self::with_tuning(opts, Tuning::default())
    }

    /// A client with the given delays and timeouts.
    pub fn with_tuning(opts: ClientOptions, tuning: Tuning) -> Result<Self, ClientError> {
        let bad = |m: String| ClientError::Options(m);
        let mut base = opts.base;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad(format!("frontend URL {base} is not an http(s) URL")));
        }
        base.set_query(None);
        base.set_fragment(None);
        if opts.queues.is_empty() {
            return Err(bad("no queue to take jobs from".into()));
        }
        if !opts.multi_queue && opts.queues.len() != 1 {
            return Err(bad(format!(
                "single-queue mode takes exactly one queue, not {}",
                opts.queues.len()
            )));
        }
        if let Some(q) = opts.queues.iter().find(|q| q.is_empty()) {
            return Err(bad(format!("queue name {q:?} is empty")));
        }
        if opts.executor_name.is_empty() {
            return Err(bad("the executor name is empty".into()));
        }
        let mut executor_auth =
            HeaderValue::try_from(format!("{EXECUTOR_SCHEME} {}", opts.password))
                .map_err(|_| bad("the frontend password is not a valid header value".into()))?;
        executor_auth.set_sensitive(true);
        let name_header = HeaderValue::try_from(opts.executor_name.as_str()).map_err(|_| {
            bad(format!(
                "executor name {:?} is not a valid header value",
                opts.executor_name
            ))
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(tuning.connect_timeout)
            .timeout(tuning.request_timeout)
            // A redirected POST turns into a GET; the queue never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| bad(format!("HTTP client: {}", chain(&e))))?;
        Ok(QueueClient {
            inner: Arc::new(Inner {
                http,
                base,
                executor_name: opts.executor_name,
                queues: opts.queues,
                multi_queue: opts.multi_queue,
                executor_auth,
                name_header,
                outage_limit: opts.outage_limit,
                tuning,
            }),
        })
    }

    /// `GET /.executors/test/auth`: whether the queue accepts the shared secret.
    pub async fn test_auth(&self) -> Result<(), ClientError> {
        let url = self.inner.url(&[".executors", "test", "auth"]);
        let headers = self.inner.executor_headers();
        let (status, body) = self
            .inner
            .once("testAuth", Method::GET, &url, headers, None)
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(status_error("testAuth", &url, status, &body))
        }
    }

    /// One attempt to take a job; `None` when the queue has none (204).
    pub async fn dequeue(&self) -> Result<Option<Dequeued>, ClientError> {
        let inner = &self.inner;
        let url = match inner.single_queue() {
            Some(queue) => inner.url(&[".executors", "queue", queue, "dequeue"]),
            None => inner.url(&[".executors", "queue", "dequeue"]),
        };
        let request = DequeueRequest {
            executor_name: inner.executor_name.clone(),
            version: EXECUTOR_VERSION.to_owned(),
            queues: inner.multi_queue.then(|| inner.queues.clone()),
            num_cpus: None,
            memory: None,
            disk_space: None,
        };
        let body = encode("dequeue", &url, &request)?;
        let (status, reply) = inner
            .once(
                "dequeue",
                Method::POST,
                &url,
                inner.executor_headers(),
                Some(body),
            )
            .await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(status_error("dequeue", &url, status, &reply));
        }
        let payload_error = |reason: String| ClientError::BadPayload {
            path: url.path().to_owned(),
            reason,
        };
        let body = String::from_utf8(reply.to_vec())
            .map_err(|_| payload_error("the body is not UTF-8".into()))?;
        let head = Head::read(&body).map_err(payload_error)?;
        let queue = match inner.single_queue() {
            Some(queue) => queue.to_owned(),
            None => head.queue.ok_or_else(|| {
                payload_error(format!(
                    "job {} has no `queue`, which multi-queue mode needs to address it",
                    head.id
                ))
            })?,
        };
        let job = JobRef { queue, id: head.id };
        tracing::debug!(%job, "dequeued a job");
        Ok(Some(Dequeued {
            job,
            token: head.token,
            body,
        }))
    }

    /// One heartbeat naming the running jobs; says which ones the queue still
    /// knows and which to cancel.
    pub async fn heartbeat(&self, running: &[JobRef]) -> Result<Heartbeat, ClientError> {
        let inner = &self.inner;
        let headers = inner.executor_headers();
        if let Some(queue) = inner.single_queue() {
            let url = inner.url(&[".executors", "queue", queue, "heartbeat"]);
            let request = HeartbeatRequest {
                version: "V2".into(),
                executor_name: inner.executor_name.clone(),
                job_ids: running.iter().map(|j| JobId(j.id)).collect(),
                telemetry: Telemetry::current(),
            };
            let body = encode("heartbeat", &url, &request)?;
            let reply: HeartbeatReply = inner.json_reply("heartbeat", &url, headers, body).await?;
            let job = |id: JobId| JobRef {
                queue: queue.to_owned(),
                id: id.0,
            };
            return Ok(Heartbeat {
                known: reply.known_ids.into_iter().map(job).collect(),
                cancel: reply.cancel_ids.into_iter().map(job).collect(),
            });
        }
        let url = inner.url(&[".executors", "queue", "heartbeat"]);
        // Every configured queue is listed, with or without jobs, so the
        // queue sees the same set in `queueNames` and `jobIdsByQueue`.
        let mut by_queue: Vec<QueueJobIds> = inner
            .queues
            .iter()
            .map(|q| QueueJobIds {
                queue_name: q.clone(),
                job_ids: Vec::new(),
            })
            .collect();
        for job in running {
            match by_queue.iter_mut().find(|q| q.queue_name == job.queue) {
                Some(q) => q.job_ids.push(JobId(job.id)),
                None => by_queue.push(QueueJobIds {
                    queue_name: job.queue.clone(),
                    job_ids: vec![JobId(job.id)],
                }),
            }
        }
        let request = MultiHeartbeatRequest {
            executor_name: inner.executor_name.clone(),
            queue_names: inner.queues.clone(),
            job_ids_by_queue: by_queue,
            telemetry: Telemetry::current(),
        };
        let body = encode("heartbeat", &url, &request)?;
        let reply: MultiHeartbeatReply = inner.json_reply("heartbeat", &url, headers, body).await?;
        let job = |q: super::wire::QueuedId| JobRef {
            queue: q.queue,
            id: q.id,
        };
        Ok(Heartbeat {
            known: reply.known_ids.into_iter().map(job).collect(),
            cancel: reply.cancel_ids.into_iter().map(job).collect(),
        })
    }

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
            metrics::counter!("executor_queue_retries_total", "call" => call).increment(1);
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
    fn single_queue(&self) -> Option<&str> {
        if self.multi_queue {
            None
        } else {
            self.queues.first().map(String::as_str)
        }
    }

    /// `base` with `segments` appended, each percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // `new` refused URLs that cannot be a base, so this always applies.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn executor_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, self.executor_auth.clone());
        headers
    }

    /// Half the maximum with up to 100% jitter added: waits stay within
    /// `first_retry_delay..=max_retry_delay` and spread out between executors.
    fn backoff(&self) -> backon::ExponentialBackoff {
        let t = &self.tuning;
        backon::ExponentialBuilder::new()
            .with_min_delay(t.first_retry_delay)
            .with_max_delay((t.max_retry_delay / 2).max(t.first_retry_delay))
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// One request; any status is a reply, only no reply is an error.
    async fn once(
        &self,
        call: &'static str,
        method: Method,
        url: &Url,
        mut headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let transport = |e: reqwest::Error| ClientError::Transport {
            call,
            path: url.path().to_owned(),
            reason: chain(&e),
        };
        let mut request = self.http.request(method, url.clone());
        if let Some(body) = body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            request = request.body(body);
        }
        let response = request.headers(headers).send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        Ok((status, body))
    }

    async fn json_reply<T: serde::de::DeserializeOwned>(
        &self,
        call: &'static str,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<T, ClientError> {
        let (status, reply) = self
            .once(call, Method::POST, url, headers, Some(body))
            .await?;
        if !status.is_success() {
            return Err(status_error(call, url, status, &reply));
        }
        serde_json::from_slice(&reply).map_err(|e| ClientError::BadReply {
            call,
            path: url.path().to_owned(),
            reason: format!("{e}: {}", quote(&reply)),
        })
    }
}

/// The few fields of a dequeued payload the client needs, read leniently so
/// that a payload broken elsewhere still names its job and can be failed.
struct Head {
    id: i64,
    queue: Option<String>,
    token: Option<String>,
}

impl Head {
    fn read(text: &str) -> Result<Head, String> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            id: Option<Value>,
            #[serde(default)]
            queue: Option<Value>,
            #[serde(default)]
            token: Option<Value>,
        }
        if text.trim().is_empty() {
            return Err("the body is empty".into());
        }
        // A derived struct would also read a JSON array by position.
        if !text.trim_start().starts_with('{') {
            return Err("the body is not a JSON object".into());
        }
        let raw: Raw = serde_json::from_str(text)
            .map_err(|e| format!("the body is not a JSON object: {e}"))?;
        let id = match raw.id {
            None | Some(Value::Null) => return Err("it has no `id`".into()),
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| format!("`id` {n} is not an integer"))?,
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map_err(|_| format!("`id` {s:?} is not an integer"))?,
            Some(other) => return Err(format!("`id` {other} is not an integer")),
        };
        let text_of = |v: Option<Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        };
        Ok(Head {
            id,
            queue: text_of(raw.queue),
            token: text_of(raw.token),
        })
    }
}

fn encode(
    call: &'static str,
    url: &Url,
    request: &impl serde::Serialize,
) -> Result<Bytes, ClientError> {
    serde_json::to_vec(request)
        .map(Bytes::from)
        .map_err(|e| ClientError::BadReply {
            call,
            path: url.path().to_owned(),
            reason: format!("the request cannot be encoded: {e}"),
        })
}

fn status_error(call: &'static str, url: &Url, status: StatusCode, body: &[u8]) -> ClientError {
    ClientError::Status {
        call,
        path: url.path().to_owned(),
        status: status.as_u16(),
        body: quote(body),
    }
}

/// The start of a body, as text, for a message.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    match text.char_indices().nth(QUOTED_BODY) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// An error and its causes on one line: reqwest's own message rarely says
/// more than "error sending request".
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_head_of_a_payload_is_read_leniently() {
        let h = Head::read(r#"{"id":"12","queue":"batches","token":"t","dockerSteps":5}"#).unwrap();
        assert_eq!(
            (h.id, h.queue.as_deref(), h.token.as_deref()),
            (12, Some("batches"), Some("t"))
        );
        let h = Head::read(r#"{"id":3,"queue":7,"token":null}"#).unwrap();
        assert_eq!((h.id, h.queue, h.token), (3, None, None));
        for (text, want) in [
            ("", "empty"),
            ("[1]", "not a JSON object"),
            ("{\"id\":1", "not a JSON object"),
            ("{}", "no `id`"),
            (r#"{"id":null}"#, "no `id`"),
            (r#"{"id":"x"}"#, r#"`id` "x" is not an integer"#),
            (r#"{"id":1.5}"#, "`id` 1.5 is not an integer"),
            (r#"{"id":true}"#, "`id` true is not an integer"),
        ] {
            let e = Head::read(text).err().unwrap();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn urls_keep_the_base_path_and_encode_segments() {
        let opts = ClientOptions {
            base: Url::parse("https://sg.example.com/prefix/").unwrap(),
            password: "p".into(),
            executor_name: "e".into(),
            queues: vec!["a b".into()],
            multi_queue: false,
            outage_limit: DEFAULT_OUTAGE_LIMIT,
        };
        let c = QueueClient::new(opts).unwrap();
        assert_eq!(
            c.inner
                .url(&[".executors", "queue", "a b", "dequeue"])
                .as_str(),
            "https://sg.example.com/prefix/.executors/queue/a%20b/dequeue"
        );
    }

    #[test]
    fn options_are_checked() {
        let opts = |queues: Vec<&str>, multi: bool, base: &str| ClientOptions {
            base: Url::parse(base).unwrap(),
            password: "p".into(),
            executor_name: "e".into(),
            queues: queues.into_iter().map(String::from).collect(),
            multi_queue: multi,
            outage_limit: DEFAULT_OUTAGE_LIMIT,
        };
        let err = |o| QueueClient::new(o).err().unwrap().to_string();
        assert!(err(opts(vec![], true, "http://x")).contains("no queue"));
        assert!(err(opts(vec!["a", "b"], false, "http://x")).contains("exactly one queue"));
        assert!(err(opts(vec!["a"], false, "ftp://x")).contains("not an http(s) URL"));
        let mut o = opts(vec!["a"], false, "http://x");
        o.password = "bad\npassword".into();
        assert!(err(o).contains("password"));
        assert!(QueueClient::new(opts(vec!["a", "b"], true, "http://x")).is_ok());
    }

    #[test]
    fn backoff_waits_stay_within_the_bounds() {
        let opts = ClientOptions {
            base: Url::parse("http://x").unwrap(),
            password: "p".into(),
            executor_name: "e".into(),
            queues: vec!["q".into()],
            multi_queue: false,
            outage_limit: DEFAULT_OUTAGE_LIMIT,
        };
        let c = QueueClient::new(opts).unwrap();
        let waits: Vec<Duration> = c.inner.backoff().take(40).collect();
        assert_eq!(waits.len(), 40);
        assert!(waits.iter().all(|w| *w >= Duration::from_millis(250)));
        assert!(
            waits.iter().all(|w| *w <= Duration::from_secs(10)),
            "{waits:?}"
        );
        assert!(waits[20] >= Duration::from_secs(5), "{waits:?}");
    }
}
