//! The kubelet's sandbox as an untrusted job meets it: what a container can read, write and signal, the user it runs as, what outlives the simulator's process (nothing), images mapped to local programs and image volumes, and claims that outlive pods.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, LogParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use sim::images::ImageMapping;
use sim::{Options, Sim};

async fn start(options: Options) -> (Sim, Client) {
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let client = Client::try_from(sim.kube_config().await.unwrap()).unwrap();
    (sim, client)
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// A scratch directory on the host outside `/tmp`, standing in for a
/// user's files.
fn host_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn create_pod(pods: &Api<Pod>, name: &str, spec: Value) {
    let mut spec = spec;
    if spec.get("restartPolicy").is_none() {
        spec["restartPolicy"] = json!("Never");
    }
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
}

/// Polls the pod (bounded) until `pred` holds.
async fn until(pods: &Api<Pod>, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pod = serde_json::to_value(pods.get(name).await.unwrap()).unwrap();
        if pred(&pod) {
            return pod;
        }
        assert!(
            Instant::now() < deadline,
            "pod {name} never became {what}: {}",
            pod["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// Runs a one-container pod to its end: its phase and log.
async fn run(pods: &Api<Pod>, name: &str, spec: Value) -> (String, String) {
    create_pod(pods, name, spec).await;
    let pod = until(pods, name, "finished", finished).await;
    let log = pods.logs(name, &LogParams::default()).await.unwrap();
    (pod["status"]["phase"].as_str().unwrap().to_owned(), log)
}

fn shell(script: &str) -> Value {
    json!({"containers": [{"name": "main", "image": "busybox", "command": ["/bin/sh", "-c", script]}]})
}

#[tokio::test]
async fn a_container_reads_no_host_files_and_signals_no_host_process() {
    let home = host_dir("home");
    std::fs::write(home.join("secret.txt"), "home-secret").unwrap();
    let data = host_dir("data");
    std::fs::write(data.join("token"), "queue-token").unwrap();
    let (sim, client) = start(Options::default()).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let me = std::process::id();
    let real_home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    // Every line that would show a leak says so; the checks that must
    // succeed say `ok`.
    let script = format!(
        r#"
        for f in {home}/secret.txt {data}/token /proc/{me}/environ /proc/{me}/cmdline; do
          cat "$f" >/dev/null 2>&1 && echo "LEAK read $f"
        done
        ls "{real_home}" >/dev/null 2>&1 && echo "LEAK listed {real_home}"
        kill -0 {me} 2>/dev/null && echo "LEAK signalled {me}"
        ps_count=$(ls /proc | grep -c '^[0-9]')
        [ "$ps_count" -le 6 ] || echo "LEAK sees $ps_count processes"
        for d in /usr /etc /root / /opt; do
          touch "$d/sandbox-probe" 2>/dev/null && echo "LEAK wrote $d"
        done
        touch /scratch/file && echo ok-volume
        touch /tmp/file && echo ok-tmp
        echo host=$(hostname)
        "#,
        home = home.display(),
        data = data.display(),
    );
    let spec = json!({
        "volumes": [{"name": "scratch", "emptyDir": {}}],
        "containers": [{"name": "main", "image": "busybox", "command": ["/bin/sh", "-c", script],
                        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
    });
    let (phase, log) = run(&pods, "nosy", spec).await;
    assert_eq!(phase, "Succeeded", "{log}");
    assert!(!log.contains("LEAK"), "{log}");
    assert!(log.contains("ok-volume") && log.contains("ok-tmp"), "{log}");
    assert!(log.contains("host=nosy"), "{log}");
    // The files were there to read, from the host.
    assert_eq!(
        std::fs::read_to_string(home.join("secret.txt")).unwrap(),
        "home-secret"
    );
    assert!(!Path::new("/usr/sandbox-probe").exists());
    drop(sim);
}

#[tokio::test]
async fn run_as_user_and_group_are_the_ids_inside_the_container() {
    let (_sim, client) = start(Options::default()).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let spec = json!({
        "securityContext": {"runAsUser": 1000, "runAsGroup": 2000},
        "volumes": [{"name": "work", "emptyDir": {}}],
        "containers": [{"name": "main", "image": "busybox",
                        "securityContext": {"runAsUser": 1234},
                        "command": ["/bin/sh", "-c", "echo $(id -u) $(id -g); touch /work/mine && echo wrote"],
                        "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
    });
    let (phase, log) = run(&pods, "ids", spec).await;
    assert_eq!(phase, "Succeeded", "{log}");
    assert_eq!(log, "1234 2000\nwrote\n");
}

#[tokio::test]
async fn run_as_non_root_without_a_user_is_a_create_container_config_error() {
    let (_sim, client) = start(Options::default()).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut spec = shell("echo should-not-run");
    spec["securityContext"] = json!({"runAsNonRoot": true});
    create_pod(&pods, "rootless", spec).await;
    let pod = until(&pods, "rootless", "CreateContainerConfigError", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            == "CreateContainerConfigError"
    })
    .await;
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"],
        format!(
            "container has runAsNonRoot and image will run as root (pod: \"rootless_default({uid})\", container: main)"
        )
    );
}

/// Finds a file named `name` under the kubelets' directories in the temp dir.
fn find_on_host(name: &str) -> Option<PathBuf> {
    fn walk(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let path = e.path();
            if e.file_name() == name {
                return Some(path);
            }
            if depth > 0
                && e.file_type().ok()?.is_dir()
                && let Some(found) = walk(&path, name, depth - 1)
            {
                return Some(found);
            }
        }
        None
    }
    std::fs::read_dir(std::env::temp_dir())
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("executor-sim-"))
        .find_map(|e| walk(&e.path(), name, 6))
}

#[tokio::test]
async fn a_pod_cannot_reach_another_pods_secret_volume() {
    use std::os::unix::fs::PermissionsExt;
    let (_sim, client) = start(Options::default()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let key = unique("key");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "stringData": {key.clone(): "s3cr3t-value"},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let spec = json!({
        "volumes": [{"name": "db", "secret": {"secretName": "db", "defaultMode": 0o400}}],
        "containers": [{"name": "main", "image": "busybox",
                        "command": ["/bin/sh", "-c", format!("cat /secret/{key}; echo; touch /secret/x 2>/dev/null || echo read-only; sleep 600")],
                        "volumeMounts": [{"name": "db", "mountPath": "/secret"}]}],
    });
    create_pod(&pods, "owner", spec).await;
    until(&pods, "owner", "Running", |p| {
        p["status"]["phase"] == "Running"
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let on_host = loop {
        if let Some(p) = find_on_host(&key) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the secret file is nowhere on the host"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mode = std::fs::metadata(&on_host).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o400, "defaultMode applies");
    let kubelet_dir = on_host
        .ancestors()
        .find(|a| {
            a.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("executor-sim-"))
        })
        .unwrap();
    let dir_mode = std::fs::metadata(kubelet_dir).unwrap().permissions().mode();
    assert_eq!(
        dir_mode & 0o777,
        0o700,
        "the kubelet's directory is private"
    );
    let script = format!(
        "cat {path} 2>/dev/null && echo LEAK; find / -path /proc -prune -o -name {key} -print 2>/dev/null; echo searched",
        path = on_host.display()
    );
    let (phase, log) = run(&pods, "neighbour", shell(&script)).await;
    assert_eq!(phase, "Succeeded", "{log}");
    assert_eq!(log, "searched\n");
    let owner_log = pods.logs("owner", &LogParams::default()).await.unwrap();
    assert_eq!(owner_log, "s3cr3t-value\nread-only\n");
    pods.delete("owner", &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_pod_whose_image_maps_to_a_local_script_runs_it() {
    use std::os::unix::fs::PermissionsExt;
    let bin = host_dir("image");
    let script = bin.join("hello");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"hello $*\"\nif touch \"$(dirname \"$0\")/x\" 2>/dev/null; then echo LEAK wrote the image; fi\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let options = Options {
        images: vec![ImageMapping {
            image: "example.com/hello:*".into(),
            command: script.clone(),
        }],
        ..Options::default()
    };
    let (_sim, client) = start(options).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let spec = json!({"containers": [
        {"name": "entry", "image": "example.com/hello:1.0", "args": ["world"]},
    ]});
    let (phase, log) = run(&pods, "hello", spec).await;
    assert_eq!(phase, "Succeeded", "{log}");
    assert_eq!(log, "hello world\n");
    // A command of its own replaces the entrypoint; the image's directory is on PATH.
    let spec = json!({"containers": [
        {"name": "cmd", "image": "example.com/hello:2", "command": ["hello", "again"]},
    ]});
    let (phase, log) = run(&pods, "hello-cmd", spec).await;
    assert_eq!(phase, "Succeeded", "{log}");
    assert_eq!(log, "hello again\n");
    // An unmapped image has only the host's tools.
    let spec = json!({"containers": [
        {"name": "cmd", "image": "busybox", "command": ["hello"]},
    ]});
    let (phase, _) = run(&pods, "no-hello", spec).await;
    assert_eq!(phase, "Failed");
}

#[tokio::test]
async fn an_image_volume_is_its_mapped_directory_read_only_and_an_unmapped_one_never_mounts() {
    let plugins = host_dir("plugins-image");
    std::fs::write(plugins.join("plugins.yaml"), "plugins: []\n").unwrap();
    let options = Options {
        images: vec![ImageMapping {
            image: "registry.example.com/acme/plugins@sha256:*".into(),
            command: plugins.clone(),
        }],
        ..Options::default()
    };
    let (_sim, client) = start(options).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let volume = |reference: &str| {
        json!({
            "containers": [{"name": "main", "image": "busybox",
                "command": ["/bin/sh", "-c",
                    "cat /plugins/plugins.yaml; if touch /plugins/x 2>/dev/null; then echo LEAK wrote the image; fi"],
                "volumeMounts": [{"name": "plugins", "mountPath": "/plugins"}]}],
            "volumes": [{"name": "plugins", "image": {"reference": reference, "pullPolicy": "IfNotPresent"}}],
        })
    };
    let digest = format!(
        "registry.example.com/acme/plugins@sha256:{}",
        "a".repeat(64)
    );
    let (phase, log) = run(&pods, "image-volume", volume(&digest)).await;
    assert_eq!(phase, "Succeeded", "{log}");
    assert_eq!(log, "plugins: []\n");
    assert!(!plugins.join("x").exists());

    create_pod(&pods, "unmapped", volume("registry.example.com/other:1")).await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "default");
    let deadline = Instant::now() + Duration::from_secs(30);
    let message = loop {
        let list = events.list(&Default::default()).await.unwrap();
        let failed = list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("FailedMount")
                && e.involved_object.name.as_deref() == Some("unmapped")
        });
        if let Some(e) = failed {
            break e.message.unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "no FailedMount event for an unmapped image volume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        message.contains("registry.example.com/other:1"),
        "{message}"
    );
    let pod = serde_json::to_value(pods.get("unmapped").await.unwrap()).unwrap();
    assert_eq!(pod["status"]["phase"], "Pending");
}

#[tokio::test]
async fn why_a_container_ended_is_its_termination_message_or_its_logs_tail() {
    let (_sim, client) = start(Options::default()).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let message = |pod: &Value| {
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"].clone()
    };
    let (phase, _) = run(
        &pods,
        "file",
        shell("echo 'EXECUTOR_X: not a number' > /dev/termination-log; exit 2"),
    )
    .await;
    assert_eq!(phase, "Failed");
    let pod = serde_json::to_value(pods.get("file").await.unwrap()).unwrap();
    assert_eq!(message(&pod), "EXECUTOR_X: not a number\n");

    let mut spec = shell("echo first; echo 'the last words'; exit 1");
    spec["containers"][0]["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    run(&pods, "fallback", spec).await;
    let pod = serde_json::to_value(pods.get("fallback").await.unwrap()).unwrap();
    assert_eq!(message(&pod), "first\nthe last words\n");

    // A container that succeeds says nothing unless it wrote the file.
    let mut spec = shell("echo fine");
    spec["containers"][0]["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    run(&pods, "quiet", spec).await;
    let pod = serde_json::to_value(pods.get("quiet").await.unwrap()).unwrap();
    assert_eq!(message(&pod), Value::Null);
}

#[tokio::test]
async fn a_long_line_is_kept_in_parts_and_served_whole_with_a_timestamp_per_part() {
    let (_sim, client) = start(Options::default()).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let (phase, log) = run(
        &pods,
        "long-line",
        shell("head -c 40000 /dev/zero | tr '\\0' a; echo; echo next"),
    )
    .await;
    assert_eq!(phase, "Succeeded");
    assert_eq!(log, format!("{}\nnext\n", "a".repeat(40000)));
    let stamped = pods
        .logs(
            "long-line",
            &LogParams {
                timestamps: true,
                ..LogParams::default()
            },
        )
        .await
        .unwrap();
    let first = stamped.lines().next().unwrap();
    // 16 KiB + 16 KiB + the rest: three parts, each after its timestamp.
    assert_eq!(first.matches("Z aaaa").count(), 3, "{}", &first[..80]);
}

#[tokio::test]
async fn a_claims_data_outlives_the_pod_that_wrote_it() {
    let (_sim, client) = start(Options::default()).await;
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), "default");
    let claim = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    claims.create(&PostParams::default(), &claim).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let with_claim = |script: &str| {
        json!({
            "containers": [{"name": "main", "image": "busybox", "command": ["/bin/sh", "-c", script],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        })
    };
    let (phase, log) = run(&pods, "writer", with_claim("echo kept > /data/file")).await;
    assert_eq!(phase, "Succeeded", "{log}");
    pods.delete("writer", &DeleteParams::default())
        .await
        .unwrap();
    let (phase, log) = run(&pods, "reader", with_claim("cat /data/file")).await;
    assert_eq!(phase, "Succeeded", "{log}");
    assert_eq!(log, "kept\n");
}

/// The variable that makes [`a_simulator_host_for_the_kill_test_does_nothing_unless_asked`]
/// host a simulator whose pod runs `sleep <marker>`.
const MARKER_VAR: &str = "SIM_SANDBOX_KILL_MARKER";
const READY: &str = "sandbox-host-ready";

#[tokio::test]
async fn a_simulator_host_for_the_kill_test_does_nothing_unless_asked() {
    let Ok(marker) = std::env::var(MARKER_VAR) else {
        return;
    };
    let (_sim, client) = start(Options::default()).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    // One sleep in the background (a grandchild of the container's shell,
    // in its own session), one in the foreground.
    let script = format!("setsid sleep {marker} & sleep {marker}");
    create_pod(&pods, "sleeper", shell(&script)).await;
    until(&pods, "sleeper", "Running", |p| {
        p["status"]["phase"] == "Running"
    })
    .await;
    println!("{READY}");
    std::future::pending::<()>().await;
}

/// The processes whose command line is `sleep <marker>`.
fn sleepers(marker: &str) -> Vec<u32> {
    let wanted = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.ends_with(wanted.as_bytes()) && c.starts_with(b"sleep\0"))
        })
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn killing_the_process_hosting_the_simulator_leaves_none_of_its_containers() {
    let marker = format!("88{}", std::process::id() % 100_000 + 1_000_000);
    // The killed host cannot remove its kubelet's directory: keep it in one
    // this test removes.
    let scratch = tempfile::tempdir().unwrap();
    let mut host = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sandbox::a_simulator_host_for_the_kill_test_does_nothing_unless_asked",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MARKER_VAR, &marker)
        .env("TMPDIR", scratch.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = host.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if line.is_ok_and(|l| l.trim_end().ends_with(READY)) {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = host.kill();
        panic!("the simulator host never reported its pod running");
    }
    wait_until("both sleeps run", Duration::from_secs(10), || {
        sleepers(&marker).len() == 2
    });
    host.kill().unwrap(); // SIGKILL: no destructor, no handler runs.
    host.wait().unwrap();
    wait_until("no sleep is left", Duration::from_secs(10), || {
        sleepers(&marker).is_empty()
    });
}
