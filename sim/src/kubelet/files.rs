//! A volume's files: a Secret's or ConfigMap's keys (or `items`) read from the store and written with their modes, no file outside its volume; and why a volume cannot be set up, in the kubelet's words.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::env::Source;
use crate::cluster::Cluster;

/// A file's mode when the volume gives none (the API's `defaultMode`).
pub(super) const DEFAULT_MODE: u32 = 0o644;

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
        /// `secret`, `configmap` or `serviceaccount`.
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
    /// An `image` volume's reference is not in the simulator's `images:`.
    #[error(
        "MountVolume.SetUp failed for volume \"{volume}\" : failed to pull image \"{reference}\": the simulator maps no directory to it (add it to the nodes file's images)"
    )]
    ImageNotMapped {
        /// The volume.
        volume: String,
        /// The image reference.
        reference: String,
    },
    /// The claim does not exist or is not bound yet.
    #[error(
        "MountVolume.SetUp failed for volume \"{volume}\" : persistentvolumeclaim \"{claim}\" not found or not bound"
    )]
    ClaimNotBound {
        /// The volume.
        volume: String,
        /// The claim.
        claim: String,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One file of a volume: its path inside the volume, its bytes, its mode.
pub(super) type File = (String, Vec<u8>, u32);

/// The files of the Secret or ConfigMap `object_name` as `spec` (a volume
/// source or a projected source) selects them; none when it is missing and
/// `optional`.
pub(super) fn keys(
    cluster: &Cluster,
    ns: &str,
    volume: &str,
    source: Source,
    object_name: &str,
    spec: &Value,
    default_mode: u32,
) -> Result<Vec<File>, MountError> {
    let Some(object) = source.get(cluster, ns, object_name) else {
        if spec["optional"] == json!(true) {
            return Ok(Vec::new());
        }
        return Err(MountError::NotFound {
            volume: volume.to_owned(),
            kind: source.kind(),
            name: object_name.to_owned(),
        });
    };
    let data = source.data(&object);
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
    items
        .into_iter()
        .map(|(key, rel, mode)| match data.get(&key) {
            Some(bytes) => Ok((rel, bytes.clone(), mode)),
            None => Err(MountError::NoKey {
                volume: volume.to_owned(),
                kind: source.kind(),
                key,
            }),
        })
        .collect()
}

/// Writes `files` under `dir`, the volume `volume`'s directory; a path that
/// is absolute or climbs out with `..` is refused.
pub(super) fn write_all(dir: &Path, volume: &str, files: Vec<File>) -> Result<(), MountError> {
    for (rel, bytes, mode) in files {
        let inside = Path::new(&rel)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside || rel.is_empty() {
            return Err(MountError::BadPath {
                volume: volume.to_owned(),
                path: rel,
            });
        }
        let file = dir.join(&rel);
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
pub(super) fn mode_of(v: &Value) -> Option<u32> {
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
