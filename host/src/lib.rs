//! The executor: runs queued jobs as Kubernetes Jobs, calling sandboxed WebAssembly plugins at admission and before log upload.

pub mod cli;
pub mod config;
pub mod embedded;
pub mod instance;
pub mod job;
pub mod k8s;
pub mod ops;
pub mod payload;
pub mod plugins;
pub mod queue;
pub mod reload;
pub mod worker;
