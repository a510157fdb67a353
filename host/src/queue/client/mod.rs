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

mod error;
mod job;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

pub use self::error::ClientError;
use self::error::{chain, encode, quote, status_error};
pub use self::job::JobClient;
use super::wire::{
    DequeueRequest, EXECUTOR_SCHEME, EXECUTOR_VERSION, HeartbeatReply, HeartbeatRequest, JobId,
    MultiHeartbeatReply, MultiHeartbeatRequest, QueueJobIds, QueuedId, Telemetry,
};
use crate::ops::LastAnswer;
use crate::ops::metrics::{
    QUEUE_REQUEST_DURATION, QUEUE_REQUEST_ERRORS, QUEUE_REQUESTS, for_heartbeat,
};

/// How long per-job writes keep retrying through an outage unless configured.
pub const DEFAULT_OUTAGE_LIMIT: Duration = Duration::from_secs(15 * 60);

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

/// The client of one queue service, cheap to clone.
#[derive(Clone)]
pub struct QueueClient {
    inner: Arc<Inner>,
}

#[derive(Clone)]
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
    answered: Option<LastAnswer>,
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
                answered: None,
            }),
        })
    }

    /// This client, marking every successful reply in `answered` (the
    /// operations port's readiness: the queue answers).
    pub fn answers_to(self, answered: LastAnswer) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.answered = Some(answered);
        QueueClient {
            inner: Arc::new(inner),
        }
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
                telemetry: telemetry(),
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
            telemetry: telemetry(),
        };
        let body = encode("heartbeat", &url, &request)?;
        let reply: MultiHeartbeatReply = inner.json_reply("heartbeat", &url, headers, body).await?;
        let job = |q: QueuedId| JobRef {
            queue: q.queue,
            id: q.id,
        };
        Ok(Heartbeat {
            known: reply.known_ids.into_iter().map(job).collect(),
            cancel: reply.cancel_ids.into_iter().map(job).collect(),
        })
    }
}

/// What every heartbeat carries, the metrics text included, as
/// Sourcegraph's executors send it.
fn telemetry() -> Telemetry {
    Telemetry {
        prometheus_metrics: for_heartbeat(),
        ..Telemetry::current()
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
        let sent = std::time::Instant::now();
        let reply = async {
            let response = request.headers(headers).send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.bytes().await?))
        }
        .await;
        self.observe(call, reply.as_ref().ok().map(|(status, _)| *status), sent);
        reply.map_err(transport)
    }

    /// Counts one request by its status (`none`: no reply) and marks a
    /// successful reply as an answer.
    fn observe(&self, call: &'static str, status: Option<StatusCode>, sent: std::time::Instant) {
        let code = status.map_or_else(|| "none".to_owned(), |s| s.as_u16().to_string());
        metrics::counter!(QUEUE_REQUESTS, "call" => call, "code" => code).increment(1);
        metrics::histogram!(QUEUE_REQUEST_DURATION, "call" => call)
            .record(sent.elapsed().as_secs_f64());
        match status {
            Some(s) if s.is_success() => {
                if let Some(answered) = &self.answered {
                    answered.mark();
                }
            }
            _ => metrics::counter!(QUEUE_REQUEST_ERRORS, "call" => call).increment(1),
        }
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

#[cfg(test)]
mod tests;
