//! The operations port and what it tells: liveness, readiness fed by the queue and Kubernetes clients, and the Prometheus metrics (also sent on every heartbeat); it takes no part in running jobs.

pub mod metrics;
pub mod ping;
pub mod readiness;
pub mod server;

pub use readiness::{LastAnswer, PluginsState, Readiness, Report};
pub use server::OpsError;
