//! `executor plugin check|run|filter|test|bench|new`: what a plugin author uses to try a component before shipping it.

mod bench;
mod cases;
mod scaffold;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{EXIT_BAD_INPUT, Output};
use crate::plugins::{
    AdmissionOutcome, Decision, JobContext, LogRecord, PluginSpec, Plugins, PluginsConfig, Runtime,
    RuntimeOptions, Step, Stream,
};

#[derive(Debug, Subcommand)]
pub(super) enum PluginCommand {
    /// Load a component: name its hooks, size and compile time, and run `init` with the settings.
    Check(CheckArgs),
    /// Run the admission hook(s) on a batch/v1 Job; print the decision, the Job and each plugin's patch.
    Run(RunArgs),
    /// Filter a log (a file or stdin), line by line, through the log hook(s); print what is kept.
    Filter(FilterArgs),
    /// Run the cases of test files (`*.test.yaml`): a verdict per case, exit 1 if any fails.
    Test(cases::TestArgs),
    /// Write a new plugin project (Rust, Python or JavaScript) that builds and passes its own tests.
    New(scaffold::NewArgs),
    /// Time the hook(s) on a Job or a log: per-call percentiles, fresh instances apart, log throughput.
    Bench(bench::BenchArgs),
}

#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    /// A component (`.wasm`), or a plugin configuration file (`.yaml`/`.yml`) to check all its plugins.
    file: PathBuf,
    /// Settings for `init` of a single component: JSON or YAML text, or `@path` to read them from a file.
    #[arg(long)]
    settings: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Debug, Args)]
pub(super) struct Target {
    /// A component (`.wasm`), or a plugin configuration file (`.yaml`/`.yml`) to run all its plugins in order.
    target: PathBuf,
    /// Settings for a single component: JSON or YAML text, or `@path`.
    #[arg(long)]
    settings: Option<String>,
}

#[derive(Debug, Args)]
pub(super) struct ContextArgs {
    /// The queue in the context given to plugins.
    #[arg(long, default_value = "batches")]
    queue: String,
    /// The job id in the context.
    #[arg(long, default_value = "1")]
    job_id: String,
    /// The repository in the context.
    #[arg(long)]
    repository: Option<String>,
    /// The commit in the context.
    #[arg(long)]
    commit: Option<String>,
}

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// The batch/v1 Job document (JSON or YAML).
    #[arg(long)]
    job: PathBuf,
    #[command(flatten)]
    context: ContextArgs,
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Debug, Args)]
pub(super) struct FilterArgs {
    #[command(flatten)]
    target: Target,
    /// The log file; standard input when absent.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Lines that start with this text are given to the plugins as stderr
    /// lines (without it), the rest as stdout; kept stderr lines are printed
    /// with it again. E.g. `--stderr-prefix 'E '`.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    stderr_prefix: Option<String>,
    /// The log entry the lines belong to, as plugins see it.
    #[arg(long, default_value = "step.kubernetes.step.0.run")]
    entry: String,
    /// Lines per call into the plugins.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_lines: u32,
    #[command(flatten)]
    context: ContextArgs,
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: Output,
}

pub(super) fn run(cmd: PluginCommand) -> ExitCode {
    let output = match &cmd {
        PluginCommand::Check(a) => a.output,
        PluginCommand::Run(a) => a.output,
        PluginCommand::Filter(a) => a.output,
        PluginCommand::Test(a) => a.output(),
        PluginCommand::New(_) => Output::Text,
        PluginCommand::Bench(a) => a.output,
    };
    let result = match cmd {
        PluginCommand::Check(args) => check(args),
        PluginCommand::Run(args) => admit(args),
        PluginCommand::Filter(args) => filter(args),
        PluginCommand::Test(args) => cases::test(args),
        PluginCommand::New(args) => scaffold::new(args),
        PluginCommand::Bench(args) => bench::bench(args),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`| head`): nothing is wrong with the input,
        // and nobody is left to tell.
        Err(err) if closed_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            if output == Output::Json {
                println!("{}", json!({ "error": format!("{err:#}") }));
            }
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Whether `err` is a write to a pipe whose reader has gone.
fn closed_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `result` of writing the output, with a closed pipe counted as success:
/// the command's own status (a denial's 1) still stands.
fn written(result: anyhow::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(err) if closed_pipe(&err) => Ok(()),
        other => other,
    }
}

/// Parses `--settings`: inline JSON/YAML, or `@file`.
fn parse_settings(raw: &str) -> anyhow::Result<Value> {
    let (text, origin) = match raw.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("--settings: cannot read {path}"))?,
            path.to_owned(),
        ),
        None => (raw.to_owned(), "the argument".to_owned()),
    };
    serde_norway::from_str::<Value>(&text)
        .with_context(|| format!("--settings: {origin} is not valid JSON or YAML"))
}

fn runtime(cache: bool) -> anyhow::Result<std::sync::Arc<Runtime>> {
    let options = RuntimeOptions {
        max_instances: 64,
        cache_dir: if cache {
            crate::plugins::default_cache_dir()
        } else {
            None
        },
    };
    Ok(Runtime::new(&options)?)
}

/// A plugin name from a file name: `scheduling_policy.wasm` → `scheduling-policy`.
fn name_from_path(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin");
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "plugin".into()
    } else {
        name.chars().take(63).collect()
    }
}

fn is_config(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// The plugins of `file` (`--settings` for a single component), every
/// problem of a configuration file reported at once; `cache` uses the
/// compiled-plugin cache.
fn load_target(file: &Path, settings: Option<&str>, cache: bool) -> anyhow::Result<Plugins> {
    if is_config(file) {
        if settings.is_some() {
            bail!(
                "--settings applies to a single .wasm file; put settings in {}",
                file.display()
            );
        }
        return Ok(Plugins::load_file(runtime(cache)?, file)?);
    }
    let mut spec = PluginSpec::new(name_from_path(file), file);
    if let Some(raw) = settings {
        spec.settings = parse_settings(raw)?;
    }
    let config = PluginsConfig {
        plugins: vec![spec],
    };
    Ok(Plugins::load(runtime(cache)?, &config)?)
}

fn load(target: &Target) -> anyhow::Result<Plugins> {
    load_target(&target.target, target.settings.as_deref(), true)
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    // No cache: the compile time printed is the real one.
    let plugins = load_target(&args.file, args.settings.as_deref(), false)?;
    let infos = plugins.info();
    if infos.is_empty() && !is_config(&args.file) {
        bail!("{} was not loaded", args.file.display());
    }
    let mut out = std::io::stdout().lock();
    written((|| -> anyhow::Result<()> {
        match args.output {
            Output::Json => {
                let mut values = Vec::new();
                for info in &infos {
                    let mut value = serde_json::to_value(info)?;
                    value["settingsAccepted"] = json!(true);
                    values.push(value);
                }
                let doc = if is_config(&args.file) {
                    json!({ "plugins": values, "skipped": plugins.skipped() })
                } else {
                    values.pop().unwrap_or_default()
                };
                writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
            }
            Output::Text => {
                for (i, info) in infos.iter().enumerate() {
                    if i > 0 {
                        writeln!(out)?;
                    }
                    write_info(
                        &mut out,
                        info,
                        args.settings.is_some() || is_config(&args.file),
                    )?;
                }
                for skipped in plugins.skipped() {
                    writeln!(out, "skipped (failurePolicy ignore): {skipped}")?;
                }
            }
        }
        Ok(())
    })())?;
    Ok(ExitCode::SUCCESS)
}

fn write_info(
    out: &mut dyn Write,
    info: &crate::plugins::PluginInfo,
    settings_given: bool,
) -> std::io::Result<()> {
    writeln!(out, "plugin:   {}", info.name)?;
    writeln!(out, "path:     {}", info.path.display())?;
    writeln!(out, "size:     {} bytes", info.size_bytes)?;
    writeln!(out, "sha256:   {}", info.sha256)?;
    writeln!(out, "hooks:    {}", info.hooks.join(", "))?;
    writeln!(out, "contract: executor:plugin@{}", info.contract)?;
    writeln!(
        out,
        "compile:  {:.1} ms",
        info.compile_time.as_secs_f64() * 1000.0
    )?;
    writeln!(
        out,
        "settings: {}",
        if settings_given {
            "accepted by init"
        } else {
            "none given; init accepted null"
        }
    )
}

fn context(args: &ContextArgs, job: &Value) -> JobContext {
    let pod = &job["spec"]["template"]["spec"];
    let images = |key: &str| -> Vec<(String, String)> {
        pod[key]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap_or("").to_owned(),
                            c["image"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let init = images("initContainers");
    // The executor's steps are the `step-*` init containers; for any other
    // Job, every container counts.
    let steps: Vec<String> = init
        .iter()
        .filter(|(n, _)| n.starts_with("step-"))
        .map(|(_, i)| i.clone())
        .collect();
    let step_images = if steps.is_empty() {
        init.into_iter()
            .chain(images("containers"))
            .map(|(_, i)| i)
            .collect()
    } else {
        steps
    };
    JobContext {
        job_id: args.job_id.clone(),
        queue: args.queue.clone(),
        repository: args.repository.clone(),
        commit: args.commit.clone(),
        step_images,
        executor_name: "executor-cli".into(),
    }
}

fn read_job(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--job: cannot read {}", path.display()))?;
    let job: Value = serde_norway::from_str(&text)
        .with_context(|| format!("--job: {} is not valid JSON or YAML", path.display()))?;
    check_job(&job, &format!("--job: {}", path.display()))?;
    Ok(job)
}

/// Refuses what is not a valid batch/v1 Job, naming it by `origin`.
fn check_job(job: &Value, origin: &str) -> anyhow::Result<()> {
    match job.get("kind").and_then(Value::as_str) {
        // Checked as each plugin's result will be, so that no plugin is
        // blamed for what was wrong with the input.
        Some("Job") => match crate::k8s::spec::validate(&job.to_string()) {
            Ok(()) => Ok(()),
            Err(e) => bail!("{origin}: {e}"),
        },
        Some(other) => bail!("{origin} is a {other}; expected a batch/v1 Job"),
        None => bail!("{origin} has no `kind`; expected a batch/v1 Job document"),
    }
}

fn admit(args: RunArgs) -> anyhow::Result<ExitCode> {
    let job = read_job(&args.job)?;
    let plugins = load(&args.target)?;
    let ctx = context(&args.context, &job);
    let outcome = plugins.admit(&ctx, job, &crate::k8s::spec::ApiServer);
    let allowed = outcome.allowed();
    let mut out = std::io::stdout().lock();
    written((|| -> anyhow::Result<()> {
        match args.output {
            Output::Json => {
                // Only plugins that changed something have a patch; a
                // denial's changes are discarded, so it has none.
                let patches: Vec<Value> = outcome
                    .trail
                    .iter()
                    .filter(|t| !t.patch.0.is_empty())
                    .map(|t| json!({"plugin": t.plugin, "patch": t.patch}))
                    .collect();
                let doc = json!({
                    "allowed": allowed,
                    "message": outcome.message(),
                    "warnings": outcome.warnings,
                    "job": outcome.job,
                    "patches": patches,
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
            }
            Output::Text => {
                write_trail(&mut out, &outcome)?;
                // A refused Job is never created: printing it would only
                // bury the reason.
                if allowed {
                    writeln!(out, "---")?;
                    write!(out, "{}", serde_norway::to_string(&outcome.job)?)?;
                }
            }
        }
        Ok(())
    })())?;
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What each plugin did, its patch, the warnings and the decision, for people.
pub(super) fn write_trail(out: &mut dyn Write, outcome: &AdmissionOutcome) -> std::io::Result<()> {
    let width = outcome
        .trail
        .iter()
        .map(|t| t.plugin.len())
        .max()
        .unwrap_or(0);
    for t in &outcome.trail {
        let what = match &t.step {
            Step::Allowed => "allowed".to_owned(),
            Step::Mutated => format!("mutated ({} operation(s))", t.patch.0.len()),
            Step::Denied { message } => format!("denied: {message}"),
            Step::Failed { error, ignored } => {
                format!(
                    "failed{}: {error}",
                    if *ignored { " (ignored)" } else { "" }
                )
            }
        };
        let mode = if t.mode == crate::plugins::Mode::Monitor {
            " [monitor]"
        } else {
            ""
        };
        writeln!(
            out,
            "{:width$}  {what}{mode}  ({:.2} ms)",
            t.plugin,
            t.elapsed.as_secs_f64() * 1000.0
        )?;
        for op in &t.patch.0 {
            writeln!(out, "{:width$}    {}", "", serde_json::to_string(op)?)?;
        }
    }
    for w in &outcome.warnings {
        writeln!(out, "warning: {w}")?;
    }
    match &outcome.decision {
        Decision::Allowed => writeln!(out, "decision: allowed")?,
        _ => writeln!(
            out,
            "decision: refused: {}",
            outcome.message().unwrap_or_default()
        )?,
    }
    Ok(())
}

fn filter(args: FilterArgs) -> anyhow::Result<ExitCode> {
    let plugins = load(&args.target)?;
    let input: Box<dyn BufRead> = match &args.log {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path)
                .with_context(|| format!("--log: cannot open {}", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let ctx = context(&args.context, &Value::Null);
    let mut session = plugins.log_session(ctx);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut batch = Vec::with_capacity(args.batch_lines as usize);
    let mut lines = input.split(b'\n');
    let prefix = args.stderr_prefix.as_deref();
    let mut emit = |batch: Vec<LogRecord>, out: &mut dyn Write| -> anyhow::Result<bool> {
        match session.filter(&args.entry, batch) {
            Ok(kept) => {
                for r in kept {
                    match args.output {
                        Output::Text => match (r.stream, prefix) {
                            (Stream::Stderr, Some(prefix)) => writeln!(out, "{prefix}{}", r.text)?,
                            _ => writeln!(out, "{}", r.text)?,
                        },
                        Output::Json => writeln!(
                            out,
                            "{}",
                            json!({"stream": if r.stream == Stream::Stderr { "stderr" } else { "stdout" }, "text": r.text})
                        )?,
                    }
                }
                Ok(true)
            }
            Err(err) => {
                out.flush()?;
                eprintln!("error: {err}; the rest of the log is withheld");
                Ok(false)
            }
        }
    };
    loop {
        let line = lines.next().transpose().context("cannot read the log")?;
        let done = line.is_none();
        if let Some(mut bytes) = line {
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
            let text = String::from_utf8_lossy(&bytes);
            batch.push(match prefix.and_then(|p| text.strip_prefix(p)) {
                Some(rest) => LogRecord {
                    stream: Stream::Stderr,
                    text: rest.to_owned(),
                },
                None => LogRecord {
                    stream: Stream::Stdout,
                    text: text.into_owned(),
                },
            });
        }
        let full = (done && !batch.is_empty()) || batch.len() >= args.batch_lines as usize;
        if full && !emit(std::mem::take(&mut batch), &mut out)? {
            return Ok(ExitCode::FAILURE);
        }
        if done {
            break;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
