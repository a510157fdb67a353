//! The pod's volumes as directories on the host: emptyDir and claims empty, Secrets and ConfigMaps filled with their keys or items; it only reads the store and writes under the pod's directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::env::Source;
use crate::cluster::Cluster;

/// Each volume's directory on the host, by volume name.
pub(super) type Volumes = HashMap<String, PathBuf>;

/// Why a volume cannot be set up (the pod stays `ContainerCreating` with a
/// `FailedMount` Event carrying this message).
#[derive(Debug, thiserror::Error)]
pub(super) enum MountError {
    /// The directory could not be made.
    #[error("cannot make volume {name}: {source}")]
    Directory {
        /// The volume.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// The Secret or ConfigMap does not exist.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {kind} \"{name}\" not found")]
    NotFound {
        /// The volume.
        volume: String,
        /// `secret` or `configmap`.
        kind: &'static str,
        /// The object's name.
        name: String,
    },
    /// An item names a key the object does not have.
    #[error(
        "MountVolume.SetUp failed for volume \"{volume}\" : references non-existent {kind} key: {key}"
    )]
    NoKey {
        /// The volume.
        volume: String,
        /// `secret` or `configmap`.
        kind: &'static str,
        /// The key.
        key: String,
    },
    /// An item's path is absolute or climbs out with `..` (the API server
    /// refuses these; the kubelet does not write outside the volume).
    #[error(
        "MountVolume.SetUp failed for volume \"{volume}\" : invalid path {path:?}: must be a relative path without '..'"
    )]
    BadPath {
        /// The volume.
        volume: String,
        /// The item's path.
        path: String,
    },
    /// A projected volume (the ServiceAccount token's) could not be made.
    #[error(transparent)]
    Projected(#[from] super::projected::ProjectedError),
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

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
            fill(cluster, ns, name, &path, source, object_name, spec)?;
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

/// Writes a Secret's or ConfigMap's keys (or its `items`) into `path`.
fn fill(
    cluster: &Cluster,
    ns: &str,
    volume: &str,
    path: &Path,
    source: Source,
    object_name: &str,
    spec: &Value,
) -> Result<(), MountError> {
    let Some(object) = source.get(cluster, ns, object_name) else {
        if spec["optional"] == json!(true) {
            return Ok(());
        }
        return Err(MountError::NotFound {
            volume: volume.to_owned(),
            kind: source.kind(),
            name: object_name.to_owned(),
        });
    };
    let data = source.data(&object);
    // `defaultMode` (0644 unless given) and `items[].mode`, as the kubelet applies them.
    let default_mode = mode_of(&spec["defaultMode"]).unwrap_or(0o644);
    let items: Vec<(String, String, u32)> = match spec["items"].as_array() {
        Some(items) => items
            .iter()
            .map(|i| {
                (
                    i["key"].as_str().unwrap_or_default().to_owned(),
                    i["path"].as_str().unwrap_or_default().to_owned(),
                    mode_of(&i["mode"]).unwrap_or(default_mode),
                )
            })
            .collect(),
        None => data
            .keys()
            .map(|k| (k.clone(), k.clone(), default_mode))
            .collect(),
    };
    for (key, rel, mode) in items {
        let inside = std::path::Path::new(&rel)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside || rel.is_empty() {
            return Err(MountError::BadPath {
                volume: volume.to_owned(),
                path: rel,
            });
        }
        let Some(bytes) = data.get(&key).cloned() else {
            return Err(MountError::NoKey {
                volume: volume.to_owned(),
                kind: source.kind(),
                key,
            });
        };
        let file = path.join(&rel);
        if let Some(parent) = file.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        write_file(&file, &bytes, mode).map_err(|source| MountError::Write {
            path: file.clone(),
            source,
        })?;
    }
    Ok(())
}

/// A file mode from the API (an int32 of permission bits).
fn mode_of(v: &Value) -> Option<u32> {
    v.as_u64()
        .and_then(|m| u32::try_from(m).ok())
        .map(|m| m & 0o7777)
}

/// Writes `bytes` to a new file that no one else can read meanwhile, then
/// gives it `mode` exactly (the umask does not apply, as for the kubelet).
fn write_file(file: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)?;
    f.write_all(bytes)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
}
