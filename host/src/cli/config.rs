//! `executor config`: the effective configuration (every setting, its value with secrets masked, and where it came from), its warnings, and its problems with exit status 2, as `serve` would find them.

use std::io::Write;
use std::process::ExitCode;

use clap::{ArgMatches, Args, CommandFactory};

use super::{EXIT_BAD_INPUT, Output};
use crate::config::effective::{self, Setting};
use crate::config::{Config, RawConfig};

#[derive(Debug, Args)]
pub(super) struct ConfigArgs {
    /// How to print it: a table, or one JSON document `{"settings", "warnings", "problems"}`.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: Output,
    #[command(flatten)]
    pub(super) config: RawConfig,
}

/// The name of this subcommand, where `main` finds its matches.
pub(super) const NAME: &str = "config";

pub(super) fn run(args: ConfigArgs, matches: Option<&ArgMatches>) -> ExitCode {
    let checked = Config::from_raw(&args.config);
    let command = super::Cli::command();
    let settings = match (command.find_subcommand(NAME), matches) {
        (Some(sub), Some(m)) => effective::settings(sub, m, checked.as_ref().ok()),
        _ => Vec::new(),
    };
    let warnings = match &checked {
        Ok(config) => super::startup_warnings(config),
        Err(_) => super::environment_warnings(),
    };
    let problems: Vec<String> = match &checked {
        Ok(_) => Vec::new(),
        Err(e) => {
            e.0.iter()
                .map(|p| format!("{}: {}", p.variable, p.message))
                .collect()
        }
    };
    let printed = match args.output {
        Output::Text => print_table(&settings),
        Output::Json => print_json(&settings, &warnings, &problems),
    };
    if let Err(e) = printed {
        eprintln!("error: cannot write the configuration: {e}");
        return ExitCode::FAILURE;
    }
    if args.output == Output::Text {
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
    }
    match checked {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            super::fatal(&err.to_string());
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn print_table(settings: &[Setting]) -> std::io::Result<()> {
    let width = settings.iter().map(|s| s.variable.len()).max().unwrap_or(0);
    let value_width = settings
        .iter()
        .map(|s| shown(s).chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:width$}  {:11}  {:value_width$}  source",
        "variable", "whose", "value"
    )?;
    for s in settings {
        let source = match (&s.via, s.source) {
            (Some(via), source) => format!("{} ({via})", source.as_str()),
            (None, effective::Source::Flag) => format!("flag ({})", s.flag),
            (None, source) => source.as_str().to_owned(),
        };
        writeln!(
            out,
            "{:width$}  {:11}  {:value_width$}  {source}",
            s.variable,
            s.origin.as_str(),
            shown(s)
        )?;
    }
    out.flush()
}

/// A value as the table shows it: control characters escaped and cut to
/// 4 KiB, so that a variable cannot drive the terminal or flood it; unset
/// as `—`.
fn shown(s: &Setting) -> String {
    match &s.value {
        Some(v) => crate::plugins::text::printable(v),
        None => "—".to_owned(),
    }
}

fn print_json(
    settings: &[Setting],
    warnings: &[String],
    problems: &[String],
) -> std::io::Result<()> {
    let doc = serde_json::json!({
        "settings": settings,
        "warnings": warnings,
        "problems": problems,
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &doc)?;
    writeln!(out)?;
    out.flush()
}
