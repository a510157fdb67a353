//! The simulator through the real `kube` client: what the executor will do against a real cluster must work here, with the same answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret};
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Api, Client};
use serde_json::json;
use sim::{Options, Sim};

async fn start() -> (Sim, Client) {
    start_with(Options::default()).await
}

async fn start_with(options: Options) -> (Sim, Client) {
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let client = client(&sim, true).await;
    (sim, client)
}

/// A client for `sim`, with or without kube's own retries of 429/503.
async fn client(sim: &Sim, retry: bool) -> Client {
    let mut config = sim.kube_config().await.unwrap();
    config.default_retry = retry;
    Client::try_from(config).unwrap()
}

fn job(name: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": "demo", "tier": "ci"}},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "echo hi"]}],
            }},
        },
    }))
    .unwrap()
}

fn kube_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn discovery_and_version_answer_like_a_real_server() {
    let (_sim, client) = start().await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let kinds: Vec<String> = discovery
        .groups()
        .flat_map(|g| g.recommended_resources().into_iter().map(|(r, _)| r.kind))
        .collect();
    for kind in ["Pod", "Secret", "Job", "Node", "Namespace", "Event"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} not discovered in {kinds:?}"
        );
    }
    let nodes: Api<Node> = Api::all(client.clone());
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    let namespaces: Api<Namespace> = Api::all(client);
    let default = namespaces.get("default").await.unwrap();
    assert_eq!(default.status.unwrap().phase.as_deref(), Some("Active"));
}

#[tokio::test]
async fn create_get_list_and_the_errors_of_each() {
    let (_sim, client) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let created = jobs
        .create(&PostParams::default(), &job("build-1"))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let labels = created
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
    assert_eq!(labels["job-name"], "build-1");
    assert!(created.metadata.resource_version.is_some());

    let got = jobs.get("build-1").await.unwrap();
    assert_eq!(got.metadata.uid.as_deref(), Some(uid.as_str()));

    let again = kube_error(
        jobs.create(&PostParams::default(), &job("build-1"))
            .await
            .unwrap_err(),
    );
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(again.message, "jobs.batch \"build-1\" already exists");

    let missing = kube_error(jobs.get("nope").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "jobs.batch \"nope\" not found");

    let elsewhere: Api<Job> = Api::namespaced(client.clone(), "no-such-ns");
    let ns = kube_error(
        elsewhere
            .create(&PostParams::default(), &job("x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (ns.code, ns.message.as_str()),
        (404, "namespaces \"no-such-ns\" not found")
    );

    jobs.create(&PostParams::default(), &job("build-2"))
        .await
        .unwrap();
    let mut other = job("lint-1");
    other.metadata.labels = Some([("app".to_owned(), "lint".to_owned())].into());
    jobs.create(&PostParams::default(), &other).await.unwrap();
    let names = |list: kube::core::ObjectList<Job>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|j| j.metadata.name.unwrap())
            .collect()
    };
    assert_eq!(
        names(
            jobs.list(&ListParams::default().labels("app=demo"))
                .await
                .unwrap()
        ),
        ["build-1", "build-2"]
    );
    assert_eq!(
        names(
            jobs.list(&ListParams::default().labels("app notin (demo),!missing"))
                .await
                .unwrap()
        ),
        ["lint-1"]
    );
    assert_eq!(
        names(
            jobs.list(&ListParams::default().fields("metadata.name=build-2"))
                .await
                .unwrap()
        ),
        ["build-2"]
    );
    let bad = kube_error(
        jobs.list(&ListParams::default().fields("spec.foo=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.code, 400);
    assert!(
        bad.message.contains("field label not supported: spec.foo"),
        "{}",
        bad.message
    );
    let list = jobs.list(&ListParams::default()).await.unwrap();
    assert!(
        list.metadata
            .resource_version
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn invalid_objects_get_422_with_field_causes_and_unknown_fields_a_warning_or_400() {
    let (_sim, client) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let mut bad = job("Bad_Name");
    let spec = bad.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    spec.restart_policy = Some("Always".into());
    spec.containers.push(spec.containers[0].clone());
    let err = kube_error(jobs.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    for needle in [
        "metadata.name: Invalid value: \"Bad_Name\"",
        "spec.template.spec.restartPolicy: Unsupported value: \"Always\"",
        "spec.template.spec.containers[1].name: Duplicate value: \"main\"",
    ] {
        assert!(
            err.message.contains(needle),
            "missing {needle:?} in {}",
            err.message
        );
    }

    let with_resources = |resources: serde_json::Value| {
        let mut j = job("q");
        j.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .resources = Some(serde_json::from_value(resources).unwrap());
        j
    };
    let above = with_resources(json!({"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}));
    let err = kube_error(
        jobs.create(&PostParams::default(), &above)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .contains("must be less than or equal to cpu limit of 1"),
        "{}",
        err.message
    );
    let garbled = with_resources(json!({"limits": {"memory": "12GB!"}}));
    let err = kube_error(
        jobs.create(&PostParams::default(), &garbled)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    assert!(
        err.message
            .contains("quantities must match the regular expression"),
        "{}",
        err.message
    );

    let raw: Api<kube::core::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &kube::discovery::ApiResource::erase::<Secret>(&()),
    );
    let unknown: kube::core::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s1"}, "stringData": {"a": "b"}, "extra": 1,
    }))
    .unwrap();
    // kube's PostParams has no fieldValidation: send the request by hand.
    let request =
        axum::http::Request::post("/api/v1/namespaces/default/secrets?fieldValidation=Strict")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&unknown).unwrap())
            .unwrap();
    let err = kube_error(client.request::<Secret>(request).await.unwrap_err());
    assert_eq!(err.code, 400);
    assert!(
        err.message.contains("unknown field \"extra\""),
        "{}",
        err.message
    );
    let created = raw.create(&PostParams::default(), &unknown).await.unwrap();
    assert!(created.data.get("extra").is_none(), "dropped by default");
}

#[tokio::test]
async fn updates_conflict_on_a_stale_version_and_status_is_its_own_subresource() {
    let (_sim, client) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    // Suspended, so that the job controller leaves it (and its version) alone.
    let mut suspended = job("j");
    suspended.spec.as_mut().unwrap().suspend = Some(true);
    let first = jobs
        .create(&PostParams::default(), &suspended)
        .await
        .unwrap();
    let mut changed = first.clone();
    changed
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("new".into(), "1".into());
    let second = jobs
        .replace("j", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_ne!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    let stale = kube_error(
        jobs.replace("j", &PostParams::default(), &changed)
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));

    let status = json!({"status": {"active": 1}});
    let patched = jobs
        .patch_status("j", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(patched.status.unwrap().active, Some(1));
    let ignored = jobs
        .patch(
            "j",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"active": 5}, "metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        ignored.status.unwrap().active,
        Some(1),
        "the main resource cannot set status"
    );
    assert_eq!(ignored.metadata.labels.unwrap()["x"], "y");
}

#[tokio::test]
async fn watches_deliver_every_change_in_order_resume_and_expire() {
    let (sim, client) = start().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let list = secrets.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = secrets
        .watch(&WatchParams::default().labels("team=a"), &rv)
        .await
        .unwrap()
        .boxed();
    let secret = |name: &str, team: &str| -> Secret {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"team": team}}, "stringData": {"k": "v"}}),
        )
        .unwrap()
    };
    secrets
        .create(&PostParams::default(), &secret("a1", "a"))
        .await
        .unwrap();
    secrets
        .create(&PostParams::default(), &secret("b1", "b"))
        .await
        .unwrap();
    secrets
        .patch(
            "a1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"n": "1"}}})),
        )
        .await
        .unwrap();
    secrets
        .delete("a1", &DeleteParams::default())
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(s) => seen.push(format!("ADDED {}", s.metadata.name.unwrap())),
            WatchEvent::Modified(s) => seen.push(format!("MODIFIED {}", s.metadata.name.unwrap())),
            WatchEvent::Deleted(s) => seen.push(format!("DELETED {}", s.metadata.name.unwrap())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        ["ADDED a1", "MODIFIED a1", "DELETED a1"],
        "b1 is filtered out"
    );

    // Resuming from the list's version replays the same history.
    let replay: Vec<_> = secrets
        .watch(&WatchParams::default().labels("team=a").timeout(1), &rv)
        .await
        .unwrap()
        .take(3)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(replay.len(), 3);

    // A version the history no longer holds: 410 Gone in the stream.
    sim.cluster.store.compact(1);
    let mut expired = secrets
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match expired.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn bookmarks_arrive_and_timeouts_end_a_watch() {
    let options = Options {
        bookmark_interval: Duration::from_millis(100),
        ..Options::default()
    };
    let (_sim, client) = start_with(options).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let events: Vec<_> = pods
        .watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default()
            }
            .timeout(1),
            &rv,
        )
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, WatchEvent::Bookmark(b) if b.metadata.resource_version == rv)),
        "{events:?}"
    );
}

#[tokio::test]
async fn the_watcher_of_kube_runtime_follows_a_resource() {
    use kube::runtime::{WatchStreamExt, watcher};
    let (_sim, client) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let mut stream = watcher::watcher(jobs.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    jobs.create(&PostParams::default(), &job("watched"))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("watched"));
}

#[tokio::test]
async fn deleting_an_owner_deletes_or_orphans_its_dependents() {
    let (_sim, client) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    for (name, policy) in [
        ("bg", Some("Background")),
        ("fg", Some("Foreground")),
        ("orphan", Some("Orphan")),
        ("default", None),
    ] {
        let owner = jobs
            .create(&PostParams::default(), &job(name))
            .await
            .unwrap();
        let owned: Secret = serde_json::from_value(json!({"metadata": {"name": format!("{name}-secret"), "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": owner.metadata.uid.unwrap(), "controller": true,
        }]}, "stringData": {"token": "t"}}))
        .unwrap();
        secrets
            .create(&PostParams::default(), &owned)
            .await
            .unwrap();
        let params = DeleteParams {
            propagation_policy: match policy {
                Some("Background") => Some(kube::api::PropagationPolicy::Background),
                Some("Foreground") => Some(kube::api::PropagationPolicy::Foreground),
                Some("Orphan") => Some(kube::api::PropagationPolicy::Orphan),
                _ => None,
            },
            ..Default::default()
        };
        jobs.delete(name, &params).await.unwrap();
        let left = secrets.get_opt(&format!("{name}-secret")).await.unwrap();
        match policy {
            Some("Background" | "Foreground") => {
                assert!(left.is_none(), "{name}: dependent left behind")
            }
            _ => {
                let left = left.unwrap_or_else(|| panic!("{name}: dependent deleted"));
                assert!(
                    left.metadata.owner_references.is_none(),
                    "{name}: owner reference kept"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_accounting_counts_requests_by_verb_and_resource() {
    let (sim, client) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("counted"))
        .await
        .unwrap();
    jobs.get("counted").await.unwrap();
    jobs.get("counted").await.unwrap();
    let stats = sim.cluster.stats.snapshot();
    assert_eq!(stats["requests"]["create jobs"], 1);
    assert_eq!(stats["requests"]["get jobs"], 2);
}

#[tokio::test]
async fn injected_faults_answer_like_an_overloaded_server() {
    let (sim, _) = start().await;
    // kube retries 429 by itself (honouring Retry-After): see the answer raw.
    let client = client(&sim, false).await;
    sim.cluster.faults.set(sim::faults::FaultConfig {
        errors: vec![sim::faults::ErrorRule {
            verb: Some("get".into()),
            resource: Some("jobs".into()),
            rate: 1.0,
            code: 429,
            retry_after: Some(2),
        }],
        ..Default::default()
    });
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let err = kube_error(jobs.get("x").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (429, "TooManyRequests"));
    sim.cluster.faults.set(Default::default());
    assert_eq!(kube_error(jobs.get("x").await.unwrap_err()).code, 404);
}
