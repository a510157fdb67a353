//! Everything the executor does with Kubernetes: names, the objects of a job, the client, and creating them (more to come: watch, logs, cleanup).

pub mod client;
pub mod create;
pub mod names;
pub mod outcome;
pub mod spec;
