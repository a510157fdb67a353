//! The official Kubernetes schemas (`batch/v1` Job, `v1` Secret), fetched once from PyPI's `kubernetes-validate` and used to validate rendered objects strictly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use jsonschema::{Registry, Validator};
use serde_json::Value;

use crate::workspace;

/// The Kubernetes version whose schemas we validate against; matches the
/// `k8s-openapi` feature the executor is built with.
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// Validators for the kinds the executor creates.
pub struct Schemas {
    job: Validator,
    secret: Validator,
}

impl Schemas {
    /// Every violation of the schema of `object`'s kind, as `path: message`;
    /// empty when valid. Kinds without a schema here are a violation too.
    pub fn violations(&self, object: &Value) -> Vec<String> {
        let validator = match (object["apiVersion"].as_str(), object["kind"].as_str()) {
            (Some("batch/v1"), Some("Job")) => &self.job,
            (Some("v1"), Some("Secret")) => &self.secret,
            (api, kind) => return vec![format!("no schema for {api:?} {kind:?}")],
        };
        validator
            .iter_errors(object)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }
}

/// The schemas, downloaded and extracted on first use into `target/k8s-schemas`
/// (pinned by hash in `tests/schemas/requirements.txt`), then read from disk.
pub fn kubernetes() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let dir = fetch();
        let read = |name: &str| -> Value {
            let text = std::fs::read_to_string(dir.join(name))
                .unwrap_or_else(|e| panic!("read schema {name}: {e}"));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse schema {name}: {e}"))
        };
        let registry = Registry::new()
            .add(
                "https://kubernetes.io/api/_definitions.json",
                read("_definitions.json"),
            )
            .and_then(|r| r.prepare())
            .unwrap_or_else(|e| panic!("schema registry: {e}"));
        let build = |name: &str| {
            jsonschema::options()
                .with_registry(&registry)
                .build(&read(name))
                .unwrap_or_else(|e| panic!("compile schema {name}: {e}"))
        };
        Schemas {
            job: build("job-batch-v1.json"),
            secret: build("secret-v1.json"),
        }
    })
}

/// The directory with the strict schemas of [`KUBERNETES_VERSION`].
fn fetch() -> PathBuf {
    let root = workspace().join("target").join("k8s-schemas");
    let dir = root.join(format!("{KUBERNETES_VERSION}-local-strict"));
    if dir.join("job-batch-v1.json").is_file() {
        return dir;
    }
    std::fs::create_dir_all(&root).expect("create target/k8s-schemas");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let requirements = workspace().join("tests/schemas/requirements.txt");
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--require-hashes",
            "-r",
        ])
        .arg(&requirements)
        .arg("-d")
        .arg(&root)
        .status()
        .unwrap_or_else(|e| {
            panic!("run {python} -m pip (needed once, to fetch the Kubernetes schemas): {e}")
        });
    assert!(
        status.success(),
        "pip download of {} failed: {status}",
        requirements.display()
    );
    // Extract into a scratch directory, then rename: a concurrent test
    // process either sees no directory or a complete one.
    let scratch = tempdir_in(&root);
    let prefix =
        format!("kubernetes_validate/kubernetes-json-schema/{KUBERNETES_VERSION}-local-strict/");
    let script = "import sys, zipfile, glob, os\n\
        wheel = sorted(glob.glob(os.path.join(sys.argv[1], 'kubernetes_validate-*.whl')))[-1]\n\
        z = zipfile.ZipFile(wheel)\n\
        for name in ('_definitions.json', 'job-batch-v1.json', 'secret-v1.json'):\n\
        \x20   open(os.path.join(sys.argv[3], name), 'wb').write(z.read(sys.argv[2] + name))\n";
    let status = Command::new(&python)
        .args(["-c", script])
        .arg(&root)
        .arg(&prefix)
        .arg(&scratch)
        .status()
        .expect("run python to extract the schemas");
    assert!(status.success(), "extracting the schemas failed: {status}");
    if std::fs::rename(&scratch, &dir).is_err() {
        // Another process got there first; its copy is complete.
        let _ = std::fs::remove_dir_all(&scratch);
    }
    dir
}

fn tempdir_in(root: &Path) -> PathBuf {
    let dir = root.join(format!("scratch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}
