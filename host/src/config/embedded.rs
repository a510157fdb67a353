//! The embedded queue's section: its address, data directory and user API token; it checks these variables only.

use std::path::PathBuf;

use clap::Args;

use super::check::Checker;

const LISTEN: &str = "EXECUTOR_LISTEN";
const DATA_DIR: &str = "EXECUTOR_DATA_DIR";
const API_TOKEN: &str = "EXECUTOR_API_TOKEN";

/// The embedded queue's settings as text, from a flag or else its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct RawEmbedded {
    /// Address of the embedded queue (no EXECUTOR_FRONTEND_URL): its protocol, user API and git routes.
    #[arg(long, env = LISTEN, default_value = "127.0.0.1:3180")]
    pub listen: String,
    /// Where the embedded queue keeps its database and `executor serve` its address file (default: $XDG_STATE_HOME/executor, else ~/.local/state/executor).
    #[arg(long, env = DATA_DIR)]
    pub data_dir: Option<String>,
    /// Token of the embedded queue's user API (default: generated at first start, kept in the data directory, printed).
    #[arg(long, env = API_TOKEN, hide_env_values = true)]
    pub api_token: Option<String>,
}

/// The embedded queue (used when there is no `EXECUTOR_FRONTEND_URL`).
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedConfig {
    /// Where it listens.
    pub listen: std::net::SocketAddr,
    /// Its database and the address file; `None` when neither
    /// `EXECUTOR_DATA_DIR` nor a home directory says where (only `serve`
    /// and the user commands need one, and they say so).
    pub data_dir: Option<PathBuf>,
    /// The user API token, when configured.
    pub api_token: Option<String>,
}

impl RawEmbedded {
    /// Checks the embedded queue's settings; `None` when any is invalid (each recorded in `c`).
    pub(super) fn check(&self, c: &mut Checker) -> Option<EmbeddedConfig> {
        let listen = c.check(
            LISTEN,
            self.listen
                .trim()
                .parse::<std::net::SocketAddr>()
                .map_err(|_| {
                    format!(
                        "{:?} is not an address; expected IP:PORT such as 127.0.0.1:3180",
                        self.listen
                    )
                }),
        );
        let data_dir = match self.data_dir.as_deref().map(str::trim) {
            Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
            _ => default_data_dir().ok(),
        };
        Some(EmbeddedConfig {
            listen: listen?,
            data_dir,
            api_token: self.api_token.clone().filter(|t| !t.trim().is_empty()),
        })
    }
}

/// `$XDG_STATE_HOME/executor`, else `~/.local/state/executor`.
pub fn default_data_dir() -> Result<PathBuf, String> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(state) = nonempty("XDG_STATE_HOME") {
        return Ok(PathBuf::from(state).join("executor"));
    }
    nonempty("HOME")
        .map(|home| PathBuf::from(home).join(".local/state/executor"))
        .ok_or_else(|| {
            "not set, and neither XDG_STATE_HOME nor HOME is: expected a directory".into()
        })
}
