//! The Downward API: the pod fields (`fieldRef`) and container resources (`resourceFieldRef`) a container can read, for env and for `downwardAPI` volumes (labels and annotations in the kubelet's `key="value"` lines).

use std::path::Path;

use serde_json::Value;

use crate::cluster::{Cluster, resource};
use crate::store::Key;

/// Every pod shares the host's network, so its IP is the loopback address.
pub(super) const POD_IP: &str = "127.0.0.1";

/// A `fieldRef` value.
pub(super) fn field(pod: &Value, path: &str) -> String {
    let keyed = |map: &str| {
        path.strip_prefix(&format!("metadata.{map}['"))
            .and_then(|s| s.strip_suffix("']"))
            .map(|k| {
                pod["metadata"][map][k]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
    };
    match path {
        "metadata.name" | "metadata.namespace" | "metadata.uid" | "spec.nodeName" => {
            crate::selector::field_value(pod, path)
        }
        "metadata.labels" => format_map(&pod["metadata"]["labels"]),
        "metadata.annotations" => format_map(&pod["metadata"]["annotations"]),
        "spec.serviceAccountName" => pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default")
            .to_owned(),
        "status.podIP" | "status.hostIP" | "status.podIPs" | "status.hostIPs" => POD_IP.to_owned(),
        _ => keyed("labels")
            .or_else(|| keyed("annotations"))
            .unwrap_or_default(),
    }
}

/// Labels or annotations as the kubelet writes them: sorted `key="value"`
/// lines (Go's `%q` quoting), no newline after the last.
fn format_map(map: &Value) -> String {
    let mut lines: Vec<String> = map
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let quoted = serde_json::to_string(v.as_str().unwrap_or_default()).unwrap_or_default();
            format!("{k}={quoted}")
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// A `resourceFieldRef` value: the container's limit (the node's
/// allocatable when it has none) or request, divided by `divisor` and
/// rounded up, as the kubelet does.
pub(super) fn resource_field(
    cluster: &Cluster,
    pod: &Value,
    container: &Value,
    r: &Value,
) -> String {
    let wanted = r["resource"].as_str().unwrap_or_default();
    let Some((kind, name)) = wanted.split_once('.') else {
        return String::new();
    };
    let container = match r["containerName"].as_str().filter(|n| !n.is_empty()) {
        Some(other) => pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == other)
            .unwrap_or(container),
        None => container,
    };
    let mut quantity = container["resources"][kind][name].clone();
    if quantity.is_null() && kind == "requests" {
        quantity = container["resources"]["limits"][name].clone();
    }
    if quantity.is_null() {
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        let nodes = resource("", "nodes");
        quantity = cluster
            .store
            .get(&Key::new(nodes, "", node))
            .map(|n| n["status"]["allocatable"][name].clone())
            .unwrap_or(Value::Null);
    }
    let divisor = if r["divisor"].is_null() {
        Value::String("1".into())
    } else {
        r["divisor"].clone()
    };
    let amount = crate::quantity::resource_amount(name, &quantity).unwrap_or(0);
    let per = crate::quantity::resource_amount(name, &divisor)
        .filter(|d| *d > 0)
        .unwrap_or(1);
    ((amount + per - 1).div_euclid(per)).to_string()
}

/// Writes a `downwardAPI` volume's items into `dir`.
pub(super) fn fill_volume(
    cluster: &Cluster,
    pod: &Value,
    spec: &Value,
    dir: &Path,
) -> std::io::Result<()> {
    let first = pod["spec"]["containers"][0].clone();
    for item in spec["items"].as_array().into_iter().flatten() {
        let rel = item["path"].as_str().unwrap_or_default();
        if rel.is_empty() || rel.split('/').any(|p| p == "..") {
            continue;
        }
        let content = if let Some(path) = item["fieldRef"]["fieldPath"].as_str() {
            field(pod, path)
        } else if !item["resourceFieldRef"].is_null() {
            resource_field(cluster, pod, &first, &item["resourceFieldRef"])
        } else {
            continue;
        };
        let file = dir.join(rel);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, content)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_are_sorted_quoted_lines_without_a_last_newline() {
        let pod = json!({"metadata": {"labels": {"tier": "web", "app": "say \"hi\""}}});
        assert_eq!(
            field(&pod, "metadata.labels"),
            "app=\"say \\\"hi\\\"\"\ntier=\"web\""
        );
    }
}
