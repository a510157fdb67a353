//! The embedded queue's section: its address, the URL jobs reach it at, data directory and user API token; it checks these variables only.

use std::path::PathBuf;

use clap::Args;

use super::check::Checker;

const LISTEN: &str = "EXECUTOR_LISTEN";
pub(super) const DATA_DIR: &str = "EXECUTOR_DATA_DIR";
const API_TOKEN: &str = "EXECUTOR_API_TOKEN";
const ADVERTISE_URL: &str = "EXECUTOR_ADVERTISE_URL";
const RETENTION: &str = "EXECUTOR_JOB_RETENTION";

/// The embedded queue's settings as text, from a flag or else its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct RawEmbedded {
    /// Address of the embedded queue (no EXECUTOR_FRONTEND_URL): its protocol, user API and git routes.
    #[arg(long, env = LISTEN, default_value = "127.0.0.1:3180")]
    pub listen: String,
    /// The URL jobs' pods reach the embedded queue at (they clone through its git route), e.g. http://executor-queue:3180 (default: http://EXECUTOR_LISTEN, when that is a specific address).
    #[arg(long, env = ADVERTISE_URL)]
    pub advertise_url: Option<String>,
    /// Where the embedded queue keeps its database and `executor serve` its address file (default: $XDG_STATE_HOME/executor, else ~/.local/state/executor).
    #[arg(long, env = DATA_DIR)]
    pub data_dir: Option<String>,
    /// How long the embedded queue keeps a job that ended, with its log (0: for ever).
    #[arg(long, env = RETENTION, default_value = "30d")]
    pub job_retention: String,
    /// Token of the embedded queue's user API (default: generated at first start, kept in the data directory's serve.json, where the commands read it; never printed).
    #[arg(long, env = API_TOKEN, hide_env_values = true)]
    pub api_token: Option<String>,
}

/// The embedded queue (used when there is no `EXECUTOR_FRONTEND_URL`).
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedConfig {
    /// Where it listens.
    pub listen: std::net::SocketAddr,
    /// Where jobs' pods reach it, when that is not the listen address.
    pub advertise_url: Option<url::Url>,
    /// Its database and the address file; `None` when neither
    /// `EXECUTOR_DATA_DIR` nor a home directory says where (only `serve`
    /// and the user commands need one, and they say so).
    pub data_dir: Option<PathBuf>,
    /// The user API token, when configured.
    pub api_token: Option<String>,
    /// How long ended jobs are kept; `None`: for ever.
    pub retention: Option<std::time::Duration>,
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
        let advertise_text = self
            .advertise_url
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let advertise_url = advertise_text.map(|text| {
            let url = url::Url::parse(text.trim()).map_err(|e| {
                format!("{text:?} is not a URL ({e}); expected one such as http://executor-queue:3180")
            })?;
            let usable = matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some()
                && !url.host_str().is_some_and(|h| h == "0.0.0.0" || h == "[::]");
            if usable {
                Ok(url)
            } else {
                Err(format!(
                    "{text:?} is not a URL pods can connect to; expected http(s)://HOST[:PORT] such as http://executor-queue:3180"
                ))
            }
        });
        let advertise_url = match advertise_url {
            None => Some(None),
            Some(result) => c.check(ADVERTISE_URL, result).map(Some),
        };
        let retention = c.check(
            RETENTION,
            super::parse::duration_in(
                &self.job_retention,
                std::time::Duration::ZERO..=super::parse::YEAR * 10,
            ),
        );
        let data_dir = match self.data_dir.as_deref().map(str::trim) {
            Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
            _ => default_data_dir().ok(),
        };
        Some(EmbeddedConfig {
            listen: listen?,
            advertise_url: advertise_url?,
            retention: retention.filter(|d| !d.is_zero()),
            data_dir,
            api_token: self.api_token.clone().filter(|t| !t.trim().is_empty()),
        })
    }
}

impl EmbeddedConfig {
    /// The variable that sets [`EmbeddedConfig::listen`], for messages that
    /// tell an operator what to change.
    pub const LISTEN_VARIABLE: &'static str = LISTEN;

    /// Why jobs' pods could not reach the queue at the URL they would be
    /// given: listening on every interface names no address to connect to.
    pub(super) fn check_reachable(&self, c: &mut Checker) {
        if self.advertise_url.is_none() && self.listen.ip().is_unspecified() {
            c.problem(
                ADVERTISE_URL,
                format!(
                    "not set, and {LISTEN} is {}, which jobs' pods cannot connect to (they clone through the queue); expected the URL they reach it at, such as http://executor-queue:{}",
                    self.listen,
                    self.listen.port()
                ),
            );
        }
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
