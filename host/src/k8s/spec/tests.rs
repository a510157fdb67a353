//! The objects of a job as the builder makes them, for each setting and payload that shapes them.

use clap::{Args, Command, FromArgMatches};
use serde_json::{Value, json};

use super::*;
use crate::config::{Config, RawConfig};

const EXAMPLE: &str = include_str!("../../../tests/payloads/example.json");
const FULL: &str = include_str!("../../../tests/payloads/full.json");
const SHORT: &str = include_str!("../../../tests/payloads/short.json");

/// The configuration from `(environment variable, value)` pairs, given as the
/// flags clap maps them to (the process environment is shared by tests).
fn config(vars: &[(&str, &str)]) -> Config {
    let cmd = RawConfig::augment_args(Command::new("executor"));
    let mut argv = vec!["executor".to_owned()];
    // Later pairs override earlier ones, as a second `export` would.
    let vars: BTreeMap<&str, &str> = vars.iter().copied().collect();
    for (var, value) in vars {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == var))
            .unwrap_or_else(|| panic!("no flag reads {var}"));
        argv.push(format!("--{}={value}", arg.get_long().unwrap()));
    }
    let matches = cmd.try_get_matches_from(argv).unwrap();
    Config::from_raw(&RawConfig::from_arg_matches(&matches).unwrap()).unwrap()
}

const ROUTES: (&str, &str) = ("EXECUTOR_FRONTEND_URL", "https://sg.example.com");

fn objects(vars: &[(&str, &str)], payload: &str) -> Result<JobObjects, SpecError> {
    let mut all = vec![ROUTES, ("EXECUTOR_QUEUE_NAME", "batches")];
    all.extend_from_slice(vars);
    let c = config(&all);
    let payload = JobPayload::parse(payload).unwrap();
    build(
        &Inputs {
            config: &c.kubernetes,
            queue: payload.queue.as_deref().unwrap_or("batches"),
            executor_name: "exec-1",
            instance: "exec-1",
            routes: c.queue.frontend_url.as_ref(),
        },
        &payload,
    )
}

/// The rendered List (secrets shown) as JSON.
fn list(vars: &[(&str, &str)], payload: &str) -> Value {
    objects(vars, payload).unwrap().to_list(true)
}

fn job(vars: &[(&str, &str)]) -> Value {
    list(vars, EXAMPLE)["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone()
}

fn pod(job: &Value) -> &Value {
    &job["spec"]["template"]["spec"]
}

/// Every container of the pod, init containers first.
fn containers(job: &Value) -> Vec<&Value> {
    let p = pod(job);
    p["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p["containers"].as_array().unwrap())
        .collect()
}

#[test]
fn each_kubernetes_variable_shows_in_the_job() {
    let base = job(&[]);
    type Check = fn(&Value);
    let cases: &[(&str, &str, Check)] = &[
        ("EXECUTOR_KUBERNETES_NODE_NAME", "node-7", |j| {
            assert_eq!(pod(j)["nodeName"], "node-7")
        }),
        (
            "EXECUTOR_KUBERNETES_NODE_SELECTOR",
            " disk=ssd , zone = a ",
            |j| assert_eq!(pod(j)["nodeSelector"], json!({"disk": "ssd", "zone": "a"})),
        ),
        (
            "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_EXPRESSIONS",
            r#"[{"key": "pool", "operator": "In", "values": ["ci"]}]"#,
            |j| {
                let terms = &pod(j)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                    ["nodeSelectorTerms"];
                assert_eq!(
                    terms,
                    &json!([{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ci"]}]}])
                );
            },
        ),
        (
            "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_FIELDS",
            r#"[{"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}]"#,
            |j| {
                let terms = &pod(j)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                    ["nodeSelectorTerms"];
                assert_eq!(
                    terms,
                    &json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}]}])
                );
            },
        ),
        (
            "EXECUTOR_KUBERNETES_POD_AFFINITY",
            r#"[{"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}]"#,
            |j| {
                let a = &pod(j)["affinity"];
                assert_eq!(
                    a["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"],
                    "kubernetes.io/hostname"
                );
                assert!(a.get("podAntiAffinity").is_none() && a.get("nodeAffinity").is_none());
            },
        ),
        (
            "EXECUTOR_KUBERNETES_POD_ANTI_AFFINITY",
            r#"[{"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "topology.kubernetes.io/zone"}]"#,
            |j| {
                assert_eq!(
                    pod(j)["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                        [0]["labelSelector"],
                    json!({"matchLabels": {"app": "db"}})
                )
            },
        ),
        (
            "EXECUTOR_KUBERNETES_NODE_TOLERATIONS",
            r#"[{"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}]"#,
            |j| {
                assert_eq!(
                    pod(j)["tolerations"],
                    json!([{"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}])
                )
            },
        ),
        ("EXECUTOR_KUBERNETES_NAMESPACE", "ci-jobs", |j| {
            assert_eq!(j["metadata"]["namespace"], "ci-jobs")
        }),
        ("EXECUTOR_KUBERNETES_RESOURCE_LIMIT_CPU", "2", |j| {
            for c in containers(j) {
                assert_eq!(c["resources"]["limits"]["cpu"], "2", "{}", c["name"]);
            }
        }),
        ("EXECUTOR_KUBERNETES_RESOURCE_LIMIT_MEMORY", "16Gi", |j| {
            for c in containers(j) {
                assert_eq!(c["resources"]["limits"]["memory"], "16Gi");
            }
        }),
        ("EXECUTOR_KUBERNETES_RESOURCE_REQUEST_CPU", "500m", |j| {
            for c in containers(j) {
                assert_eq!(c["resources"]["requests"]["cpu"], "500m");
                assert!(c["resources"]["limits"].get("cpu").is_none());
            }
        }),
        ("EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY", "1Gi", |j| {
            for c in containers(j) {
                assert_eq!(c["resources"]["requests"]["memory"], "1Gi");
            }
        }),
        ("KUBERNETES_JOB_DEADLINE", "600", |j| {
            assert_eq!(j["spec"]["activeDeadlineSeconds"], 600)
        }),
        ("KUBERNETES_RUN_AS_USER", "1001", |j| {
            assert_eq!(pod(j)["securityContext"]["runAsUser"], 1001);
            for c in containers(j) {
                assert_eq!(c["securityContext"]["runAsNonRoot"], true);
            }
        }),
        ("KUBERNETES_RUN_AS_GROUP", "1002", |j| {
            assert_eq!(pod(j)["securityContext"]["runAsGroup"], 1002)
        }),
        ("KUBERNETES_FS_GROUP", "2000", |j| {
            assert_eq!(pod(j)["securityContext"]["fsGroup"], 2000)
        }),
        ("KUBERNETES_KEEP_JOBS", "true", |j| {
            assert!(j["spec"].get("ttlSecondsAfterFinished").is_none())
        }),
        (
            "KUBERNETES_JOB_ANNOTATIONS",
            r#"{"acme.com/team": "infra"}"#,
            |j| {
                assert_eq!(
                    j["metadata"]["annotations"],
                    json!({"acme.com/team": "infra"})
                );
                assert!(
                    j["spec"]["template"]["metadata"]
                        .get("annotations")
                        .is_none()
                );
            },
        ),
        (
            "KUBERNETES_JOB_POD_ANNOTATIONS",
            r#"{"sidecar.istio.io/inject": "false"}"#,
            |j| {
                assert_eq!(
                    j["spec"]["template"]["metadata"]["annotations"],
                    json!({"sidecar.istio.io/inject": "false"})
                );
                assert!(j["metadata"].get("annotations").is_none());
            },
        ),
        ("KUBERNETES_IMAGE_PULL_SECRETS", "regcred, mirror ", |j| {
            assert_eq!(
                pod(j)["imagePullSecrets"],
                json!([{"name": "regcred"}, {"name": "mirror"}])
            )
        }),
        ("KUBERNETES_JOB_VOLUME_TYPE", "pvc", |j| {
            let v = &pod(j)["volumes"][0];
            assert_eq!(v["name"], "workspace");
            assert!(v.get("emptyDir").is_none());
            assert_eq!(
                v["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"],
                "5Gi"
            );
        }),
        ("KUBERNETES_JOB_VOLUME_SIZE", "20Gi", |j| {
            assert_eq!(pod(j)["volumes"][0]["emptyDir"]["sizeLimit"], "20Gi")
        }),
        (
            "KUBERNETES_JOB_STEP_IMAGE",
            "registry.acme.com/helper:1.2",
            |j| {
                let p = pod(j);
                assert_eq!(
                    p["initContainers"][0]["image"],
                    "registry.acme.com/helper:1.2"
                );
                assert_eq!(p["containers"][0]["image"], "registry.acme.com/helper:1.2");
                assert_eq!(
                    p["initContainers"][1]["image"], "alpine:3",
                    "steps keep their image"
                );
            },
        ),
        ("EXECUTOR_FRONTEND_URL", "https://code.acme.com/sg", |j| {
            let script = pod(j)["initContainers"][0]["command"][2].as_str().unwrap();
            assert!(
                script.contains("https://code.acme.com/sg/.executors/git/github.com/acme/api"),
                "{script}"
            );
        }),
    ];
    for (var, value, check) in cases {
        let j = job(&[(var, value)]);
        assert_ne!(j, base, "{var} changed nothing");
        check(&j);
    }
}

#[test]
fn additional_volumes_are_added_and_mounted_in_every_container() {
    let j = job(&[
        (
            "KUBERNETES_ADDITIONAL_JOB_VOLUMES",
            r#"[{"name": "cache", "configMap": {"name": "ci-cache"}}]"#,
        ),
        (
            "KUBERNETES_ADDITIONAL_JOB_VOLUME_MOUNTS",
            r#"[{"name": "cache", "mountPath": "/cache", "readOnly": true}]"#,
        ),
    ]);
    assert!(
        pod(&j)["volumes"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "cache", "configMap": {"name": "ci-cache"}}))
    );
    for c in containers(&j) {
        assert!(
            c["volumeMounts"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "cache", "mountPath": "/cache", "readOnly": true})),
            "{}",
            c["name"]
        );
    }
}

#[test]
fn a_job_without_token_never_gets_the_shared_secret() {
    let payload = EXAMPLE.replace(r#""token":"9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c1b3d5f70","#, "");
    let built = objects(&[("EXECUTOR_FRONTEND_PASSWORD", "hunter2")], &payload);
    let err = match built {
        Ok(objects) => panic!(
            "a job without token was built, with the queue's shared secret readable in its namespace: {}",
            serde_json::to_string(&objects.to_list(true)).unwrap()
        ),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("its payload has no job token"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn the_job_has_the_hosts_fixed_settings_and_labels_everywhere() {
    let l = list(&[], FULL);
    let items = l["items"].as_array().unwrap();
    assert_eq!(
        items
            .iter()
            .map(|i| i["kind"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["Secret", "Secret", "Job"],
        "creation order: Secrets, then the Job"
    );
    let want = json!({
        "app.kubernetes.io/managed-by": "executor",
        "executor.sourcegraph.com/executor": "exec-1",
        "executor.sourcegraph.com/instance": "exec-1",
        "executor.sourcegraph.com/queue": "batches",
        "executor.sourcegraph.com/job-id": "88",
    });
    for item in items {
        assert_eq!(item["metadata"]["labels"], want, "{}", item["kind"]);
    }
    let j = &items[2];
    assert_eq!(j["metadata"]["name"], "sg-executor-batches-88");
    assert_eq!(j["spec"]["template"]["metadata"]["labels"], want);
    assert_eq!(j["spec"]["backoffLimit"], 0);
    assert_eq!(j["spec"]["activeDeadlineSeconds"], 1200);
    assert_eq!(j["spec"]["ttlSecondsAfterFinished"], TTL_AFTER_FINISHED);
    let p = pod(j);
    assert_eq!(p["restartPolicy"], "Never");
    assert_eq!(p["automountServiceAccountToken"], false);
    assert_eq!(
        p["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let names: Vec<&str> = containers(j)
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["setup-workspace", "step-0", "step-1", "main"]);
    for c in containers(j) {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(
            c["volumeMounts"][0],
            json!({"name": "workspace", "mountPath": "/job"})
        );
    }
    assert_eq!(containers(j)[1]["workingDir"], "/job/services/api");
    assert_eq!(containers(j)[2]["workingDir"], "/job");
    assert_eq!(
        p["imagePullSecrets"],
        json!([{"name": "sg-executor-batches-88-registry"}])
    );
    assert!(
        p.get("affinity").is_none(),
        "no scheduling configured: no affinity at all"
    );
}

#[test]
fn secrets_live_in_the_secret_and_the_pod_references_them() {
    let l = list(&[], FULL);
    let secret = &l["items"][0];
    let data = secret["data"].as_object().unwrap();
    let decoded = |k: &str| -> String {
        let b: ByteString = serde_json::from_value(data[k].clone()).unwrap();
        String::from_utf8(b.0).unwrap()
    };
    assert_eq!(decoded("token"), "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(decoded("file-0"), "steps: []\n", "v2 contents are decoded");
    assert_eq!(decoded("step-0-env-1"), "npm_SuperSecretValue42");
    assert!(
        decoded("step-1-script").contains("glpat-AbCdEf0123456789xyz"),
        "a command with a secret moves into the Secret"
    );
    assert!(!data.contains_key("step-0-env-0"), "MODE=fix is not secret");

    let j = &l["items"][2];
    let step0 = &pod(j)["initContainers"][1];
    assert_eq!(
        step0["env"],
        json!([
            {"name": "MODE", "value": "fix"},
            {"name": "NPM_TOKEN", "valueFrom": {"secretKeyRef": {"name": "sg-executor-batches-88", "key": "step-0-env-1"}}},
            {"name": "HOME", "value": "/tmp"},
        ]),
        "a step's own HOME wins"
    );
    let step1 = &pod(j)["initContainers"][2];
    assert_eq!(
        step1["command"],
        json!(["/bin/sh", "-c", "eval \"$EXECUTOR_STEP_SCRIPT\""])
    );
    let registry = &l["items"][1];
    assert_eq!(registry["type"], "kubernetes.io/dockerconfigjson");
    let b: ByteString =
        serde_json::from_value(registry["data"][".dockerconfigjson"].clone()).unwrap();
    let config: Value = serde_json::from_slice(&b.0).unwrap();
    assert_eq!(
        config,
        json!({"auths": {"ghcr.io": {"auth": "YWNtZTpnaHBfUmVnaXN0cnlQYXNzd29yZDk5"}}})
    );
}

#[test]
fn no_secret_of_the_payload_appears_in_the_job() {
    let payload = JobPayload::parse(FULL).unwrap();
    let l = list(&[("EXECUTOR_FRONTEND_PASSWORD", "hunter2-shared")], FULL);
    let job_text = serde_json::to_string(&l["items"][2]).unwrap();
    let mut secrets: Vec<String> = payload.redacted_values.keys().cloned().collect();
    secrets.push(payload.token.clone().unwrap());
    secrets.push("hunter2-shared".into());
    secrets.push("YWNtZTpnaHBfUmVnaXN0cnlQYXNzd29yZDk5".into());
    secrets.push("ghp_RegistryPassword99".into());
    secrets.push("steps: []".into());
    secrets.push("c3RlcHM6IFtdCg==".into());
    for s in &secrets {
        assert!(!job_text.contains(s.as_str()), "{s:?} is in the Job");
    }
    let masked = serde_json::to_string(&objects(&[], FULL).unwrap().to_list(false)).unwrap();
    for s in &secrets {
        assert!(!masked.contains(s.as_str()), "{s:?} is in the masked List");
    }
    assert!(masked.contains("<masked: 40 bytes>"));
}

#[test]
fn a_payload_without_repository_gets_its_files_but_no_clone_and_no_token() {
    let l = list(&[], SHORT);
    let items = l["items"].as_array().unwrap();
    let setup = &pod(&items[1])["initContainers"][0];
    let script = setup["command"][2].as_str().unwrap();
    assert!(!script.contains("git"), "{script}");
    assert!(
        script.contains("cp /executor/files/file-0 hello.sh"),
        "{script}"
    );
    assert!(
        setup.get("env").is_none(),
        "no route needed: no token in the pod"
    );
    assert_eq!(
        items[0]["data"].as_object().unwrap().len(),
        1,
        "only the file"
    );

    let bare = list(
        &[],
        r#"{"id": 3, "dockerSteps": [{"image": "busybox", "commands": ["true"]}]}"#,
    );
    assert_eq!(
        bare["items"].as_array().unwrap().len(),
        1,
        "nothing secret: no Secret"
    );
    assert!(
        pod(&bare["items"][0])["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["name"] != "files")
    );
}

#[test]
fn jobs_that_cannot_be_built_fail_with_the_reason() {
    let c = config(&[]);
    let payload = JobPayload::parse(EXAMPLE).unwrap();
    let err = build(
        &Inputs {
            config: &c.kubernetes,
            queue: "batches",
            executor_name: "e",
            instance: "e",
            routes: None,
        },
        &payload,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "job sg-executor-batches-1234 needs to clone github.com/acme/api but no route to it is configured; set EXECUTOR_FRONTEND_URL"
    );
    let big = json!({"id": 1, "files": {"big.bin": {"content": "x".repeat(MAX_SECRET_BYTES + 1)}}});
    let err = objects(&[], &big.to_string()).unwrap_err();
    assert!(
        matches!(err, SpecError::SecretTooLarge { bytes, .. } if bytes == MAX_SECRET_BYTES + 1)
    );
}

#[test]
fn names_are_unique_per_queue_and_long_executor_names_are_shortened_apart() {
    let a = list(
        &[],
        &EXAMPLE.replace(r#""queue":"batches""#, r#""queue":"codeintel""#),
    );
    assert_eq!(
        a["items"][1]["metadata"]["name"],
        "sg-executor-codeintel-1234"
    );
    let long_a = format!("{}-0b7c2a1e-5d4f-4c3b-9a8e-7f6d5c4b3a21", "x".repeat(40));
    let long_b = format!("{}-1b7c2a1e-5d4f-4c3b-9a8e-7f6d5c4b3a21", "x".repeat(40));
    let (la, lb) = (label_value(&long_a), label_value(&long_b));
    assert!(
        la.len() <= 63 && k8s_rules::names::label_value(&la).is_ok(),
        "{la}"
    );
    assert_ne!(la, lb);
    assert_eq!(label_value("exec-1"), "exec-1");
}

#[test]
fn the_clone_checks_out_the_commit_with_a_real_git() {
    // The git route served by git's own file transport: the script is the
    // one the pod runs, only the base URL differs.
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join(".executors/git/github.com/acme/api");
    let git = |cwd: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    std::fs::create_dir_all(&remote).unwrap();
    git(&remote, &["init", "-q"]);
    std::fs::create_dir_all(remote.join("keep")).unwrap();
    std::fs::create_dir_all(remote.join("skip")).unwrap();
    std::fs::write(remote.join("keep/a.txt"), "first").unwrap();
    std::fs::write(remote.join("skip/b.txt"), "b").unwrap();
    git(&remote, &["add", "."]);
    git(&remote, &["commit", "-q", "-m", "one"]);
    let first = git(&remote, &["rev-parse", "HEAD"]);
    std::fs::write(remote.join("keep/a.txt"), "second").unwrap();
    git(&remote, &["commit", "-q", "-am", "two"]);

    let base = Url::parse(&format!("file://{}/", dir.path().display())).unwrap();
    let payload = JobPayload::parse(
        &json!({"id": 5, "token": "t0k3n", "repositoryName": "github.com/acme/api",
            "repositoryDirectory": "repo", "commit": first, "shallowClone": true,
            "sparseCheckout": ["keep/"],
            "files": {"repo/extra.txt": {"content": "added"}}})
        .to_string(),
    )
    .unwrap();
    let c = config(&[]);
    let built = build(
        &Inputs {
            config: &c.kubernetes,
            queue: "batches",
            executor_name: "exec-1",
            instance: "exec-1",
            routes: Some(&base),
        },
        &payload,
    )
    .unwrap();
    let job = serde_json::to_value(&built.job).unwrap();
    let script = sim::expansion::expand(
        pod(&job)["initContainers"][0]["command"][2]
            .as_str()
            .unwrap(),
        |_| None,
    )
    .replace(
        script::FILES_DIR,
        &dir.path().join("files").display().to_string(),
    );
    std::fs::create_dir_all(dir.path().join("files")).unwrap();
    std::fs::write(dir.path().join("files/file-0"), "added").unwrap();
    let work = dir.path().join("job");
    std::fs::create_dir_all(&work).unwrap();
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(&work)
        .env(script::TOKEN_ENV, "t0k3n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}\n{out:?}");
    assert_eq!(
        std::fs::read_to_string(work.join("repo/keep/a.txt")).unwrap(),
        "first"
    );
    assert!(
        !work.join("repo/skip/b.txt").exists(),
        "sparse checkout honoured"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("repo/extra.txt")).unwrap(),
        "added"
    );
    assert_eq!(git(&work.join("repo"), &["rev-parse", "HEAD"]), first);
    assert_eq!(
        git(&work.join("repo"), &["rev-list", "--count", "HEAD"]),
        "1",
        "shallow clone"
    );
}

#[test]
fn invariants_are_put_back_and_reported() {
    let built = objects(&[], EXAMPLE).unwrap().job;
    let mut admitted = serde_json::to_value(&built).unwrap();
    admitted["metadata"]["name"] = json!("renamed");
    admitted["metadata"]["labels"]["executor.sourcegraph.com/job-id"] = json!("9");
    admitted["metadata"]["labels"]["team"] = json!("infra");
    admitted["spec"]["backoffLimit"] = json!(6);
    admitted["spec"]
        .as_object_mut()
        .unwrap()
        .remove("activeDeadlineSeconds");
    admitted["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
    let step = &mut admitted["spec"]["template"]["spec"]["initContainers"][1];
    step["image"] = json!("evil:latest");
    step["args"] = json!(["--pwn"]);
    step["resources"] = json!({"limits": {"memory": "1Gi"}});
    let enforced = enforce(&built, admitted).unwrap();
    let j = serde_json::to_value(&enforced.job).unwrap();
    assert_eq!(j["metadata"]["name"], "sg-executor-batches-1234");
    assert_eq!(
        j["metadata"]["labels"]["executor.sourcegraph.com/job-id"],
        "1234"
    );
    assert_eq!(
        j["metadata"]["labels"]["team"], "infra",
        "other labels may change"
    );
    assert_eq!(j["spec"]["backoffLimit"], 0);
    assert_eq!(j["spec"]["activeDeadlineSeconds"], 1200);
    assert_eq!(pod(&j)["restartPolicy"], "Never");
    let step = &pod(&j)["initContainers"][1];
    assert_eq!(step["image"], "alpine:3");
    assert!(step.get("args").is_none());
    assert_eq!(
        step["resources"],
        json!({"limits": {"memory": "1Gi"}}),
        "resources may change"
    );
    let mut reverted = enforced.reverted.clone();
    reverted.sort();
    assert_eq!(
        reverted,
        [
            "/metadata/labels/executor.sourcegraph.com~1job-id",
            "/metadata/name",
            "/spec/activeDeadlineSeconds",
            "/spec/backoffLimit",
            "/spec/template/spec/initContainers/1/args",
            "/spec/template/spec/initContainers/1/image",
            "/spec/template/spec/restartPolicy",
        ]
    );
    let untouched = enforce(&built, serde_json::to_value(&built).unwrap()).unwrap();
    assert_eq!((untouched.job, untouched.reverted), (built, vec![]));
}

#[test]
fn an_admitted_job_that_is_not_a_job_or_lost_a_step_is_refused() {
    let built = objects(&[], EXAMPLE).unwrap().job;
    let mut unknown = serde_json::to_value(&built).unwrap();
    unknown["spec"]["template"]["spec"]["nodeSelecter"] = json!({"a": "b"});
    let err = enforce(&built, unknown).unwrap_err();
    assert!(
        err.to_string().contains("spec.template.spec.nodeSelecter"),
        "{err}"
    );

    let mut typed = serde_json::to_value(&built).unwrap();
    typed["spec"]["template"]["spec"]["tolerations"] = json!("all");
    let err = enforce(&built, typed).unwrap_err();
    assert!(
        err.to_string().contains("spec.template.spec.tolerations"),
        "{err}"
    );

    let mut lost = serde_json::to_value(&built).unwrap();
    lost["spec"]["template"]["spec"]["initContainers"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    let err = enforce(&built, lost).unwrap_err();
    assert!(
        err.to_string().contains("lacks the container \"step-0\""),
        "{err}"
    );

    let mut moved = serde_json::to_value(&built).unwrap();
    moved["spec"]["template"]["spec"]["initContainers"]
        .as_array_mut()
        .unwrap()
        .swap(0, 1);
    let err = enforce(&built, moved).unwrap_err();
    assert!(
        err.to_string().contains("moves the container \"step-0\""),
        "{err}"
    );
}

#[test]
fn the_plugin_context_describes_the_job() {
    let c = config(&[]);
    let payload = JobPayload::parse(FULL).unwrap();
    let ctx = plugin_context(
        &Inputs {
            config: &c.kubernetes,
            queue: "batches",
            executor_name: "exec-1",
            instance: "exec-1",
            routes: None,
        },
        &payload,
    );
    assert_eq!(ctx.job_id, "88");
    assert_eq!(ctx.repository.as_deref(), Some("github.com/acme/monorepo"));
    assert_eq!(ctx.step_images, ["alpine:3.20", "ghcr.io/acme/tools:2.1"]);
}

#[test]
fn scripts_and_values_reach_the_shell_as_written_through_the_kubelets_expansion() {
    let payload =
        json!({"id": 1, "dockerSteps": [{"image": "alpine", "env": ["A=$(HOME)/x", "B=$$"],
        "commands": ["echo \"$(date) pid=$$ home=$(HOME)\""]}]})
        .to_string();
    let j = &list(&[], &payload)["items"][0];
    let step = &pod(j)["initContainers"][1];
    let command = step["command"][2].as_str().unwrap();
    assert_eq!(command, "echo \"$$(date) pid=$$$ home=$$(HOME)\"");
    let kubelet = |s: &str| sim::expansion::expand(s, |n| (n == "HOME").then(|| "/job".to_owned()));
    assert_eq!(kubelet(command), "echo \"$(date) pid=$$ home=$(HOME)\"");
    assert_eq!(
        kubelet(step["env"][0]["value"].as_str().unwrap()),
        "$(HOME)/x"
    );
    assert_eq!(kubelet(step["env"][1]["value"].as_str().unwrap()), "$$");
}
