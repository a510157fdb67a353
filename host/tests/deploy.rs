//! `deploy/overlays/simulator` applied with the real `kubectl apply -k` to the simulator (TLS, RBAC enforced, in-cluster configuration, the executor's image mapped to the binary built here): the pod becomes Ready, serves its metrics, runs a job from its embedded queue, mutates Jobs with plugins mounted from an image volume, drains a running job through `kubectl rollout restart`, leaves nothing behind when deleted, and names what a Role lacks. `scripts/test` installs kubectl when it is missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;

use crate::common;

use common::{Deployed, PLUGINS_IMAGE, STEP, eventually, free_port};

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
    // The manifests' ConfigMap sets SRC_LOG_FORMAT=json: one object per
    // line, the error a field of it.
    let log = d.executor_log().await;
    let logged = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|event| event["error"].as_str().is_some_and(|e| e.contains(denied)));
    assert!(logged, "and so does the executor's log:\n{log}");
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
