//! A projected volume's files: ServiceAccount tokens, ConfigMap and Secret keys, and Downward API fields, written into the volume's directory; it reads the store and the token registry only.

use std::path::Path;

use serde_json::Value;

use super::env::Source;
use super::files::{self, MountError};
use crate::cluster::{Cluster, resource};
use crate::store::Key;

/// Writes every source of the `projected` volume `volume` of `pod` into `dir`.
pub(super) fn fill(
    cluster: &Cluster,
    pod: &Value,
    volume: &str,
    dir: &Path,
    projected: &Value,
) -> Result<(), MountError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let default_mode = files::mode_of(&projected["defaultMode"]).unwrap_or(files::DEFAULT_MODE);
    let mut out: Vec<files::File> = Vec::new();
    for source in projected["sources"].as_array().into_iter().flatten() {
        if let Some(t) = source.get("serviceAccountToken") {
            let token = account_token(cluster, pod, volume)?;
            let path = t["path"].as_str().unwrap_or("token").to_owned();
            out.push((path, token.into_bytes(), default_mode));
        } else if let Some((keys, spec)) = source
            .get("configMap")
            .map(|cm| (Source::ConfigMap, cm))
            .or_else(|| source.get("secret").map(|s| (Source::Secret, s)))
        {
            let name = spec["name"].as_str().unwrap_or_default();
            out.extend(files::keys(
                cluster,
                ns,
                volume,
                keys,
                name,
                spec,
                default_mode,
            )?);
        } else if let Some(d) = source.get("downwardAPI") {
            for item in d["items"].as_array().into_iter().flatten() {
                let field = item["fieldRef"]["fieldPath"].as_str().unwrap_or_default();
                let value = crate::selector::field_value(pod, field);
                let mode = files::mode_of(&item["mode"]).unwrap_or(default_mode);
                let path = item["path"].as_str().unwrap_or_default().to_owned();
                out.push((path, value.into_bytes(), mode));
            }
        }
    }
    files::write_all(dir, volume, out)
}

/// The mounted token of the pod's ServiceAccount.
fn account_token(cluster: &Cluster, pod: &Value, volume: &str) -> Result<String, MountError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    let missing = || MountError::NotFound {
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
