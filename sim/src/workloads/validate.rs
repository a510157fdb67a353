//! The field checks of the workload kinds, worded as kube-apiserver words them: Deployments and ReplicaSets (selector, template, strategy), Services (ports, name), PodDisruptionBudgets, NetworkPolicies and ConfigMaps (keys, `binaryData`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::intstr::scaled;
use crate::selector::LabelSelector;
use crate::status::{Cause, cause};

/// The checks of `kind` on `object`; `false` when the kind has none here.
pub fn check(kind: &str, object: &Value, causes: &mut Vec<Cause>) -> bool {
    match kind {
        "Deployment" => {
            replicated(object, "deployment", causes);
            strategy(&object["spec"]["strategy"], causes);
        }
        "ReplicaSet" => replicated(object, "replicaset", causes),
        "Service" => service(object, causes),
        "PodDisruptionBudget" => pdb(&object["spec"], causes),
        "NetworkPolicy" => network_policy(&object["spec"], causes),
        "ConfigMap" => config_map(object, causes),
        _ => return false,
    }
    true
}

/// What Deployments and ReplicaSets share: replicas, a selector that
/// selects the template's labels, and a pod template that restarts `Always`
/// (the template's pod spec is checked as a Pod's, by the crate's `validate`).
fn replicated(object: &Value, what: &str, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    for field in ["replicas", "revisionHistoryLimit", "minReadySeconds"] {
        if let Some(n) = spec[field].as_i64()
            && n < 0
        {
            causes.push(cause(
                "FieldValueInvalid",
                format!("spec.{field}"),
                format!("Invalid value: {n}: must be greater than or equal to 0"),
            ));
        }
    }
    let labels = spec["template"]["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => causes.push(cause(
            "FieldValueRequired",
            "spec.selector",
            "Required value",
        )),
        Some(selector) => match LabelSelector::from_label_selector_object(selector) {
            Ok(s) if s.is_everything() => causes.push(cause(
                "FieldValueInvalid",
                "spec.selector",
                format!("Invalid value: {selector}: empty selector is invalid for {what}"),
            )),
            Ok(s) if !s.matches(&labels) => causes.push(cause(
                "FieldValueInvalid",
                "spec.template.metadata.labels",
                format!(
                    "Invalid value: {}: `selector` does not match template `labels`",
                    Value::Object(labels.clone())
                ),
            )),
            Ok(_) => {}
            Err(e) => causes.push(cause(
                "FieldValueInvalid",
                "spec.selector",
                format!("Invalid value: {selector}: {e}"),
            )),
        },
    }
    let template = &spec["template"]["spec"];
    match template["restartPolicy"].as_str() {
        Some("Always") | None => {}
        Some(other) => causes.push(cause(
            "FieldValueNotSupported",
            "spec.template.spec.restartPolicy",
            format!("Unsupported value: {other:?}: supported values: \"Always\""),
        )),
    }
}

fn strategy(strategy: &Value, causes: &mut Vec<Cause>) {
    let rolling = &strategy["rollingUpdate"];
    match strategy["type"].as_str() {
        Some("Recreate") => {
            if !rolling.is_null() {
                causes.push(cause(
                    "FieldValueForbidden",
                    "spec.strategy.rollingUpdate",
                    "Forbidden: may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        Some("RollingUpdate") | None => {
            let at = "spec.strategy.rollingUpdate";
            let surge = int_or_percent(&rolling["maxSurge"], &format!("{at}.maxSurge"), causes);
            let unavailable = int_or_percent(
                &rolling["maxUnavailable"],
                &format!("{at}.maxUnavailable"),
                causes,
            );
            if surge == Some(0) && unavailable == Some(0) {
                causes.push(cause(
                    "FieldValueInvalid",
                    format!("{at}.maxUnavailable"),
                    format!(
                        "Invalid value: {}: may not be 0 when `maxSurge` is 0",
                        rolling["maxUnavailable"]
                    ),
                ));
            }
            if let Some(s) = rolling["maxUnavailable"].as_str()
                && scaled(&rolling["maxUnavailable"], 100, false).is_ok_and(|p| p > 100)
            {
                causes.push(cause(
                    "FieldValueInvalid",
                    format!("{at}.maxUnavailable"),
                    format!("Invalid value: {s:?}: must not be greater than 100%"),
                ));
            }
        }
        Some(other) => causes.push(cause(
            "FieldValueNotSupported",
            "spec.strategy.type",
            format!(
                "Unsupported value: {other:?}: supported values: \"Recreate\", \"RollingUpdate\""
            ),
        )),
    }
}

/// An `IntOrString` that must be a non-negative count or a percentage; its
/// value against 100, or `None` when absent or invalid.
fn int_or_percent(value: &Value, at: &str, causes: &mut Vec<Cause>) -> Option<i64> {
    if value.is_null() {
        return None;
    }
    match scaled(value, 100, false) {
        Ok(n) if n < 0 => {
            causes.push(cause(
                "FieldValueInvalid",
                at,
                format!("Invalid value: {value}: must be greater than or equal to 0"),
            ));
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            causes.push(cause(
                "FieldValueInvalid",
                at,
                format!("Invalid value: {value}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"),
            ));
            None
        }
    }
}

fn service(object: &Value, causes: &mut Vec<Cause>) {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if !name.is_empty() && !is_dns1035_label(name) {
        causes.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: {name:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"),
        ));
    }
    let spec = &object["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP");
    if !matches!(
        kind,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        causes.push(cause(
            "FieldValueNotSupported",
            "spec.type",
            format!("Unsupported value: {kind:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
        ));
    }
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    let headless = spec["clusterIP"] == "None";
    if ports.is_empty() && kind != "ExternalName" && !headless {
        causes.push(cause("FieldValueRequired", "spec.ports", "Required value"));
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        let port_name = p["name"].as_str().unwrap_or_default();
        if ports.len() > 1 && port_name.is_empty() {
            causes.push(cause(
                "FieldValueRequired",
                format!("{at}.name"),
                "Required value",
            ));
        } else if !port_name.is_empty() && !names.insert(port_name) {
            causes.push(cause(
                "FieldValueDuplicate",
                format!("{at}.name"),
                format!("Duplicate value: {port_name:?}"),
            ));
        }
        let port = p["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(cause(
                "FieldValueInvalid",
                format!("{at}.port"),
                format!("Invalid value: {port}: must be between 1 and 65535, inclusive"),
            ));
        }
        protocol(&p["protocol"], &format!("{at}.protocol"), causes);
    }
}

fn protocol(value: &Value, at: &str, causes: &mut Vec<Cause>) {
    if let Some(p) = value.as_str()
        && !matches!(p, "TCP" | "UDP" | "SCTP")
    {
        causes.push(cause(
            "FieldValueNotSupported",
            at,
            format!("Unsupported value: {p:?}: supported values: \"SCTP\", \"TCP\", \"UDP\""),
        ));
    }
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn is_dns1035_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    name.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn pdb(spec: &Value, causes: &mut Vec<Cause>) {
    let min = &spec["minAvailable"];
    let max = &spec["maxUnavailable"];
    if !min.is_null() && !max.is_null() {
        causes.push(cause(
            "FieldValueInvalid",
            "spec",
            format!("Invalid value: {spec}: minAvailable and maxUnavailable cannot be both set"),
        ));
    }
    for (field, v) in [("minAvailable", min), ("maxUnavailable", max)] {
        let at = format!("spec.{field}");
        if int_or_percent(v, &at, causes).is_some_and(|n| n > 100) && v.is_string() {
            causes.push(cause(
                "FieldValueInvalid",
                at,
                format!("Invalid value: {v}: must not be greater than 100%"),
            ));
        }
    }
    if let Some(policy) = spec["unhealthyPodEvictionPolicy"].as_str()
        && !matches!(policy, "IfHealthyBudget" | "AlwaysAllow")
    {
        causes.push(cause(
            "FieldValueNotSupported",
            "spec.unhealthyPodEvictionPolicy",
            format!("Unsupported value: {policy:?}: supported values: \"AlwaysAllow\", \"IfHealthyBudget\""),
        ));
    }
}

fn network_policy(spec: &Value, causes: &mut Vec<Cause>) {
    for (i, t) in spec["policyTypes"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let t = t.as_str().unwrap_or_default();
        if !matches!(t, "Ingress" | "Egress") {
            causes.push(cause(
                "FieldValueNotSupported",
                format!("spec.policyTypes[{i}]"),
                format!("Unsupported value: {t:?}: supported values: \"Egress\", \"Ingress\""),
            ));
        }
    }
    for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in spec[direction].as_array().into_iter().flatten().enumerate() {
            for (j, port) in rule["ports"].as_array().into_iter().flatten().enumerate() {
                protocol(
                    &port["protocol"],
                    &format!("spec.{direction}[{i}].ports[{j}].protocol"),
                    causes,
                );
            }
            for (j, peer) in rule[peers].as_array().into_iter().flatten().enumerate() {
                let cidr = peer["ipBlock"]["cidr"].as_str();
                if peer.get("ipBlock").is_some() && cidr.is_none_or(|c| !c.contains('/')) {
                    causes.push(cause(
                        "FieldValueInvalid",
                        format!("spec.{direction}[{i}].{peers}[{j}].ipBlock.cidr"),
                        format!("Invalid value: {:?}: must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)", cidr.unwrap_or_default()),
                    ));
                }
            }
        }
    }
}

fn config_map(object: &Value, causes: &mut Vec<Cause>) {
    let mut total = 0usize;
    let data = object["data"].as_object().cloned().unwrap_or_default();
    let binary = object["binaryData"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (field, map) in [("data", &data), ("binaryData", &binary)] {
        for (k, v) in map {
            // binaryData is base64 on the wire; the limit is on the bytes.
            let len = v.as_str().map_or(0, str::len);
            total += if field == "binaryData" {
                len * 3 / 4
            } else {
                len
            };
            if k.is_empty()
                || k.len() > 253
                || k == "."
                || k == ".."
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                causes.push(cause("FieldValueInvalid", format!("{field}[{k}]"), format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")));
            }
            if field == "binaryData" && data.contains_key(k) {
                causes.push(cause(
                    "FieldValueInvalid",
                    format!("binaryData[{k}]"),
                    format!("Invalid value: {k:?}: duplicate of key present in data"),
                ));
            }
        }
    }
    if total > 1024 * 1024 {
        causes.push(cause(
            "FieldValueTooLong",
            "",
            "Too long: must have at most 1048576 bytes",
        ));
    }
}
