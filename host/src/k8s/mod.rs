//! Everything the executor does with Kubernetes objects (more to come: the Job builder, watch, logs, cleanup).

pub mod names;
