//! Everything the executor says to the Kubernetes API server: names, the objects of a job, the client and its limits, creating, watching, logs, outcomes, teardown and the start-up sweep; it knows nothing of queues or of a job's stages.

pub mod cleanup;
pub mod client;
pub mod create;
pub mod logs;
pub mod names;
pub mod outcome;
pub mod spec;
pub mod teardown;
pub mod throttle;
pub mod watch;
