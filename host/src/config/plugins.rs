//! The plugins section: where the plugin configuration file is; it checks only that the file exists (`plugins::config` reads it).

use std::path::PathBuf;

use clap::Args;

use super::check::Checker;

const PLUGINS_CONFIG: &str = "EXECUTOR_PLUGINS_CONFIG";

/// The plugin settings as text, from a flag or else its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct RawPlugins {
    /// The plugin configuration file (YAML).
    #[arg(long = "plugins", env = PLUGINS_CONFIG)]
    pub plugins_config: Option<String>,
}

impl RawPlugins {
    /// The plugin configuration file, if one is set; a missing file is recorded in `c`.
    pub(super) fn check(&self, c: &mut Checker) -> Option<PathBuf> {
        let path = self
            .plugins_config
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)?;
        if !path.is_file() {
            c.problem(
                PLUGINS_CONFIG,
                format!("{} does not exist or is not a file", path.display()),
            );
        }
        Some(path)
    }
}
