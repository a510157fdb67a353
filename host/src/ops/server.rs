//! The operations port's HTTP server: `/healthz`, `/readyz`, `/metrics` and `POST /-/reload`; it judges, renders and reloads nothing itself.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
/// Reloads the plugin set (Prometheus' path for the same).
pub const RELOAD: &str = "/-/reload";

/// What `POST /-/reload` calls: reloads, and says what happened in a line
/// (`Err` when the new set was refused and the old one runs on).
pub trait Reload: Send + Sync {
    /// Reloads now.
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>>;
}

/// Where the reloader goes once the plugins are loaded: the port answers
/// before that.
pub type ReloadSlot = Arc<OnceLock<Arc<dyn Reload>>>;

#[derive(Clone)]
struct Ops {
    readiness: Readiness,
    reload: ReloadSlot,
}

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
    reload: ReloadSlot,
    stop: CancellationToken,
) -> Result<(), OpsError> {
    axum::serve(listener, routes().with_state(Ops { readiness, reload }))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .map_err(OpsError::Serve)
}

fn routes() -> Router<Ops> {
    Router::new()
        .route(HEALTHZ, get(healthz))
        .route(READYZ, get(readyz))
        .route(METRICS, get(scrape))
        .route(RELOAD, post(reload))
}

/// Answering at all is the check: it never asks the queue or the API
/// server, whose outage must not restart every executor.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ops): State<Ops>) -> Response {
    let report = ops.readiness.report(Instant::now());
    let status = if report.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, report.text()).into_response()
}

/// 200 with what changed, 500 with why the new set was refused, 503 while
/// there is nothing to reload (plugins loading, or none from a file).
async fn reload(State(ops): State<Ops>) -> Response {
    let Some(reloader) = ops.reload.get().cloned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "nothing to reload: the plugins are still loading, or none are configured from a file\n",
        )
            .into_response();
    };
    match reloader.reload().await {
        Ok(done) => (StatusCode::OK, format!("{done}\n")).into_response(),
        Err(why) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{why}\n")).into_response(),
    }
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
