//! The defaults the real server fills in on create, for the fields clients read back.

use serde_json::{Value, json};

use crate::resources::Resource;

/// Fills in what the API server would on create.
pub fn apply(resource: &Resource, object: &mut Value) {
    match resource.kind {
        "Job" => job(object),
        "Pod" => {
            pod_spec(&mut object["spec"]);
            if object["status"].get("phase").is_none() {
                object["status"] = json!({"phase": "Pending", "qosClass": qos(&object["spec"])});
            }
        }
        "Namespace" => {
            let name = object["metadata"]["name"].clone();
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
        }
        "Secret" => set_default(object, "type", json!("Opaque")),
        "Deployment" | "ReplicaSet" => {
            pod_spec(&mut object["spec"]["template"]["spec"]);
            crate::workloads::defaults::apply(resource.kind, object);
        }
        other => {
            crate::workloads::defaults::apply(other, object);
        }
    }
}

fn set_default(object: &mut Value, field: &str, value: Value) {
    if object.get(field).is_none_or(Value::is_null) {
        object[field] = value;
    }
}

fn job(object: &mut Value) {
    let uid = object["metadata"]["uid"].clone();
    let name = object["metadata"]["name"].clone();
    let spec = &mut object["spec"];
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "completions", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if spec["manualSelector"] != json!(true) {
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        let labels = &mut spec["template"]["metadata"]["labels"];
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("job-name", &name),
        ] {
            labels[k] = v.clone();
        }
    }
    pod_spec(&mut spec["template"]["spec"]);
    set_default(object, "status", json!({}));
}

fn pod_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    for list in ["initContainers", "containers"] {
        if let Some(containers) = spec[list].as_array_mut() {
            for c in containers {
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                if let Some(ports) = c["ports"].as_array_mut() {
                    for port in ports {
                        set_default(port, "protocol", json!("TCP"));
                    }
                }
                let latest = c["image"]
                    .as_str()
                    .is_some_and(|i| !i.contains(':') || i.ends_with(":latest"));
                set_default(
                    c,
                    "imagePullPolicy",
                    json!(if latest { "Always" } else { "IfNotPresent" }),
                );
            }
        }
    }
}

/// `Guaranteed` when every container's requests equal its limits, `BestEffort`
/// with none at all, else `Burstable`.
fn qos(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| spec[*l].as_array().into_iter().flatten())
        .collect();
    let none = containers.iter().all(|c| {
        c["resources"]["requests"]
            .as_object()
            .is_none_or(|m| m.is_empty())
            && c["resources"]["limits"]
                .as_object()
                .is_none_or(|m| m.is_empty())
    });
    if none {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let limits = &c["resources"]["limits"];
        ["cpu", "memory"].iter().all(|r| {
            limits.get(*r).is_some()
                && c["resources"]["requests"]
                    .get(*r)
                    .is_none_or(|q| Some(q) == limits.get(*r))
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}
