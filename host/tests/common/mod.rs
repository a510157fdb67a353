//! What the deploy tests and the deploy bench share: the simulator with `deploy/overlays/simulator` applied by the real kubectl, the executor's image mapped to the binary under test, and a bounded poll.
#![allow(dead_code)] // each test binary uses its own part
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use sim::images::ImageMapping;
use sim::{Options, Sim};

/// The image the plugins' directory stands in for.
pub const PLUGINS_IMAGE: &str = "executor-plugins:test";

/// How long any one step may take before the test says which one hung.
pub const STEP: Duration = Duration::from_secs(45);

/// The simulator with `deploy/overlays/simulator` (plus `patches`) applied.
pub struct Deployed {
    pub sim: Sim,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    /// The operations port on the host (pods share its network).
    pub ops: u16,
    /// The embedded queue's port.
    pub queue: u16,
    /// The user API token, from the Secret the component reads.
    pub token: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The image's plugin configuration (`deploy/image/plugins.yaml`), pinned by
/// `deploy/image/pin-plugins` beside the first-party plugins built here, in
/// `dir`; its path.
pub fn image_plugins(dir: &Path) -> PathBuf {
    let built = executor_tests::components();
    for name in ["annotate", "scheduling-policy", "pull-secrets", "redact"] {
        let file = built.path(name);
        std::fs::copy(&file, dir.join(file.file_name().unwrap())).unwrap();
    }
    let image = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/image");
    let status = std::process::Command::new(image.join("pin-plugins"))
        .arg(image.join("plugins.yaml"))
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "pin-plugins failed");
    dir.join("plugins.yaml")
}

/// Starts `cmd` (an `executor serve`, its environment set) with its stderr
/// piped and returns once it has said how to try it ("logs -f"); see
/// [`start_until`].
pub fn start_serve(
    cmd: &mut std::process::Command,
) -> (
    std::process::Child,
    Vec<String>,
    std::sync::mpsc::Receiver<String>,
) {
    start_until(cmd, "logs -f")
}

/// Starts `cmd` with its stderr piped and returns once it has said a line
/// containing `ready`, with what it said until then; the rest is read on a
/// thread into the receiver, line by line, so that it never blocks on a
/// full pipe.
pub fn start_until(
    cmd: &mut std::process::Command,
    ready: &str,
) -> (
    std::process::Child,
    Vec<String>,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::BufRead;
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains(ready);
        banner.push(line);
        if done {
            break;
        }
    }
    if !banner.iter().any(|l| l.contains(ready)) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("it ended before it said {ready:?}: {banner:#?}");
    }
    let (said, later) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = said.send(line);
        }
    });
    (child, banner, later)
}

/// A simulator for a bench that runs `executor serve` beside it
/// ([`serve_process`]), and a temporary directory holding the simulator's
/// kubeconfig and the image's plugin configuration: `(sim, dir,
/// kubeconfig, plugins config)`.
pub async fn sim_for_serve(options: Options) -> (Sim, tempfile::TempDir, PathBuf, PathBuf) {
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let config = image_plugins(&plugins);
    (sim, dir, kubeconfig, config)
}

/// A field of process `pid`'s `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

/// `executor serve` as the benches run it, a process of its own against
/// `kubeconfig`: the plugins of `plugins_config`, its state under `dir`,
/// the embedded queue on 127.0.0.1:`port` with `token`, `max_jobs` at once,
/// tiny resource requests, its output discarded, killed when dropped.
/// `binary` is usually [`bench_binary`].
pub fn serve_process(
    binary: &Path,
    kubeconfig: &Path,
    plugins_config: &Path,
    dir: &Path,
    port: u16,
    token: &str,
    max_jobs: usize,
) -> tokio::process::Command {
    let mut serve = tokio::process::Command::new(binary);
    serve
        .arg("serve")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("EXECUTOR_PLUGINS_CONFIG", plugins_config)
        .env("XDG_CACHE_HOME", executor_tests::plugin_cache_home())
        .env("EXECUTOR_DATA_DIR", dir.join("state"))
        .env("EXECUTOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("EXECUTOR_API_TOKEN", token)
        .env("EXECUTOR_DEBUG_LISTEN", "off")
        .env("EXECUTOR_MAXIMUM_NUM_JOBS", max_jobs.to_string())
        .env("EXECUTOR_QUEUE_POLL_INTERVAL", "100ms")
        .env("EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY", "1Mi")
        .env("EXECUTOR_KUBERNETES_RESOURCE_LIMIT_MEMORY", "64Mi")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    serve
}

/// The executor a bench runs as a process: `EXECUTOR_BENCH_BINARY`, else
/// this build's. Another build to run: the image's, say, which is static
/// and links musl.
pub fn bench_binary() -> PathBuf {
    std::env::var_os("EXECUTOR_BENCH_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_executor")))
}

/// `to` relative to `from` (kustomize refuses absolute paths).
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    to[common..].iter().for_each(|c| path.push(c));
    path
}

impl Deployed {
    /// Starts the simulator, creates the token Secret and writes a
    /// kustomization over the simulator overlay that moves its ports to
    /// free ones (tests run side by side on one host network), keeps Jobs
    /// after they end (so that deleting the executor must collect them) and
    /// adds `patches` (YAML list items).
    pub async fn start(patches: &str) -> Deployed {
        Deployed::start_with(patches, None).await
    }

    /// As [`Deployed::start`], with the `plugins-image` component mounting
    /// `plugins` (a directory holding `plugins.yaml` and its `.wasm` files)
    /// as the image `executor-plugins:test`.
    pub async fn start_with(patches: &str, plugins: Option<&Path>) -> Deployed {
        let mut images = vec![ImageMapping {
            image: "executor:*".to_owned(),
            command: PathBuf::from(env!("CARGO_BIN_EXE_executor")),
        }];
        images.extend(plugins.map(|dir| ImageMapping {
            image: PLUGINS_IMAGE.to_owned(),
            command: dir.to_path_buf(),
        }));
        let options = Options {
            images,
            ..Options::default()
        };
        let sim = Sim::start("127.0.0.1:0".parse().unwrap(), options)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();

        let client = kube::Client::try_from(sim.kube_config().await.unwrap()).unwrap();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "executor-embedded-queue"},
            "stringData": {"api-token": token}
        });
        Api::<Secret>::namespaced(client, "default")
            .create(
                &PostParams::default(),
                &serde_json::from_value(secret).unwrap(),
            )
            .await
            .unwrap();

        let (ops, queue) = (free_port(), free_port());
        let here = dir.path().canonicalize().unwrap();
        let overlay = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/overlays/simulator")
            .canonicalize()
            .unwrap();
        let components = match plugins {
            None => String::new(),
            Some(_) => {
                let component = overlay.join("../../components/plugins-image");
                format!(
                    "components: [{}]\n",
                    relative(&here, &component.canonicalize().unwrap()).display()
                )
            }
        };
        let kustomization = format!(
            r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [{overlay}]
{components}patches:
  - target: {{kind: ConfigMap, name: executor-env}}
    patch: |-
      - {{op: replace, path: /data/EXECUTOR_DEBUG_LISTEN, value: "0.0.0.0:{ops}"}}
      - {{op: replace, path: /data/EXECUTOR_LISTEN, value: "0.0.0.0:{queue}"}}
      - {{op: replace, path: /data/EXECUTOR_ADVERTISE_URL, value: "http://127.0.0.1:{queue}"}}
      - {{op: add, path: /data/KUBERNETES_KEEP_JOBS, value: "true"}}
      - {{op: add, path: /data/EXECUTOR_QUEUE_POLL_INTERVAL, value: 100ms}}
  - target: {{kind: Deployment, name: executor}}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/ports
        value: [{{name: ops, containerPort: {ops}}}, {{name: queue, containerPort: {queue}}}]
{patches}"#,
            overlay = relative(&here, &overlay).display()
        );
        std::fs::write(here.join("kustomization.yaml"), kustomization).unwrap();
        Deployed {
            sim,
            dir,
            kubeconfig,
            ops,
            queue,
            token,
        }
    }

    /// Runs kubectl; returns (success, stdout, stderr).
    pub async fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run kubectl (scripts/test installs it): {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args).await;
        assert!(ok, "kubectl {args:?} failed: {err}\n{out}");
        out
    }

    pub fn kustomization(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// `kubectl apply -k`, then `kubectl rollout status`: the pod is Ready.
    pub async fn apply_and_wait_ready(&self) {
        let applied = self.ok(&["apply", "-k", &self.kustomization()]).await;
        assert!(
            applied.contains("deployment.apps/executor created"),
            "{applied}"
        );
        let (ok, out, err) = self
            .kubectl(&[
                "rollout",
                "status",
                "deployment/executor",
                &format!("--timeout={}s", STEP.as_secs()),
            ])
            .await;
        if !ok {
            let pods = self.kubectl(&["describe", "pods"]).await.1;
            let log = self.executor_log().await;
            panic!("the executor never became Ready: {err}\n{out}\n{pods}\nits log:\n{log}");
        }
    }

    pub async fn executor_log(&self) -> String {
        self.kubectl(&["logs", "deployment/executor"]).await.1
    }

    /// The executor CLI against the pod's embedded queue (its port on the
    /// host, the token from the Secret), with a deadline.
    pub async fn executor(&self, args: &[&str]) -> std::process::Output {
        let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_executor"))
            .args(args)
            .env(
                "EXECUTOR_SERVER",
                format!("http://127.0.0.1:{}", self.queue),
            )
            .env("EXECUTOR_API_TOKEN", &self.token)
            .env_remove("EXECUTOR_DATA_DIR")
            .output();
        tokio::time::timeout(STEP, run)
            .await
            .unwrap_or_else(|_| panic!("executor {args:?} did not end within {STEP:?}"))
            .unwrap()
    }

    pub async fn submit(&self, args: &[&str]) -> String {
        let mut all = vec!["submit"];
        all.extend_from_slice(args);
        let out = self.executor(&all).await;
        assert!(
            out.status.success(),
            "submit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub async fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&all).await).unwrap()
    }
}

/// [`eventually`] for tests without a runtime: `check` until it passes,
/// failing with its last word after [`STEP`].
pub fn eventually_blocking<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + STEP;
    loop {
        match check() {
            Ok(done) => return done,
            Err(last) if Instant::now() > deadline => panic!("{what}, within {STEP:?}: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Polls `check` until it holds, at most [`STEP`]; `what` names it when it does not.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + STEP;
    loop {
        match check().await {
            Ok(()) => return,
            Err(last) if Instant::now() > deadline => panic!("{what}, within {STEP:?}: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
