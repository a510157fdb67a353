//! Probes and hook actions as the kubelet runs them: `exec` (a process in a sandbox like the container's), `httpGet` (against the pod's IP, 127.0.0.1), `tcpSocket`; and the liveness, readiness and startup loops with their delays, periods, timeouts and thresholds.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Mutex, watch};

use super::container::ContainerRun;
use super::downward::POD_IP;
use super::env::resolve_env;
use super::status::{PodStatus, Slot};
use super::volumes::Volumes;
use crate::cluster::Cluster;

/// What a probe or hook runs against: the pod, the container and its
/// volumes (for `exec`), owned so that a probe task can outlive a borrow.
#[derive(Clone)]
pub(super) struct Target {
    /// The cluster (events, env lookups).
    pub cluster: Arc<Cluster>,
    /// The pod.
    pub pod: Value,
    /// The container's spec.
    pub container: Value,
    /// The pod's volumes.
    pub volumes: Volumes,
    /// The container's slot in the pod status.
    pub slot: Slot,
}

impl Target {
    fn name(&self) -> &str {
        self.container["name"].as_str().unwrap_or_default()
    }

    fn event(&self, kind: &str, reason: &str, message: &str) {
        self.cluster.event(&self.pod, kind, reason, message);
    }

    /// Runs a probe's or hook's action once, within `timeout`; `Err` with
    /// the message the kubelet reports on failure.
    pub async fn act(&self, action: &Value, timeout: Duration) -> Result<(), String> {
        let run = async {
            if let Some(exec) = action.get("exec") {
                self.exec(exec).await
            } else if let Some(http) = action.get("httpGet") {
                self.http(http, timeout).await
            } else if let Some(tcp) = action.get("tcpSocket") {
                let port = self.port(&tcp["port"])?;
                let host = tcp["host"].as_str().unwrap_or(POD_IP);
                tokio::net::TcpStream::connect((host, port))
                    .await
                    .map(drop)
                    .map_err(|e| format!("dial tcp {host}:{port}: connect: {e}"))
            } else if let Some(secs) = action["sleep"]["seconds"].as_u64() {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                Ok(())
            } else {
                // gRPC probes are not modelled: they pass.
                Ok(())
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "command timed out after {}s",
                timeout.as_secs_f64()
            )),
        }
    }

    /// The command in a sandbox made as the container's is, with its
    /// environment; output is the failure message.
    async fn exec(&self, exec: &Value) -> Result<(), String> {
        let mut container = self.container.clone();
        container["command"] = exec["command"].clone();
        if let Some(c) = container.as_object_mut() {
            c.remove("args");
        }
        let env = resolve_env(&self.cluster, &self.pod, &container).map_err(|e| e.to_string())?;
        let run = ContainerRun {
            cluster: &self.cluster,
            pod: &self.pod,
            container: &container,
            volumes: &self.volumes,
            slot: self.slot,
        };
        let out = run
            .output(&env)
            .await
            .map_err(|e| format!("failed to exec in container: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Err(text.trim_end().to_owned())
    }

    async fn http(&self, http: &Value, timeout: Duration) -> Result<(), String> {
        let port = self.port(&http["port"])?;
        let host = http["host"]
            .as_str()
            .filter(|h| !h.is_empty())
            .unwrap_or(POD_IP);
        let scheme = http["scheme"]
            .as_str()
            .unwrap_or("HTTP")
            .to_ascii_lowercase();
        let path = http["path"].as_str().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let url = format!("{scheme}://{host}:{port}{path}");
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let mut request = client.get(&url).header("User-Agent", "kube-probe/1.33");
        for h in http["httpHeaders"].as_array().into_iter().flatten() {
            if let (Some(n), Some(v)) = (h["name"].as_str(), h["value"].as_str()) {
                request = request.header(n, v);
            }
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("Get \"{url}\": {}", root_cause(&e)))?;
        let code = response.status().as_u16();
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        }
    }

    /// A port number, or a container port's name.
    fn port(&self, port: &Value) -> Result<u16, String> {
        if let Some(n) = port.as_u64() {
            return u16::try_from(n).map_err(|_| format!("invalid port number: {n}"));
        }
        let name = port.as_str().unwrap_or_default();
        if let Ok(n) = name.parse::<u16>() {
            return Ok(n);
        }
        self.container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| format!("couldn't find port: {name} in {}", self.name()))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// One probe's settings, with the API's defaults.
struct Settings {
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    failure_threshold: u64,
    success_threshold: u64,
}

impl Settings {
    fn of(probe: &Value) -> Settings {
        let secs = |field: &str, default: u64| probe[field].as_u64().unwrap_or(default);
        Settings {
            initial_delay: Duration::from_secs(secs("initialDelaySeconds", 0)),
            period: Duration::from_secs(secs("periodSeconds", 10).max(1)),
            timeout: Duration::from_secs(secs("timeoutSeconds", 1).max(1)),
            failure_threshold: secs("failureThreshold", 3).max(1),
            success_threshold: secs("successThreshold", 1).max(1),
        }
    }
}

/// Runs the container's probes while it runs: the startup probe first,
/// then liveness and readiness together. A failed liveness or startup
/// probe fires `kill` (the container is stopped and restarted per policy).
pub(super) async fn watch_container(
    target: Target,
    status: Arc<Mutex<PodStatus>>,
    kill: watch::Sender<bool>,
) {
    // Probes count from the container's start.
    while status
        .lock()
        .await
        .state(target.slot)
        .get("running")
        .is_none()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = target.container.clone();
    if !c["startupProbe"].is_null() {
        if !run_probe(&target, &c["startupProbe"], "Startup", &status).await {
            return restart(&target, "startup", &kill);
        }
        let mut s = status.lock().await;
        s.set_probed(target.slot, "started", true);
        s.write();
    }
    let readiness = async {
        if c["readinessProbe"].is_null() {
            return std::future::pending::<()>().await;
        }
        run_probe(&target, &c["readinessProbe"], "Readiness", &status).await;
    };
    let liveness = async {
        if c["livenessProbe"].is_null() {
            return std::future::pending::<bool>().await;
        }
        run_probe(&target, &c["livenessProbe"], "Liveness", &status).await
    };
    tokio::select! {
        () = readiness => {}
        alive = liveness => if !alive { restart(&target, "liveness", &kill) },
    }
}

fn restart(target: &Target, which: &str, kill: &watch::Sender<bool>) {
    target.event(
        "Normal",
        "Killing",
        &format!(
            "Container {} failed {which} probe, will be restarted",
            target.name()
        ),
    );
    let _ = kill.send(true);
}

/// One probe's loop. Readiness runs for ever, setting `ready` on each
/// verdict; liveness and startup return `false` after `failureThreshold`
/// failures in a row (startup returns `true` on its first success).
async fn run_probe(target: &Target, probe: &Value, kind: &str, status: &Mutex<PodStatus>) -> bool {
    let s = Settings::of(probe);
    tokio::time::sleep(s.initial_delay).await;
    let (mut successes, mut failures) = (0u64, 0u64);
    loop {
        match target.act(probe, s.timeout).await {
            Ok(()) => {
                successes += 1;
                failures = 0;
                if kind == "Startup" {
                    return true;
                }
                if kind == "Readiness" && successes >= s.success_threshold {
                    let mut st = status.lock().await;
                    st.set_probed(target.slot, "ready", true);
                    st.write();
                }
            }
            Err(message) => {
                failures += 1;
                successes = 0;
                target.event(
                    "Warning",
                    "Unhealthy",
                    &format!("{kind} probe failed: {message}"),
                );
                if failures >= s.failure_threshold {
                    if kind != "Readiness" {
                        return false;
                    }
                    let mut st = status.lock().await;
                    st.set_probed(target.slot, "ready", false);
                    st.write();
                }
            }
        }
        tokio::time::sleep(s.period).await;
    }
}
