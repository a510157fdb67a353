//! A projected volume's files: ServiceAccount tokens, ConfigMap and Secret keys, and Downward API fields, written into the volume's directory; it reads the store and the token registry only.

use std::path::Path;

use serde_json::Value;

use super::env::Source;
use crate::cluster::{Cluster, resource};
use crate::store::Key;

/// Why a projected volume cannot be set up (the kubelet's words).
#[derive(Debug, thiserror::Error)]
pub(super) enum ProjectedError {
    /// A ServiceAccount, ConfigMap or Secret does not exist.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {kind} \"{name}\" not found")]
    NotFound {
        /// The volume.
        volume: String,
        /// `serviceaccount`, `configmap` or `secret`.
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
        /// `configmap` or `secret`.
        kind: &'static str,
        /// The key.
        key: String,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Writes every source of the `projected` volume `volume` of `pod` into `dir`.
pub(super) fn fill(
    cluster: &Cluster,
    pod: &Value,
    volume: &str,
    dir: &Path,
    projected: &Value,
) -> Result<(), ProjectedError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let mode = projected["defaultMode"].as_u64();
    for source in projected["sources"].as_array().into_iter().flatten() {
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(t) = source.get("serviceAccountToken") {
            let token = account_token(cluster, pod, volume)?;
            let path = t["path"].as_str().unwrap_or("token").to_owned();
            files.push((path, token.into_bytes()));
        } else if let Some(cm) = source.get("configMap") {
            keys(cluster, ns, volume, Source::ConfigMap, cm, &mut files)?;
        } else if let Some(s) = source.get("secret") {
            keys(cluster, ns, volume, Source::Secret, s, &mut files)?;
        } else if let Some(d) = source.get("downwardAPI") {
            for item in d["items"].as_array().into_iter().flatten() {
                let field = item["fieldRef"]["fieldPath"].as_str().unwrap_or_default();
                let value = crate::selector::field_value(pod, field);
                files.push((
                    item["path"].as_str().unwrap_or_default().to_owned(),
                    value.into_bytes(),
                ));
            }
        }
        for (rel, bytes) in files {
            write(dir, &rel, &bytes, mode)?;
        }
    }
    Ok(())
}

/// The mounted token of the pod's ServiceAccount.
fn account_token(cluster: &Cluster, pod: &Value, volume: &str) -> Result<String, ProjectedError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    let missing = || ProjectedError::NotFound {
        volume: volume.to_owned(),
        kind: "serviceaccount",
        name: name.to_owned(),
    };
    let account = cluster
        .store
        .get(&Key::new(resource("", "serviceaccounts"), ns, name))
        .ok_or_else(missing)?;
    let uid = account["metadata"]["uid"].as_str().unwrap_or_default();
    cluster
        .auth
        .service_account_token(ns, name, uid)
        .map_err(|_| missing())
}

/// A ConfigMap's or Secret's keys (or its `items`) as files.
fn keys(
    cluster: &Cluster,
    ns: &str,
    volume: &str,
    source: Source,
    spec: &Value,
    files: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), ProjectedError> {
    let name = spec["name"].as_str().unwrap_or_default();
    let Some(object) = source.get(cluster, ns, name) else {
        if spec["optional"].as_bool() == Some(true) {
            return Ok(());
        }
        return Err(ProjectedError::NotFound {
            volume: volume.to_owned(),
            kind: source.kind(),
            name: name.to_owned(),
        });
    };
    let data = object["data"].as_object().cloned().unwrap_or_default();
    let items: Vec<(String, String)> = match spec["items"].as_array() {
        Some(items) => items
            .iter()
            .map(|i| {
                let text = |k: &str| i[k].as_str().unwrap_or_default().to_owned();
                (text("key"), text("path"))
            })
            .collect(),
        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    for (key, rel) in items {
        let Some(raw) = data.get(&key).and_then(Value::as_str) else {
            return Err(ProjectedError::NoKey {
                volume: volume.to_owned(),
                kind: source.kind(),
                key,
            });
        };
        files.push((rel, source.bytes(raw).unwrap_or_default()));
    }
    Ok(())
}

/// Writes `bytes` to `rel` under `dir`, with `mode` (the volume's
/// `defaultMode`, `0644` when unset); a path that leaves `dir` is skipped.
fn write(dir: &Path, rel: &str, bytes: &[u8], mode: Option<u64>) -> Result<(), ProjectedError> {
    use std::os::unix::fs::PermissionsExt;
    let rel = Path::new(rel);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Ok(());
    }
    let file = dir.join(rel);
    if let Some(parent) = file.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let failed = |source| ProjectedError::Write {
        path: file.clone(),
        source,
    };
    std::fs::write(&file, bytes).map_err(failed)?;
    let mode = mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(0o644) & 0o777;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).map_err(failed)
}
