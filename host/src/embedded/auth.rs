//! Who calls the embedded queue: the executors (shared secret), a job (its token), a user (the API token); credentials are read from `Authorization` and secrets compared in constant time. Nothing here writes.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Embedded;
use super::reply::{HttpError, blocking};
use super::store::TokenCheck;
use crate::queue::wire::{EXECUTOR_NAME_HEADER, EXECUTOR_SCHEME, JOB_ID_HEADER, JobId};

/// A caller holding the API token.
pub(super) struct ApiAuth;

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

/// A caller holding the executors' shared secret.
pub(super) struct ExecutorAuth;

impl FromRequestParts<Embedded> for ExecutorAuth {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, e: &Embedded) -> Result<Self, HttpError> {
        match credential(&parts.headers) {
            Some((scheme, secret)) if scheme.eq_ignore_ascii_case(EXECUTOR_SCHEME) => {
                executor_secret(secret, e).map(|()| ExecutorAuth)
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
    pub(super) fn may_write(&self, job: JobId) -> Result<(), HttpError> {
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
            return executor_secret(secret, e).map(|()| Caller::Executor);
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

/// The executors' shared secret, as both extractors check it.
fn executor_secret(secret: &str, e: &Embedded) -> Result<(), HttpError> {
    if same_secret(secret, e.executor_password()) {
        Ok(())
    } else {
        Err(HttpError::unauthorized("the executor secret is wrong"))
    }
}

/// `Authorization: <scheme> <credential>`.
fn credential(headers: &HeaderMap) -> Option<(&str, &str)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.trim().split_once(' ')?;
    Some((scheme, credential.trim()))
}

/// Compares secrets in constant time; hashing first hides their lengths too.
fn same_secret(given: &str, expected: &str) -> bool {
    let (given, expected) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    given.as_slice().ct_eq(expected.as_slice()).into()
}
