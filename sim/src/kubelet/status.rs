//! The pod status as the kubelet builds it: container states in their slots, the pod's conditions, written whole to the store on each change; no process handling.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::{Cluster, resource};
use crate::store::{Key, now};

/// The status list of init containers.
pub(super) const INIT: &str = "initContainerStatuses";
/// The status list of the pod's containers.
pub(super) const MAIN: &str = "containerStatuses";

/// Where one container's state sits in the pod status.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    /// [`INIT`] or [`MAIN`].
    pub list: &'static str,
    /// The container's index in its list.
    pub index: usize,
}

/// The pod's status as the kubelet builds it, written whole on each change.
pub(super) struct PodStatus {
    cluster: Arc<Cluster>,
    key: Key,
    /// The status object.
    pub status: Value,
    /// Per container: whether a readiness probe (rather than running)
    /// decides `ready`, and a startup probe (rather than running) `started`.
    gates: Vec<(bool, bool)>,
}

impl PodStatus {
    /// A started pod's first status: `Pending`, every container
    /// `PodInitializing`, and the conditions of a pod whose sandbox is ready.
    pub fn initial(cluster: &Arc<Cluster>, pod: &Value, init: &[Value], main: &[Value]) -> Self {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let mut status = PodStatus {
            cluster: cluster.clone(),
            key: Key::new(resource("", "pods"), ns, name),
            status: json!({
                "phase": "Pending",
                "conditions": [],
                "hostIP": "127.0.0.1",
                "hostIPs": [{"ip": "127.0.0.1"}],
                "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}],
                "startTime": now(),
                "qosClass": pod["status"]["qosClass"],
                INIT: init.iter().map(container_status).collect::<Vec<_>>(),
                MAIN: main.iter().map(container_status).collect::<Vec<_>>(),
            }),
            gates: main
                .iter()
                .map(|c| {
                    let startup = !c["startupProbe"].is_null();
                    (startup || !c["readinessProbe"].is_null(), startup)
                })
                .collect(),
        };
        if init.is_empty()
            && let Some(o) = status.status.as_object_mut()
        {
            o.remove(INIT);
        }
        status.condition("PodReadyToStartContainers", true, None);
        status.condition(
            "Initialized",
            init.is_empty(),
            (!init.is_empty()).then_some("ContainersNotInitialized"),
        );
        status.condition("Ready", false, Some("ContainersNotReady"));
        status.condition("ContainersReady", false, Some("ContainersNotReady"));
        status.condition("PodScheduled", true, None);
        status
    }

    /// Writes the status to the store; a pod already in a terminal phase
    /// (failed by the node controller) keeps it, as the API server refuses
    /// to move a pod out of one.
    pub fn write(&self) {
        let status = self.status.clone();
        let _ = self
            .cluster
            .store
            .update(resource("", "pods"), &self.key, |o| {
                let terminal =
                    |phase: &Value| matches!(phase.as_str(), Some("Succeeded" | "Failed"));
                if !terminal(&o["status"]["phase"]) || terminal(&status["phase"]) {
                    o["status"] = status;
                }
                Ok(())
            });
    }

    /// Sets a container's state; a terminated container stays terminated
    /// (until [`Self::begin_restart`]). `ready` is what running means for a
    /// container without probes; a probed one is ready only once its probe
    /// says so ([`Self::set_probed`]).
    pub fn set_container(&mut self, slot: Slot, state: Value, ready: bool) {
        let (ready_gated, start_gated) = self.gate(slot);
        let c = &mut self.status[slot.list][slot.index];
        let previous = c["state"].clone();
        if previous.get("terminated").is_none() || state.get("terminated").is_some() {
            c["state"] = state;
        }
        let running = c["state"].get("running").is_some();
        let was_running = previous.get("running").is_some();
        let probed = |field: &str| was_running && running && c[field] == json!(true);
        let ready = if ready_gated { probed("ready") } else { ready };
        let started = if start_gated {
            probed("started")
        } else {
            running
        };
        c["ready"] = json!(ready && running);
        c["started"] = json!(started);
    }

    fn gate(&self, slot: Slot) -> (bool, bool) {
        if slot.list != MAIN {
            return (false, false);
        }
        self.gates.get(slot.index).copied().unwrap_or_default()
    }

    /// A probe's verdict on a running container: `ready` (readiness) or
    /// `started` (startup); the pod's conditions follow.
    pub fn set_probed(&mut self, slot: Slot, field: &str, value: bool) {
        let c = &mut self.status[slot.list][slot.index];
        if c["state"].get("running").is_some() {
            c[field] = json!(value);
        }
        if field == "started" && value && !self.gate(slot).0 {
            // Without a readiness probe, started is ready.
            self.status[slot.list][slot.index]["ready"] = json!(true);
        }
        self.ready_when_all_ready();
    }

    /// A container that ended and will run again: its end becomes
    /// `lastState`, and it waits (`CrashLoopBackOff` during a back-off).
    pub fn begin_restart(&mut self, slot: Slot, waiting: Value) {
        let c = &mut self.status[slot.list][slot.index];
        let ended = c["state"].clone();
        if ended.get("terminated").is_some() {
            c["lastState"] = ended;
        }
        c["state"] = waiting;
        c["ready"] = json!(false);
        c["started"] = json!(false);
    }

    /// The container starts again: one more restart.
    pub fn count_restart(&mut self, slot: Slot) {
        let c = &mut self.status[slot.list][slot.index];
        let n = c["restartCount"].as_i64().unwrap_or(0);
        c["restartCount"] = json!(n + 1);
    }

    /// The container's current state.
    pub fn state(&self, slot: Slot) -> Value {
        self.status[slot.list][slot.index]["state"].clone()
    }

    /// Sets a condition; its transition time changes only with its status.
    pub fn condition(&mut self, kind: &str, status: bool, reason: Option<&str>) {
        let at = now();
        let Some(conditions) = self.status["conditions"].as_array_mut() else {
            return;
        };
        let value = if status { "True" } else { "False" };
        let mut c =
            json!({"type": kind, "status": value, "lastProbeTime": null, "lastTransitionTime": at});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        match conditions.iter_mut().find(|c| c["type"] == kind) {
            Some(existing) if existing["status"] == value => {}
            Some(existing) => *existing = c,
            None => conditions.push(c),
        }
    }

    /// `Ready` and `ContainersReady` follow whether every container is ready.
    pub fn ready_when_all_ready(&mut self) {
        let all_ready = self.status[MAIN]
            .as_array()
            .is_some_and(|cs| cs.iter().all(|c| c["ready"] == json!(true)));
        let reason = (!all_ready).then_some("ContainersNotReady");
        self.condition("Ready", all_ready, reason);
        self.condition("ContainersReady", all_ready, reason);
    }
}

/// Where a running container reports its state: init containers run one at
/// a time and own the status; the pod's containers run together and share it.
pub(super) enum StatusSink<'a> {
    /// The only writer.
    Own(&'a mut PodStatus),
    /// One of several writers; readiness follows all of them.
    Shared(Arc<tokio::sync::Mutex<PodStatus>>),
}

impl StatusSink<'_> {
    /// Records a container's state and writes the status.
    pub async fn set(&mut self, slot: Slot, state: Value, ready: bool) {
        match self {
            StatusSink::Own(status) => {
                status.set_container(slot, state, ready);
                status.write();
            }
            StatusSink::Shared(shared) => {
                let mut status = shared.lock().await;
                status.set_container(slot, state, ready);
                status.ready_when_all_ready();
                status.write();
            }
        }
    }

    /// Runs `f` on the status and writes it (conditions follow for the
    /// pod's containers).
    pub async fn with(&mut self, f: impl FnOnce(&mut PodStatus)) {
        match self {
            StatusSink::Own(status) => {
                f(status);
                status.write();
            }
            StatusSink::Shared(shared) => {
                let mut status = shared.lock().await;
                f(&mut status);
                status.ready_when_all_ready();
                status.write();
            }
        }
    }
}

/// A container state `waiting` with its reason.
pub(super) fn waiting(reason: &str, message: Option<&str>) -> Value {
    let mut w = json!({"reason": reason});
    if let Some(m) = message {
        w["message"] = json!(m);
    }
    json!({"waiting": w})
}

fn container_status(c: &Value) -> Value {
    json!({
        "name": c["name"],
        "image": c["image"],
        "imageID": "",
        "ready": false,
        "restartCount": 0,
        "started": false,
        "state": waiting("PodInitializing", None),
    })
}
