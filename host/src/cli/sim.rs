//! `executor sim`: the cluster simulator on loopback, with a kubeconfig for `kubectl` and the executor.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Args)]
pub(super) struct SimArgs {
    /// Where to listen (loopback only); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// The nodes (YAML: `nodes: [{name, labels, taints, cpu, memory}]`, `missingImages: [...]`, `images: [{image: GLOB, command: /abs/path}]`); default: three nodes of 4 CPUs and 16Gi.
    #[arg(long)]
    nodes: Option<PathBuf>,
    /// Where to write a kubeconfig pointing at the simulator (namespace `default`, the admin's token; written 0600).
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS (tokens are still required; in-cluster clients, which expect HTTPS, will not connect).
    #[arg(long)]
    insecure_http: bool,
    /// Faults to inject from the start (YAML; see sim/README.md); change them at run time with `PUT /sim/faults`.
    #[arg(long)]
    faults: Option<PathBuf>,
}

pub(super) fn run(args: SimArgs) -> ExitCode {
    super::block_on(async {
        serve(args).await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn serve(args: SimArgs) -> anyhow::Result<()> {
    let mut options = sim::Options {
        insecure_http: args.insecure_http,
        ..sim::Options::default()
    };
    if let Some(path) = &args.nodes {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--nodes: cannot read {}", path.display()))?;
        let file = sim::cluster::NodesFile::load(&text)
            .map_err(|e| anyhow::anyhow!("--nodes {}: {e}", path.display()))?;
        options.nodes = file.node_objects();
        options.missing_images = file.missing_images;
        options.images = file.images;
    }
    if let Some(path) = &args.faults {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--faults: cannot read {}", path.display()))?;
        options.faults = serde_norway::from_str(&text)
            .with_context(|| format!("--faults {}: not a fault configuration", path.display()))?;
    }
    // SIGTERM too, as a service manager or `kill` stops it: either way the
    // simulator is dropped, and its kubelet removes its directory of pod
    // volumes (which holds ServiceAccount tokens) and stops its containers.
    // Both are caught from here on, before anything says it runs.
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let sim = sim::Sim::start(args.listen, options).await?;
    if let Some(path) = &args.kubeconfig_out {
        sim.write_kubeconfig(path)
            .with_context(|| format!("--kubeconfig-out: cannot write {}", path.display()))?;
        eprintln!("kubeconfig written to {}", path.display());
    }
    eprintln!("cluster simulator serving {} (Ctrl-C to stop)", sim.url());
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    drop(sim);
    Ok(())
}
