//! Everything the executor does with Kubernetes objects: names, the objects of a job (more to come: watch, logs, cleanup).

pub mod names;
pub mod spec;
