//! The official Kubernetes schemas (the kinds the executor creates and those `deploy/` declares), fetched once from PyPI's `kubernetes-validate` and used to validate objects strictly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use jsonschema::{Registry, Validator};
use serde_json::Value;

use crate::workspace;

/// The Kubernetes version whose schemas we validate against; matches the
/// `k8s-openapi` feature the executor is built with.
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// The kinds with a schema here (`apiVersion`, `kind`) and their files in
/// `kubernetes-validate`: what the executor creates (Job, Secret) and what
/// `deploy/` declares.
const KINDS: &[(&str, &str, &str)] = &[
    ("batch/v1", "Job", "job-batch-v1.json"),
    ("v1", "Secret", "secret-v1.json"),
    ("v1", "ConfigMap", "configmap-v1.json"),
    ("v1", "ServiceAccount", "serviceaccount-v1.json"),
    ("v1", "Service", "service-v1.json"),
    (
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaim-v1.json",
    ),
    ("apps/v1", "Deployment", "deployment-apps-v1.json"),
    ("rbac.authorization.k8s.io/v1", "Role", "role-rbac-v1.json"),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebinding-rbac-v1.json",
    ),
    (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "networkpolicy-networking-v1.json",
    ),
];

/// Validators for the kinds in [`KINDS`].
pub struct Schemas {
    validators: HashMap<(&'static str, &'static str), Validator>,
}

impl Schemas {
    /// Every violation of the schema of `object`'s kind, as `path: message`;
    /// empty when valid. Kinds without a schema here are a violation too.
    pub fn violations(&self, object: &Value) -> Vec<String> {
        let (api, kind) = (object["apiVersion"].as_str(), object["kind"].as_str());
        let Some(validator) = api
            .zip(kind)
            .and_then(|(api, kind)| self.validators.get(&(api, kind)))
        else {
            return vec![format!("no schema for {api:?} {kind:?}")];
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
            validators: KINDS
                .iter()
                .map(|&(api, kind, file)| ((api, kind), build(file)))
                .collect(),
        }
    })
}

/// Every schema file this module reads.
fn files() -> impl Iterator<Item = &'static str> {
    std::iter::once("_definitions.json").chain(KINDS.iter().map(|k| k.2))
}

/// The directory with the strict schemas of [`KUBERNETES_VERSION`].
fn fetch() -> PathBuf {
    let root = workspace().join("target").join("k8s-schemas");
    let dir = root.join(format!("{KUBERNETES_VERSION}-local-strict"));
    // Every file, not just one: a directory extracted before a kind was
    // added to KINDS lacks its schema.
    if files().all(|f| dir.join(f).is_file()) {
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
    // Extract into a scratch directory, then move each file into place
    // with a rename: a concurrent test process sees each file whole or not
    // at all, and a directory from before a kind was added gets the new one.
    let scratch = tempdir_in(&root);
    let prefix =
        format!("kubernetes_validate/kubernetes-json-schema/{KUBERNETES_VERSION}-local-strict/");
    let script = "import sys, zipfile, glob, os\n\
        wheel = sorted(glob.glob(os.path.join(sys.argv[1], 'kubernetes_validate-*.whl')))[-1]\n\
        z = zipfile.ZipFile(wheel)\n\
        for name in sys.argv[4:]:\n\
        \x20   open(os.path.join(sys.argv[3], name), 'wb').write(z.read(sys.argv[2] + name))\n";
    let status = Command::new(&python)
        .args(["-c", script])
        .arg(&root)
        .arg(&prefix)
        .arg(&scratch)
        .args(files())
        .status()
        .expect("run python to extract the schemas");
    assert!(status.success(), "extracting the schemas failed: {status}");
    std::fs::create_dir_all(&dir).expect("create the schema directory");
    for file in files() {
        std::fs::rename(scratch.join(file), dir.join(file))
            .unwrap_or_else(|e| panic!("move schema {file} into place: {e}"));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    dir
}

fn tempdir_in(root: &Path) -> PathBuf {
    let dir = root.join(format!("scratch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}
