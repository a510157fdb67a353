//! ServiceAccounts in pods, as kube-apiserver's ServiceAccount admission and kube-controller-manager's account and root-CA controllers do it: each namespace gets a `default` account and the `kube-root-ca.crt` ConfigMap, and a pod gets its account's token as the `kube-api-access-*` projected volume; plus the `KUBERNETES_SERVICE_*` environment the kubelet gives every container.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::cluster::{Cluster, random_suffix, resource};
use crate::resources::Resource;
use crate::status::ApiError;
use crate::store::{EventType, Key};

/// Where the token, CA and namespace are mounted.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap holding the cluster's CA in every namespace.
pub const ROOT_CA: &str = "kube-root-ca.crt";
/// The lifetime the real admission asks for the projected token (the kubelet
/// rotates it; the simulator's mounted token does not expire).
const TOKEN_SECONDS: u64 = 3607;

/// The ServiceAccount admission of a pod: `serviceAccountName` defaults to
/// `default`; the account must exist (`default` is made if its controller
/// has not caught up yet); unless the pod or the account opts out with
/// `automountServiceAccountToken: false`, every container mounts the
/// `kube-api-access-*` volume at [`MOUNT_PATH`]. Other kinds pass unchanged.
pub fn admit(cluster: &Cluster, r: &Resource, pod: &mut Value) -> Result<(), ApiError> {
    if r.kind != "Pod" {
        return Ok(());
    }
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let spec = &mut pod["spec"];
    let account = spec["serviceAccountName"]
        .as_str()
        .or(spec["serviceAccount"].as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_owned();
    spec["serviceAccountName"] = json!(account);
    spec["serviceAccount"] = json!(account);
    let sa = resource("", "serviceaccounts");
    let key = Key::new(sa, &ns, &account);
    let found = cluster.store.get(&key).or_else(|| {
        (account == "default")
            .then(|| ensure_namespace_defaults(cluster, &ns))
            .and_then(|()| cluster.store.get(&key))
    });
    let Some(found) = found else {
        return Err(ApiError::forbidden(
            "pods",
            "",
            &name,
            &format!(
                "error looking up service account {ns}/{account}: serviceaccount {account:?} not found"
            ),
        ));
    };
    let automount = spec["automountServiceAccountToken"]
        .as_bool()
        .or(found["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if automount {
        mount_token(spec);
    }
    Ok(())
}

/// Adds the projected volume and mounts it in every container that has
/// nothing at [`MOUNT_PATH`] already.
fn mount_token(spec: &mut Value) {
    let volume = format!("kube-api-access-{}", random_suffix());
    let projected = json!({
        "name": volume,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    });
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            let taken = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"].as_str() == Some(MOUNT_PATH));
            if taken {
                continue;
            }
            let mount = json!({"name": volume, "readOnly": true, "mountPath": MOUNT_PATH});
            match c["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount),
                None => c["volumeMounts"] = json!([mount]),
            }
            mounted = true;
        }
    }
    if mounted {
        match spec["volumes"].as_array_mut() {
            Some(volumes) => volumes.push(projected),
            None => spec["volumes"] = json!([projected]),
        }
    }
}

/// Makes `default` and `kube-root-ca.crt` in `namespace` if they are missing.
fn ensure_namespace_defaults(cluster: &Cluster, namespace: &str) {
    let namespaces = resource("", "namespaces");
    if cluster
        .store
        .get(&Key::new(namespaces, "", namespace))
        .is_none()
    {
        return;
    }
    let sa = resource("", "serviceaccounts");
    let key = Key::new(sa, namespace, "default");
    if cluster.store.get(&key).is_none() {
        let object = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}});
        let _ = cluster.store.create(sa, key, object);
    }
    let cm = resource("", "configmaps");
    let key = Key::new(cm, namespace, ROOT_CA);
    let ca = cluster.auth.ca_pem().unwrap_or_default();
    match cluster.store.get(&key) {
        Some(current) if current["data"]["ca.crt"].as_str() == Some(ca) => {}
        Some(_) => {
            let _ = cluster.store.update(cm, &key, |o| {
                o["data"] = json!({"ca.crt": ca});
                Ok(())
            });
        }
        None => {
            let object = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA, "namespace": namespace, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": ca},
            });
            let _ = cluster.store.create(cm, key, object);
        }
    }
}

/// The account and root-CA controllers: every namespace, now and later,
/// keeps its `default` account and `kube-root-ca.crt` (recreated when deleted).
pub fn spawn(cluster: &Arc<Cluster>) -> tokio::task::JoinHandle<()> {
    let cluster = cluster.clone();
    let mut events = cluster.store.subscribe();
    tokio::spawn(async move {
        resync(&cluster);
        loop {
            match events.recv().await {
                Ok(e) => {
                    let relevant = match (e.kind, e.key.resource) {
                        (EventType::Added, "namespaces") => Some(e.key.name.as_str()),
                        (EventType::Deleted, "serviceaccounts") if e.key.name == "default" => {
                            Some(e.key.namespace.as_str())
                        }
                        (EventType::Deleted | EventType::Modified, "configmaps")
                            if e.key.name == ROOT_CA =>
                        {
                            Some(e.key.namespace.as_str())
                        }
                        _ => None,
                    };
                    if let Some(ns) = relevant {
                        ensure_namespace_defaults(&cluster, ns);
                    }
                }
                Err(RecvError::Lagged(_)) => resync(&cluster),
                Err(RecvError::Closed) => return,
            }
        }
    })
}

fn resync(cluster: &Cluster) {
    let (namespaces, _) = cluster.store.list(resource("", "namespaces"), None);
    for ns in namespaces {
        if let Some(name) = ns["metadata"]["name"].as_str() {
            ensure_namespace_defaults(cluster, name);
        }
    }
}

/// The environment the kubelet gives every container for the `kubernetes`
/// Service, pointing at the simulator's API (a pod's processes run on the
/// host, so the listen address reaches it).
pub fn service_env(cluster: &Cluster) -> Vec<(String, String)> {
    let Ok(addr) = cluster.address().parse::<std::net::SocketAddr>() else {
        return Vec::new();
    };
    let (host, port) = (addr.ip().to_string(), addr.port());
    let url = format!("tcp://{host}:{port}");
    [
        ("KUBERNETES_SERVICE_HOST".to_owned(), host.clone()),
        ("KUBERNETES_SERVICE_PORT".to_owned(), port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".to_owned(), port.to_string()),
        ("KUBERNETES_PORT".to_owned(), url.clone()),
        (format!("KUBERNETES_PORT_{port}_TCP"), url),
        (
            format!("KUBERNETES_PORT_{port}_TCP_PROTO"),
            "tcp".to_owned(),
        ),
        (format!("KUBERNETES_PORT_{port}_TCP_PORT"), port.to_string()),
        (format!("KUBERNETES_PORT_{port}_TCP_ADDR"), host),
    ]
    .into()
}
