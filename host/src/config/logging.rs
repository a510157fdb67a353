//! The logging section: level and format from Sourcegraph's `SRC_LOG_LEVEL` and `SRC_LOG_FORMAT`, or a `RUST_LOG` filter; it checks these variables only and installs nothing (`cli` does).

use clap::Args;

use super::check::{Checker, Problem};

const LOG_LEVEL: &str = "SRC_LOG_LEVEL";
const LOG_FORMAT: &str = "SRC_LOG_FORMAT";
const RUST_LOG: &str = "RUST_LOG";

/// Sourcegraph's level names (`sourcegraph/log`), each with the long form
/// an operator may also write, and the `tracing` level it means. `crit`
/// has no level of its own in `tracing`: it is `error`.
const LEVELS: &[(&str, &str, tracing::Level)] = &[
    ("dbug", "debug", tracing::Level::DEBUG),
    ("info", "info", tracing::Level::INFO),
    ("warn", "warning", tracing::Level::WARN),
    ("eror", "error", tracing::Level::ERROR),
    ("crit", "critical", tracing::Level::ERROR),
];

/// The logging settings as text, from a flag or else its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct RawLogging {
    /// Level of the executor's log, as Sourcegraph's executors take it: dbug, info, warn, eror or crit (default: info for `serve`, warn for the other commands). RUST_LOG, when set, wins.
    #[arg(long, env = LOG_LEVEL)]
    pub log_level: Option<String>,
    /// Format of the executor's log on stderr: json (one object per line, with the executor name, job id and queue as fields), logfmt, condensed (one short line per event), or text (the default: for a terminal).
    #[arg(long, env = LOG_FORMAT)]
    pub log_format: Option<String>,
    /// A `tracing` filter (`info,executor::k8s=debug`): levels per module; wins over SRC_LOG_LEVEL.
    #[arg(long = "log-filter", env = RUST_LOG)]
    pub rust_log: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `tracing`'s full text format: for a terminal.
    #[default]
    Text,
    /// One JSON object per line, span fields at the top level: for a cluster's log pipeline.
    Json,
    /// `key=value` pairs, one line per event.
    Logfmt,
    /// One short line per event (`tracing`'s compact format).
    Condensed,
}

/// What the log shows: a filter for `tracing` and a format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoggingConfig {
    /// The level from `SRC_LOG_LEVEL`; `None`: the command's default.
    pub level: Option<tracing::Level>,
    /// The `RUST_LOG` directives, which win over `level`.
    pub filter: Option<String>,
    /// The format.
    pub format: LogFormat,
}

impl LoggingConfig {
    /// The `tracing` filter directives: `RUST_LOG` when set, else the
    /// level (`SRC_LOG_LEVEL`, else `default`). Plugins' own messages stay
    /// visible at `debug` unless `SRC_LOG_LEVEL` asks for warnings or less,
    /// so that plugin authors see what their plugin says.
    pub fn directives(&self, default: tracing::Level) -> String {
        if let Some(filter) = &self.filter {
            return filter.clone();
        }
        let (level, plugins) = match self.level {
            // Each command's default keeps plugins' messages, even where
            // the executor's own are only warnings (`executor plugin run`).
            None => (default, default.max(tracing::Level::DEBUG)),
            Some(level) if level >= tracing::Level::INFO => {
                (level, level.max(tracing::Level::DEBUG))
            }
            // An operator who asked for warnings or less gets just that.
            Some(level) => (level, level),
        };
        format!(
            "{},executor::plugins::host={}",
            level.as_str().to_lowercase(),
            plugins.as_str().to_lowercase()
        )
    }
}

impl RawLogging {
    /// The logging settings, or every problem with them. Logging starts
    /// before the rest of the configuration is checked, so this stands alone.
    pub fn resolve(&self) -> Result<LoggingConfig, Vec<Problem>> {
        let mut c = Checker::default();
        let config = self.check(&mut c);
        match c.finish() {
            Ok(()) => Ok(config),
            Err(e) => Err(e.0),
        }
    }

    /// Checks the logging settings; invalid ones are recorded in `c` and
    /// left at their defaults.
    pub(super) fn check(&self, c: &mut Checker) -> LoggingConfig {
        let level = c.optional(LOG_LEVEL, &self.log_level, level);
        let format = c
            .optional(LOG_FORMAT, &self.log_format, format)
            .unwrap_or_default();
        let filter = self
            .rust_log
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_owned);
        if let Some(f) = &filter
            && let Err(e) = tracing_subscriber::EnvFilter::builder().parse(f)
        {
            c.problem(
                RUST_LOG,
                format!("{f:?} is not a filter ({e}); expected directives such as info,executor::k8s=debug"),
            );
        }
        LoggingConfig {
            level,
            filter,
            format,
        }
    }
}

fn level(value: &str) -> Result<tracing::Level, String> {
    let lower = value.to_ascii_lowercase();
    LEVELS
        .iter()
        .find(|(short, long, _)| lower == *short || lower == *long)
        .map(|(_, _, level)| *level)
        .ok_or_else(|| {
            let names: Vec<&str> = LEVELS.iter().map(|(short, _, _)| *short).collect();
            format!(
                "{value:?} is not a log level; expected one of {}",
                names.join(", ")
            )
        })
}

fn format(value: &str) -> Result<LogFormat, String> {
    match value.to_ascii_lowercase().as_str() {
        "json" => Ok(LogFormat::Json),
        "logfmt" => Ok(LogFormat::Logfmt),
        "condensed" => Ok(LogFormat::Condensed),
        "text" => Ok(LogFormat::Text),
        _ => Err(format!(
            "{value:?} is not a log format; expected json, logfmt, condensed or text"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(level: Option<&str>, format: Option<&str>, rust_log: Option<&str>) -> RawLogging {
        RawLogging {
            log_level: level.map(str::to_owned),
            log_format: format.map(str::to_owned),
            rust_log: rust_log.map(str::to_owned),
        }
    }

    #[test]
    fn sourcegraphs_level_names_set_the_level_and_plugins_keep_their_debug_messages() {
        let info = raw(Some("info"), None, None).resolve().unwrap();
        assert_eq!(
            info.directives(tracing::Level::WARN),
            "info,executor::plugins::host=debug"
        );
        let warn = raw(Some("warn"), None, None).resolve().unwrap();
        assert_eq!(
            warn.directives(tracing::Level::INFO),
            "warn,executor::plugins::host=warn"
        );
        for (name, level) in [
            ("dbug", "debug"),
            ("eror", "error"),
            ("crit", "error"),
            ("ERROR", "error"),
        ] {
            let got = raw(Some(name), None, None).resolve().unwrap();
            assert!(
                got.directives(tracing::Level::INFO)
                    .starts_with(&format!("{level},")),
                "{name}"
            );
        }
        assert_eq!(
            raw(None, None, None)
                .resolve()
                .unwrap()
                .directives(tracing::Level::WARN),
            "warn,executor::plugins::host=debug",
            "unset: the command's default"
        );
    }

    #[test]
    fn rust_log_wins_over_src_log_level() {
        let both = raw(Some("eror"), None, Some("debug,kube=warn"))
            .resolve()
            .unwrap();
        assert_eq!(both.directives(tracing::Level::INFO), "debug,kube=warn");
    }

    #[test]
    fn sourcegraphs_formats_are_accepted() {
        for (name, format) in [
            ("json", LogFormat::Json),
            ("logfmt", LogFormat::Logfmt),
            ("condensed", LogFormat::Condensed),
            ("JSON", LogFormat::Json),
        ] {
            assert_eq!(
                raw(None, Some(name), None).resolve().unwrap().format,
                format
            );
        }
        assert_eq!(
            raw(None, None, None).resolve().unwrap().format,
            LogFormat::Text
        );
    }

    #[test]
    fn bad_values_are_all_named_with_what_was_expected() {
        let problems = raw(Some("verbose"), Some("xml"), Some("info,[{"))
            .resolve()
            .unwrap_err();
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.variable, p.message))
            .collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text[0].starts_with(
                "SRC_LOG_LEVEL: \"verbose\" is not a log level; expected one of dbug, info, warn, eror, crit"
            ),
            "{text:?}"
        );
        assert!(
            text[1].starts_with("SRC_LOG_FORMAT: \"xml\" is not a log format; expected json, logfmt, condensed or text"),
            "{text:?}"
        );
        assert!(text[2].starts_with("RUST_LOG: \"info,[{\""), "{text:?}");
    }
}
