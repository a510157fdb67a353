//! One container run, as the kubelet's container runtime would do it: the image policy, the environment, the sandboxed process (bubblewrap) with its mounts, its output into the log registry, and its states from waiting to terminated.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::watch;

use super::env::resolve_env;
use super::sandbox::{Mount, Sandbox, Spec};
use super::security::{User, user};
use super::status::{MAIN, Slot, StatusSink, waiting};
use super::volumes::Volumes;
use crate::cluster::Cluster;
use crate::logs::{ContainerId, Log};
use crate::store::now;

/// Image prefix whose pulls always fail, to test pull errors.
pub const MISSING_IMAGE_PREFIX: &str = "sim.invalid/";

/// Everything one container run needs: the pod, the container, the pod's
/// volumes and where its state goes in the pod status.
pub(super) struct ContainerRun<'a> {
    /// The cluster (store, events, options, logs).
    pub cluster: &'a Arc<Cluster>,
    /// The pod.
    pub pod: &'a Value,
    /// The container's spec.
    pub container: &'a Value,
    /// The pod's volumes on the host.
    pub volumes: &'a Volumes,
    /// Its slot in the pod status.
    pub slot: Slot,
}

/// The file a container may write why it ended to (`terminationMessagePath`),
/// read into its terminated state as the kubelet does.
struct TerminationMessage {
    file: Option<tempfile::NamedTempFile>,
    path: String,
    fallback_to_logs: bool,
}

impl TerminationMessage {
    /// The kubelet keeps at most this much of the file.
    const MAX_BYTES: u64 = 4096;
    /// `FallbackToLogsOnError` takes the smaller of these from the log's end.
    const FALLBACK_LINES: usize = 80;
    const FALLBACK_BYTES: usize = 2048;

    fn new(container: &Value) -> TerminationMessage {
        let path = container["terminationMessagePath"]
            .as_str()
            .unwrap_or("/dev/termination-log")
            .to_owned();
        let file = tempfile::NamedTempFile::new()
            .inspect_err(|e| tracing::warn!(error = %e, "no termination message file"))
            .ok();
        TerminationMessage {
            file,
            path,
            fallback_to_logs: container["terminationMessagePolicy"] == "FallbackToLogsOnError",
        }
    }

    fn mount(&self) -> Option<Mount> {
        Some(Mount {
            host: self.file.as_ref()?.path().to_path_buf(),
            path: self.path.clone(),
            read_only: false,
        })
    }

    /// The message: the file's first 4 KiB, or (when empty, the container
    /// failed and the policy says so) the log's tail.
    fn read(&self, code: i32, log: &Log) -> Option<String> {
        use std::io::Read;
        let mut text = Vec::new();
        if let Some(file) = &self.file
            && let Ok(f) = std::fs::File::open(file.path())
        {
            let _ = f.take(Self::MAX_BYTES).read_to_end(&mut text);
        }
        if !text.is_empty() {
            return Some(String::from_utf8_lossy(&text).into_owned());
        }
        (self.fallback_to_logs && code != 0)
            .then(|| log.tail(Self::FALLBACK_LINES, Self::FALLBACK_BYTES))
            .filter(|t| !t.is_empty())
    }
}

/// How a started process ended.
enum Ended {
    /// It exited with this code (128 + signal when killed by one).
    Exited(i32),
    /// It was stopped (pod deletion, liveness failure) and exited with this code.
    Stopped(i32),
}

impl ContainerRun<'_> {
    fn name(&self) -> &str {
        self.container["name"].as_str().unwrap_or_default()
    }

    fn event(&self, kind: &str, reason: &str, message: &str) {
        self.cluster.event(self.pod, kind, reason, message);
    }

    /// Runs the container to its end: its exit code, or `None` when the pod
    /// was stopped first.
    pub async fn run(
        &self,
        status: &mut StatusSink<'_>,
        stopped: &mut watch::Receiver<bool>,
    ) -> Option<i32> {
        self.pull_image(status, stopped).await?;
        let (env, user) = self.create_config(status, stopped).await?;
        let log = self.cluster.logs.start(ContainerId {
            namespace: self.pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            pod: self.pod_name().to_owned(),
            container: self.name().to_owned(),
        });
        let started = now();
        let message = TerminationMessage::new(self.container);
        let started_sandbox = match self.spec(&env, user) {
            Ok(mut spec) => {
                spec.mounts.extend(message.mount());
                super::sandbox::start(&spec)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e),
        };
        let mut sandbox = match started_sandbox {
            Ok(sandbox) => sandbox,
            Err(message) => {
                status
                    .set(
                        self.slot,
                        waiting("RunContainerError", Some(&message)),
                        false,
                    )
                    .await;
                self.event("Warning", "Failed", &message);
                log.finish();
                let _ = stopped.changed().await;
                return None;
            }
        };
        let running = json!({"running": {"startedAt": started}});
        status.set(self.slot, running, self.slot.list == MAIN).await;
        self.event(
            "Normal",
            "Started",
            &format!("Started container {}", self.name()),
        );
        let (code, was_stopped) = match self.wait(&mut sandbox, &log, stopped).await {
            Ended::Exited(code) => (code, false),
            Ended::Stopped(code) => (code, true),
        };
        let reason = if code == 0 { "Completed" } else { "Error" };
        let mut terminated = json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now(), "containerID": format!("sim://{}", uuid::Uuid::new_v4())}});
        if let Some(text) = message.read(code, &log) {
            terminated["terminated"]["message"] = json!(text);
        }
        status.set(self.slot, terminated, false).await;
        (!was_stopped).then_some(code)
    }

    fn pod_name(&self) -> &str {
        self.pod["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// Images are not pulled; the image policy decides what fails. A missing
    /// image alternates `ErrImagePull` and `ImagePullBackOff` until the pod
    /// stops (then `None`).
    async fn pull_image(
        &self,
        status: &mut StatusSink<'_>,
        stopped: &mut watch::Receiver<bool>,
    ) -> Option<()> {
        let image = self.container["image"].as_str().unwrap_or_default();
        let options = &self.cluster.options;
        if !image.starts_with(MISSING_IMAGE_PREFIX)
            && !options.missing_images.iter().any(|m| m == image)
        {
            return Some(());
        }
        let message = format!("failed to pull and unpack image \"{image}\": not found");
        status
            .set(self.slot, waiting("ErrImagePull", Some(&message)), false)
            .await;
        self.event(
            "Warning",
            "Failed",
            &format!("Failed to pull image \"{image}\": {message}"),
        );
        let mut backoff = false;
        loop {
            tokio::select! {
                _ = stopped.changed() => return None,
                _ = tokio::time::sleep(options.image_pull_retry) => {}
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
            status
                .set(self.slot, waiting(reason, Some(&msg)), false)
                .await;
            if backoff {
                self.event("Normal", "BackOff", &msg);
            }
        }
    }

    /// The environment and the user, retried each second while a Secret or
    /// ConfigMap it needs is missing or the user breaks `runAsNonRoot`
    /// (`CreateContainerConfigError`); `None` when the pod stops meanwhile.
    async fn create_config(
        &self,
        status: &mut StatusSink<'_>,
        stopped: &mut watch::Receiver<bool>,
    ) -> Option<(Vec<(String, String)>, User)> {
        loop {
            let config = resolve_env(self.cluster, self.pod, self.container)
                .map_err(|e| e.to_string())
                .and_then(|env| {
                    Ok((
                        env,
                        user(self.pod, self.container).map_err(|e| e.to_string())?,
                    ))
                });
            match config {
                Ok(config) => return Some(config),
                Err(message) => {
                    let state = waiting("CreateContainerConfigError", Some(&message));
                    status.set(self.slot, state, false).await;
                    self.event("Warning", "Failed", &format!("Error: {message}"));
                    tokio::select! {
                        _ = stopped.changed() => return None,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// The sandbox of the process: its command (a mapped image's entrypoint
    /// when the container gives none) after `$(VAR)` expansion, its
    /// working directory, user, volume mounts and environment.
    fn spec(&self, env: &[(String, String)], user: User) -> Result<Spec, String> {
        let c = self.container;
        let lookup = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let expand = |s: &str| crate::expansion::expand(s, lookup);
        let strings = |field: &str| -> Vec<String> {
            c[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(expand)
                .collect()
        };
        let image = c["image"].as_str().unwrap_or_default();
        let mapped = crate::images::resolve(&self.cluster.options.images, image);
        let mut argv = strings("command");
        if argv.is_empty()
            && let Some(entrypoint) = mapped.as_ref().and_then(|m| m.entrypoint.as_ref())
        {
            let name = entrypoint.file_name().unwrap_or_default().to_string_lossy();
            argv.push(format!("{}/{name}", super::sandbox::IMAGE_ROOT));
        }
        argv.extend(strings("args"));
        if argv.is_empty() {
            // No image entrypoint to fall back on: a container without a
            // command does nothing and succeeds.
            argv.push("true".into());
        }
        let workdir = c["workingDir"]
            .as_str()
            .filter(|w| w.starts_with('/'))
            .unwrap_or("/")
            .to_owned();
        Ok(Spec {
            argv,
            workdir,
            hostname: self.pod_name().to_owned(),
            uid: user.uid,
            gid: user.gid,
            mounts: self.mounts()?,
            image_dir: mapped.map(|m| m.dir),
            env: env.to_vec(),
        })
    }

    /// Runs the container's command (as an `exec` probe or hook sets it) in
    /// a sandbox made as the container's, to its end; its output.
    pub(super) async fn output(
        &self,
        env: &[(String, String)],
    ) -> Result<std::process::Output, String> {
        let user = user(self.pod, self.container).map_err(|e| e.to_string())?;
        let spec = self.spec(env, user)?;
        let sandbox = super::sandbox::start(&spec)
            .await
            .map_err(|e| e.to_string())?;
        sandbox
            .child
            .wait_with_output()
            .await
            .map_err(|e| e.to_string())
    }

    /// Each volume mount's host directory (a `subPath` is made inside its
    /// volume and must stay inside it). Secret, ConfigMap, projected and
    /// Downward API volumes are always read-only, as the kubelet mounts them.
    fn mounts(&self) -> Result<Vec<Mount>, String> {
        let mut out = Vec::new();
        for m in self.container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let (Some(vol), Some(path)) = (m["name"].as_str(), m["mountPath"].as_str()) else {
                continue;
            };
            let Some(root) = self.volumes.get(vol) else {
                continue;
            };
            let mut host = root.clone();
            if let Some(sub) = m["subPath"].as_str().filter(|s| !s.is_empty()) {
                host = sub_path(root, sub).ok_or_else(|| {
                    format!(
                        "failed to prepare subPath for volumeMount \"{vol}\" of container \"{}\"",
                        self.name()
                    )
                })?;
            }
            // Written by the kubelet, or an image's: never by the container.
            let projected = self.pod["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == vol)
                .is_some_and(|v| {
                    ["secret", "configMap", "projected", "downwardAPI", "image"]
                        .iter()
                        .any(|k| v.get(*k).is_some())
                });
            out.push(Mount {
                host,
                path: path.to_owned(),
                read_only: projected || m["readOnly"] == json!(true),
            });
        }
        Ok(out)
    }

    /// Copies the output into the log until the process ends, or stops it
    /// (SIGTERM to its group, SIGKILL after the grace period) when the pod is.
    async fn wait(
        &self,
        sandbox: &mut Sandbox,
        log: &Arc<Log>,
        stopped: &mut watch::Receiver<bool>,
    ) -> Ended {
        let mut readers = Vec::new();
        if let Some(out) = sandbox.child.stdout.take() {
            readers.push(read_lines(out, log.clone()));
        }
        if let Some(err) = sandbox.child.stderr.take() {
            readers.push(read_lines(err, log.clone()));
        }
        let grace = self.pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        let ended = tokio::select! {
            r = sandbox.child.wait() => Ended::Exited(exit_code(r.ok())),
            _ = stopped.changed() => {
                sandbox.terminate().await;
                let waited = tokio::time::timeout(Duration::from_secs(grace), sandbox.child.wait());
                let code = match waited.await {
                    Ok(r) => exit_code(r.ok()),
                    Err(_) => {
                        sandbox.kill().await;
                        exit_code(sandbox.child.wait().await.ok())
                    }
                };
                Ended::Stopped(code)
            }
        };
        for r in readers {
            let _ = r.await;
        }
        log.finish();
        ended
    }
}

/// The exit code, 128 + the signal for a process killed by one, or -1 when
/// the status could not be read.
fn exit_code(status: Option<std::process::ExitStatus>) -> i32 {
    status
        .and_then(|s| {
            s.code()
                .or_else(|| std::os::unix::process::ExitStatusExt::signal(&s).map(|sig| 128 + sig))
        })
        .unwrap_or(-1)
}

/// Copies a process's output into its log, line by line, as it comes.
fn read_lines<R>(stream: R, log: Arc<Log>) -> tokio::task::JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        // As container runtimes do, a line longer than 16 KiB is kept in
        // parts (CRI's partial lines), so no line is held whole here; bytes
        // that are not UTF-8 are replaced rather than ending the log.
        loop {
            buf.clear();
            match (&mut reader)
                .take(LINE_PART)
                .read_until(b'\n', &mut buf)
                .await
            {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let complete = buf.last() == Some(&b'\n') || (n as u64) < LINE_PART;
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    log.push_part(String::from_utf8_lossy(&buf).into_owned(), complete);
                }
            }
        }
    })
}

/// The longest part of a line the runtime writes as one log line.
const LINE_PART: u64 = 16 * 1024;

/// `sub` inside the volume at `root`, made if missing; `None` when it is
/// absolute, climbs out with `..`, or leads out through a symlink (which a
/// container could have planted in its volume).
fn sub_path(root: &std::path::Path, sub: &str) -> Option<PathBuf> {
    use std::path::Component;
    let root = root.canonicalize().ok()?;
    let mut current = root.clone();
    for c in std::path::Path::new(sub).components() {
        let Component::Normal(name) = c else {
            return None;
        };
        let next = current.join(name);
        if std::fs::symlink_metadata(&next).is_err() {
            std::fs::create_dir(&next).ok()?;
        }
        // Checked at each step, so nothing is made outside the volume.
        current = next.canonicalize().ok()?;
        if !current.starts_with(&root) {
            return None;
        }
    }
    Some(current)
}
