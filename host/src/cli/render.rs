//! `executor render`: the objects a job would create, after the admission plugins, printed before anything touches a cluster.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::EXIT_BAD_INPUT;
use crate::config::RawConfig;
use crate::k8s::spec::{self, Inputs};
use crate::plugins::{Plugins, Runtime, RuntimeOptions};

/// How `render` prints the List.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Format {
    /// YAML, as `kubectl get -o yaml` prints it.
    Yaml,
    /// JSON.
    Json,
}

#[derive(Debug, Args)]
pub(super) struct RenderArgs {
    /// The job payload (JSON, as the queue's dequeue returns it).
    #[arg(long)]
    job: PathBuf,
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    output: Format,
    /// Print Secret values instead of their sizes.
    #[arg(long)]
    show_secrets: bool,
    /// The executor name in labels and plugin context (default: `<hostname>-<uuid>`).
    #[arg(long)]
    executor_name: Option<String>,
    #[command(flatten)]
    pub(super) config: RawConfig,
}

pub(super) fn run(args: RenderArgs) -> ExitCode {
    match render(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn render(args: RenderArgs) -> anyhow::Result<ExitCode> {
    let Some(super::JobInput {
        config,
        payload,
        queue,
    }) = super::read_job(&args.config, &args.job, None)?
    else {
        return Ok(ExitCode::from(EXIT_BAD_INPUT));
    };
    let executor_name = args
        .executor_name
        .clone()
        .unwrap_or_else(crate::config::executor_name);
    let inputs = Inputs {
        config: &config.kubernetes,
        queue: &queue,
        executor_name: &executor_name,
        instance: &config.instance(),
        routes: config.queue.frontend_url.as_ref(),
    };
    let built = match spec::build(&inputs, &payload) {
        Ok(b) => b,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let objects = match &config.plugins_config {
        None => built,
        Some(path) => {
            let runtime = Runtime::new(&RuntimeOptions {
                max_instances: 64,
                cache_dir: crate::plugins::default_cache_dir(),
            })?;
            let plugins = Plugins::load_file(runtime, path)?;
            let ctx = spec::plugin_context(&inputs, &payload);
            let admission = spec::admit(&plugins, &ctx, built);
            let mut err = std::io::stderr().lock();
            super::plugin::write_trail(&mut err, &admission.outcome)?;
            match admission.result {
                Ok(admitted) => {
                    for path in &admitted.reverted {
                        writeln!(
                            err,
                            "warning: reverted a plugin's change to {path}: the executor owns it"
                        )?;
                    }
                    admitted.objects
                }
                Err(e) => {
                    writeln!(err, "error: {e}")?;
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    };
    let list = objects.to_list(args.show_secrets);
    let mut out = std::io::stdout().lock();
    match args.output {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?,
        Format::Yaml => write!(out, "{}", serde_norway::to_string(&list)?)?,
    }
    Ok(ExitCode::SUCCESS)
}
