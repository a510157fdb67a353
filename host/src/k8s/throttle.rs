//! Client-side limits and retries for every Kubernetes API request: a budget for deletes apart from the rest, and retries with backoff where a retry is safe.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use backon::BackoffBuilder;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use tower::{BoxError, Layer, Service, ServiceExt};

use crate::config::ApiLimits;
use crate::ops::LastAnswer;
use crate::ops::metrics::{KUBE_REQUEST_DURATION, KUBE_REQUESTS, KUBE_RETRIES};

/// How failed requests are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Backoff before the first retry (doubled each time, with jitter).
    pub first_delay: Duration,
    /// Longest backoff (a server's `Retry-After` may ask for longer).
    pub max_delay: Duration,
    /// How long to wait for a response's headers; a stream's body is not
    /// limited (watches and followed logs are long by design).
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a request failed in this layer.
#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    /// No response headers within the request timeout.
    #[error("no response from the Kubernetes API within {0:?}")]
    Timeout(Duration),
}

/// The layer: put it on the client's stack over a `Buffer` (it clones the
/// inner service per request).
#[derive(Clone)]
pub struct Throttle {
    shared: Arc<Shared>,
}

struct Shared {
    general: DefaultDirectRateLimiter,
    deletes: DefaultDirectRateLimiter,
    retry: RetryPolicy,
    answered: Option<LastAnswer>,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(per_second).allow_burst(burst)
}

impl Throttle {
    /// Limits from the configuration, retries per `retry`; every reply other
    /// than a 5xx is marked in `answered` (readiness: the server answers).
    pub fn new(limits: &ApiLimits, retry: RetryPolicy, answered: Option<LastAnswer>) -> Throttle {
        Throttle {
            shared: Arc::new(Shared {
                general: RateLimiter::direct(quota(limits.qps, limits.burst)),
                deletes: RateLimiter::direct(quota(limits.delete_qps, limits.delete_burst)),
                retry,
                answered,
            }),
        }
    }
}

impl<S> Layer<S> for Throttle {
    type Service = Throttled<S>;

    fn layer(&self, inner: S) -> Throttled<S> {
        Throttled {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`Throttle`] makes.
#[derive(Clone)]
pub struct Throttled<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> Service<Request<Body>> for Throttled<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is awaited per request on a clone, after the rate limit.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        let inner = self.inner.clone();
        Box::pin(async move { shared.send(inner, request).await })
    }
}

/// Whether a request may be sent again after a 5xx or a lost response.
/// GET, PUT and DELETE are idempotent; the executor's only POSTs create
/// objects under deterministic names, which `k8s::create` makes idempotent
/// (a 409 from a retried create is replaced afresh); a merge patch sets fields to
/// values and is idempotent too. A JSON patch may not be, so it is not retried.
fn safe_to_repeat<T>(request: &Request<T>) -> bool {
    match *request.method() {
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::POST => true,
        Method::PATCH => request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == b"application/merge-patch+json"),
        _ => false,
    }
}

fn retry_after<B>(response: &Response<B>) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

fn copy(request: &Request<Body>) -> Option<Request<Body>> {
    let body = request.body().try_clone()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}

impl Shared {
    /// Counts one attempt by its status (`none`: no reply) and marks a
    /// reply that is not a server error as an answer.
    fn observe(&self, verb: &str, status: Option<StatusCode>, sent: std::time::Instant) {
        let code = status.map_or_else(|| "none".to_owned(), |s| s.as_u16().to_string());
        metrics::counter!(KUBE_REQUESTS, "verb" => verb.to_owned(), "code" => code).increment(1);
        metrics::histogram!(KUBE_REQUEST_DURATION, "verb" => verb.to_owned())
            .record(sent.elapsed().as_secs_f64());
        if let (Some(answered), Some(status)) = (&self.answered, status)
            && !status.is_server_error()
        {
            answered.mark();
        }
    }

    async fn send<S, B>(
        &self,
        mut inner: S,
        request: Request<Body>,
    ) -> Result<Response<B>, BoxError>
    where
        S: Service<Request<Body>, Response = Response<B>>,
        S::Error: Into<BoxError>,
    {
        let verb = request.method().as_str().to_owned();
        let limiter = if request.method() == Method::DELETE {
            &self.deletes
        } else {
            &self.general
        };
        let safe = safe_to_repeat(&request);
        let mut backoff = backon::ExponentialBuilder::new()
            .with_min_delay(self.retry.first_delay)
            .with_max_delay(self.retry.max_delay)
            .with_jitter()
            .without_max_times()
            .build();
        let mut next = Some(request);
        let mut attempt = 1;
        loop {
            let Some(request) = next.take() else {
                // Unreachable: every path that loops puts a request back.
                return Err("request lost between retries".into());
            };
            let spare = if attempt < self.retry.attempts {
                copy(&request)
            } else {
                None
            };
            let uri = request.uri().path().to_owned();
            limiter.until_ready().await;
            let timeout = self.retry.request_timeout;
            let call = async {
                let service = inner.ready().await.map_err(Into::into)?;
                service.call(request).await.map_err(Into::into)
            };
            let sent = std::time::Instant::now();
            let result = match tokio::time::timeout(timeout, call).await {
                Ok(result) => result,
                Err(_) => Err(ThrottleError::Timeout(timeout).into()),
            };
            self.observe(&verb, result.as_ref().ok().map(Response::status), sent);
            let (reason, wait) = match &result {
                // A 429 was refused before anything happened: any request may repeat.
                Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => {
                    ("429".to_owned(), retry_after(r).or_else(|| backoff.next()))
                }
                Ok(r) if r.status().is_server_error() && safe => (
                    r.status().as_u16().to_string(),
                    retry_after(r).or_else(|| backoff.next()),
                ),
                Err(e) if safe => (e.to_string(), backoff.next()),
                _ => return result,
            };
            let (Some(wait), Some(request)) = (wait, spare) else {
                tracing::warn!(%verb, %uri, attempt, %reason, "Kubernetes API request failed; no retries left");
                return result;
            };
            tracing::debug!(%verb, %uri, attempt, %reason, ?wait, "retrying a Kubernetes API request");
            metrics::counter!(KUBE_RETRIES, "verb" => verb.clone()).increment(1);
            tokio::time::sleep(wait).await;
            next = Some(request);
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_repeatable_requests_are_retried_after_a_server_error() {
        let req = |method: Method, content_type: &str| {
            let mut r = Request::new(());
            *r.method_mut() = method;
            r.headers_mut()
                .insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
            r
        };
        assert!(safe_to_repeat(&req(Method::GET, "")));
        assert!(safe_to_repeat(&req(Method::DELETE, "")));
        assert!(safe_to_repeat(&req(
            Method::PATCH,
            "application/merge-patch+json"
        )));
        assert!(!safe_to_repeat(&req(
            Method::PATCH,
            "application/json-patch+json"
        )));
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let response = Response::builder()
            .status(429)
            .header("Retry-After", "3")
            .body(())
            .unwrap();
        assert_eq!(retry_after(&response), Some(Duration::from_secs(3)));
        let bad = Response::builder()
            .header("Retry-After", "soon")
            .body(())
            .unwrap();
        assert_eq!(retry_after(&bad), None);
    }
}
