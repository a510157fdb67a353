//! The official Python and JavaScript Kubernetes clients load the simulator's written kubeconfig as is (HTTPS, CA data, bearer token) and work: listing, creating and reading objects. `scripts/sim-clients` (run by `scripts/test`) installs both.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use sim::{Options, Sim};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn started() -> (Sim, tempfile::TempDir, PathBuf) {
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), Options::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    (sim, dir, kubeconfig)
}

/// Runs `program args`; its single JSON line of output.
async fn run_json(program: &Path, args: &[&Path], hint: &str) -> Value {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {} ({hint}): {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed: {}{}",
        program.display(),
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_lists_pods_and_creates_a_secret_over_tls() {
    let (_sim, _dir, kubeconfig) = started().await;
    let python = repo().join("target/sim-clients/venv/bin/python");
    let script = repo().join("sim/tests/clients/python_client.py");
    let answer = run_json(
        &python,
        &[&script, &kubeconfig, Path::new("default")],
        "scripts/sim-clients installs it",
    )
    .await;
    assert_eq!(answer["pods"], 0);
    assert_eq!(answer["createdName"], "from-python");
    assert_eq!(answer["password"], "s3cret");
    assert_eq!(answer["type"], "Opaque");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_client_reads_the_object_it_created() {
    let (_sim, _dir, kubeconfig) = started().await;
    let script = repo().join("sim/tests/clients/js/client.mjs");
    let answer = run_json(
        Path::new("node"),
        &[&script, &kubeconfig, Path::new("default")],
        "scripts/sim-clients installs node and the client",
    )
    .await;
    assert_eq!(answer["createdName"], "from-js");
    assert!(answer["createdUid"].as_str().is_some_and(|u| !u.is_empty()));
    assert_eq!(answer["readGreeting"], "hello");
    assert_eq!(answer["pods"], 0);
}
