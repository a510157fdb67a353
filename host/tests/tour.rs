//! The README's five-minute tour, run as written against `executor serve` on the simulator, its `#   ` lines checked against what the commands print, so that the README and the executor cannot drift apart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::start_serve;
use executor_tests::components;

use crate::common;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The tour: the first `sh` block after the README's tour heading.
fn tour() -> String {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let section = readme
        .split_once("## A five-minute tour")
        .expect("the README has its tour")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the tour has a sh block")
        .1;
    block
        .split_once("\n```")
        .expect("the tour's block ends")
        .0
        .to_owned()
}

/// What the tour says the commands print: its `#   ` lines, each a list of
/// fragments (`...` stands for what varies, `<-` starts a remark).
fn expected(tour: &str) -> Vec<Vec<String>> {
    tour.lines()
        .filter_map(|l| l.strip_prefix("#   "))
        .map(|l| {
            let l = l.split_once("<-").map_or(l, |(said, _)| said);
            l.split("...")
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The environment of every process: a home of its own (the tour's
/// `~/.local/state/executor`), the simulator, free ports, small pods.
fn env(cmd: &mut Command, home: &Path) {
    cmd.env("HOME", home)
        // Compiled plugins, shared with the other tests.
        .env("XDG_CACHE_HOME", executor_tests::plugin_cache_home())
        .env_remove("XDG_STATE_HOME")
        .env_remove("EXECUTOR_DATA_DIR")
        .env_remove("EXECUTOR_SERVER")
        .env_remove("EXECUTOR_API_TOKEN")
        .env_remove("EXECUTOR_FRONTEND_URL")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", "")
        .env("EXECUTOR_LISTEN", "127.0.0.1:0")
        .env("EXECUTOR_DEBUG_LISTEN", "127.0.0.1:0")
        .env("EXECUTOR_QUEUE_POLL_INTERVAL", "100ms")
        .env("EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY", "1Mi")
        .env("EXECUTOR_KUBERNETES_RESOURCE_LIMIT_MEMORY", "64Mi")
        .env("EXECUTOR_KUBERNETES_RESOURCE_REQUEST_CPU", "1m")
        // The tour's `git commit` on a machine with no identity configured.
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "tour")
        .env("GIT_AUTHOR_EMAIL", "tour@example.com")
        .env("GIT_COMMITTER_NAME", "tour")
        .env("GIT_COMMITTER_EMAIL", "tour@example.com");
}

/// `executor serve` with the shipped plugin chain (the plugins as the tests
/// build them), killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(home: &Path) -> Serve {
    let shipped = std::fs::read_to_string(workspace().join("examples/plugins.yaml")).unwrap();
    let built = components().path("annotate");
    let plugins = home.join("plugins.yaml");
    std::fs::write(
        &plugins,
        shipped.replace(
            "../target/wasm32-wasip2/release/",
            &format!("{}/", built.parent().unwrap().display()),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_executor"));
    env(&mut cmd, home);
    let (child, _, _) = start_serve(
        cmd.arg("serve")
            .env("EXECUTOR_PLUGINS_CONFIG", &plugins)
            // Killed at the end, it cannot remove its simulator's kubelet
            // directory: keep that in the tour's home, which is removed.
            .env("TMPDIR", home)
            .env("RUST_LOG", "warn"),
    );
    Serve(child)
}

#[test]
fn the_readmes_tour_runs_as_written_and_prints_what_it_says() {
    let tour = tour();
    let exe_line = "exe=target/debug/executor";
    assert!(
        tour.lines().next() == Some(exe_line),
        "the tour starts with {exe_line}"
    );
    // The binary under test, wherever this profile puts it.
    let script = format!(
        "set -u\ntrap 'echo \"tour: line $LINENO exited $?\"' ERR\n{}\n",
        tour.replacen(
            exe_line,
            &format!("exe='{}'", env!("CARGO_BIN_EXE_executor")),
            1
        )
    );
    let home = tempfile::tempdir().unwrap();
    let _serve = serve(home.path());
    let log = home.path().join("tour.out");
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new("bash");
    env(&mut cmd, home.path());
    let status = cmd
        .arg("-c")
        .arg(&script)
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .status()
        .unwrap();
    let printed = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the tour failed:\n{printed}");
    assert!(
        !printed.contains("tour: line"),
        "a command of the tour failed:\n{printed}"
    );
    assert!(
        !printed.contains("hunter2"),
        "the secret reached the output:\n{printed}"
    );
    // Every line the tour shows, in the order it shows them.
    let mut at = 0;
    for fragments in expected(&tour) {
        for fragment in &fragments {
            match printed[at..].find(fragment.as_str()) {
                Some(i) => at += i + fragment.len(),
                None => panic!(
                    "the README's tour says {fragment:?} is printed (after what came before), but the commands printed:\n{printed}"
                ),
            }
        }
    }
}

#[test]
fn the_tours_expected_lines_are_read_as_fragments_in_order() {
    let lines = expected("$exe x\n#   ==> a\n#   ... b: c, ... (d)   <- remark\n# not shown\n");
    assert_eq!(
        lines,
        vec![
            vec!["==> a".to_owned()],
            vec!["b: c,".to_owned(), "(d)".to_owned()]
        ]
    );
}
