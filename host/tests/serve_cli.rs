//! `executor serve` and the user commands as processes, as a user runs them: submit, logs -f, jobs -o json, and a SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use executor_tests::components;
use serde_json::Value;

mod common;

/// The environment every process of a test shares: its own data directory
/// and no cluster configuration (so: the simulator), small requests.
fn env(cmd: &mut Command, dir: &Path) {
    cmd.env("EXECUTOR_DATA_DIR", dir)
        .env("HOME", dir)
        .env("KUBECONFIG", "")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("EXECUTOR_FRONTEND_URL")
        .env_remove("EXECUTOR_API_TOKEN")
        .env("EXECUTOR_LISTEN", "127.0.0.1:0")
        // Tests run several executors at once: each takes a free port.
        .env("EXECUTOR_DEBUG_LISTEN", "127.0.0.1:0")
        .env("EXECUTOR_QUEUE_POLL_INTERVAL", "100ms")
        .env("EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY", "1Mi")
        .env("EXECUTOR_KUBERNETES_RESOURCE_LIMIT_MEMORY", "64Mi")
        .env("EXECUTOR_KUBERNETES_RESOURCE_REQUEST_CPU", "1m");
}

fn executor(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_executor"));
    env(&mut cmd, dir);
    cmd.args(args).output().unwrap()
}

/// Starts `executor serve` and returns once it printed how to try it.
fn serve(dir: &Path) -> (Child, Vec<String>) {
    let plugins = dir.join("plugins.yaml");
    std::fs::write(
        &plugins,
        format!(
            "plugins:\n  - name: annotate\n    path: {}\n    settings:\n      job:\n        annotations:\n          acme.com/queue: \"{{{{queue}}}}\"\n",
            components().path("annotate").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_executor"));
    env(&mut cmd, dir);
    let mut child = cmd
        .arg("serve")
        .env("EXECUTOR_PLUGINS_CONFIG", &plugins)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let ready = line.contains("logs -f");
        banner.push(line);
        if ready {
            break;
        }
    }
    assert!(
        banner.iter().any(|l| l.contains("logs -f")),
        "serve ended before it was ready: {banner:#?}"
    );
    // Keep reading what it says, so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, banner)
}

/// A plain HTTP/1.0 GET: the whole response, head and body.
fn get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// A plain HTTP/1.0 POST without a body: the whole response.
fn post(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The operations port's address, from `serve`'s banner.
fn ops_addr(banner: &[String]) -> String {
    banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("ops:     http://")?.split(' ').next())
        .unwrap_or_else(|| panic!("no operations port in the banner: {banner:#?}"))
        .to_owned()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn serve_runs_what_submit_sends_and_logs_follows_it_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (mut serve, banner) = serve(dir.path());
    let said = banner.join("\n");
    assert!(
        said.contains("queue:   embedded at http://127.0.0.1:"),
        "{said}"
    );
    assert!(said.contains("cluster: simulator"), "{said}");
    assert!(said.contains("plugins: annotate from"), "{said}");
    assert!(said.contains("the user API token is in"), "{said}");
    let token = std::fs::read_to_string(dir.path().join("serve.json")).unwrap();
    let token: Value = serde_json::from_str(&token).unwrap();
    let token = token["token"].as_str().unwrap();
    assert!(
        !said.contains(token),
        "the token is printed where logs keep it: {said}"
    );

    let submitted = executor(
        dir.path(),
        &[
            "submit",
            "--image",
            "alpine:3",
            "--secret",
            "API_KEY=hunter2",
            "--",
            "echo \"key is $API_KEY\"",
        ],
    );
    assert!(submitted.status.success(), "{}", text(&submitted.stderr));
    let id = text(&submitted.stdout);
    assert!(
        id.ends_with('\n') && id.trim().parse::<i64>().is_ok(),
        "submit prints the id alone: {id:?}"
    );
    let id = id.trim().to_owned();

    let followed = executor(dir.path(), &["logs", "-f", &id]);
    let out = text(&followed.stdout);
    assert_eq!(
        followed.status.code(),
        Some(0),
        "{out}{}",
        text(&followed.stderr)
    );
    assert!(out.contains("==> setup.admission"), "{out}");
    assert!(out.contains("==> step.kubernetes.main"), "{out}");
    assert!(out.contains("key is ${{ secrets.API_KEY }}"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");

    let failing = executor(
        dir.path(),
        &["submit", "--image", "alpine:3", "--", "exit 3"],
    );
    let failing_id = text(&failing.stdout).trim().to_owned();
    let followed = executor(dir.path(), &["logs", "-f", &failing_id]);
    assert_eq!(
        followed.status.code(),
        Some(1),
        "a failed job fails `logs -f`"
    );
    assert!(
        text(&followed.stderr).contains("failed with exit code 3"),
        "{}",
        text(&followed.stderr)
    );

    let listed = executor(dir.path(), &["jobs", "-o", "json"]);
    let jobs: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let states: Vec<(String, String)> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["id"].to_string(), j["state"].as_str().unwrap().to_owned()))
        .collect();
    assert!(
        states.contains(&(id.clone(), "completed".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&(failing_id, "failed".into())),
        "{states:?}"
    );

    let shown = executor(dir.path(), &["show", &id, "-o", "json"]);
    let job: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(job["state"], "completed");
    assert!(
        job["payload"].get("token").is_none(),
        "show never prints a job token"
    );

    let ops = &ops_addr(&banner);
    assert!(get(ops, "/healthz").ends_with("\r\n\r\nok\n"));
    let metrics = get(ops, "/metrics");
    assert!(
        metrics.contains(r#"executor_jobs_finished_total{outcome="succeeded"} 1"#),
        "{metrics}"
    );

    let term = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = serve.wait().unwrap();
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status}");
}

#[test]
fn the_user_commands_say_when_no_executor_serves() {
    let dir = tempfile::tempdir().unwrap();
    let out = executor(dir.path(), &["jobs"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("no serving executor found") && err.contains("serve.json"),
        "{err}"
    );
}

#[test]
fn serve_reloads_its_plugins_on_post_reload_on_sighup_and_when_a_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut serve, banner) = serve(dir.path());
    let ops = &ops_addr(&banner);
    let reply = post(ops, "/-/reload");
    assert!(
        reply.starts_with("HTTP/1.0 200") && reply.ends_with("\r\n\r\nunchanged\n"),
        "{reply}"
    );

    let kill = |signal: &str| {
        let sent = Command::new("kill")
            .args([signal, &serve.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    kill("-HUP");
    common::eventually_blocking("SIGHUP reloads", || {
        let metrics = get(ops, "/metrics");
        metrics
            .lines()
            .any(|l| {
                l.starts_with("executor_plugin_reloads_total{")
                    && l.contains(r#"trigger="signal""#)
                    && l.contains(r#"result="unchanged""#)
                    && l.ends_with(" 1")
            })
            .then_some(())
            .ok_or(metrics)
    });

    // A broken set: refused, the old one runs on, and the executor stays ready.
    let config = dir.path().join("plugins.yaml");
    let good = std::fs::read_to_string(&config).unwrap();
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"not wasm").unwrap();
    let tmp = dir.path().join("plugins.yaml.tmp");
    std::fs::write(
        &tmp,
        format!("{good}  - name: broken\n    path: {}\n", broken.display()),
    )
    .unwrap();
    std::fs::rename(&tmp, &config).unwrap();
    let reply = post(ops, "/-/reload");
    assert!(reply.starts_with("HTTP/1.0 500"), "{reply}");
    assert!(
        reply.contains("refused; the loaded plugins run on:") && reply.contains("broken"),
        "{reply}"
    );
    let ready = get(ops, "/readyz");
    assert!(
        ready.contains("[+]plugins ok: loaded annotate; the last reload was refused"),
        "{ready}"
    );

    // A good set, noticed by the file watch alone.
    let redact = components().path("redact");
    std::fs::write(
        &tmp,
        format!("{good}  - name: redact\n    path: {}\n", redact.display()),
    )
    .unwrap();
    std::fs::rename(&tmp, &config).unwrap();
    common::eventually_blocking("the changed file is reloaded", || {
        let ready = get(ops, "/readyz");
        ready
            .contains("[+]plugins ok: loaded annotate, redact\n")
            .then_some(())
            .ok_or(ready)
    });

    kill("-TERM");
    assert!(serve.wait().unwrap().success());
}
