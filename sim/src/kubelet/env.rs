//! A container's environment as the kubelet resolves it: whole Secrets and ConfigMaps (`envFrom`), values expanded against earlier ones, Secret and ConfigMap keys, and the Downward API's pod fields; it reads the store and records the kubelet's Event for skipped keys.

use serde_json::{Value, json};

use crate::cluster::{Cluster, resource};
use crate::store::Key;

/// Why a container's configuration cannot be made (the container waits in
/// `CreateContainerConfigError` with this message).
#[derive(Debug, thiserror::Error)]
pub(super) enum ConfigError {
    /// The Secret or ConfigMap does not exist.
    #[error("{kind} \"{name}\" not found")]
    NotFound {
        /// `secret` or `configmap`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The key is not in the Secret or ConfigMap.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    NoKey {
        /// The key.
        key: String,
        /// `secret` or `configmap`.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// Where a value comes from: a Secret (base64 data) or a ConfigMap.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source {
    /// `secrets`: data is base64.
    Secret,
    /// `configmaps`: data is text.
    ConfigMap,
}

impl Source {
    /// The resource's plural name.
    pub fn resource(self) -> &'static str {
        match self {
            Source::Secret => "secrets",
            Source::ConfigMap => "configmaps",
        }
    }

    /// How the kubelet names the kind in messages.
    pub fn kind(self) -> &'static str {
        match self {
            Source::Secret => "secret",
            Source::ConfigMap => "configmap",
        }
    }

    /// The bytes of a data value.
    pub fn bytes(self, raw: &str) -> Option<Vec<u8>> {
        match self {
            Source::Secret => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(raw).ok()
            }
            Source::ConfigMap => Some(raw.as_bytes().to_vec()),
        }
    }

    /// Every key's bytes: a Secret's `data`, or a ConfigMap's `data` and
    /// `binaryData` (base64 on the wire).
    pub fn data(self, object: &Value) -> std::collections::BTreeMap<String, Vec<u8>> {
        use base64::Engine;
        let mut out = std::collections::BTreeMap::new();
        for (k, v) in object["data"].as_object().into_iter().flatten() {
            if let Some(bytes) = v.as_str().and_then(|raw| self.bytes(raw)) {
                out.insert(k.clone(), bytes);
            }
        }
        if let Source::ConfigMap = self {
            for (k, v) in object["binaryData"].as_object().into_iter().flatten() {
                let decoded = v
                    .as_str()
                    .and_then(|raw| base64::engine::general_purpose::STANDARD.decode(raw).ok());
                if let Some(bytes) = decoded {
                    out.insert(k.clone(), bytes);
                }
            }
        }
        out
    }

    /// The Secret or ConfigMap `name` in `namespace`, if it exists.
    pub fn get(self, cluster: &Cluster, namespace: &str, name: &str) -> Option<Value> {
        cluster
            .store
            .get(&Key::new(resource("", self.resource()), namespace, name))
    }
}

/// The container's environment: values (expanded against earlier ones),
/// secret and config map keys, and pod fields.
pub(super) fn resolve_env(
    cluster: &Cluster,
    pod: &Value,
    c: &Value,
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    // The `kubernetes` Service's variables come first; the container's own override them.
    let mut env = crate::serviceaccounts::service_env(cluster);
    for (name, value) in env_from(cluster, pod, c)? {
        env.retain(|(k, _)| *k != name);
        env.push((name, value));
    }
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default().to_owned();
        let value = if let Some(v) = e["value"].as_str() {
            let lookup = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            crate::expansion::expand(v, lookup)
        } else if let Some(r) = e["valueFrom"].get("secretKeyRef") {
            match key_of(cluster, Source::Secret, ns, r)? {
                Some(v) => v,
                None => continue,
            }
        } else if let Some(r) = e["valueFrom"].get("configMapKeyRef") {
            match key_of(cluster, Source::ConfigMap, ns, r)? {
                Some(v) => v,
                None => continue,
            }
        } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            super::downward::field(pod, path)
        } else if let Some(r) = e["valueFrom"].get("resourceFieldRef") {
            super::downward::resource_field(cluster, pod, c, r)
        } else {
            String::new()
        };
        env.retain(|(k, _)| *k != name);
        env.push((name, value));
    }
    Ok(env)
}

/// The variables of `envFrom`, in order (a later source wins), as the
/// kubelet's `makeEnvironmentVariables` makes them: every key of a
/// ConfigMap's `data` (not `binaryData`) or a Secret's, after `prefix`; a
/// missing optional source is skipped; keys that are not variable names are
/// skipped with an `InvalidEnvironmentVariableNames` Event.
fn env_from(
    cluster: &Cluster,
    pod: &Value,
    c: &Value,
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut out = Vec::new();
    for from in c["envFrom"].as_array().into_iter().flatten() {
        let (source, r, word) = if let Some(r) = from.get("configMapRef") {
            (Source::ConfigMap, r, "configMap")
        } else if let Some(r) = from.get("secretRef") {
            (Source::Secret, r, "secret")
        } else {
            continue;
        };
        let name = r["name"].as_str().unwrap_or_default();
        let Some(object) = source.get(cluster, ns, name) else {
            if r["optional"] == json!(true) {
                continue;
            }
            return Err(ConfigError::NotFound {
                kind: source.kind(),
                name: name.to_owned(),
            });
        };
        let prefix = from["prefix"].as_str().unwrap_or_default();
        let mut invalid = Vec::new();
        for (k, v) in object["data"].as_object().into_iter().flatten() {
            let key = format!("{prefix}{k}");
            let value = v
                .as_str()
                .and_then(|raw| source.bytes(raw))
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            match value {
                Some(value) if is_env_var_name(&key) => out.push((key, value)),
                _ => invalid.push(key),
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            cluster.event(
                pod,
                "Warning",
                "InvalidEnvironmentVariableNames",
                &format!(
                    "Keys [{}] from the EnvFrom {word} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                    invalid.join(", ")
                ),
            );
        }
    }
    Ok(out)
}

/// `IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// A `secretKeyRef` or `configMapKeyRef` value; `None` when it is optional and missing.
fn key_of(
    cluster: &Cluster,
    source: Source,
    ns: &str,
    r: &Value,
) -> Result<Option<String>, ConfigError> {
    let name = r["name"].as_str().unwrap_or_default();
    let key = r["key"].as_str().unwrap_or_default();
    let optional = r["optional"] == json!(true);
    let Some(object) = source.get(cluster, ns, name) else {
        return if optional {
            Ok(None)
        } else {
            Err(ConfigError::NotFound {
                kind: source.kind(),
                name: name.to_owned(),
            })
        };
    };
    let value = source
        .data(&object)
        .remove(key)
        .and_then(|bytes| String::from_utf8(bytes).ok());
    match value {
        Some(v) => Ok(Some(v)),
        None if optional => Ok(None),
        None => Err(ConfigError::NoKey {
            key: key.to_owned(),
            kind: source.kind(),
            namespace: ns.to_owned(),
            name: name.to_owned(),
        }),
    }
}
