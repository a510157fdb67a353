//! Everything the executor does with Kubernetes: names, the objects of a job, the client and its limits, creating, watching, logs, outcomes, running a job and cleaning up.

pub mod cleanup;
pub mod client;
pub mod create;
pub mod logs;
pub mod names;
pub mod outcome;
pub mod run;
pub mod spec;
pub mod throttle;
pub mod watch;
