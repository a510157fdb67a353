//! What the embedded queue's routes answer on failure (`{"error": message}` with a status), and the two steps most failures come from: a store call off the async threads, and a JSON body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::Embedded;
use super::model::ErrorBody;
use super::store::{Store, StoreError};

/// An error reply: the status and `{"error": message}`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(super) fn unauthorized(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub(super) fn forbidden(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::FORBIDDEN, message)
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> HttpError {
        tracing::error!(error = %e, "embedded queue store");
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// Runs a store call off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    e: &Embedded,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, HttpError> {
    let store = e.store().clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| {
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("store task failed: {e}"),
            )
        })?
        .map_err(HttpError::from)
}

/// A JSON body; bad JSON is a 400 with the parser's message (not axum's 422).
pub(super) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("the request body is not valid: {e}")))
}
