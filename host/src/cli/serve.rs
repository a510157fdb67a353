//! `executor serve`: the product. Takes jobs from Sourcegraph or the embedded queue and runs them on the configured cluster or the simulator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::EXIT_BAD_INPUT;
use super::client::AddressFile;
use crate::config::{Config, LogFormat, RawConfig};
use crate::embedded::{Embedded, EmbeddedOptions};
use crate::instance::Instance;
use crate::job::{Runner, Settings};
use crate::k8s::{cleanup, client};
use crate::ops::{self, LastAnswer, Readiness};
use crate::plugins::Current;
use crate::queue::client::{ClientOptions, QueueClient};
use crate::reload::{self, Reloader};
use crate::worker::{Worker, WorkerOptions};

/// The plugin configuration shipped in the repository, used when none is
/// configured and the binary runs from its checkout.
const SHIPPED_PLUGINS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/plugins.yaml");
/// The first-party plugins the shipped configuration loads.
const FIRST_PARTY: [&str; 4] = ["annotate", "scheduling-policy", "pull-secrets", "redact"];

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    #[command(flatten)]
    pub(super) config: RawConfig,
}

pub(super) fn run(args: ServeArgs) -> ExitCode {
    super::block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = match Config::from_raw(&args.config) {
        Ok(c) => c,
        Err(err) => {
            super::fatal(&err.to_string());
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let say = Say {
        plain: config.logging.format == LogFormat::Text,
    };
    for warning in super::startup_warnings(&config) {
        say.warn(&warning);
    }
    let shutdown = CancellationToken::new();
    let mut banner = Vec::new();
    let options = WorkerOptions::from_config(&config.queue);
    let readiness = Readiness::new(ops::readiness::window(
        options.poll_interval,
        options.heartbeat_interval,
    ));
    let reload_slot = ops::server::ReloadSlot::default();
    // Both ports are taken before anything else starts, and a busy one is
    // reported with the other's problem, so that one restart fixes both.
    let queue_listener = match config.queue.frontend_url {
        Some(_) => Ok(None),
        None => tokio::net::TcpListener::bind(config.embedded.listen)
            .await
            .map(Some)
            .map_err(|e| listen_error(config.embedded.listen, &e)),
    };
    let ops_server = start_ops(&config, &readiness, &reload_slot, &shutdown, &mut banner).await;
    let (queue_listener, ops_server) = match (queue_listener, ops_server) {
        (Ok(listener), Ok(ops)) => (listener, ops),
        (queue, ops) => {
            let problems: Vec<String> = [queue.err(), ops.err().map(|e| format!("{e:#}"))]
                .into_iter()
                .flatten()
                .collect();
            anyhow::bail!("{}", problems.join("\n"));
        }
    };
    let queue = start_queue(&mut config, queue_listener, &shutdown, &mut banner).await?;
    let (kube, _sim) = start_cluster(&config, readiness.api(), &mut banner).await?;
    let plugins = load_plugins(&config, &readiness, &shutdown, &mut banner).await?;
    if let Some(reloader) = &plugins.reloader {
        let _ = reload_slot.set(reloader.clone());
    }
    tokio::spawn(ops::ping::api_server(
        kube.clone(),
        readiness.api(),
        readiness.window() / 3,
        shutdown.clone(),
    ));

    let executor_name = crate::config::executor_name();
    let instance = Instance::claim(&config)?;
    sweep(&kube, &config, &instance, &executor_name).await;
    let client = QueueClient::new(ClientOptions {
        base: queue.base,
        password: queue.password,
        executor_name: executor_name.clone(),
        queues: config.queue.queue_names.clone(),
        multi_queue: config.queue.multi_queue,
        outage_limit: ClientOptions::DEFAULT_OUTAGE_LIMIT,
    })?
    .answers_to(readiness.queue());
    let routes = config.queue.frontend_url.clone();
    let runner = Arc::new(Runner::new(
        kube,
        Settings::new(&config, routes).for_instance(&instance),
        plugins.current,
        executor_name.clone(),
    ));

    say.info(&format!("executor {executor_name}"));
    for line in &banner {
        say.info(&format!("  {line}"));
    }
    if queue.server.is_some() && say.plain {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "executor".to_owned());
        eprintln!(
            "\nTry it (from another terminal):\n  id=$({exe} submit --image alpine:3 --secret API_KEY=hunter2 -- 'echo \"deploying with $API_KEY\"' 'echo done')\n  {exe} logs -f \"$id\"\n  {exe} show \"$id\"\n"
        );
    }

    let stop = CancellationToken::new();
    let hurry = CancellationToken::new();
    tokio::spawn(signals(
        stop.clone(),
        hurry.clone(),
        options.drain_timeout,
        say,
    ));
    let draining = stop.clone();
    let not_ready = readiness.clone();
    tokio::spawn(async move {
        draining.cancelled().await;
        not_ready.draining();
    });
    let summary = Worker::new(client, runner, options)
        .hurried_by(hurry)
        .run(stop)
        .instrument(crate::job::executor_span(&executor_name))
        .await;
    say.info(&format!(
        "stopped: {} taken, {} completed, {} failed, {} cancelled, {} errored, {} unreported",
        summary.taken,
        summary.completed,
        summary.failed,
        summary.cancelled,
        summary.errored,
        summary.unreported
    ));
    shutdown.cancel();
    for server in [queue.server, ops_server].into_iter().flatten() {
        let _ = server.await;
    }
    Ok(ExitCode::SUCCESS)
}

/// The operations port, bound before anything else starts so that probes
/// answer during start-up and a busy port stops the executor at once.
async fn start_ops(
    config: &Config,
    readiness: &Readiness,
    reload: &ops::server::ReloadSlot,
    shutdown: &CancellationToken,
    banner: &mut Vec<String>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    ops::metrics::install();
    let Some(addr) = config.ops.listen else {
        banner.push(format!(
            "ops:     off ({}=off)",
            crate::config::OpsConfig::VARIABLE
        ));
        return Ok(None);
    };
    let listener = ops::server::bind(addr).await?;
    let addr = listener.local_addr()?;
    banner.push(format!(
        "ops:     http://{addr} ({}, {}, {}, POST {})",
        ops::server::HEALTHZ,
        ops::server::READYZ,
        ops::server::METRICS,
        ops::server::RELOAD
    ));
    let (readiness, reload, stop) = (readiness.clone(), reload.clone(), shutdown.clone());
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = ops::server::serve(listener, readiness, reload, stop).await {
            tracing::error!(error = %e, "the operations port stopped");
        }
    })))
}

/// Where jobs come from: Sourcegraph's queue, or the embedded one.
struct Queue {
    base: url::Url,
    password: String,
    /// The embedded queue's server, until `shutdown`.
    server: Option<tokio::task::JoinHandle<()>>,
}

/// The queue: Sourcegraph's, or our own on EXECUTOR_LISTEN, which then
/// becomes the frontend the jobs clone through.
async fn start_queue(
    config: &mut Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: &CancellationToken,
    banner: &mut Vec<String>,
) -> anyhow::Result<Queue> {
    if let Some(url) = config.queue.frontend_url.clone() {
        banner.push(format!("queue:   {url} ({})", queues(config)));
        return Ok(Queue {
            base: url,
            password: config.queue.frontend_password.clone().unwrap_or_default(),
            server: None,
        });
    }
    let Some(dir) = config.embedded.data_dir.clone() else {
        anyhow::bail!(
            "EXECUTOR_DATA_DIR: not set, and neither XDG_STATE_HOME nor HOME is: the embedded queue needs a directory for its database"
        );
    };
    let dir = &dir;
    crate::embedded::private_dir(dir).context("EXECUTOR_DATA_DIR")?;
    let embedded = Embedded::open(EmbeddedOptions {
        db_path: dir.join("queue.db"),
        executor_password: config.queue.frontend_password.clone(),
        api_token: config.embedded.api_token.clone(),
        retention: config.embedded.retention,
        ..EmbeddedOptions::default()
    })?;
    let Some(listener) = listener else {
        anyhow::bail!("the embedded queue has no listener");
    };
    let addr = listener.local_addr()?;
    let url = url::Url::parse(&format!("http://{addr}"))?;
    AddressFile {
        url: url.to_string(),
        token: embedded.api_token().to_owned(),
    }
    .write(dir)?;
    // Where the token is, at every start, never the token itself: this
    // output is often a log, and the commands on this machine read the file.
    let generated = if config.embedded.api_token.is_none() {
        "generated, "
    } else {
        ""
    };
    banner.push(format!(
        "token:   the user API token is in {} ({generated}mode 0600; the commands read it there, elsewhere give --token)",
        dir.join(AddressFile::NAME).display(),
    ));
    if config.queue.queue_names.is_empty() {
        config.queue.queue_names = vec!["default".to_owned()];
    }
    banner.push(format!(
        "queue:   embedded at {url} ({}), database {}",
        queues(config),
        dir.join("queue.db").display()
    ));
    let password = embedded.executor_password().to_owned();
    // The pods clone through this queue's git route, at the URL they reach it by.
    let routes = config
        .embedded
        .advertise_url
        .clone()
        .unwrap_or_else(|| url.clone());
    if routes != url {
        banner.push(format!("jobs reach the queue at {routes}"));
    }
    config.queue.frontend_url = Some(routes);
    config.queue.frontend_password = Some(password.clone());
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        if let Err(e) = embedded.serve(listener, stop).await {
            tracing::error!(error = %e, "the embedded queue stopped");
        }
    });
    Ok(Queue {
        base: url,
        password,
        server: Some(server),
    })
}

/// Why the embedded queue cannot listen, and what to do: a busy port is
/// most often an executor already serving.
fn listen_error(addr: std::net::SocketAddr, e: &std::io::Error) -> String {
    let variable = crate::config::EmbeddedConfig::LISTEN_VARIABLE;
    let mut message = format!("{variable}: cannot listen on {addr}: {e}");
    if e.kind() == std::io::ErrorKind::AddrInUse {
        let mut other = addr;
        other.set_port(addr.port().wrapping_add(1).max(1));
        message.push_str(&format!(
            "; another `executor serve` may be running (its jobs: `executor jobs`). To serve beside it, pick another port: {variable}={other} scripts/serve (or --listen {other}; port 0 picks a free one)"
        ));
    }
    message
}

/// The cluster: the configured one, else the simulator (kept running as
/// long as the returned handle lives).
async fn start_cluster(
    config: &Config,
    answered: LastAnswer,
    banner: &mut Vec<String>,
) -> anyhow::Result<(kube::Client, Option<sim::Sim>)> {
    if uses_a_cluster(config) {
        let kube = client::observed(
            client::config(config.kubernetes.config_path.as_deref()).await?,
            &config.kubernetes.api,
            Some(answered),
        )?;
        banner.push(format!(
            "cluster: {} (namespace {})",
            config
                .kubernetes
                .config_path
                .as_deref()
                .map_or("in-cluster or default kubeconfig".to_owned(), |p| p
                    .display()
                    .to_string()),
            config.kubernetes.namespace
        ));
        return Ok((kube, None));
    }
    let sim = sim::Sim::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        sim::Options::default(),
    )
    .await?;
    let kubeconfig = config
        .embedded
        .data_dir
        .as_deref()
        .map_or_else(std::env::temp_dir, Path::to_path_buf)
        .join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)
        .with_context(|| format!("cannot write {}", kubeconfig.display()))?;
    banner.push(format!(
        "cluster: simulator at {} (no kubeconfig found); kubectl --kubeconfig {}",
        sim.url(),
        kubeconfig.display()
    ));
    let kube = client::observed(
        sim.kube_config().await?,
        &config.kubernetes.api,
        Some(answered),
    )?;
    Ok((kube, Some(sim)))
}

/// The plugin set in force, and what reloads it when it comes from a file.
struct LoadedPlugins {
    current: Current,
    reloader: Option<Arc<Reloader>>,
}

/// The plugins: the configured ones, else the shipped example chain. Those
/// of a file reload when it or a plugin file changes, on SIGHUP and on
/// `POST /-/reload`.
async fn load_plugins(
    config: &Config,
    readiness: &Readiness,
    shutdown: &CancellationToken,
    banner: &mut Vec<String>,
) -> anyhow::Result<LoadedPlugins> {
    let plugins_file = match &config.plugins_config {
        Some(path) => Some(path.clone()),
        None => shipped_plugins().await?,
    };
    // Taken before loading, so that a change made meanwhile is reloaded.
    let loaded = plugins_file
        .as_deref()
        .and_then(|path| reload::fingerprint(path).ok());
    let plugins = super::job_plugins(plugins_file.clone(), config.queue.maximum_num_jobs).await?;
    let names = reload::in_force(Some(readiness), &plugins);
    banner.push(match &plugins_file {
        Some(path) => format!("plugins: {} from {}", names.join(", "), path.display()),
        None => "plugins: none".to_owned(),
    });
    let current = Current::from(plugins);
    let reloader = plugins_file.map(|path| {
        let reloader = Arc::new(Reloader::new(
            current.clone(),
            path,
            loaded,
            Some(readiness.clone()),
        ));
        reloader.clone().spawn(shutdown.clone());
        reloader
    });
    Ok(LoadedPlugins { current, reloader })
}

/// Deletes what an earlier life of this executor left; a failure is only
/// logged, as the TTL and the next start remain.
async fn sweep(kube: &kube::Client, config: &Config, instance: &Instance, executor_name: &str) {
    match cleanup::sweep(
        kube,
        &config.kubernetes.namespace,
        &instance.name,
        executor_name,
    )
    .await
    {
        Ok(swept) if !swept.jobs.is_empty() => tracing::info!(
            jobs = swept.jobs.len(),
            secrets = swept.secrets.len(),
            "deleted what an earlier run of this executor left"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot sweep what an earlier run left"),
    }
}

/// SIGTERM or SIGINT: stop taking jobs and drain. A second one: cancel
/// the running jobs (their Jobs deleted) and hand them back to the queue,
/// which takes seconds; a third: exit at once.
async fn signals(stop: CancellationToken, hurry: CancellationToken, drain: Duration, say: Say) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    let mut next = async || {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        }
    };
    let first = next().await;
    say.info(&first_signal(first, drain));
    stop.cancel();
    let second = next().await;
    say.info(&format!(
        "{second} again: cancelling the running jobs and handing them back to the queue (again to exit at once, leaving them running)"
    ));
    hurry.cancel();
    let third = next().await;
    say.info(&format!("{third} a third time: exiting now"));
    std::process::exit(130);
}

/// What the first signal does, and how to cut it short.
fn first_signal(signal: &str, drain: Duration) -> String {
    format!(
        "{signal}: no more jobs; running ones may finish within {} ({}); again (Ctrl-C) to cancel them now and hand them back to the queue",
        humantime::format_duration(drain),
        crate::config::QueueConfig::DRAIN_TIMEOUT,
    )
}

/// Where `serve` says what it does: plain lines on stderr for a person
/// (the text log format), else log events in the log's own format, since a
/// cluster's log pipeline reads only those.
#[derive(Debug, Clone, Copy)]
struct Say {
    plain: bool,
}

impl Say {
    fn info(self, line: &str) {
        if self.plain {
            eprintln!("{line}");
        } else {
            tracing::info!("{}", line.trim_start());
        }
    }

    fn warn(self, line: &str) {
        if self.plain {
            eprintln!("warning: {line}");
        } else {
            tracing::warn!("{line}");
        }
    }
}

fn queues(config: &Config) -> String {
    let mode = if config.queue.multi_queue {
        "queues"
    } else {
        "queue"
    };
    format!("{mode} {}", config.queue.queue_names.join(", "))
}

/// A configured kubeconfig, a pod's service account or a default kubeconfig
/// means a real cluster; nothing means the simulator.
fn uses_a_cluster(config: &Config) -> bool {
    if config.kubernetes.config_path.is_some()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
    {
        return true;
    }
    std::env::var_os("HOME").is_some_and(|home| Path::new(&home).join(".kube/config").is_file())
}

/// The shipped plugin configuration, after building its plugins when they
/// are missing; `None` when the binary runs outside its checkout.
async fn shipped_plugins() -> anyhow::Result<Option<PathBuf>> {
    let Ok(file) = PathBuf::from(SHIPPED_PLUGINS).canonicalize() else {
        return Ok(None);
    };
    let workspace = file
        .parent()
        .and_then(Path::parent)
        .context("the shipped plugin configuration has no workspace around it")?;
    let built = workspace.join("target/wasm32-wasip2/release");
    if FIRST_PARTY.iter().all(|p| {
        built
            .join(format!("{}.wasm", p.replace('-', "_")))
            .is_file()
    }) {
        return Ok(Some(file));
    }
    eprintln!("building the first-party plugins (once) ...");
    let mut cargo = tokio::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
    cargo
        .current_dir(workspace)
        .args(["build", "--release", "--target", "wasm32-wasip2"]);
    for p in FIRST_PARTY {
        cargo.args(["-p", p]);
    }
    let status = cargo
        .status()
        .await
        .context("cannot run cargo to build the plugins")?;
    anyhow::ensure!(
        status.success(),
        "building the first-party plugins failed ({status}); build them with `cargo build --release --target wasm32-wasip2 -p annotate -p scheduling-policy -p pull-secrets -p redact`"
    );
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_queue_port_says_how_to_serve_beside_the_executor_that_holds_it() {
        let busy = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 3180));
        let message = listen_error(addr, &busy);
        assert!(
            message.starts_with("EXECUTOR_LISTEN: cannot listen on 127.0.0.1:3180")
                && message.contains("another `executor serve` may be running")
                && message.contains("EXECUTOR_LISTEN=127.0.0.1:3181 scripts/serve"),
            "{message}"
        );
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!listen_error(addr, &denied).contains("another"));
    }

    #[test]
    fn the_first_signal_says_how_long_the_drain_lasts_and_how_to_cut_it_short() {
        let message = first_signal("SIGINT", Duration::from_secs(300));
        assert!(
            message.contains("within 5m (EXECUTOR_DRAIN_TIMEOUT)")
                && message.contains("again (Ctrl-C) to cancel them now"),
            "{message}"
        );
    }
}
