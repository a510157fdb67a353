//! One container run, as the kubelet's container runtime would do it: the image policy, the environment, the sandboxed process (bubblewrap) with its mounts, its output into the log registry, and its states from waiting to terminated.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::env::resolve_env;
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
        let env = self.create_config(status, stopped).await?;
        let log = self.cluster.logs.start(ContainerId {
            namespace: self.pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            pod: self.pod_name().to_owned(),
            container: self.name().to_owned(),
        });
        let started = now();
        let mut child = match self.command(&env).spawn() {
            Ok(child) => child,
            Err(e) => {
                let message = format!(
                    "failed to start the container process with bwrap (install bubblewrap): {e}"
                );
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
        let (code, was_stopped) = match self.wait(&mut child, &log, stopped).await {
            Ended::Exited(code) => (code, false),
            Ended::Stopped(code) => (code, true),
        };
        let reason = if code == 0 { "Completed" } else { "Error" };
        let terminated = json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now(), "containerID": format!("sim://{}", uuid::Uuid::new_v4())}});
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

    /// The environment, retried each second while a Secret or ConfigMap it
    /// needs is missing (`CreateContainerConfigError`); `None` when the pod
    /// stops meanwhile.
    async fn create_config(
        &self,
        status: &mut StatusSink<'_>,
        stopped: &mut watch::Receiver<bool>,
    ) -> Option<Vec<(String, String)>> {
        loop {
            match resolve_env(self.cluster, self.pod, self.container) {
                Ok(env) => return Some(env),
                Err(e) => {
                    let message = e.to_string();
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

    /// The sandboxed process: bubblewrap over the host's file system with the
    /// volumes bound at their mount paths, in the working directory, with
    /// only the container's environment.
    pub(super) fn command(&self, env: &[(String, String)]) -> Command {
        let c = self.container;
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
        let mut cmd = Command::new("bwrap");
        cmd.args(["--dev-bind", "/", "/", "--die-with-parent"]);
        for (flag, host, path) in self.mounts() {
            cmd.arg(flag).arg(host).arg(path);
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
            .env("HOSTNAME", self.pod_name())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }

    /// bubblewrap's bind flag, host directory and mount path of each volume
    /// mount (a `subPath` is made inside its volume).
    fn mounts(&self) -> Vec<(&'static str, PathBuf, String)> {
        let mut out = Vec::new();
        for m in self.container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let (Some(vol), Some(path)) = (m["name"].as_str(), m["mountPath"].as_str()) else {
                continue;
            };
            let Some(host) = self.volumes.get(vol) else {
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
            out.push((flag, host, path.to_owned()));
        }
        out
    }

    /// Copies the output into the log until the process ends, or stops it
    /// (SIGTERM to its group, SIGKILL after the grace period) when the pod is.
    async fn wait(
        &self,
        child: &mut Child,
        log: &Arc<Log>,
        stopped: &mut watch::Receiver<bool>,
    ) -> Ended {
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(read_lines(out, log.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(read_lines(err, log.clone()));
        }
        let pid = child.id();
        let grace = self.pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        let ended = tokio::select! {
            r = child.wait() => Ended::Exited(exit_code(r.ok())),
            _ = stopped.changed() => {
                // SIGTERM goes to the container's main process (bubblewrap's
                // child), as a runtime sends it to PID 1; SIGKILL to all.
                if let Some(pid) = pid {
                    signal_main(pid, "TERM");
                }
                let code = match tokio::time::timeout(Duration::from_secs(grace), child.wait()).await {
                    Ok(r) => exit_code(r.ok()),
                    Err(_) => {
                        if let Some(pid) = pid {
                            signal_group(pid, "KILL");
                        }
                        exit_code(child.wait().await.ok())
                    }
                };
                // What the main process left behind dies with the
                // container, as with its PID namespace.
                if let Some(pid) = pid {
                    signal_group(pid, "KILL");
                }
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
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.push(line);
        }
    })
}

/// Signals the children of `parent` (bubblewrap): the container's main
/// process, not bubblewrap, whose death would take the process down with
/// it before its handler ran.
fn signal_main(parent: u32, signal: &str) {
    let sent = std::process::Command::new("pkill")
        .arg(format!("-{signal}"))
        .arg("-P")
        .arg(parent.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if sent.is_err() {
        signal_group(parent, signal);
    }
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
