//! Shared set-up for the integration tests: one runtime with a compile cache, plugins built from source.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};

use executor::plugins::{JobContext, PluginSpec, Plugins, PluginsConfig, Runtime, RuntimeOptions};
use executor_tests::components;
use serde_json::Value;

/// One runtime per test binary, caching compiled components under `target/`.
pub fn runtime() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            Runtime::new(&RuntimeOptions {
                max_instances: 64,
                cache_dir: Some(executor_tests::plugin_cache()),
            })
            .unwrap()
        })
        .clone()
}

/// A spec for built component `crate_name` with `settings`.
pub fn spec(crate_name: &str, settings: Value) -> PluginSpec {
    let mut spec = PluginSpec::new(crate_name, components().path(crate_name));
    spec.settings = settings;
    spec
}

/// Loads `specs`, failing the test with the loader's message.
pub fn load(specs: Vec<PluginSpec>) -> Plugins {
    Plugins::load(runtime(), &PluginsConfig { plugins: specs }).unwrap_or_else(|e| panic!("{e}"))
}

/// The context of the fixture Job.
pub fn ctx() -> JobContext {
    JobContext {
        job_id: "1234".into(),
        queue: "batches".into(),
        repository: Some("github.com/acme/api".into()),
        commit: Some("3f5c9a1e2b7d4c8e9f0a1b2c3d4e5f60718293a4".into()),
        step_images: vec!["alpine:3.20".into(), "ghcr.io/acme/linter:2.1".into()],
        executor_name: "executor-test".into(),
    }
}
