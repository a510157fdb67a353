//! The pod's volumes as directories on the host: emptyDir empty, Secrets and ConfigMaps filled with their keys or items, a claim's directory kept across pods, an `image` volume's mapped directory; it only reads the store and writes under the kubelet's directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::env::Source;
use super::files::{self, MountError};
use crate::cluster::{Cluster, resource};
use crate::store::Key;

/// Each volume's directory on the host, by volume name.
pub(super) type Volumes = HashMap<String, PathBuf>;

/// Makes a directory per volume under `dir` (a claim's under `claims`, where
/// it outlives the pod, as a persistent volume's data does).
pub(super) async fn prepare_volumes(
    cluster: &Cluster,
    pod: &Value,
    dir: &Path,
    claims: &Path,
) -> Result<Volumes, MountError> {
    // The pod's own directory, made alone, not with its parents: once the
    // simulator has stopped and removed the kubelet's directory, a pod that
    // was still starting must not make that directory again and leave it
    // behind.
    if let Err(source) = std::fs::create_dir(dir)
        && source.kind() != std::io::ErrorKind::AlreadyExists
    {
        return Err(MountError::Directory {
            name: dir.display().to_string(),
            source,
        });
    }
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut out = HashMap::new();
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default();
        if let Some(image) = v.get("image") {
            out.insert(name.to_owned(), image_volume(cluster, name, image)?);
            continue;
        }
        let path = match v.get("persistentVolumeClaim") {
            Some(claim) => claim_dir(cluster, ns, name, claim, claims)?,
            None => dir.join("volumes").join(name),
        };
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

/// An `image` volume (Kubernetes 1.33): the directory the image is mapped to
/// (an executable's directory when the mapping names one), bound read-only.
/// An unmapped image cannot be pulled, as a reference no registry has.
fn image_volume(cluster: &Cluster, volume: &str, spec: &Value) -> Result<PathBuf, MountError> {
    let reference = spec["reference"].as_str().unwrap_or_default();
    crate::images::resolve(&cluster.options.images, reference)
        .map(|m| m.dir)
        .ok_or_else(|| MountError::ImageNotMapped {
            volume: volume.to_owned(),
            reference: reference.to_owned(),
        })
}

/// The directory of the volume bound to claim `spec.claimName`: one per
/// volume for the simulator's life, so a Deployment's next pod finds what
/// the last one wrote.
fn claim_dir(
    cluster: &Cluster,
    ns: &str,
    volume: &str,
    spec: &Value,
    claims: &Path,
) -> Result<PathBuf, MountError> {
    let claim_name = spec["claimName"].as_str().unwrap_or_default();
    let key = Key::new(resource("", "persistentvolumeclaims"), ns, claim_name);
    let bound = cluster
        .store
        .get(&key)
        .and_then(|c| c["spec"]["volumeName"].as_str().map(str::to_owned))
        .filter(|v| !v.is_empty() && !v.contains(['/', '.']));
    match bound {
        Some(pv) => Ok(claims.join(pv)),
        None => Err(MountError::ClaimNotBound {
            volume: volume.to_owned(),
            claim: claim_name.to_owned(),
        }),
    }
}
