//! The defaults the real server fills in on create for the workload kinds: Deployments, ReplicaSets, Services, NetworkPolicies, PersistentVolumeClaims (their pod templates' defaults are the pod's, in the crate's `defaults`).

use serde_json::{Value, json};

/// Fills in what the API server would on create; `false` for other kinds.
pub fn apply(kind: &str, object: &mut Value) -> bool {
    match kind {
        "Deployment" => deployment(object),
        "ReplicaSet" => {
            set_default(&mut object["spec"], "replicas", json!(1));
            set_default(object, "status", json!({"replicas": 0}));
        }
        "Service" => {
            service(&mut object["spec"]);
            set_default(object, "status", json!({"loadBalancer": {}}));
        }
        "NetworkPolicy" => {
            let spec = &mut object["spec"];
            if spec.get("policyTypes").is_none_or(Value::is_null) {
                let mut types = vec!["Ingress"];
                if spec["egress"].as_array().is_some_and(|e| !e.is_empty()) {
                    types.push("Egress");
                }
                spec["policyTypes"] = json!(types);
            }
        }
        "PersistentVolumeClaim" => {
            set_default(&mut object["spec"], "volumeMode", json!("Filesystem"));
            set_default(object, "status", json!({"phase": "Pending"}));
        }
        _ => return false,
    }
    true
}

fn deployment(object: &mut Value) {
    let spec = &mut object["spec"];
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    set_default(spec, "strategy", json!({}));
    set_default(&mut spec["strategy"], "type", json!("RollingUpdate"));
    if spec["strategy"]["type"] == "RollingUpdate" {
        set_default(&mut spec["strategy"], "rollingUpdate", json!({}));
        let rolling = &mut spec["strategy"]["rollingUpdate"];
        set_default(rolling, "maxUnavailable", json!("25%"));
        set_default(rolling, "maxSurge", json!("25%"));
    }
    set_default(object, "status", json!({}));
}

fn service(spec: &mut Value) {
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    if spec["type"] != "ExternalName" {
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if let Some(ports) = spec["ports"].as_array_mut() {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
            let port = p["port"].clone();
            set_default(p, "targetPort", port);
        }
    }
}

fn set_default(object: &mut Value, field: &str, value: Value) {
    if object.get(field).is_none_or(Value::is_null) {
        object[field] = value;
    }
}
