//! PersistentVolumeClaim binding, as a dynamic provisioner and the volume binder would do it: a pending claim becomes `Bound` to a volume named after it at once; no PersistentVolume object is made.

use serde_json::{Value, json};

use crate::cluster::{Cluster, resource};
use crate::store::Key;

/// Binds a pending claim: `spec.volumeName` `pvc-<uid>`, `status.phase`
/// `Bound`, the access modes and the requested capacity.
pub(super) fn bind(c: &Cluster, key: &Key, claim: &Value) {
    if claim["status"]["phase"] == "Bound" || claim["metadata"].get("deletionTimestamp").is_some() {
        return;
    }
    let uid = claim["metadata"]["uid"].as_str().unwrap_or_default();
    let volume = claim["spec"]["volumeName"]
        .as_str()
        .filter(|v| !v.is_empty())
        .map_or_else(|| format!("pvc-{uid}"), str::to_owned);
    let _ = c
        .store
        .update(resource("", "persistentvolumeclaims"), key, |o| {
            o["spec"]["volumeName"] = json!(volume);
            let annotations = &mut o["metadata"]["annotations"];
            annotations["pv.kubernetes.io/bind-completed"] = json!("yes");
            annotations["pv.kubernetes.io/bound-by-controller"] = json!("yes");
            let mut status = json!({"phase": "Bound", "accessModes": o["spec"]["accessModes"]});
            if let Some(storage) = o["spec"]["resources"]["requests"].get("storage") {
                status["capacity"] = json!({"storage": storage});
            }
            o["status"] = status;
            Ok(())
        });
}
