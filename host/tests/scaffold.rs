//! `executor plugin new` as an author meets it: the project it writes passes its own tests, builds into a component the host loads at default limits, and passes its `executor plugin test` cases; a Python exception is quoted in the host's error. JavaScript needs 400 MB of npm packages, so its test runs only when asked (`--ignored`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use executor_tests::{plugin_cache_home, workspace};

fn executor(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_executor"))
        .current_dir(dir)
        .args(args)
        .env("XDG_CACHE_HOME", plugin_cache_home())
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Runs `cmd`, failing the test with what it printed when it fails.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{said}");
    said
}

/// Writes a project with `plugin new` into a fresh directory; its path.
fn scaffold(parent: &Path, name: &str, lang: &str) -> PathBuf {
    let out = executor(
        parent,
        &["plugin", "new", name, "--hook", "both", "--lang", lang],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parent.join(name)
}

/// `executor plugin test` on the project's test file passes every case.
fn cases_pass(project: &Path, name: &str, wasm_dir: Option<&Path>) {
    let file = format!("{name}.test.yaml");
    let mut args = vec!["plugin", "test", file.as_str()];
    let dir;
    if let Some(d) = wasm_dir {
        dir = d.display().to_string();
        args.extend(["--wasm-dir", dir.as_str()]);
    }
    let out = executor(project, &args);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.ends_with("4 case(s) in 1 file(s): 4 passed, 0 failed\n"),
        "{said}"
    );
}

#[test]
fn a_new_rust_plugin_passes_its_tests_and_its_cases_as_a_component() {
    let parent = tempfile::tempdir().unwrap();
    let name = "team-guard";
    let project = scaffold(parent.path(), name, "rust");
    let tested = ok(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&project)
            .env(
                "CARGO_TARGET_DIR",
                workspace().join("target").join("scaffold"),
            )
            .arg("test"),
    );
    assert!(
        tested.contains("test result: ok. 4 passed; 0 failed"),
        "{tested}"
    );
    let built = executor_tests::build_like_components(&project, name);
    cases_pass(&project, name, Some(built.dir()));
}

#[test]
fn a_new_python_plugin_passes_its_tests_and_cases_and_its_exceptions_are_quoted() {
    let tools = workspace().join("target/plugin-tools/venv/bin");
    assert!(
        tools.join("componentize-py").is_file(),
        "scripts/plugin-tools installs componentize-py (scripts/test runs it)"
    );
    let parent = tempfile::tempdir().unwrap();
    let project = scaffold(parent.path(), "py-guard", "python");
    let tested = ok(Command::new("python3")
        .args(["-m", "unittest", "-v"])
        .current_dir(&project));
    assert!(
        tested.contains("Ran 3 tests") && tested.contains("\nOK"),
        "{tested}"
    );

    // One more path, so that the same build also shows what an exception
    // looks like: the queue `explode` raises.
    let policy = project.join("policy.py");
    let text = std::fs::read_to_string(&policy).unwrap().replace(
        "    for image in step_images:",
        "    if queue == \"explode\":\n        raise ValueError(\"no jobs for queue explode\")\n    for image in step_images:",
    );
    std::fs::write(&policy, text).unwrap();
    let path = format!(
        "{}:{}",
        tools.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    ok(Command::new(project.join("build.sh")).env("PATH", path));
    cases_pass(&project, "py-guard", None);

    let job = workspace().join("tests/fixtures/job.json");
    let out = executor(
        &project,
        &[
            "plugin",
            "run",
            "py-guard.wasm",
            "--job",
            &job.display().to_string(),
            "--queue",
            "explode",
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("plugin `py-guard` trapped in admit: ")
            && said.contains("(last output: ValueError: no jobs for queue explode)"),
        "the host quotes Python's exception, not the runtime's last words: {said}"
    );
}

/// `cargo test -p executor --test integration scaffold:: -- --ignored` (Node.js and npm
/// needed; about 400 MB of packages, 30 s and 800 MB to build).
#[test]
#[ignore = "downloads componentize-js (400 MB) from npm"]
fn a_new_javascript_plugin_passes_its_tests_and_cases_as_a_component() {
    let parent = tempfile::tempdir().unwrap();
    let project = scaffold(parent.path(), "js-guard", "js");
    let npm = || {
        let mut cmd = Command::new("npm");
        cmd.current_dir(&project);
        cmd
    };
    let tested = ok(npm().arg("test"));
    assert!(
        tested.contains("# pass 3") && tested.contains("# fail 0"),
        "{tested}"
    );
    ok(npm().args(["install", "--no-audit", "--no-fund"]));
    ok(npm().args(["run", "build"]));
    cases_pass(&project, "js-guard", None);
}
