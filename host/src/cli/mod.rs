//! The `executor` command line: argument parsing and the commands' output; the only place (with `main`) that uses `anyhow`.

mod client;
mod config;
mod log;
mod plugin;
mod render;
mod run;
mod serve;
mod sim;
mod table;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// A Kubernetes-native job executor with sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "executor", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with plugins: check a component, try it on a Job or a log.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Print the Kubernetes objects a job would create (a v1 List), after the admission plugins.
    Render(Box<render::RenderArgs>),
    /// Run one job on the configured cluster, its log live on stdout; exit 0 on success, 1 failed, 3 errored.
    Run(Box<run::RunArgs>),
    /// Serve the cluster simulator on loopback: a Kubernetes API for kubectl and the executor.
    Sim(sim::SimArgs),
    /// Take jobs from Sourcegraph or the embedded queue and run them; with no configuration: the embedded queue, the simulator and the shipped plugins.
    Serve(Box<serve::ServeArgs>),
    /// Submit a job to the serving executor's embedded queue; prints its id.
    Submit(Box<client::SubmitArgs>),
    /// List the embedded queue's jobs.
    Jobs(client::JobsArgs),
    /// Show one job: state, admission trail and log entries.
    Show(client::ShowArgs),
    /// Print a job's log; with -f follow it until the job ends (non-zero status when it did not succeed).
    Logs(client::LogsArgs),
    /// Cancel a job: at once when it is queued, else through its executor within seconds (--wait waits for the end).
    Cancel(client::CancelArgs),
    /// Repositories the embedded queue's jobs may clone.
    #[command(subcommand)]
    Repos(client::ReposCommand),
    /// Print the effective configuration: every setting, its value (secrets masked) and where it came from; exit 2 with every problem when it is invalid.
    Config(Box<config::ConfigArgs>),
}

impl Command {
    /// The logging settings of a command that takes the configuration's
    /// flags; the others read them from the environment alone.
    fn logging(&self) -> Option<&crate::config::RawLogging> {
        match self {
            Command::Render(a) => Some(&a.config.logging),
            Command::Run(a) => Some(&a.config.logging),
            Command::Serve(a) => Some(&a.config.logging),
            Command::Config(a) => Some(&a.config.logging),
            _ => None,
        }
    }
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// One JSON document (JSON Lines for streams).
    Json,
}

/// Exit status for bad input (unreadable files, invalid configuration),
/// matching clap's status for bad arguments.
pub const EXIT_BAD_INPUT: u8 = 2;

/// Runs an async command on a multi-threaded runtime: its exit code, or
/// its error printed with [`EXIT_BAD_INPUT`].
fn block_on(command: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(err) => {
            fatal(&format!("{err:#}"));
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Where Kubernetes reads why a container ended (the default
/// `terminationMessagePath`), so that `kubectl describe pod` shows it.
const TERMINATION_LOG: &str = "/dev/termination-log";

/// Says why the process stops: on stderr, and in the termination message
/// when running in a pod.
fn fatal(message: &str) {
    eprintln!("error: {message}");
    termination_message(std::path::Path::new(TERMINATION_LOG), message);
}

/// Writes `message` (its first 4 KiB, what the kubelet keeps) to `path`
/// when the file exists: the kubelet makes it, and outside a pod nothing
/// should appear in `/dev`.
fn termination_message(path: &std::path::Path, message: &str) {
    use std::io::Write;
    const KEPT: usize = 4096;
    let Ok(mut file) = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
    else {
        return;
    };
    let mut end = message.len().min(KEPT);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    if let Err(e) = file.write_all(&message.as_bytes()[..end]) {
        tracing::warn!(error = %e, path = %path.display(), "cannot write the termination message");
    }
}

/// The plugins of a configuration file, or none, for the commands that run
/// jobs (`run`, `serve`), with an instance pool no load of `max_jobs` jobs
/// exhausts: each running job holds one instance per log plugin for its
/// whole life, and admission calls take one each on top. Loading compiles
/// and runs plugin code, so it runs on a blocking thread, not the runtime's.
async fn job_plugins(
    file: Option<std::path::PathBuf>,
    max_jobs: u32,
) -> anyhow::Result<crate::plugins::Plugins> {
    tokio::task::spawn_blocking(move || load_job_plugins(file.as_deref(), max_jobs)).await?
}

fn load_job_plugins(
    file: Option<&std::path::Path>,
    max_jobs: u32,
) -> anyhow::Result<crate::plugins::Plugins> {
    use crate::plugins::{Plugins, PluginsConfig, Runtime, RuntimeOptions};
    let read = file
        .map(|f| PluginsConfig::from_file_in_part(f).map(|read| (f, read)))
        .transpose()?;
    let per_job = read
        .as_ref()
        .map_or(0, |(_, (c, _))| c.plugins.len() as u32);
    let runtime = Runtime::new(&RuntimeOptions {
        max_instances: pool_size(max_jobs, per_job),
        cache_dir: crate::plugins::default_cache_dir(),
    })?;
    Ok(match read {
        Some((path, (config, problems))) => {
            Plugins::load_in_part(runtime, path, &config, problems)?
        }
        None => Plugins::none(runtime),
    })
}

/// Instances for `max_jobs` jobs holding one per plugin (an upper bound
/// on the log plugins), plus room for concurrent admission calls; at most
/// 10 000, as each reserves its memories' address space up front. Past
/// that an instantiation fails, and the plugin's failure policy decides.
fn pool_size(max_jobs: u32, plugins: u32) -> u32 {
    const ADMISSION_ROOM: u32 = 64;
    const MOST: u32 = 10_000;
    max_jobs
        .saturating_mul(plugins)
        .saturating_add(ADMISSION_ROOM)
        .min(MOST)
}

/// What `render` and `run` start from: the configuration, the job and its queue.
struct JobInput {
    config: crate::config::Config,
    payload: crate::payload::JobPayload,
    queue: String,
}

/// Reads the configuration and the job file. An invalid configuration is
/// printed (every problem) and gives `None`; warnings go to stderr. The
/// queue is `queue`, else the payload's, else the one configured, else
/// `default`.
fn read_job(
    raw: &crate::config::RawConfig,
    job: &std::path::Path,
    queue: Option<&str>,
) -> anyhow::Result<Option<JobInput>> {
    use anyhow::Context;
    let config = match crate::config::Config::from_raw(raw) {
        Ok(c) => c,
        Err(err) => {
            fatal(&err.to_string());
            return Ok(None);
        }
    };
    for warning in startup_warnings(&config) {
        eprintln!("warning: {warning}");
    }
    let text = std::fs::read_to_string(job)
        .with_context(|| format!("--job: cannot read {}", job.display()))?;
    let payload = crate::payload::JobPayload::parse(&text)
        .with_context(|| format!("--job {}", job.display()))?;
    let queue = queue
        .map(str::to_owned)
        .or_else(|| payload.queue.clone())
        .or_else(|| match config.queue.queue_names.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "default".to_owned());
    Ok(Some(JobInput {
        config,
        payload,
        queue,
    }))
}

/// Every environment variable any command reads, as clap declares them.
fn known_variables() -> Vec<String> {
    fn collect(command: &clap::Command, out: &mut Vec<String>) {
        out.extend(
            command
                .get_arguments()
                .filter_map(|a| Some(a.get_env()?.to_string_lossy().into_owned())),
        );
        for sub in command.get_subcommands() {
            collect(sub, out);
        }
    }
    let mut out = Vec::new();
    collect(&Cli::command(), &mut out);
    out.sort_unstable();
    out.dedup();
    out
}

/// Warnings about the environment alone: variables with the executor's
/// prefixes that it does not know or ignores.
fn environment_warnings() -> Vec<String> {
    let known = known_variables();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    crate::config::environment::process_warnings(&known)
}

/// Everything a command that runs jobs says at start: the configuration's
/// warnings, then the environment's.
fn startup_warnings(config: &crate::config::Config) -> Vec<String> {
    let mut out = config.warnings();
    out.extend(environment_warnings());
    out
}

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let from_environment;
    let logging = match cli.command.logging() {
        Some(l) => l,
        None => {
            from_environment = log::from_environment();
            &from_environment
        }
    };
    log::init(logging, matches!(cli.command, Command::Serve(_)));
    match cli.command {
        Command::Plugin(cmd) => plugin::run(cmd),
        Command::Render(args) => render::run(*args),
        Command::Run(args) => run::run(*args),
        Command::Sim(args) => sim::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Submit(args) => client::submit(*args),
        Command::Jobs(args) => client::jobs(args),
        Command::Show(args) => client::show(args),
        Command::Logs(args) => client::logs(args),
        Command::Cancel(args) => client::cancel(args),
        Command::Repos(cmd) => client::repos(cmd),
        Command::Config(args) => config::run(*args, matches.subcommand_matches(config::NAME)),
    }
}

/// Whether to colour stderr: only for a person at a terminal, and not when
/// `NO_COLOR` is set to anything (<https://no-color.org>); escape codes in a
/// CI log or a file are noise.
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_and_never_under_no_color() {
        use std::ffi::OsStr;
        assert!(colour(true, None));
        assert!(
            colour(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }

    #[test]
    fn the_instance_pool_holds_every_running_jobs_log_plugins_and_admission_room() {
        assert_eq!(pool_size(200, 4), 864);
        assert_eq!(pool_size(1, 0), 64);
        assert_eq!(pool_size(10_000, u32::MAX), 10_000);
    }

    #[test]
    fn the_termination_message_is_written_only_where_the_kubelet_made_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("termination-log");
        termination_message(&absent, "bad");
        assert!(!absent.exists(), "no file appears outside a pod");

        std::fs::write(&absent, "stale text from the last run").unwrap();
        let long = format!("EXECUTOR_MAXIMUM_NUM_JOBS: {}é", "x".repeat(4094));
        termination_message(&absent, &long);
        let written = std::fs::read_to_string(&absent).unwrap();
        assert!(written.starts_with("EXECUTOR_MAXIMUM_NUM_JOBS: xx"));
        assert!(
            written.len() <= 4096 && !written.contains("stale"),
            "{}",
            written.len()
        );
    }
}
