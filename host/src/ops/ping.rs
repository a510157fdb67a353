//! Keeps the API server's answer fresh while the executor is idle: asks for its version when no other request answered for a while; it judges nothing.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::readiness::LastAnswer;

/// Every `every`, unless a request answered within it, asks the API server
/// for its version (which the client marks in `answered`), until `stop`. An
/// idle executor makes no other request, and its readiness would lapse.
pub async fn api_server(
    kube: kube::Client,
    answered: LastAnswer,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if answered.age(Instant::now()).is_some_and(|age| age < every) {
            continue;
        }
        if let Err(e) = kube.apiserver_version().await {
            tracing::warn!(error = %e, "the Kubernetes API server does not answer");
        }
    }
}
