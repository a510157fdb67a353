//! `executor serve` and the user commands as processes, as a user runs them: submit, logs -f, jobs -o json, and a SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Output};
use std::sync::mpsc;

use common::start_serve;
use executor_tests::components;
use serde_json::Value;

use crate::common;

/// The environment every process of a test shares: its own data directory
/// and no cluster configuration (so: the simulator), small requests.
fn env(cmd: &mut Command, dir: &Path) {
    cmd.env("EXECUTOR_DATA_DIR", dir)
        .env("HOME", dir)
        // Compiled plugins, shared with the other tests.
        .env("XDG_CACHE_HOME", executor_tests::plugin_cache_home())
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
    let (child, banner, _) = serve_said(dir);
    (child, banner)
}

/// [`serve`], and what it says after its banner, line by line.
fn serve_said(dir: &Path) -> (Child, Vec<String>, mpsc::Receiver<String>) {
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
    start_serve(
        cmd.arg("serve")
            .env("EXECUTOR_PLUGINS_CONFIG", &plugins)
            .env("RUST_LOG", "warn"),
    )
}

/// The first line `serve` says that contains `needle`.
fn said(later: &mpsc::Receiver<String>, needle: &str) -> String {
    let mut heard = Vec::new();
    loop {
        match later.recv_timeout(common::STEP) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => heard.push(line),
            Err(e) => panic!("serve never said {needle:?} ({e}); it said: {heard:#?}"),
        }
    }
}

/// Sends `signal` to `child`.
fn kill(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Whether a process of this machine runs `argv` exactly.
fn running(argv: &[&str]) -> bool {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|p| std::fs::read(p.path().join("cmdline")).is_ok_and(|c| c == wanted))
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
        err.contains("no serving executor found")
            && err.contains("serve.json")
            && err.contains("scripts/serve"),
        "{err}"
    );

    // An address file left by an executor that stopped.
    let port = common::free_port();
    std::fs::write(
        dir.path().join("serve.json"),
        format!(r#"{{"url": "http://127.0.0.1:{port}/", "token": "t"}}"#),
    )
    .unwrap();
    let out = executor(dir.path(), &["jobs"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: no executor is serving at http://127.0.0.1:{port}; start it with `scripts/serve` (or `executor serve`), or give its address with --server\n"
        ),
        "one sentence, not a stack of client errors"
    );
}

#[test]
fn cancel_says_a_cancel_is_pending_and_show_and_jobs_show_it_until_the_job_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (mut serve, _) = serve(dir.path());
    let submitted = executor(
        dir.path(),
        &[
            "submit",
            "--image",
            "alpine:3",
            "--",
            "echo started",
            "sleep 600",
        ],
    );
    let id = text(&submitted.stdout).trim().to_owned();
    let until = executor(dir.path(), &["logs", &id, "--until", "started"]);
    assert!(until.status.success(), "{}", text(&until.stderr));
    assert!(
        text(&until.stdout).ends_with("started\n"),
        "{}",
        text(&until.stdout)
    );

    let cancel = executor(dir.path(), &["cancel", &id]);
    assert!(cancel.status.success(), "{}", text(&cancel.stderr));
    let said = text(&cancel.stderr);
    assert!(
        said.contains(&format!("job {id}: cancel requested")),
        "{said}"
    );
    // The executor hears of it at its next heartbeat; until then both say so.
    let shown = text(&executor(dir.path(), &["show", &id]).stdout);
    let listed = text(&executor(dir.path(), &["jobs"]).stdout);
    let pending = |t: &str| t.contains("processing (cancel requested)") || t.contains("cancelled");
    assert!(pending(&shown), "{shown}");
    assert!(pending(&listed), "{listed}");

    let waited = executor(dir.path(), &["cancel", "--wait", &id]);
    let said = text(&waited.stderr);
    assert!(
        waited.status.success() && said.contains(&format!("job {id}: cancelled")),
        "{said}"
    );
    let kept = text(&executor(dir.path(), &["logs", &id]).stdout);
    assert!(kept.contains("started"), "the log so far is kept: {kept}");
    let never = executor(dir.path(), &["logs", &id, "--until", "finished"]);
    assert_eq!(
        never.status.code(),
        Some(1),
        "--until fails when the job ends first"
    );
    assert!(
        text(&never.stderr).contains("no line contained \"finished\""),
        "{}",
        text(&never.stderr)
    );
    let shown = text(&executor(dir.path(), &["show", &id]).stdout);
    assert!(shown.contains("attempts: 1"), "the job ran once: {shown}");

    kill(&serve, "-TERM");
    assert!(serve.wait().unwrap().success());
}

#[test]
fn repos_add_refuses_what_is_not_a_repository_and_remove_unregisters() {
    let dir = tempfile::tempdir().unwrap();
    let (mut serve, _) = serve(dir.path());
    for (url, needle) in [
        ("/not/a/url", "/not/a/url does not exist"),
        ("file:///does/not/exist", "/does/not/exist does not exist"),
    ] {
        let out = executor(dir.path(), &["repos", "add", "github.com/acme/x", url]);
        assert_eq!(out.status.code(), Some(2), "{url} is refused");
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
    }
    let submitted = executor(
        dir.path(),
        &[
            "submit",
            "--image",
            "a",
            "--repository",
            "github.com/acme/x",
            "--commit",
            "main",
            "--",
            "true",
        ],
    );
    let said = text(&submitted.stderr);
    assert!(
        said.contains("register it with `executor repos add github.com/acme/x"),
        "{said}"
    );
    let listed = text(&executor(dir.path(), &["repos", "list"]).stdout);
    assert!(!listed.contains("github.com/acme/x"), "{listed}");
    let removed = executor(dir.path(), &["repos", "remove", "github.com/acme/x"]);
    assert_eq!(removed.status.code(), Some(2));
    assert!(
        text(&removed.stderr).contains("is not registered"),
        "{}",
        text(&removed.stderr)
    );

    kill(&serve, "-TERM");
    assert!(serve.wait().unwrap().success());
}

#[test]
fn a_second_ctrl_c_cancels_the_running_job_hands_it_back_and_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first_life, _, later) = serve_said(dir.path());
    // A command line no other process has, to look for after the exit.
    let sleep = ["sleep", "987654"];
    let submitted = executor(
        dir.path(),
        &[
            "submit",
            "--image",
            "alpine:3",
            "--",
            "echo started",
            &sleep.join(" "),
        ],
    );
    let id = text(&submitted.stdout).trim().to_owned();
    let until = executor(dir.path(), &["logs", &id, "--until", "started"]);
    assert!(until.status.success(), "{}", text(&until.stderr));

    kill(&first_life, "-INT");
    let first = said(&later, "SIGINT:");
    assert!(
        first.contains("within 5m") && first.contains("again (Ctrl-C) to cancel them"),
        "the first Ctrl-C says how long the drain lasts and how to skip it: {first}"
    );
    kill(&first_life, "-INT");
    said(&later, "SIGINT again: cancelling the running jobs");
    let summary = said(&later, "stopped:");
    assert!(
        summary.contains("1 taken") && summary.contains("1 errored"),
        "{summary}"
    );
    assert!(first_life.wait().unwrap().success());
    common::eventually_blocking("the job's processes stop", || {
        (!running(&sleep))
            .then_some(())
            .ok_or("sleep 987654 still runs".to_owned())
    });

    // Handed back: the next start finds it queued again, with its log so far.
    let (mut serve, _, later) = serve_said(dir.path());
    let job: Value =
        serde_json::from_slice(&executor(dir.path(), &["show", &id, "-o", "json"]).stdout).unwrap();
    assert_eq!(job["attempts"], 1, "{job:#}");
    assert!(
        job["message"]
            .as_str()
            .unwrap_or("")
            .contains("the executor shut down before the job finished"),
        "{job:#}"
    );
    // Signals sent back to back can arrive as one: the second is sent once
    // the first was heard, as a person's second Ctrl-C would be.
    kill(&serve, "-INT");
    said(&later, "SIGINT:");
    kill(&serve, "-INT");
    assert!(serve.wait().unwrap().success());
    common::eventually_blocking("the job's processes stop", || {
        (!running(&sleep))
            .then_some(())
            .ok_or("sleep 987654 still runs".to_owned())
    });
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

    let kill = |signal: &str| kill(&serve, signal);
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
