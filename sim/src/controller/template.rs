//! The pods a controller makes from its owner's pod template (`<owner>-<5 random>`, the template's labels and annotations, a controller owner reference), admitted as the API server admits pods.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::{Cluster, random_suffix, resource};
use crate::status::ApiError;
use crate::store::Key;

/// Creates a pod from `owner`'s `spec.template`, controlled by `owner`
/// (of `api_version` and `kind`); the stored pod.
pub(super) fn create_pod(
    c: &Arc<Cluster>,
    owner: &Value,
    api_version: &str,
    kind: &str,
) -> Result<Value, ApiError> {
    let pods = resource("", "pods");
    let ns = owner["metadata"]["namespace"].as_str().unwrap_or_default();
    let owner_name = owner["metadata"]["name"].as_str().unwrap_or_default();
    let name = format!("{owner_name}-{}", random_suffix());
    let template = &owner["spec"]["template"];
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "generateName": format!("{owner_name}-"),
            "labels": template["metadata"]["labels"],
            "ownerReferences": [{
                "apiVersion": api_version, "kind": kind, "name": owner_name,
                "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": template["spec"],
    });
    if let Some(a) = template["metadata"].get("annotations") {
        pod["metadata"]["annotations"] = a.clone();
    }
    crate::defaults::apply(pods, &mut pod);
    // The real controllers create pods through the API, so the
    // ServiceAccount admission gives them their account's token.
    crate::serviceaccounts::admit(c, pods, &mut pod)?;
    c.store.create(pods, Key::new(pods, ns, &name), pod)
}
