//! How answers go on the wire: JSON and text bodies, watch streams, `Status` errors with `Retry-After`, and `Warning` headers; no handler logic.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use crate::status::ApiError;

pub(super) fn text_response(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}
pub(super) fn stream_response(stream: futures::stream::BoxStream<'static, Bytes>) -> Response {
    let mut r = Response::new(Body::from_stream(stream.map(Ok::<_, Infallible>)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn json_body(v: &Value) -> Body {
    Body::from(v.to_string())
}

/// A `200` with `v` as JSON.
pub fn json_ok(v: Value) -> Response {
    let mut r = Response::new(json_body(&v));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `v` as JSON with `status` (a `201 Created` carries its media type too).
pub(super) fn json_body_response(status: StatusCode, v: &Value) -> Response {
    let mut r = json_ok(v.clone());
    *r.status_mut() = status;
    r
}

pub(super) fn error(e: &ApiError) -> Response {
    let mut r = json_ok(e.to_status());
    *r.status_mut() = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(after) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&after.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

pub(super) fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append("Warning", v);
        }
    }
    r
}
