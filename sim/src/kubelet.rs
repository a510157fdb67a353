//! The kubelet: runs a bound pod's init containers in order, then its containers, as local processes in a mount namespace (bubblewrap) with the pod's volumes and environment, and reports container states and pod phases as the real kubelet does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use crate::cluster::{Cluster, resource};
use crate::logs::Log;
use crate::store::{Key, now};

/// Image prefix whose pulls always fail, to test pull errors.
pub const MISSING_IMAGE_PREFIX: &str = "sim.invalid/";

/// Where the kubelet keeps pods' volumes, and what it runs.
pub struct Kubelet {
    root: PathBuf,
    running: Mutex<HashMap<String, watch::Sender<bool>>>,
    logs: Mutex<HashMap<(String, String, String), Arc<Log>>>,
}

impl Kubelet {
    /// A kubelet keeping volumes under `root`.
    pub fn new(root: PathBuf) -> Kubelet {
        Kubelet {
            root,
            running: Mutex::new(HashMap::new()),
            logs: Mutex::new(HashMap::new()),
        }
    }

    /// The log of `container` of pod `namespace/pod`, once it has started.
    pub fn log(&self, namespace: &str, pod: &str, container: &str) -> Option<Arc<Log>> {
        self.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(namespace.to_owned(), pod.to_owned(), container.to_owned()))
            .cloned()
    }

    fn new_log(&self, namespace: &str, pod: &str, container: &str) -> Arc<Log> {
        let log = Arc::new(Log::default());
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).insert(
            (namespace.to_owned(), pod.to_owned(), container.to_owned()),
            log.clone(),
        );
        log
    }

    /// Starts `pod` if it is bound to a node, not finished, and not running yet.
    pub fn ensure(&self, cluster: &Arc<Cluster>, pod: &Value) {
        let Some(uid) = pod["metadata"]["uid"].as_str() else {
            return;
        };
        let bound = pod["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let done = matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        if !bound || done || pod["metadata"].get("deletionTimestamp").is_some() {
            return;
        }
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.contains_key(uid) {
            return;
        }
        let (stop, stopped) = watch::channel(false);
        running.insert(uid.to_owned(), stop);
        let cluster = cluster.clone();
        let pod = pod.clone();
        tokio::spawn(async move {
            let uid = pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            run_pod(&cluster, pod, stopped).await;
            let dir = cluster.kubelet.root.join(&uid);
            let _ = tokio::fs::remove_dir_all(dir).await;
        });
    }

    /// Stops every pod (when the simulator stops).
    pub fn stop_all(&self) {
        let running: Vec<_> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (_, stop) in running {
            let _ = stop.send(true);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }

    /// Stops the processes of pod `uid` (SIGTERM, then SIGKILL after the grace period).
    pub fn stop(&self, uid: &str) {
        if let Some(stop) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid)
        {
            let _ = stop.send(true);
        }
    }
}

/// The pod's status as the kubelet builds it, written whole on each change.
struct PodStatus {
    cluster: Arc<Cluster>,
    key: Key,
    status: Value,
}

impl PodStatus {
    fn write(&self) {
        let status = self.status.clone();
        let _ = self
            .cluster
            .store
            .update(resource("", "pods"), &self.key, |o| {
                o["status"] = status;
                Ok(())
            });
    }

    fn set_container(&mut self, list: &str, index: usize, state: Value, ready: bool) {
        let c = &mut self.status[list][index];
        let previous = c["state"].clone();
        if previous.get("terminated").is_none() || state.get("terminated").is_some() {
            c["state"] = state;
        }
        c["ready"] = json!(ready);
        c["started"] = json!(c["state"].get("running").is_some());
    }

    fn condition(&mut self, kind: &str, status: bool, reason: Option<&str>) {
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
}

fn waiting(reason: &str, message: Option<&str>) -> Value {
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

async fn run_pod(cluster: &Arc<Cluster>, pod: Value, mut stopped: watch::Receiver<bool>) {
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let spec = &pod["spec"];
    let init: Vec<Value> = spec["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let main: Vec<Value> = spec["containers"].as_array().cloned().unwrap_or_default();
    let mut status = PodStatus {
        cluster: cluster.clone(),
        key: Key::new(resource("", "pods"), &ns, &name),
        status: json!({
            "phase": "Pending",
            "conditions": [],
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": now(),
            "qosClass": pod["status"]["qosClass"],
            "initContainerStatuses": init.iter().map(container_status).collect::<Vec<_>>(),
            "containerStatuses": main.iter().map(container_status).collect::<Vec<_>>(),
        }),
    };
    if init.is_empty()
        && let Some(o) = status.status.as_object_mut()
    {
        o.remove("initContainerStatuses");
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
    status.write();

    let volumes = match prepare_volumes(cluster, &pod, &cluster.kubelet.root.join(&uid)).await {
        Ok(v) => v,
        Err(message) => {
            // The real kubelet retries mounts and leaves the pod in
            // ContainerCreating with a FailedMount event.
            for i in 0..init.len() {
                status.set_container(
                    "initContainerStatuses",
                    i,
                    waiting("PodInitializing", None),
                    false,
                );
            }
            for i in 0..main.len() {
                status.set_container(
                    "containerStatuses",
                    i,
                    waiting("ContainerCreating", None),
                    false,
                );
            }
            status.write();
            cluster.event(&pod, "Warning", "FailedMount", &message);
            let _ = stopped.changed().await;
            return;
        }
    };
    let restart_never = spec["restartPolicy"].as_str() == Some("Never");
    for (i, c) in init.iter().enumerate() {
        let exit = run_container(
            cluster,
            &pod,
            c,
            &volumes,
            &mut status,
            "initContainerStatuses",
            i,
            &mut stopped,
        )
        .await;
        match exit {
            Some(0) => {}
            Some(_) if restart_never => {
                status.status["phase"] = json!("Failed");
                status.condition("Initialized", false, Some("ContainersNotInitialized"));
                status.write();
                return;
            }
            Some(_) => {
                // OnFailure/Always would restart; the simulator does not model restarts.
                status.status["phase"] = json!("Failed");
                status.write();
                return;
            }
            None => return,
        }
    }
    status.condition("Initialized", true, None);
    status.status["phase"] = json!("Running");
    status.write();
    let status = Arc::new(tokio::sync::Mutex::new(status));
    let mut tasks = Vec::new();
    for (i, c) in main.iter().enumerate() {
        let cluster = cluster.clone();
        let pod = pod.clone();
        let c = c.clone();
        let volumes = volumes.clone();
        let status = status.clone();
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            run_main_container(&cluster, &pod, &c, &volumes, status, i, &mut stopped).await
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.ok().flatten());
    }
    if codes.iter().any(Option::is_none) {
        return;
    }
    let mut status = status.lock().await;
    let ok = codes.iter().all(|c| *c == Some(0));
    status.status["phase"] = json!(if ok { "Succeeded" } else { "Failed" });
    status.condition("Ready", false, Some("PodCompleted"));
    status.condition("ContainersReady", false, Some("PodCompleted"));
    status.condition("PodReadyToStartContainers", false, None);
    status.write();
}

async fn run_main_container(
    cluster: &Arc<Cluster>,
    pod: &Value,
    c: &Value,
    volumes: &HashMap<String, PathBuf>,
    status: Arc<tokio::sync::Mutex<PodStatus>>,
    index: usize,
    stopped: &mut watch::Receiver<bool>,
) -> Option<i32> {
    // Each container has its own view of the status while it starts; the
    // shared one is written under its lock.
    let mut local = {
        let s = status.lock().await;
        PodStatus {
            cluster: s.cluster.clone(),
            key: s.key.clone(),
            status: s.status.clone(),
        }
    };
    let shared = status.clone();
    let sync = move |local: &PodStatus| {
        let shared = shared.clone();
        let container = local.status["containerStatuses"][index].clone();
        async move {
            let mut s = shared.lock().await;
            s.status["containerStatuses"][index] = container;
            let all_running = s.status["containerStatuses"]
                .as_array()
                .is_some_and(|cs| cs.iter().all(|c| c["state"].get("running").is_some()));
            s.condition(
                "Ready",
                all_running,
                (!all_running).then_some("ContainersNotReady"),
            );
            s.condition(
                "ContainersReady",
                all_running,
                (!all_running).then_some("ContainersNotReady"),
            );
            s.write();
        }
    };
    run_container_with(
        cluster,
        pod,
        c,
        volumes,
        &mut local,
        "containerStatuses",
        index,
        stopped,
        Some(&sync),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn run_container(
    cluster: &Arc<Cluster>,
    pod: &Value,
    c: &Value,
    volumes: &HashMap<String, PathBuf>,
    status: &mut PodStatus,
    list: &str,
    index: usize,
    stopped: &mut watch::Receiver<bool>,
) -> Option<i32> {
    type NoSync = fn(&PodStatus) -> std::future::Ready<()>;
    run_container_with::<NoSync, _>(cluster, pod, c, volumes, status, list, index, stopped, None)
        .await
}

/// Runs one container to its end; `None` when the pod was stopped first.
#[allow(clippy::too_many_arguments)]
async fn run_container_with<F, Fut>(
    cluster: &Arc<Cluster>,
    pod: &Value,
    c: &Value,
    volumes: &HashMap<String, PathBuf>,
    status: &mut PodStatus,
    list: &str,
    index: usize,
    stopped: &mut watch::Receiver<bool>,
    sync: Option<&F>,
) -> Option<i32>
where
    F: Fn(&PodStatus) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let publish = |status: &PodStatus| {
        if sync.is_none() {
            status.write();
        }
    };
    macro_rules! update {
        ($status:expr) => {
            match sync {
                Some(f) => f($status).await,
                None => publish($status),
            }
        };
    }
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let name = c["name"].as_str().unwrap_or_default();
    let image = c["image"].as_str().unwrap_or_default();
    // Images are not pulled; the image policy decides what fails.
    if image.starts_with(MISSING_IMAGE_PREFIX)
        || cluster.options.missing_images.iter().any(|m| m == image)
    {
        let message = format!("failed to pull and unpack image \"{image}\": not found");
        status.set_container(list, index, waiting("ErrImagePull", Some(&message)), false);
        update!(status);
        cluster.event(
            pod,
            "Warning",
            "Failed",
            &format!("Failed to pull image \"{image}\": {message}"),
        );
        let mut backoff = false;
        loop {
            tokio::select! {
                _ = stopped.changed() => return None,
                _ = tokio::time::sleep(cluster.options.image_pull_retry) => {}
            }
            backoff = !backoff;
            let (reason, msg) = if backoff {
                (
                    "ImagePullBackOff",
                    format!("Back-off pulling image \"{image}\""),
                )
            } else {
                ("ErrImagePull", message.clone())
            };
            status.set_container(list, index, waiting(reason, Some(&msg)), false);
            update!(status);
            if backoff {
                cluster.event(pod, "Normal", "BackOff", &msg);
            }
        }
    }
    let env = loop {
        match resolve_env(cluster, pod, c) {
            Ok(env) => break env,
            Err(message) => {
                status.set_container(
                    list,
                    index,
                    waiting("CreateContainerConfigError", Some(&message)),
                    false,
                );
                update!(status);
                cluster.event(pod, "Warning", "Failed", &format!("Error: {message}"));
                tokio::select! {
                    _ = stopped.changed() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let lookup = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let expand = |s: &str| crate::expansion::expand(s, lookup);
    let mut argv: Vec<String> = c["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(c["args"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .map(expand)
        .collect();
    if argv.is_empty() {
        // No image entrypoint to fall back on: a container without a
        // command does nothing and succeeds.
        argv.push("true".into());
    }
    let workdir = c["workingDir"]
        .as_str()
        .filter(|w| !w.is_empty())
        .unwrap_or("/")
        .to_owned();
    let log = cluster.kubelet.new_log(ns, pod_name, name);
    let started = now();
    let mut cmd = tokio::process::Command::new("bwrap");
    cmd.args(["--dev-bind", "/", "/", "--die-with-parent"]);
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let (Some(vol), Some(path)) = (m["name"].as_str(), m["mountPath"].as_str()) else {
            continue;
        };
        let Some(host) = volumes.get(vol) else {
            continue;
        };
        let mut host = host.clone();
        if let Some(sub) = m["subPath"].as_str().filter(|s| !s.is_empty()) {
            host = host.join(sub);
            let _ = std::fs::create_dir_all(&host);
        }
        let flag = if m["readOnly"] == json!(true) {
            "--ro-bind"
        } else {
            "--bind"
        };
        cmd.arg(flag).arg(&host).arg(path);
    }
    // The container runtime makes the working directory; so does this shim.
    cmd.args([
        "--chdir",
        "/",
        "--",
        "/bin/sh",
        "-c",
        "mkdir -p -- \"$0\" 2>/dev/null; cd -- \"$0\" && exec \"$@\"",
    ])
    .arg(&workdir)
    .args(&argv);
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOSTNAME", pod_name)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let message = format!(
                "failed to start the container process with bwrap (install bubblewrap): {e}"
            );
            status.set_container(
                list,
                index,
                waiting("RunContainerError", Some(&message)),
                false,
            );
            update!(status);
            cluster.event(pod, "Warning", "Failed", &message);
            log.finish();
            let _ = stopped.changed().await;
            return None;
        }
    };
    status.set_container(
        list,
        index,
        json!({"running": {"startedAt": started}}),
        list == "containerStatuses",
    );
    update!(status);
    cluster.event(
        pod,
        "Normal",
        "Started",
        &format!("Started container {name}"),
    );
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(read_lines(out, log.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(read_lines(err, log.clone()));
    }
    let pid = child.id();
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    let exit = tokio::select! {
        r = child.wait() => r.ok(),
        _ = stopped.changed() => {
            // SIGTERM to the process group, then SIGKILL after the grace period.
            if let Some(pid) = pid {
                signal_group(pid, "TERM");
            }
            match tokio::time::timeout(Duration::from_secs(grace), child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    if let Some(pid) = pid {
                        signal_group(pid, "KILL");
                    }
                    let _ = child.wait().await;
                }
            }
            for r in readers {
                let _ = r.await;
            }
            log.finish();
            return None;
        }
    };
    for r in readers {
        let _ = r.await;
    }
    log.finish();
    let code = exit
        .and_then(|s| {
            s.code()
                .or_else(|| std::os::unix::process::ExitStatusExt::signal(&s).map(|sig| 128 + sig))
        })
        .unwrap_or(-1);
    let reason = if code == 0 { "Completed" } else { "Error" };
    status.set_container(
        list,
        index,
        json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now(), "containerID": format!("sim://{}", uuid::Uuid::new_v4())}}),
        false,
    );
    update!(status);
    Some(code)
}

/// Copies a process's output into its log, line by line, as it comes.
fn read_lines<R>(stream: R, log: Arc<Log>) -> tokio::task::JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.push(line);
        }
    })
}

fn signal_group(pid: u32, signal: &str) {
    // `kill` the process group rather than link libc for one call.
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The container's environment: values (expanded against earlier ones),
/// secret and config map keys, and pod fields.
fn resolve_env(cluster: &Cluster, pod: &Value, c: &Value) -> Result<Vec<(String, String)>, String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut env: Vec<(String, String)> = Vec::new();
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default().to_owned();
        let value = if let Some(v) = e["value"].as_str() {
            let lookup = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            crate::expansion::expand(v, lookup)
        } else if let Some(r) = e["valueFrom"].get("secretKeyRef") {
            match key_of(cluster, "secrets", ns, r, true)? {
                Some(v) => v,
                None => continue,
            }
        } else if let Some(r) = e["valueFrom"].get("configMapKeyRef") {
            match key_of(cluster, "configmaps", ns, r, false)? {
                Some(v) => v,
                None => continue,
            }
        } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            field(pod, path)
        } else {
            String::new()
        };
        env.retain(|(k, _)| *k != name);
        env.push((name, value));
    }
    Ok(env)
}

fn key_of(
    cluster: &Cluster,
    res: &str,
    ns: &str,
    r: &Value,
    base64: bool,
) -> Result<Option<String>, String> {
    let name = r["name"].as_str().unwrap_or_default();
    let key = r["key"].as_str().unwrap_or_default();
    let optional = r["optional"] == json!(true);
    let kind = if base64 { "secret" } else { "configmap" };
    let Some(object) = cluster.store.get(&Key::new(resource("", res), ns, name)) else {
        return if optional {
            Ok(None)
        } else {
            Err(format!("{kind} \"{name}\" not found"))
        };
    };
    let value = if base64 {
        object["data"][key].as_str().and_then(decode_base64)
    } else {
        object["data"][key].as_str().map(str::to_owned)
    };
    match value {
        Some(v) => Ok(Some(v)),
        None if optional => Ok(None),
        None => Err(format!("couldn't find key {key} in {kind} {ns}/{name}")),
    }
}

/// A `fieldRef` value: the fields the Downward API offers for env.
fn field(pod: &Value, path: &str) -> String {
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
        "spec.serviceAccountName" => pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default")
            .to_owned(),
        "status.podIP" | "status.hostIP" => "127.0.0.1".to_owned(),
        _ => keyed("labels")
            .or_else(|| keyed("annotations"))
            .unwrap_or_default(),
    }
}

fn decode_base64(text: &str) -> Option<String> {
    String::from_utf8(base64_bytes(text)?).ok()
}

fn base64_bytes(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Makes a directory per volume: emptyDir and claims empty, Secrets and
/// ConfigMaps filled with their keys (or the listed items).
async fn prepare_volumes(
    cluster: &Cluster,
    pod: &Value,
    dir: &Path,
) -> Result<HashMap<String, PathBuf>, String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut out = HashMap::new();
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default();
        let path = dir.join("volumes").join(name);
        std::fs::create_dir_all(&path).map_err(|e| format!("cannot make volume {name}: {e}"))?;
        let source = if let Some(s) = v.get("secret") {
            Some((
                "secrets",
                s["secretName"].as_str().unwrap_or_default(),
                s,
                true,
            ))
        } else {
            v.get("configMap").map(|s| {
                (
                    "configmaps",
                    s["name"].as_str().unwrap_or_default(),
                    s,
                    false,
                )
            })
        };
        if let Some((res, object_name, spec, base64)) = source {
            let kind = if base64 { "secret" } else { "configmap" };
            match cluster
                .store
                .get(&Key::new(resource("", res), ns, object_name))
            {
                None if spec["optional"] == json!(true) => {}
                None => {
                    return Err(format!(
                        "MountVolume.SetUp failed for volume \"{name}\" : {kind} \"{object_name}\" not found"
                    ));
                }
                Some(object) => {
                    let data = object["data"].as_object().cloned().unwrap_or_default();
                    let items: Vec<(String, String)> = match spec["items"].as_array() {
                        Some(items) => items
                            .iter()
                            .map(|i| {
                                (
                                    i["key"].as_str().unwrap_or_default().to_owned(),
                                    i["path"].as_str().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect(),
                        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
                    };
                    for (key, rel) in items {
                        let Some(raw) = data.get(&key).and_then(Value::as_str) else {
                            return Err(format!(
                                "MountVolume.SetUp failed for volume \"{name}\" : references non-existent {kind} key: {key}"
                            ));
                        };
                        let bytes = if base64 {
                            base64_bytes(raw).unwrap_or_default()
                        } else {
                            raw.as_bytes().to_vec()
                        };
                        let file = path.join(&rel);
                        if let Some(parent) = file.parent() {
                            let _ = std::fs::create_dir_all(parent);
                        }
                        std::fs::write(&file, bytes)
                            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
                    }
                }
            }
        }
        out.insert(name.to_owned(), path);
    }
    Ok(out)
}
