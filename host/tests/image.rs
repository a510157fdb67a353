//! The image's plugin configuration (`deploy/image/plugins.yaml`) as the image build ships it: pinned by `deploy/image/pin-plugins` next to the first-party plugins built here, it loads every plugin and admits an ordinary Job with only its labels added; a plugin it names but the build lacks stops the build.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn image_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/image")
}

fn pin(dir: &Path) -> std::process::Output {
    Command::new(image_dir().join("pin-plugins"))
        .arg(image_dir().join("plugins.yaml"))
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn the_images_plugins_are_pinned_load_and_admit_an_ordinary_job() {
    let built = executor_tests::components();
    let dir = tempfile::tempdir().unwrap();
    for name in ["annotate", "scheduling-policy", "pull-secrets", "redact"] {
        let file = built.path(name);
        std::fs::copy(&file, dir.path().join(file.file_name().unwrap())).unwrap();
    }
    let out = pin(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(dir.path().join("plugins.yaml")).unwrap();
    let annotate = executor_tests::sha256_hex(&built.bytes("annotate"));
    assert!(
        config.contains(&format!("    sha256: {annotate}\n")),
        "{config}"
    );
    assert_eq!(config.matches("sha256: ").count(), 4, "{config}");

    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/job.json");
    let out = Command::new(env!("CARGO_BIN_EXE_executor"))
        .args(["plugin", "run"])
        .arg(dir.path().join("plugins.yaml"))
        .arg("--job")
        .arg(&job)
        .args([
            "--repository",
            "github.com/acme/app",
            "--commit",
            "abc123",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let text = result.to_string();
    assert!(text.contains("github.com/acme/app@abc123"), "{text}");
    assert!(
        !text.contains("\"denied\""),
        "the shipped policy denies nothing: {text}"
    );
}

#[test]
fn a_plugin_the_build_lacks_stops_the_image_build() {
    let dir = tempfile::tempdir().unwrap();
    let out = pin(dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("annotate.wasm: no such plugin"), "{err}");
}
