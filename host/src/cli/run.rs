//! `executor run --job <payload.json>`: one job on the configured cluster without a queue, its log live on stdout, its outcome on stderr and in the exit status.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::EXIT_BAD_INPUT;
use crate::config::RawConfig;
use crate::job::log::LogEvent;
use crate::job::{Runner, Settings};
use crate::k8s::{cleanup, client};

/// Exit status when the job failed and a retry may succeed (an
/// infrastructure failure: `markErrored`).
pub const EXIT_ERRORED: u8 = 3;

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// The job payload (JSON, as the queue's dequeue returns it).
    #[arg(long)]
    job: PathBuf,
    /// The queue the job belongs to (default: the payload's, else the configured one, else `default`).
    #[arg(long)]
    queue: Option<String>,
    #[command(flatten)]
    pub(super) config: RawConfig,
}

pub(super) fn run(args: RunArgs) -> ExitCode {
    super::block_on(execute(args))
}

async fn execute(args: RunArgs) -> anyhow::Result<ExitCode> {
    let Some(super::JobInput {
        config,
        payload,
        queue,
    }) = super::read_job(&args.config, &args.job, args.queue.as_deref())?
    else {
        return Ok(ExitCode::from(EXIT_BAD_INPUT));
    };
    let plugins = super::job_plugins(config.plugins_config.clone(), 1).await?;
    let client = client::client(
        config.kubernetes.config_path.as_deref(),
        &config.kubernetes.api,
    )
    .await?;
    let executor_name = crate::config::executor_name();
    let claimed = crate::instance::Instance::claim(&config)?;
    let instance = &claimed.name;
    match cleanup::sweep(
        &client,
        &config.kubernetes.namespace,
        instance,
        &executor_name,
    )
    .await
    {
        Ok(swept) if !swept.jobs.is_empty() || !swept.secrets.is_empty() => eprintln!(
            "deleted {} Job(s) and {} Secret(s) left by an earlier run of {instance}",
            swept.jobs.len(),
            swept.secrets.len()
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: {e}"),
    }
    let routes = config.queue.frontend_url.clone();
    let runner = Runner::new(
        client,
        Settings::new(&config, routes).for_instance(&claimed),
        Arc::new(plugins),
        executor_name,
    );

    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: cancelling the job");
            on_signal.cancel();
        }
    });
    let (events, mut received) = mpsc::channel(256);
    let printer = tokio::spawn(async move {
        let mut keys = BTreeMap::new();
        while let Some(event) = received.recv().await {
            print(&mut keys, event);
        }
    });
    // The job's span inside the executor's, as `serve` has them.
    let job_span = crate::job::executor_span(runner.executor_name())
        .in_scope(|| crate::job::span(&queue, payload.id));
    let report = runner
        .run(&queue, &payload, events, cancel)
        .instrument(job_span)
        .await;
    let _ = printer.await;
    if let Err(e) = &report.teardown {
        eprintln!("warning: {e}");
    }
    eprintln!("{}: {}", report.job, report.outcome.message());
    Ok(match report.outcome {
        crate::k8s::outcome::Outcome::Succeeded => ExitCode::SUCCESS,
        o if o.permanent() => ExitCode::FAILURE,
        _ => ExitCode::from(EXIT_ERRORED),
    })
}

fn print(keys: &mut BTreeMap<usize, String>, event: LogEvent) {
    match event {
        LogEvent::Opened { entry, key, .. } => {
            eprintln!("==> {key}");
            keys.insert(entry, key);
        }
        LogEvent::Lines { records, .. } => {
            let mut out = std::io::stdout().lock();
            for r in records {
                let _ = writeln!(out, "{}", r.text);
            }
            let _ = out.flush();
        }
        LogEvent::Closed {
            entry,
            exit_code,
            duration,
        } => {
            let key = keys.get(&entry).map(String::as_str).unwrap_or("?");
            eprintln!(
                "<== {key}: exit code {exit_code} after {}",
                humantime::format_duration(std::time::Duration::from_millis(
                    duration.as_millis() as u64
                ))
            );
        }
    }
}
