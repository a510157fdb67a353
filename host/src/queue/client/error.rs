//! Why a queue call failed, and how a failure is told: the call, the URL path and the start of the reply.

use bytes::Bytes;
use reqwest::StatusCode;
use std::time::Duration;
use url::Url;

use super::JobRef;

/// Error bodies are quoted in messages up to this many bytes.
const QUOTED_BODY: usize = 512;

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
    pub(super) fn retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

pub(super) fn encode(
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

pub(super) fn status_error(
    call: &'static str,
    url: &Url,
    status: StatusCode,
    body: &[u8],
) -> ClientError {
    ClientError::Status {
        call,
        path: url.path().to_owned(),
        status: status.as_u16(),
        body: quote(body),
    }
}

/// The start of a body, as text, for a message.
pub(super) fn quote(body: &[u8]) -> String {
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
pub(super) fn chain(e: &dyn std::error::Error) -> String {
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
