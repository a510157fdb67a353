//! The pod's volumes as directories on the host: emptyDir and claims empty, Secrets and ConfigMaps filled with their keys or items; it only reads the store and writes under the pod's directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::env::Source;
use super::files::{self, MountError};
use crate::cluster::Cluster;

/// Each volume's directory on the host, by volume name.
pub(super) type Volumes = HashMap<String, PathBuf>;

/// Makes a directory per volume under `dir`.
pub(super) async fn prepare_volumes(
    cluster: &Cluster,
    pod: &Value,
    dir: &Path,
) -> Result<Volumes, MountError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut out = HashMap::new();
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default();
        let path = dir.join("volumes").join(name);
        std::fs::create_dir_all(&path).map_err(|source| MountError::Directory {
            name: name.to_owned(),
            source,
        })?;
        let projected = if let Some(s) = v.get("secret") {
            Some((
                Source::Secret,
                s["secretName"].as_str().unwrap_or_default(),
                s,
            ))
        } else {
            v.get("configMap")
                .map(|s| (Source::ConfigMap, s["name"].as_str().unwrap_or_default(), s))
        };
        if let Some((source, object_name, spec)) = projected {
            let default_mode = files::mode_of(&spec["defaultMode"]).unwrap_or(files::DEFAULT_MODE);
            let keys = files::keys(cluster, ns, name, source, object_name, spec, default_mode)?;
            files::write_all(&path, name, keys)?;
        } else if let Some(p) = v.get("projected") {
            super::projected::fill(cluster, pod, name, &path, p)?;
        }
        if let Some(spec) = v.get("downwardAPI") {
            super::downward::fill_volume(cluster, pod, spec, &path).map_err(|source| {
                MountError::Write {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        out.insert(name.to_owned(), path);
    }
    Ok(out)
}
