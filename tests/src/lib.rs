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
    "patcher",
    "second-contract",
    "third-contract",
];

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `XDG_CACHE_HOME` of executors the tests start: their compiled-plugin
/// cache, kept with the build outputs so it outlives one test.
pub fn plugin_cache_home() -> PathBuf {
    test_components_dir().join("xdg")
}

/// Where [`components`] are built, and what the tests keep beside them.
fn test_components_dir() -> PathBuf {
    workspace().join("target").join("test-components")
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
    /// The directory holding the `.wasm` files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `.wasm` file of crate `name` (e.g. `scheduling-policy`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}.wasm", name.replace('-', "_")))
    }

    /// The bytes of crate `name`'s component.
    pub fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("built component is readable")
    }
}

/// The crates the SDK pulls in that the shipped plugins build in one
/// codegen unit, for speed; the tests build them, and the plugins' own
/// crates, in 16 ([`in_16_units`]). A cold build of every component took
/// 167 s as shipped and 104 s so. The scaffold test builds its project the
/// same way ([`build_like_components`]), so that the two share the
/// dependencies.
const TEST_DEPENDENCIES: &[&str] = &["k8s-openapi", "serde_json"];

/// The first-party plugins, whose own crates ship in one codegen unit too.
const FIRST_PARTY: &[&str] = &["annotate", "scheduling-policy", "pull-secrets", "redact"];

/// The `--config` override that builds `package` in 16 codegen units.
fn in_16_units(package: &str) -> String {
    format!("profile.release.package.{package}.codegen-units=16")
}

/// Builds every component (release, `wasm32-wasip2`, [`TEST_DEPENDENCIES`]
/// and the first-party plugins in 16 codegen units) in its own target
/// directory, so the build never waits on the `cargo test` that runs us, and
/// returns where they are. Cargo's own lock serialises concurrent test
/// binaries; every build after the first is a no-op.
pub fn components() -> &'static Components {
    static BUILT: OnceLock<Components> = OnceLock::new();
    BUILT.get_or_init(|| {
        let split = TEST_DEPENDENCIES.iter().chain(FIRST_PARTY);
        build(
            &workspace(),
            test_components_dir(),
            split.map(|p| in_16_units(p)),
            COMPONENTS,
        )
    })
}

/// Builds the plugin project at `project`, whose package is `package`, as
/// [`components`] are built and where they are, so that the SDK's
/// dependencies for `wasm32-wasip2` are built already; returns where its
/// component is.
pub fn build_like_components(project: &Path, package: &str) -> Components {
    components();
    let split = TEST_DEPENDENCIES.iter().copied().chain([package]);
    build(project, test_components_dir(), split.map(in_16_units), &[])
}

/// The same components built exactly as they ship (one codegen unit where
/// the workspace says so), for benchmarks, in a target directory of their own.
pub fn shipped_components() -> &'static Components {
    static BUILT: OnceLock<Components> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target_dir = workspace().join("target").join("shipped-components");
        build(&workspace(), target_dir, std::iter::empty(), COMPONENTS)
    })
}

/// `cargo build --release --target wasm32-wasip2` of `packages` (all of
/// the project's when none are named) in `project`, into `target_dir`.
fn build(
    project: &Path,
    target_dir: PathBuf,
    config: impl Iterator<Item = String>,
    packages: &[&str],
) -> Components {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(project)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for setting in config {
        cmd.args(["--config", &setting]);
    }
    for name in packages {
        cmd.args(["-p", name]);
    }
    let status = cmd
        .status()
        .expect("cargo can be started to build plugin components");
    assert!(
        status.success(),
        "building the plugin components in {} failed: {status}",
        project.display()
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
