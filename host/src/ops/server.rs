//! The operations port's HTTP server: `/healthz`, `/readyz` and `/metrics`; it judges and renders nothing itself (readiness and metrics do).

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics;
use super::readiness::Readiness;
use crate::config::OpsConfig;

/// Liveness: the process and its runtime answer.
pub const HEALTHZ: &str = "/healthz";
/// Readiness: every check of [`Readiness`], with the reason when one fails.
pub const READYZ: &str = "/readyz";
/// The Prometheus text format.
pub const METRICS: &str = "/metrics";

/// The version of the text format Prometheus scrapers ask for.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the operations port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The address is taken or not this host's.
    #[error(
        "{variable}: cannot listen on {addr}: {source}; set {variable} to another IP:PORT (port 0 picks a free one), or to `off` to run without the operations port"
    )]
    Bind {
        /// The variable to change.
        variable: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("the operations port stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// Binds the operations port at `addr`, at start-up, so that a busy port is
/// an error before any job is taken.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, OpsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| OpsError::Bind {
            variable: OpsConfig::VARIABLE,
            addr,
            source,
        })
}

/// Serves the operations endpoints on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    readiness: Readiness,
    stop: CancellationToken,
) -> Result<(), OpsError> {
    axum::serve(listener, routes().with_state(readiness))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .map_err(OpsError::Serve)
}

fn routes() -> Router<Readiness> {
    Router::new()
        .route(HEALTHZ, get(healthz))
        .route(READYZ, get(readyz))
        .route(METRICS, get(scrape))
}

/// Answering at all is the check: it never asks the queue or the API
/// server, whose outage must not restart every executor.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
    let report = readiness.report(Instant::now());
    let status = if report.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, report.text()).into_response()
}

async fn scrape() -> Response {
    match metrics::render() {
        Some(text) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "this process records no metrics (another recorder was installed first)\n",
        )
            .into_response(),
    }
}
