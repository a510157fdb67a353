//! Jobs run end to end in the simulator, seen through `kube`: the job controller makes the pod, the scheduler places it, the kubelet runs its containers with their volumes and environment, and logs, states and conditions read as on a real cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use sim::{Options, Sim};

async fn start(options: Options) -> (Sim, Client) {
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let client = Client::try_from(sim.kube_config().await.unwrap()).unwrap();
    (sim, client)
}

fn job(name: &str, spec: Value) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": spec}},
    }))
    .unwrap()
}

/// Waits (by watching, not sleeping) until the Job has condition `kind`.
async fn wait_for(jobs: &Api<Job>, name: &str, kind: &str) -> Job {
    let fut = async {
        loop {
            let current = jobs.get(name).await.unwrap();
            let done = |j: &Job| {
                j.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
            };
            if done(&current) {
                return current;
            }
            let rv = current.metadata.resource_version.clone().unwrap();
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(5);
            let mut stream = jobs.watch(&params, &rv).await.unwrap().boxed();
            while let Some(event) = stream.try_next().await.unwrap() {
                if let WatchEvent::Modified(j) = event
                    && done(&j)
                {
                    return j;
                }
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(j) => j,
        Err(_) => {
            let pods: Api<Pod> = Api::namespaced(jobs.clone().into_client(), "default");
            let list = pods
                .list(&ListParams::default().labels(&format!("job-name={name}")))
                .await
                .unwrap();
            let status: Vec<_> = list
                .items
                .iter()
                .map(|p| serde_json::to_string(&p.status).unwrap())
                .collect();
            panic!("job {name} never reached {kind}; its pods: {status:?}")
        }
    }
}

/// The first state of the Job's pod for which `pred` holds, by watching.
async fn until_pod(pods: &Api<Pod>, job: &str, mut pred: impl FnMut(&Pod) -> bool) -> Pod {
    let labels = format!("job-name={job}");
    let fut = async {
        loop {
            let list = pods
                .list(&ListParams::default().labels(&labels))
                .await
                .unwrap();
            let rv = list.metadata.resource_version.clone().unwrap();
            if let Some(p) = list.items.into_iter().find(|p| pred(p)) {
                return p;
            }
            let params = WatchParams::default().labels(&labels).timeout(5);
            let mut stream = pods.watch(&params, &rv).await.unwrap().boxed();
            while let Some(event) = stream.try_next().await.unwrap() {
                if let WatchEvent::Added(p) | WatchEvent::Modified(p) = event
                    && pred(&p)
                {
                    return p;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("the pod of {job} never reached the state"))
}

fn main_state(p: &Pod) -> Option<k8s_openapi::api::core::v1::ContainerState> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .clone()
}

async fn pod_of(pods: &Api<Pod>, job: &str) -> Pod {
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1, "one pod per job");
    list.items.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_job_runs_its_init_containers_in_order_then_completes_with_logs() {
    let (_sim, client) = start(Options::default()).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
        .create(&PostParams::default(), &serde_json::from_value(json!({
            "metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t", "file": "from the secret"},
        })).unwrap())
        .await
        .unwrap();
    let spec = json!({
        "restartPolicy": "Never",
        "volumes": [
            {"name": "work", "emptyDir": {}},
            {"name": "files", "secret": {"secretName": "creds", "items": [{"key": "file", "path": "dir/f.txt"}]}},
        ],
        "initContainers": [
            {"name": "setup", "image": "busybox", "command": ["/bin/sh", "-c", "echo one > /job/order; cat /files/dir/f.txt"],
             "volumeMounts": [{"name": "work", "mountPath": "/job"}, {"name": "files", "mountPath": "/files", "readOnly": true}]},
            {"name": "step-0", "image": "alpine:3", "workingDir": "/job/sub",
             "command": ["/bin/sh", "-c", "echo two >> /job/order; pwd; echo \"token=$TOKEN pod=$POD\"; echo to-stderr >&2"],
             "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
             ],
             "volumeMounts": [{"name": "work", "mountPath": "/job"}]},
        ],
        "containers": [{"name": "main", "image": "busybox", "command": ["/bin/sh", "-c", "cat /job/order"],
                        "volumeMounts": [{"name": "work", "mountPath": "/job"}]}],
    });
    jobs.create(&PostParams::default(), &job("ok", spec))
        .await
        .unwrap();
    let done = wait_for(&jobs, "ok", "Complete").await;
    let status = done.status.unwrap();
    assert_eq!((status.succeeded, status.failed), (Some(1), None));
    assert!(status.completion_time.is_some() && status.start_time.is_some());

    let pod = pod_of(&pods, "ok").await;
    let name = pod.metadata.name.clone().unwrap();
    assert!(
        name.starts_with("ok-") && name.len() == "ok-".len() + 5,
        "{name}"
    );
    let ps = pod.status.unwrap();
    assert_eq!(ps.phase.as_deref(), Some("Succeeded"));
    for c in ps
        .init_container_statuses
        .unwrap()
        .iter()
        .chain(ps.container_statuses.unwrap().iter())
    {
        let t = c.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (t.exit_code, t.reason.as_deref()),
            (0, Some("Completed")),
            "{}",
            c.name
        );
    }
    let log = |container: &str| {
        let pods = pods.clone();
        let name = name.clone();
        let container = container.to_owned();
        async move {
            pods.logs(
                &name,
                &LogParams {
                    container: Some(container),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(log("setup").await, "from the secret\n");
    assert_eq!(
        log("step-0")
            .await
            .lines()
            .collect::<Vec<_>>()
            .iter()
            .filter(|l| !l.contains("stderr"))
            .copied()
            .collect::<Vec<_>>(),
        ["/job/sub", &format!("token=s3cr3t pod={name}")]
    );
    assert!(log("step-0").await.contains("to-stderr"));
    assert_eq!(log("main").await, "one\ntwo\n");

    let stamped = pods
        .logs(
            &name,
            &LogParams {
                container: Some("main".into()),
                timestamps: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let first = stamped.lines().next().unwrap();
    let (ts, text) = first.split_once(' ').unwrap();
    assert_eq!(text, "one");
    assert!(
        ts.ends_with('Z') && ts.len() == "2026-11-23T00:36:00.123456789Z".len(),
        "{ts}"
    );

    let bad = pods
        .logs(
            &name,
            &LogParams {
                container: Some("nope".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        bad.to_string()
            .contains(&format!("container nope is not valid for pod {name}")),
        "{bad}"
    );
}

#[tokio::test]
async fn a_failing_step_fails_the_job_with_its_exit_code_and_skips_the_rest() {
    let (_sim, client) = start(Options::default()).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let spec = json!({
        "restartPolicy": "Never",
        "initContainers": [{"name": "step-0", "image": "alpine", "command": ["/bin/sh", "-c", "echo failing; exit 3"]}],
        "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
    });
    jobs.create(&PostParams::default(), &job("bad", spec))
        .await
        .unwrap();
    let failed = wait_for(&jobs, "bad", "Failed").await;
    let condition = failed
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(condition.reason.as_deref(), Some("BackoffLimitExceeded"));
    let pod = pod_of(&pods, "bad").await;
    let ps = pod.status.unwrap();
    assert_eq!(ps.phase.as_deref(), Some("Failed"));
    let step = &ps.init_container_statuses.unwrap()[0];
    let t = step.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    let main = &ps.container_statuses.unwrap()[0];
    assert_eq!(
        main.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
}

#[tokio::test]
async fn logs_follow_a_running_container_until_it_ends() {
    let (_sim, client) = start(Options::default()).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let spec = json!({
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "busybox",
            "command": ["/bin/sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; sleep 0.1; done"]}],
    });
    jobs.create(&PostParams::default(), &job("follow", spec))
        .await
        .unwrap();
    let pod = until_pod(&pods, "follow", |p| {
        main_state(p).is_some_and(|s| s.running.is_some() || s.terminated.is_some())
    })
    .await;
    let name = pod.metadata.name.unwrap();
    let stream = pods
        .log_stream(
            &name,
            &LogParams {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let lines: Vec<String> = stream.lines().try_collect().await.unwrap();
    assert_eq!(lines, ["line-1", "line-2", "line-3", "line-4", "line-5"]);
}

#[tokio::test]
async fn an_unschedulable_pod_stays_pending_with_the_schedulers_message() {
    let (_sim, client) = start(Options::default()).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let spec = json!({
        "restartPolicy": "Never",
        "nodeSelector": {"pool": "gpu"},
        "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
    });
    jobs.create(&PostParams::default(), &job("stuck", spec))
        .await
        .unwrap();
    let condition = |p: &Pod| {
        p.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "PodScheduled")
            .cloned()
    };
    let pod = until_pod(&pods, "stuck", |p| condition(p).is_some()).await;
    let message = condition(&pod).unwrap();
    assert_eq!(
        (message.status.as_str(), message.reason.as_deref()),
        ("False", Some("Unschedulable"))
    );
    assert_eq!(
        message.message.as_deref(),
        Some(
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        )
    );
    let list = events
        .list(&ListParams::default().fields("reason=FailedScheduling"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1, "one event per distinct message");
}

#[tokio::test]
async fn a_missing_image_cycles_between_err_image_pull_and_back_off() {
    let options = Options {
        image_pull_retry: Duration::from_millis(100),
        ..Options::default()
    };
    let (_sim, client) = start(options).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let spec = json!({
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "sim.invalid/nope:1", "command": ["true"]}],
    });
    jobs.create(&PostParams::default(), &job("pull", spec))
        .await
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    until_pod(&pods, "pull", |p| {
        if let Some(reason) = main_state(p).and_then(|s| s.waiting?.reason) {
            seen.insert(reason);
        }
        seen.len() == 2
    })
    .await;
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["ErrImagePull", "ImagePullBackOff"]
    );
    let pod = pod_of(&pods, "pull").await;
    let err = pods
        .logs(&pod.metadata.name.unwrap(), &LogParams::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("is waiting to start: trying and failing to pull image"),
        "{err}"
    );
}

#[tokio::test]
async fn the_deadline_fails_the_job_and_stops_its_pod() {
    let (_sim, client) = start(Options::default()).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let mut j = job(
        "slow",
        json!({
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "600"]}],
        }),
    );
    j.spec.as_mut().unwrap().active_deadline_seconds = Some(1);
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let failed = wait_for(&jobs, "slow", "Failed").await;
    let c = failed
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(c.reason.as_deref(), Some("DeadlineExceeded"));
}

#[tokio::test]
async fn deleting_a_job_in_the_background_removes_its_running_pod() {
    let (_sim, client) = start(Options::default()).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "long",
            json!({
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "600"]}],
            }),
        ),
    )
    .await
    .unwrap();
    until_pod(&pods, "long", |p| {
        main_state(p).is_some_and(|s| s.running.is_some())
    })
    .await;
    jobs.delete("long", &DeleteParams::background())
        .await
        .unwrap();
    // The pod terminates gracefully (SIGTERM ends `sleep`), then goes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pods
        .list(&ListParams::default().labels("job-name=long"))
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(tokio::time::Instant::now() < deadline, "the pod stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_lost_node_fails_its_pods_as_the_node_controller_reports_them() {
    let (sim, client) = start(Options::default()).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "stranded",
            json!({
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "600"]}],
            }),
        ),
    )
    .await
    .unwrap();
    let running = until_pod(&pods, "stranded", |p| {
        main_state(p).is_some_and(|s| s.running.is_some())
    })
    .await;
    let node = running.spec.unwrap().node_name.unwrap();
    sim.cluster.faults.set(sim::faults::FaultConfig {
        lost_nodes: vec![node.clone()],
        ..Default::default()
    });
    let failed = wait_for(&jobs, "stranded", "Failed").await;
    assert_eq!(failed.status.unwrap().failed, Some(1));
    let pod = pod_of(&pods, "stranded").await;
    let status = pod.status.unwrap();
    assert_eq!(
        (status.phase.as_deref(), status.reason.as_deref()),
        (Some("Failed"), Some("NodeLost"))
    );
    assert!(
        status
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "DisruptionTarget")
    );
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
    let lost = nodes.get(&node).await.unwrap();
    let ready = lost
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "Unknown");
}

#[tokio::test]
async fn log_options_select_lines_and_bytes_as_the_kubelet_does() {
    let (_sim, client) = start(Options::default()).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("lines", json!({
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "busybox", "command": ["/bin/sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done"]}],
    })))
    .await
    .unwrap();
    wait_for(&jobs, "lines", "Complete").await;
    let name = pod_of(&pods, "lines").await.metadata.name.unwrap();
    let logs = |p: LogParams| {
        let pods = pods.clone();
        let name = name.clone();
        async move { pods.logs(&name, &p).await.unwrap() }
    };
    assert_eq!(
        logs(LogParams {
            tail_lines: Some(2),
            ..Default::default()
        })
        .await,
        "line-4\nline-5\n"
    );
    assert_eq!(
        logs(LogParams {
            limit_bytes: Some(9),
            ..Default::default()
        })
        .await,
        "line-1\nli"
    );
    let stamped = logs(LogParams {
        timestamps: true,
        ..Default::default()
    })
    .await;
    let third = stamped
        .lines()
        .nth(2)
        .unwrap()
        .split_once(' ')
        .unwrap()
        .0
        .to_owned();
    // sinceTime is a client-side RFC 3339 time; kube sends it with seconds.
    let request = axum::http::Request::get(format!(
        "/api/v1/namespaces/default/pods/{name}/log?sinceTime={third}"
    ))
    .body(Vec::new())
    .unwrap();
    let since = client.request_text(request).await.unwrap();
    assert!(since.ends_with("line-3\nline-4\nline-5\n"), "{since}");
    assert!(
        logs(LogParams {
            since_seconds: Some(3600),
            ..Default::default()
        })
        .await
        .starts_with("line-1\n")
    );
}

#[tokio::test]
async fn a_missing_secret_is_a_create_container_config_error_and_ttl_removes_finished_jobs() {
    let (_sim, client) = start(Options::default()).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("nosecret", json!({
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "busybox", "command": ["true"],
            "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "token"}}}]}],
    })))
    .await
    .unwrap();
    let pod = until_pod(&pods, "nosecret", |p| {
        main_state(p).and_then(|s| s.waiting?.reason).as_deref()
            == Some("CreateContainerConfigError")
    })
    .await;
    let waiting = main_state(&pod).unwrap().waiting.unwrap();
    assert_eq!(
        waiting.message.as_deref(),
        Some("secret \"absent\" not found")
    );

    let mut short = job(
        "short-lived",
        json!({
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
        }),
    );
    short.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(0);
    jobs.create(&PostParams::default(), &short).await.unwrap();
    let rv = jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = jobs
        .watch(
            &WatchParams::default()
                .fields("metadata.name=short-lived")
                .timeout(20),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let mut deleted = false;
    while let Some(event) = stream.try_next().await.unwrap() {
        if matches!(event, WatchEvent::Deleted(_)) {
            deleted = true;
            break;
        }
    }
    assert!(deleted, "the TTL controller deleted the finished job");
    assert!(
        pods.list(&ListParams::default().labels("job-name=short-lived"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn injected_faults_cut_logs_and_close_watches() {
    let (sim, client) = start(Options::default()).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("cut", json!({
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "busybox", "command": ["/bin/sh", "-c", "echo 0123456789; echo abcdefghij"]}],
    })))
    .await
    .unwrap();
    wait_for(&jobs, "cut", "Complete").await;
    let name = pod_of(&pods, "cut").await.metadata.name.unwrap();
    sim.cluster.faults.set(sim::faults::FaultConfig {
        log_cut_bytes: Some(5),
        watch_close_seconds: Some(1),
        ..Default::default()
    });
    let mut stream = pods
        .log_stream(
            &name,
            &LogParams {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut received = Vec::new();
    let end = futures::AsyncReadExt::read_to_end(&mut stream, &mut received).await;
    assert_eq!(received, b"01234", "the stream breaks after 5 bytes");
    assert!(
        end.is_err(),
        "a cut is a broken connection, not a clean end: {end:?}"
    );
    let plain = pods.logs(&name, &LogParams::default()).await;
    assert!(plain.is_err(), "the injected cut also breaks plain reads");
    let limited = pods
        .logs(
            &name,
            &LogParams {
                limit_bytes: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(limited, "01234", "limitBytes still ends a read cleanly");
    let rv = jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let started = std::time::Instant::now();
    // kube asks for a 290 s watch; the fault ends it after 1 s.
    let _: Vec<_> = jobs
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the watch was closed by the fault, not by its timeout"
    );
}
