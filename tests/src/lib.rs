//! Test support: builds the first-party plugins and the test-only guests from source as wasm32-wasip2 components, once per test process.
#![allow(clippy::expect_used, clippy::panic)] // test support: a failed build must stop the tests loudly

pub mod schemas;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every component the tests use.
pub const COMPONENTS: &[&str] = &[
    "annotate",
    "scheduling-policy",
    "pull-secrets",
    "redact",
    "misbehave",
    "other-world",
    "no-hooks",
];

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `XDG_CACHE_HOME` of executors the tests start: their compiled-plugin
/// cache, kept with the build outputs so it outlives one test.
pub fn plugin_cache_home() -> PathBuf {
    workspace()
        .join("target")
        .join("test-components")
        .join("xdg")
}

/// The compiled-plugin cache under [`plugin_cache_home`], for runtimes a
/// test builds in its own process. One cache for processes and in-process
/// runtimes alike: compiling the plugins again in every test took a third of
/// the suite's CPU.
pub fn plugin_cache() -> PathBuf {
    plugin_cache_home().join("executor").join("plugins")
}

/// Built components, by crate name.
pub struct Components {
    dir: PathBuf,
}

impl Components {
    /// The `.wasm` file of crate `name` (e.g. `scheduling-policy`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}.wasm", name.replace('-', "_")))
    }

    /// The bytes of crate `name`'s component.
    pub fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("built component is readable")
    }
}

/// `--config` overrides under which the tests build plugins: release code,
/// but the dependencies the SDK pulls in split into 16 codegen units instead
/// of the one the shipped plugins use for speed. A cold build of every
/// component took 167 s as shipped and 104 s so. The scaffold test builds
/// its project with these too, so that the two share the dependencies.
pub const TEST_DEPENDENCIES: &[&str] = &[
    "profile.release.package.k8s-openapi.codegen-units=16",
    "profile.release.package.serde_json.codegen-units=16",
];

/// ...and the first-party plugins' own crates.
const TEST_PLUGINS: &[&str] = &[
    "profile.release.package.annotate.codegen-units=16",
    "profile.release.package.scheduling-policy.codegen-units=16",
    "profile.release.package.pull-secrets.codegen-units=16",
    "profile.release.package.redact.codegen-units=16",
];

/// Builds every component (release, `wasm32-wasip2`, [`TEST_DEPENDENCIES`])
/// in its own target directory, so the build never waits on the `cargo test`
/// that runs us, and returns where they are. Cargo's own lock serialises
/// concurrent test binaries; every build after the first is a no-op.
pub fn components() -> &'static Components {
    static BUILT: OnceLock<Components> = OnceLock::new();
    let config = TEST_DEPENDENCIES.iter().chain(TEST_PLUGINS);
    BUILT.get_or_init(|| build("test-components", config.copied()))
}

/// The same components built exactly as they ship (one codegen unit where
/// the workspace says so), for benchmarks, in a target directory of their own.
pub fn shipped_components() -> &'static Components {
    static BUILT: OnceLock<Components> = OnceLock::new();
    BUILT.get_or_init(|| build("shipped-components", std::iter::empty()))
}

fn build<'a>(dir: &str, config: impl Iterator<Item = &'a str>) -> Components {
    let target_dir = workspace().join("target").join(dir);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace())
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for setting in config {
        cmd.args(["--config", setting]);
    }
    for name in COMPONENTS {
        cmd.args(["-p", name]);
    }
    let status = cmd
        .status()
        .expect("cargo can be started to build the plugin components");
    assert!(
        status.success(),
        "building the plugin components failed: {status}"
    );
    Components {
        dir: target_dir.join("wasm32-wasip2").join("release"),
    }
}

/// A Job shaped like the ones the executor creates (about 4 KB: three init
/// containers, a `main` container, workspace and secret volumes).
pub fn realistic_job() -> serde_json::Value {
    let text = include_str!("../fixtures/job.json");
    serde_json::from_str(text).expect("fixtures/job.json is valid JSON")
}

/// The SHA-256 of `bytes` as lowercase hex, as plugin pins are written.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = sha2_digest(bytes);
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn sha2_digest(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}
