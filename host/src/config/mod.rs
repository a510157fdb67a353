//! All configuration from environment variables and flags, parsed and validated in one place, one section per file; nothing else in the executor reads the environment.

mod check;
pub mod effective;
mod embedded;
pub mod environment;
mod kubernetes;
mod logging;
mod ops;
pub mod parse;
mod plugins;
mod queue;

use std::path::PathBuf;

use clap::Args;

pub use check::{ConfigError, Problem};
pub use embedded::{EmbeddedConfig, RawEmbedded, default_data_dir};
pub use kubernetes::{
    Amount, ApiLimits, DEFAULT_PERSISTENCE_VOLUME_NAME, DEFAULT_STEP_IMAGE, KubernetesConfig,
    PodIdentity, RawKubernetes, RawPlacement, Resources, VolumeType,
};
pub use logging::{LogFormat, LoggingConfig, RawLogging};
pub use ops::{DEFAULT_OPS_PORT, OpsConfig, RawOps};
pub use plugins::RawPlugins;
pub use queue::{QueueConfig, RawQueue};

/// Every setting as text, from a flag or else its environment variable,
/// else its default, one group per section. Validation happens in
/// [`Config::from_raw`], so that all problems are reported together rather
/// than the first one alone.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Configuration (flags override environment variables)")]
pub struct RawConfig {
    /// How Jobs are built and where they run.
    #[command(flatten)]
    pub kubernetes: RawKubernetes,
    /// Where jobs come from and how many run.
    #[command(flatten)]
    pub queue: RawQueue,
    // Before `embedded`, as --plugins stood before the embedded queue's flags in
    // --help when all settings were one group; `from_raw` checks it last.
    /// The plugin configuration file.
    #[command(flatten)]
    pub plugins: RawPlugins,
    /// The embedded queue.
    #[command(flatten)]
    pub embedded: RawEmbedded,
    /// The operations port.
    #[command(flatten)]
    pub ops: RawOps,
    /// The executor's own log.
    #[command(flatten)]
    pub logging: RawLogging,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Kubernetes settings.
    pub kubernetes: KubernetesConfig,
    /// Queue settings.
    pub queue: QueueConfig,
    /// The embedded queue's settings.
    pub embedded: EmbeddedConfig,
    /// The plugin configuration file.
    pub plugins_config: Option<PathBuf>,
    /// The operations port.
    pub ops: OpsConfig,
    /// The executor's own log.
    pub logging: LoggingConfig,
    /// Warnings found while checking, which the values alone cannot tell.
    notes: Vec<String>,
}

/// This process's executor name, `<hostname>-<uuid v4>` (in a pod the
/// hostname is the pod's name), made once per start so that a restarted
/// executor is never mistaken for its earlier life.
pub fn executor_name() -> String {
    format!("{}-{}", hostname(), uuid::Uuid::new_v4())
}

/// The host name (in a pod: the pod's name), `executor` if there is none.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "executor".to_owned())
}

impl Config {
    /// What stays the same when the executor's process restarts (unlike
    /// [`executor_name`]): its pod's name, else the host name. Jobs carry it
    /// so that a restarted executor finds and deletes those of its earlier life.
    pub fn instance(&self) -> String {
        match &self.kubernetes.pod {
            Some(pod) => pod.name.clone(),
            None => hostname(),
        }
    }

    /// Settings that are valid but deserve a word at start-up: they weaken
    /// the defaults or have no effect here. Never silent (design.md).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.notes.clone();
        out.extend(self.kubernetes.warnings());
        out
    }

    /// Validates every setting, reporting all problems at once.
    pub fn from_raw(raw: &RawConfig) -> Result<Config, ConfigError> {
        let mut c = check::Checker::default();
        // Problems are reported in this order, whatever the order of --help.
        let kubernetes = raw.kubernetes.check(&mut c);
        let queue = raw.queue.check(&mut c);
        let embedded = raw.embedded.check(&mut c);
        if let (Some(q), Some(e)) = (&queue, &embedded)
            && q.frontend_url.is_none()
        {
            e.check_reachable(&mut c);
        }
        let plugins_config = raw.plugins.check(&mut c);
        let in_pod =
            kubernetes.as_ref().is_some_and(|k| k.pod.is_some()) || ops::in_cluster_environment();
        let ops = raw.ops.check(&mut c, in_pod);
        let logging = raw.logging.check(&mut c);
        let notes = c.take_warnings();
        c.finish()?;
        match (kubernetes, queue, embedded, ops) {
            (Some(kubernetes), Some(queue), Some(embedded), Some(ops)) => Ok(Config {
                kubernetes,
                queue,
                embedded,
                plugins_config,
                ops,
                logging,
                notes,
            }),
            // A section gives `None` only after recording a problem.
            _ => Err(ConfigError(vec![])),
        }
    }
}

#[cfg(test)]
mod tests;
