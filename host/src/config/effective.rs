//! The effective configuration as `executor config` shows it: every setting, its value (secrets masked) and where it came from; it reads clap's matches, never the environment.

use clap::parser::ValueSource;
use serde::Serialize;

use super::Config;
use super::embedded::DATA_DIR;
use super::environment::{Origin, origin};
use super::kubernetes::{ALIASES, CHECKED_DEFAULTS};
use super::ops::DEBUG_LISTEN;

/// What a masked value is shown as.
const MASKED: &str = "***";

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Not set: the executor's default (or none).
    Default,
    /// Its environment variable.
    Environment,
    /// Its flag.
    Flag,
}

impl Source {
    /// As the text table writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::Environment => "environment",
            Source::Flag => "flag",
        }
    }
}

/// One setting as it is in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    /// Its environment variable.
    pub variable: String,
    /// Its flag, `--...`.
    pub flag: String,
    /// Its value, masked when secret; `None`: unset, with no default.
    pub value: Option<String>,
    /// Where the value came from.
    pub source: Source,
    /// Whose name the variable is.
    pub origin: Origin,
    /// The other name the value was given under, when not the setting's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// Every setting of `command` (the arguments with an environment
/// variable), in the order of `--help`, with its value from `matches`.
/// With `config` (when valid), settings whose default depends on where the
/// executor runs show the value it worked out.
pub fn settings(
    command: &clap::Command,
    matches: &clap::ArgMatches,
    config: Option<&Config>,
) -> Vec<Setting> {
    let mut out: Vec<Setting> = command
        .get_arguments()
        .filter_map(|arg| {
            let variable = arg.get_env()?.to_string_lossy().into_owned();
            let id = arg.get_id().as_str();
            let value = matches
                .get_raw(id)
                .and_then(|mut v| v.next())
                .map(|v| v.to_string_lossy().into_owned());
            let source = match matches.value_source(id) {
                Some(ValueSource::EnvVariable) => Source::Environment,
                Some(ValueSource::CommandLine) => Source::Flag,
                _ => Source::Default,
            };
            let value = if arg.is_hide_env_values_set() {
                value.map(|_| MASKED.to_owned())
            } else {
                value.map(|v| without_password(&v))
            };
            Some(Setting {
                origin: origin(&variable),
                variable,
                flag: format!("--{}", arg.get_long().unwrap_or(id)),
                value,
                source,
                via: None,
            })
        })
        .collect();
    for (variable, default) in CHECKED_DEFAULTS {
        if let Some(s) = out.iter_mut().find(|s| s.variable == *variable)
            && s.value.is_none()
        {
            s.value = Some((*default).to_owned());
        }
    }
    for (alias, name) in ALIASES {
        let given = out
            .iter()
            .find(|s| s.variable == *alias && s.source != Source::Default)
            .map(|s| (s.value.clone(), s.source));
        if let (Some((value, source)), Some(s)) =
            (given, out.iter_mut().find(|s| s.variable == *name))
            && s.source == Source::Default
        {
            s.value = value;
            s.source = source;
            s.via = Some((*alias).to_owned());
        }
    }
    if let Some(config) = config {
        worked_out(&mut out, config);
    }
    out
}

/// The defaults that depend on where the executor runs.
fn worked_out(settings: &mut [Setting], config: &Config) {
    for s in settings.iter_mut().filter(|s| s.source == Source::Default) {
        if s.variable == DEBUG_LISTEN {
            s.value = Some(match config.ops.listen {
                Some(addr) => addr.to_string(),
                None => "off".to_owned(),
            });
        } else if s.variable == DATA_DIR {
            s.value = config
                .embedded
                .data_dir
                .as_ref()
                .map(|d| d.display().to_string());
        }
    }
}

/// `value` with the password of a URL masked (`https://user:***@host`).
fn without_password(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some(MASKED));
            url.to_string()
        }
        _ => value.to_owned(),
    }
}
