//! The simulated cluster: the store and what acts on it (garbage collection; the controllers come in their own modules), with the options it was started with.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use crate::faults::{FaultConfig, Faults};
use crate::logs::ContainerLogs;
pub use crate::nodes::{NodeSpec, NodesFile, node};
use crate::resources::{RESOURCES, Resource};
use crate::stats::Stats;
use crate::status::ApiError;
use crate::store::{Key, Store, meta_mut, now};

/// How the cluster is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The nodes, as `v1` Node objects (name, labels, taints, allocatable).
    pub nodes: Vec<Value>,
    /// How often an idle watch gets a `BOOKMARK` when it asked for them.
    pub bookmark_interval: Duration,
    /// Faults in force from the start.
    pub faults: FaultConfig,
    /// Images whose pulls fail (besides everything under `sim.invalid/`).
    pub missing_images: Vec<String>,
    /// How long a failing pull waits before the next state
    /// (`ErrImagePull` ⇄ `ImagePullBackOff`).
    pub image_pull_retry: Duration,
    /// Local programs that stand in for images (the `--nodes` file's
    /// `images:`); the first glob that matches decides.
    pub images: Vec<crate::images::ImageMapping>,
    /// Serve plain HTTP instead of HTTPS (bearer tokens are still required).
    pub insecure_http: bool,
    /// The first crash-loop back-off before a container restarts; it
    /// doubles per crash up to 30 times this (the kubelet's 10 s and 5 min).
    pub restart_backoff: Duration,
    /// How long `Event` objects live (the API server's `--event-ttl`).
    pub event_ttl: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: crate::nodes::default_nodes(),
            bookmark_interval: Duration::from_secs(1),
            faults: FaultConfig::default(),
            missing_images: Vec::new(),
            image_pull_retry: Duration::from_secs(1),
            images: Vec::new(),
            insecure_http: false,
            restart_backoff: Duration::from_secs(10),
            event_ttl: Duration::from_secs(60 * 60),
        }
    }
}

/// The cluster.
pub struct Cluster {
    /// Every object.
    pub store: Store,
    /// Request accounting.
    pub stats: Stats,
    /// Injected faults.
    pub faults: Arc<Faults>,
    /// The options.
    pub options: Options,
    /// Containers' logs: the kubelet writes them, `pods/log` reads them.
    pub logs: ContainerLogs,
    /// Tokens and the CA: who may call the API.
    pub auth: crate::auth::Auth,
    address: OnceLock<String>,
}

impl Cluster {
    /// A cluster with the standard namespaces and the configured nodes.
    pub fn new(options: Options) -> Arc<Cluster> {
        let cluster = Cluster {
            store: Store::new(),
            stats: Stats::default(),
            faults: Arc::new(Faults::new(options.faults.clone())),
            options,
            logs: ContainerLogs::default(),
            auth: crate::auth::Auth::new(),
            address: OnceLock::new(),
        };
        crate::auth::bootstrap::create(&cluster.store);
        let namespaces = resource("", "namespaces");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let mut object =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            crate::defaults::apply(namespaces, &mut object);
            let _ = cluster
                .store
                .create(namespaces, Key::new(namespaces, "", ns), object);
        }
        let nodes = resource("", "nodes");
        for n in &cluster.options.nodes {
            let name = n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let _ = cluster
                .store
                .create(nodes, Key::new(nodes, "", &name), n.clone());
        }
        Arc::new(cluster)
    }

    /// Records the address the API is served on (for discovery).
    pub fn set_address(&self, address: String) {
        let _ = self.address.set(address);
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> String {
        self.address.get().cloned().unwrap_or_default()
    }

    /// Deletes the object at `key` and, per `policy`, its dependents:
    /// `Background` deletes them after it, `Foreground` before it (the owner
    /// shows `deletionTimestamp` meanwhile), `Orphan` removes their owner
    /// references and leaves them.
    pub fn delete(&self, resource: &Resource, key: &Key, policy: &str) -> Result<Value, ApiError> {
        self.delete_with_grace(resource, key, policy, None)
    }

    /// [`Self::delete`] with the `gracePeriodSeconds` of the request: a pod
    /// that runs on a node is only marked (`deletionTimestamp`,
    /// `deletionGracePeriodSeconds`) and the kubelet removes it once its
    /// containers have stopped; with 0, or a pod that runs nowhere, it goes at once.
    pub fn delete_with_grace(
        &self,
        resource: &Resource,
        key: &Key,
        policy: &str,
        grace: Option<i64>,
    ) -> Result<Value, ApiError> {
        if resource.kind == "Pod"
            && let Some(marked) = self.mark_terminating(resource, key, grace)?
        {
            return Ok(marked);
        }
        let uid = self
            .store
            .get(key)
            .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
            .ok_or_else(|| ApiError::not_found(resource.name, resource.group, &key.name))?;
        let dependents = self.dependents(&uid);
        match policy {
            "Orphan" => {
                for (dk, _) in &dependents {
                    let _ = self.store.update(by_key(dk), dk, |o| {
                        let refs = meta_mut(o)
                            .get("ownerReferences")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        let kept: Vec<Value> = refs
                            .into_iter()
                            .filter(|r| r["uid"].as_str() != Some(uid.as_str()))
                            .collect();
                        if kept.is_empty() {
                            meta_mut(o).remove("ownerReferences");
                        } else {
                            meta_mut(o).insert("ownerReferences".into(), json!(kept));
                        }
                        Ok(())
                    });
                }
                self.store.delete(resource, key)
            }
            "Foreground" => {
                self.store.update(resource, key, |o| {
                    let meta = meta_mut(o);
                    meta.insert("deletionTimestamp".into(), json!(now()));
                    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
                    meta.insert("finalizers".into(), json!(["foregroundDeletion"]));
                    Ok(())
                })?;
                for (dk, _) in &dependents {
                    let _ = self.delete(by_key(dk), dk, "Foreground");
                }
                self.store.delete(resource, key)
            }
            _ => {
                let deleted = self.store.delete(resource, key)?;
                for (dk, _) in &dependents {
                    let _ = self.delete(by_key(dk), dk, "Background");
                }
                Ok(deleted)
            }
        }
    }

    /// Marks a running pod for graceful deletion; `None` when it should go at once.
    fn mark_terminating(
        &self,
        resource: &Resource,
        key: &Key,
        grace: Option<i64>,
    ) -> Result<Option<Value>, ApiError> {
        let pod = self
            .store
            .get(key)
            .ok_or_else(|| ApiError::not_found(resource.name, resource.group, &key.name))?;
        let bound = pod["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        let grace = grace
            .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30)
            .max(0);
        if !bound || finished || grace == 0 {
            return Ok(None);
        }
        if let Some(current) = pod["metadata"]["deletionGracePeriodSeconds"].as_i64()
            && current <= grace
        {
            // Already terminating within a shorter period: nothing changes.
            return Ok(Some(pod));
        }
        let at = crate::logs::now_nanos() / 1_000_000_000 + i128::from(grace);
        let deadline = i64::try_from(at)
            .ok()
            .and_then(|s| k8s_openapi::jiff::Timestamp::from_second(s).ok())
            .map_or_else(now, |t| t.to_string());
        self.store
            .update(resource, key, |o| {
                let meta = meta_mut(o);
                meta.insert("deletionTimestamp".into(), json!(deadline));
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                Ok(())
            })
            .map(Some)
    }

    /// Objects with an owner reference to `uid`.
    fn dependents(&self, uid: &str) -> Vec<(Key, Value)> {
        self.store.find(|_, o| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)))
        })
    }

    /// Records an Event about `object` (as `kubectl describe` shows them).
    pub fn event(&self, object: &Value, kind: &str, reason: &str, message: &str) {
        let events = resource("", "events");
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        let name = format!(
            "{}.{}",
            object["metadata"]["name"].as_str().unwrap_or_default(),
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let at = now();
        let component = match object["kind"].as_str() {
            Some("Job") => "job-controller",
            _ if reason == "Scheduled" || reason == "FailedScheduling" => "default-scheduler",
            _ => "kubelet",
        };
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                "apiVersion": object["apiVersion"],
                "kind": object["kind"],
                "name": object["metadata"]["name"],
                "namespace": ns,
                "uid": object["metadata"]["uid"],
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": "",
            "firstTimestamp": at,
            "lastTimestamp": at,
            "count": 1,
        });
        let _ = self
            .store
            .create(events, Key::new(events, ns, &name), event);
    }
}

/// The resource named `name` in `group` (one of [`RESOURCES`]).
pub fn resource(group: &str, name: &str) -> &'static Resource {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.name == name)
        .unwrap_or(&RESOURCES[0])
}

fn by_key(key: &Key) -> &'static Resource {
    RESOURCES
        .iter()
        .find(|r| r.name == key.resource)
        .unwrap_or(&RESOURCES[0])
}

/// Five characters as the API server's name generator uses (no vowels, no
/// look-alikes), for `generateName` and pod names.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}
