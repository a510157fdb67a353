//! Kubernetes' own rules that the executor, the simulator and the plugin SDK all apply: names, label keys and values, annotations, and field paths as the API server prints them.

pub mod field_path;
pub mod metadata;
pub mod names;
