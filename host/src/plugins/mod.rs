//! Sandboxed WebAssembly plugins: configuration, loading, the admission chain and log filtering; knows nothing of queues or clusters.

mod admission;
mod bindings;
mod config;
mod contract;
mod engine;
mod error;
mod filter;
mod host;
mod loader;
mod scope;
pub(crate) mod text;
mod trust;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::Value;

pub use admission::{AdmissionOutcome, Decision, JobCheck, Step, TrailEntry};
pub use bindings::executor::plugin::host::{JobContext, LogContext, LogEdit, LogRecord, Stream};
pub use config::{
    ConfigError, DEFAULT_ADMISSION_TIMEOUT, DEFAULT_LOG_TIMEOUT, DEFAULT_MEMORY_MIB, FailurePolicy,
    Mode, PluginSpec, PluginsConfig, Trust,
};
pub use contract::Contract;
pub use engine::{EngineError, Runtime, RuntimeOptions, default_cache_dir};
pub use error::{Hook, KeyProblem, LoadError, LoadErrors, PluginError, SignatureProblem};
pub use filter::LogSession;
pub use loader::PluginInfo;
pub use scope::{DEFAULT_SCOPE, PathPattern, PatternError};

use loader::LoadedPlugin;

/// The plugin set in force. A job takes it whole when it starts and keeps
/// it to its end (admission and log filtering alike); a reload swaps in a
/// new set for the jobs that start after. Cheap to clone; reading it takes
/// no lock.
#[derive(Clone)]
pub struct Current(Arc<ArcSwap<Plugins>>);

impl Current {
    /// The set now.
    pub fn get(&self) -> Arc<Plugins> {
        self.0.load_full()
    }

    /// Puts `plugins` in force for the jobs that start from now on.
    pub fn swap(&self, plugins: Plugins) {
        self.0.store(Arc::new(plugins));
    }
}

impl From<Plugins> for Current {
    fn from(plugins: Plugins) -> Current {
        Current(Arc::new(ArcSwap::from_pointee(plugins)))
    }
}

impl From<Arc<Plugins>> for Current {
    fn from(plugins: Arc<Plugins>) -> Current {
        Current(Arc::new(ArcSwap::new(plugins)))
    }
}

/// The configured plugins, loaded and ready; cheap to share between jobs.
#[derive(Clone)]
pub struct Plugins {
    runtime: Arc<Runtime>,
    plugins: Vec<Arc<LoadedPlugin>>,
    skipped: Vec<String>,
}

impl Plugins {
    /// No plugins: admission allows everything, filtering keeps everything.
    pub fn none(runtime: Arc<Runtime>) -> Plugins {
        Plugins {
            runtime,
            plugins: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Loads every plugin of `config`. A plugin that cannot be loaded is
    /// skipped with a warning when its failure policy is `ignore` (and listed
    /// in [`Self::skipped`]); otherwise it is an error, and every such error is
    /// reported together.
    pub fn load(runtime: Arc<Runtime>, config: &PluginsConfig) -> Result<Plugins, LoadErrors> {
        let mut plugins = Vec::new();
        let mut skipped = Vec::new();
        let mut errors = Vec::new();
        for spec in &config.plugins {
            let policy = spec.failure_policy;
            match LoadedPlugin::load(&runtime, spec.clone()) {
                Ok(p) => {
                    tracing::info!(plugin = %p.info.name, hooks = ?p.info.hooks, cached = p.info.cached, compile_ms = p.info.compile_time.as_millis() as u64, mode = %spec.mode, "plugin loaded");
                    plugins.push(Arc::new(p));
                }
                Err(err) if policy == FailurePolicy::Ignore => {
                    tracing::warn!(plugin = %spec.name, error = %err, "plugin skipped per its failure policy");
                    metrics::counter!(crate::ops::metrics::PLUGIN_FAILURES, "plugin" => spec.name.clone(), "hook" => "load", "kind" => "load").increment(1);
                    skipped.push(err.to_string());
                }
                Err(err) => errors.push(err),
            }
        }
        if errors.is_empty() {
            Ok(Plugins {
                runtime,
                plugins,
                skipped,
            })
        } else {
            Err(LoadErrors(errors))
        }
    }

    /// Reads the configuration file at `path` and loads its plugins, with
    /// every problem in one error: the file's own (keys, values) and each
    /// plugin's refusal at load (pins, contract, settings), so that fixing
    /// the keys does not reveal a second round of problems.
    pub fn load_file(
        runtime: Arc<Runtime>,
        path: &std::path::Path,
    ) -> Result<Plugins, ConfigError> {
        let (config, problems) = PluginsConfig::from_file_in_part(path)?;
        Plugins::load_in_part(runtime, path, &config, problems)
    }

    /// [`Self::load_file`] for a file already read with
    /// [`PluginsConfig::from_file_in_part`] (its loadable entries and its problems).
    pub fn load_in_part(
        runtime: Arc<Runtime>,
        path: &std::path::Path,
        config: &PluginsConfig,
        mut problems: Vec<String>,
    ) -> Result<Plugins, ConfigError> {
        match Plugins::load(runtime, config) {
            Ok(plugins) if problems.is_empty() => return Ok(plugins),
            Ok(_) => {}
            Err(LoadErrors(errors)) => problems.extend(errors.iter().map(ToString::to_string)),
        }
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }

    /// What is known about each loaded plugin, in order.
    pub fn info(&self) -> Vec<PluginInfo> {
        self.plugins.iter().map(|p| p.info.clone()).collect()
    }

    /// Why plugins with policy `ignore` were skipped at load.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Runs the admission chain on `job` (a `batch/v1` Job as JSON). Every
    /// change a plugin makes must pass `check` (e.g.
    /// `crate::k8s::spec::validate`); one that does not is a failure of that
    /// plugin. Blocks for as long as the plugins run (bounded by their
    /// deadlines): call it from a blocking thread in async code.
    pub fn admit(&self, ctx: &JobContext, job: Value, check: &dyn JobCheck) -> AdmissionOutcome {
        admission::run(&self.runtime, &self.plugins, ctx, job, check)
    }

    /// The runtime the plugins run in; a reload loads the new set in the
    /// same one, so the compiled-plugin cache and the instance pool are shared.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Starts the log filtering of one job.
    pub fn log_session(&self, ctx: JobContext) -> LogSession {
        LogSession::new(self.runtime.clone(), &self.plugins, ctx)
    }

    /// Makes a fresh instance of every plugin, runs `init` with its settings
    /// and drops the instance: what each admission call pays per plugin
    /// before calling in, and a log session at its first batch. How long each
    /// took, in order. For `executor plugin bench`, which reports this apart
    /// from the calls because the calls' own timings include it.
    pub fn instantiate_each(&self) -> Vec<(String, Result<Duration, PluginError>)> {
        self.plugins
            .iter()
            .map(|p| {
                let timeout = p.spec.admission_timeout().max(p.spec.log_timeout());
                let started = Instant::now();
                // Dropped inside the timing, as admission drops its instance
                // per call: returning the pool slot is part of the cost.
                let result = p
                    .instantiate(&self.runtime, Hook::Init, timeout)
                    .map(|live| {
                        drop(live);
                        started.elapsed()
                    });
                (p.spec.name.clone(), result)
            })
            .collect()
    }
}
