//! `deploy/overlays/simulator` applied with the real `kubectl apply -k` to the simulator (TLS, RBAC enforced, in-cluster configuration, the executor's image mapped to the binary built here): the pod becomes Ready, serves its metrics, runs a job from its embedded queue, mutates Jobs with plugins mounted from an image volume, drains a running job through `kubectl rollout restart`, leaves nothing behind when deleted, and names what a Role lacks. `scripts/test` installs kubectl when it is missing.

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
const PLUGINS_IMAGE: &str = "executor-plugins:test";

/// How long any one step may take before the test says which one hung.
const STEP: Duration = Duration::from_secs(45);

/// The simulator with `deploy/overlays/simulator` (plus `patches`) applied.
struct Deployed {
    sim: Sim,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    /// The operations port on the host (pods share its network).
    ops: u16,
    /// The embedded queue's port.
    queue: u16,
    /// The user API token, from the Secret the component reads.
    token: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `to` relative to `from` (kustomize refuses absolute paths).
fn relative(from: &Path, to: &Path) -> PathBuf {
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
    async fn start(patches: &str) -> Deployed {
        Deployed::start_with(patches, None).await
    }

    /// As [`Deployed::start`], with the `plugins-image` component mounting
    /// `plugins` (a directory holding `plugins.yaml` and its `.wasm` files)
    /// as the image `executor-plugins:test`.
    async fn start_with(patches: &str, plugins: Option<&Path>) -> Deployed {
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
    async fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
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

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args).await;
        assert!(ok, "kubectl {args:?} failed: {err}\n{out}");
        out
    }

    fn kustomization(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// `kubectl apply -k`, then `kubectl rollout status`: the pod is Ready.
    async fn apply_and_wait_ready(&self) {
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

    async fn executor_log(&self) -> String {
        self.kubectl(&["logs", "deployment/executor"]).await.1
    }

    /// The executor CLI against the pod's embedded queue (its port on the
    /// host, the token from the Secret), with a deadline.
    async fn executor(&self, args: &[&str]) -> std::process::Output {
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

    async fn submit(&self, args: &[&str]) -> String {
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

    async fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&all).await).unwrap()
    }
}

/// Polls `check` until it holds, at most [`STEP`]; `what` names it when it does not.
async fn eventually<F, Fut>(what: &str, mut check: F)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_overlay_runs_a_ready_executor_whose_job_leaves_nothing_once_it_is_deleted() {
    let d = Deployed::start("").await;
    d.apply_and_wait_ready().await;

    let http = reqwest::Client::new();
    let ops = format!("http://127.0.0.1:{}", d.ops);
    let ready = http.get(format!("{ops}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // A job from the embedded queue in the pod runs to completion, its
    // secret redacted from the log the queue keeps.
    let id = d
        .submit(&[
            "--image",
            "alpine:3",
            "--secret",
            "API_KEY=s3cr3t-of-the-deploy-test",
            "--",
            "echo \"deploying with $API_KEY\"",
        ])
        .await;
    let logs = d.executor(&["logs", "-f", &id]).await;
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.status.success(),
        "the job succeeds: {text}\n{}\nthe executor's log:\n{}",
        String::from_utf8_lossy(&logs.stderr),
        d.executor_log().await
    );
    assert!(text.contains("deploying with"), "{text}");
    assert!(
        !text.contains("s3cr3t-of-the-deploy-test"),
        "the secret is redacted: {text}"
    );

    // The operations port answers through the pod, and counted the job.
    let metrics = http
        .get(format!("{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"executor_jobs_finished_total{outcome="succeeded"} 1"#),
        "{metrics}"
    );

    // The Job (kept: KUBERNETES_KEEP_JOBS) is owned by the executor's pod,
    // with its Secret owned by the Job.
    let pod = d
        .get_json(&["pods", "-l", "app.kubernetes.io/name=executor"])
        .await["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let jobs = d
        .get_json(&["jobs", "-l", "app.kubernetes.io/managed-by=executor"])
        .await;
    let owners = &jobs["items"][0]["metadata"]["ownerReferences"];
    assert_eq!(owners[0]["kind"], "Pod", "{jobs}");
    assert_eq!(owners[0]["name"], pod.as_str(), "{jobs}");
    let secrets = d
        .get_json(&["secrets", "-l", "app.kubernetes.io/managed-by=executor"])
        .await;
    assert!(
        !secrets["items"].as_array().unwrap().is_empty(),
        "the job had a Secret"
    );

    // Deleting what was applied leaves no Job, Secret or pod of it.
    d.ok(&["delete", "-k", &d.kustomization()]).await;
    eventually(
        "the executor's pod, its Jobs and their Secrets are gone",
        || async {
            let left = d
                .get_json(&[
                    "jobs,pods,secrets",
                    "-l",
                    "app.kubernetes.io/managed-by=executor",
                ])
                .await;
            let executor = d
                .get_json(&["pods", "-l", "app.kubernetes.io/name=executor"])
                .await;
            let names: Vec<String> = left["items"]
                .as_array()
                .unwrap()
                .iter()
                .chain(executor["items"].as_array().unwrap())
                .map(|o| format!("{} {}", o["kind"], o["metadata"]["name"]))
                .collect();
            if names.is_empty() {
                Ok(())
            } else {
                Err(names.join(", "))
            }
        },
    )
    .await;
    drop(d.sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_create_on_secrets_fails_the_job_naming_the_verb_and_the_resource() {
    let d = Deployed::start(
        r#"  - target: {kind: Role, name: executor}
    patch: |-
      - {op: test, path: /rules/2/resources/0, value: secrets}
      - {op: replace, path: /rules/2/verbs, value: [get, patch, list, delete]}
"#,
    )
    .await;
    d.apply_and_wait_ready().await;
    let id = d
        .submit(&[
            "--image",
            "alpine:3",
            "--secret",
            "API_KEY=s3cr3t-of-the-deploy-test",
            "--",
            "echo never",
        ])
        .await;
    // It ends (the queue gives up after its retries) rather than hang.
    let logs = d.executor(&["logs", "-f", &id]).await;
    assert!(!logs.status.success(), "the job cannot succeed");
    let show = d.executor(&["show", &id]).await;
    let shown = String::from_utf8_lossy(&show.stdout);
    let denied = r#"secrets is forbidden: User "system:serviceaccount:default:executor" cannot create resource "secrets" in API group "" in the namespace "default""#;
    assert!(
        shown.contains(denied),
        "the job says what the executor may not do:\n{shown}"
    );
    let log = d.executor_log().await;
    assert!(
        log.contains(denied),
        "and so does the executor's log:\n{log}"
    );
    assert!(
        !log.contains("s3cr3t-of-the-deploy-test") && !log.contains(&d.token),
        "never a secret or the configured token:\n{log}"
    );
    drop(d.sim);
}

/// The job's state and the executor that ran it, from `executor show -o json`.
async fn state_of(d: &Deployed, id: &str) -> (String, String, u64) {
    let out = d.executor(&["show", "-o", "json", id]).await;
    let s: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (
        s["state"].as_str().unwrap_or_default().to_owned(),
        s["executor"].as_str().unwrap_or_default().to_owned(),
        s["attempts"].as_u64().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_plugin_mutates_jobs_and_a_rollout_restart_drains_the_running_one() {
    // The plugins as an operator ships them in an OCI artifact: the
    // configuration and a pinned first-party plugin.
    let plugins = tempfile::tempdir().unwrap();
    let built = executor_tests::components();
    let wasm = built.bytes("annotate");
    std::fs::write(plugins.path().join("annotate.wasm"), &wasm).unwrap();
    let config = format!(
        "plugins:\n  - name: annotate\n    path: annotate.wasm\n    sha256: {}\n    failurePolicy: fail\n    settings:\n      job:\n        annotations:\n          acme.com/mounted-by: plugins-image\n",
        executor_tests::sha256_hex(&wasm)
    );
    std::fs::write(plugins.path().join("plugins.yaml"), config).unwrap();
    let d = Deployed::start_with(
        &format!(
            r#"  - target: {{kind: Deployment, name: executor}}
    patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata: {{name: executor}}
      spec:
        template:
          spec:
            volumes:
              - {{name: plugins, image: {{reference: "{PLUGINS_IMAGE}"}}}}
"#
        ),
        Some(plugins.path()),
    )
    .await;
    d.apply_and_wait_ready().await;
    let first_pod = d
        .get_json(&["pods", "-l", "app.kubernetes.io/name=executor"])
        .await["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();

    // A job that outlasts the restart's SIGTERM: it ends only once a port
    // on the host (pods share its network) listens, so the test decides when.
    let release = free_port();
    let script = format!(
        "echo started; until bash -c 'exec 3<>/dev/tcp/127.0.0.1/{release}' 2>/dev/null; do sleep 0.1; done; echo finished"
    );
    let first = d.submit(&["--image", "alpine:3", "--", &script]).await;
    let managed = ["jobs", "-l", "app.kubernetes.io/managed-by=executor"];
    eventually("the first job runs as a Job", || async {
        match d.get_json(&managed).await["items"][0]["metadata"]["name"].is_string() {
            true => Ok(()),
            false => Err("no Job yet".to_owned()),
        }
    })
    .await;
    let jobs = d.get_json(&managed).await;
    let job_name = jobs["items"][0]["metadata"]["name"].as_str().unwrap();
    let job = d.get_json(&["job", job_name]).await;
    assert_eq!(
        job["metadata"]["annotations"]["acme.com/mounted-by"], "plugins-image",
        "the mounted plugin's mutation is on the Job: {}",
        job["metadata"]
    );

    // The restart: with the embedded queue's `Recreate`, the old pod drains
    // (its queue still answers) before the new one starts.
    d.ok(&["rollout", "restart", "deployment/executor"]).await;
    eventually("the old pod is terminating", || async {
        let pod = d.get_json(&["pod", &first_pod]).await;
        match pod["metadata"]["deletionTimestamp"].is_string() {
            true => Ok(()),
            false => Err("not yet".to_owned()),
        }
    })
    .await;
    let second = d
        .submit(&["--image", "alpine:3", "--", "echo second"])
        .await;
    let _listening = std::net::TcpListener::bind(("127.0.0.1", release)).unwrap();

    let (ok, out, err) = d
        .kubectl(&[
            "rollout",
            "status",
            "deployment/executor",
            &format!("--timeout={}s", 2 * STEP.as_secs()),
        ])
        .await;
    if !ok {
        let state = d
            .kubectl(&["get", "pods,replicasets,jobs", "-o", "wide"])
            .await
            .1;
        let old = d.kubectl(&["logs", &first_pod]).await;
        panic!(
            "the restart never completed: {err}\n{out}\n{state}\nthe old pod's log:\n{}{}",
            old.1, old.2
        );
    }
    let logs = d.executor(&["logs", "-f", &second]).await;
    assert!(
        logs.status.success(),
        "the second job succeeds: {}",
        String::from_utf8_lossy(&logs.stdout)
    );

    let (state, by, attempts) = state_of(&d, &first).await;
    assert_eq!(
        (state.as_str(), attempts),
        ("completed", 0),
        "the first job ran once, to its end"
    );
    assert!(by.starts_with(&first_pod), "the old pod finished it: {by}");
    let log = String::from_utf8_lossy(&d.executor(&["logs", &first]).await.stdout).into_owned();
    assert_eq!(log.matches("started").count(), 1, "{log}");
    assert!(log.contains("finished"), "{log}");
    let (state, by, attempts) = state_of(&d, &second).await;
    assert_eq!((state.as_str(), attempts), ("completed", 0));
    assert!(
        !by.is_empty() && !by.starts_with(&first_pod),
        "the new pod took the second job: {by}"
    );
    drop(d.sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_variables_are_all_in_the_pods_termination_message() {
    let d = Deployed::start(
        r#"  - target: {kind: ConfigMap, name: executor-env}
    patch: |-
      - {op: replace, path: /data/EXECUTOR_MAXIMUM_NUM_JOBS, value: lots}
      - {op: add, path: /data/EXECUTOR_MAX_ACTIVE_TIME, value: soon}
"#,
    )
    .await;
    d.ok(&["apply", "-k", &d.kustomization()]).await;
    let seen = std::sync::Mutex::new(String::new());
    eventually("the pod's last state says why it stopped", || {
        let seen = &seen;
        let d = &d;
        async move {
            let pods = d
                .get_json(&["pods", "-l", "app.kubernetes.io/name=executor"])
                .await;
            let status = &pods["items"][0]["status"]["containerStatuses"][0];
            let message = status["state"]["terminated"]["message"]
                .as_str()
                .or(status["lastState"]["terminated"]["message"].as_str())
                .unwrap_or_default();
            *seen.lock().unwrap() = message.to_owned();
            match message.is_empty() {
                true => Err(status.to_string()),
                false => Ok(()),
            }
        }
    })
    .await;
    let seen = seen.into_inner().unwrap();
    for named in [
        "EXECUTOR_MAXIMUM_NUM_JOBS",
        "lots",
        "EXECUTOR_MAX_ACTIVE_TIME",
        "soon",
    ] {
        assert!(seen.contains(named), "{named} is in the message: {seen}");
    }
    let describe = d
        .ok(&["describe", "pods", "-l", "app.kubernetes.io/name=executor"])
        .await;
    assert!(describe.contains("EXECUTOR_MAXIMUM_NUM_JOBS"), "{describe}");
    drop(d.sim);
}
