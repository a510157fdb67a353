//! `deploy/` as an operator renders it: the base, every overlay and every component build with `kubectl kustomize`, and each object validates strictly against the official Kubernetes schemas. `scripts/test` installs kubectl when it is missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use crate::common;

use common::relative;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .canonicalize()
        .unwrap()
}

/// The objects `kubectl kustomize dir` prints.
fn kustomize(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl (scripts/test installs it): {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The base with `components`, as an operator's own overlay would have it.
fn with_components(components: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().canonicalize().unwrap();
    let rel = |p: &str| relative(&here, &deploy().join(p)).display().to_string();
    let yaml = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{}]\ncomponents: [{}]\n",
        rel("base"),
        components
            .iter()
            .map(|c| rel(&format!("components/{c}")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    std::fs::write(here.join("kustomization.yaml"), yaml).unwrap();
    kustomize(&here)
}

/// Custom resources whose schemas are not Kubernetes' own: not validated.
const CUSTOM_GROUPS: &[&str] = &["monitoring.coreos.com/"];

/// Every violation in `objects`, named by kind and name.
fn violations(objects: &[Value]) -> Vec<String> {
    let schemas = executor_tests::schemas::kubernetes();
    let mut found = Vec::new();
    for object in objects {
        let api = object["apiVersion"].as_str().unwrap_or_default();
        if CUSTOM_GROUPS.iter().any(|g| api.starts_with(g)) {
            // A CustomResourceDefinition's schema ships with its operator
            // (here the Prometheus Operator's PodMonitor), not with Kubernetes.
            continue;
        }
        let name = format!("{} {}", object["kind"], object["metadata"]["name"]);
        found.extend(
            schemas
                .violations(object)
                .into_iter()
                .map(|v| format!("{name}: {v}")),
        );
    }
    found
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    kinds
}

#[test]
fn the_base_and_every_overlay_render_and_validate_strictly() {
    let mut dirs = vec![deploy().join("base")];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(deploy().join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    overlays.sort();
    assert!(overlays.len() >= 2, "overlays: {overlays:?}");
    dirs.extend(overlays);
    for dir in dirs {
        let objects = kustomize(&dir);
        assert!(
            kinds(&objects).contains(&"Deployment".to_owned()),
            "{} renders a Deployment",
            dir.display()
        );
        let found = violations(&objects);
        assert!(found.is_empty(), "{}:\n{}", dir.display(), found.join("\n"));
    }
}

#[test]
fn every_component_renders_on_the_base_and_validates_strictly() {
    // The two plugin components mount the same volume: one or the other.
    for set in [
        &["plugins", "embedded-queue", "network-policy", "prometheus"][..],
        &["plugins-image"][..],
    ] {
        let objects = with_components(set);
        let found = violations(&objects);
        assert!(found.is_empty(), "{set:?}:\n{}", found.join("\n"));
    }
    let all = with_components(&["embedded-queue", "network-policy", "prometheus"]);
    assert_eq!(
        kinds(&all),
        [
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "PodMonitor",
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "ServiceAccount"
        ]
    );
}

/// Seconds in a duration as the ConfigMap spells it (`5m`, `60s`).
fn seconds(text: &str) -> i64 {
    let (number, unit) = text.split_at(text.len() - 1);
    let n: i64 = number.parse().unwrap();
    match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("unexpected duration {text}"),
    }
}

#[test]
fn in_every_overlay_a_drain_ends_before_the_kubelet_kills_the_pod() {
    for overlay in ["sourcegraph", "simulator"] {
        let objects = kustomize(&deploy().join("overlays").join(overlay));
        let find = |kind: &str| {
            objects
                .iter()
                .find(|o| o["kind"] == kind)
                .unwrap_or_else(|| panic!("{overlay} has a {kind}"))
        };
        let drain = seconds(
            find("ConfigMap")["data"]["EXECUTOR_DRAIN_TIMEOUT"]
                .as_str()
                .unwrap(),
        );
        let pod = &find("Deployment")["spec"]["template"]["spec"];
        let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
        assert!(
            grace > drain,
            "{overlay}: grace {grace}s must exceed the drain timeout {drain}s"
        );
        // The ports the probes and Services use are those the executor
        // listens on.
        for (variable, name) in [
            ("EXECUTOR_DEBUG_LISTEN", "ops"),
            ("EXECUTOR_LISTEN", "queue"),
        ] {
            let Some(listen) = find("ConfigMap")["data"][variable].as_str() else {
                continue;
            };
            let port = pod["containers"][0]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{overlay}: no {name} port"))["containerPort"]
                .as_i64()
                .unwrap();
            assert!(
                listen.ends_with(&format!(":{port}")),
                "{overlay}: {variable} {listen} is not the {name} port {port}"
            );
        }
    }
}

/// The executor container's environment as the kubelet would give it: the
/// ConfigMap it takes with `envFrom`, then its `env` (which wins), with a
/// stand-in for each value the Downward API or a Secret supplies.
fn container_environment(objects: &[Value]) -> Vec<(String, String)> {
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut env: Vec<(String, String)> = Vec::new();
    for from in container["envFrom"].as_array().into_iter().flatten() {
        let name = &from["configMapRef"]["name"];
        let map = objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && &o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no ConfigMap {name}"));
        for (k, v) in map["data"].as_object().into_iter().flatten() {
            env.push((k.clone(), v.as_str().unwrap().to_owned()));
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap().to_owned();
        let value = match (&var["value"], &var["valueFrom"]) {
            (Value::String(v), _) => v.clone(),
            (_, from) => match from["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => "executor-7d9f8b6c5-x2x4z".to_owned(),
                Some("metadata.uid") => "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".to_owned(),
                Some("metadata.namespace") => "default".to_owned(),
                Some("spec.nodeName") => "node-1".to_owned(),
                _ => "a-secret-value".to_owned(),
            },
        };
        env.retain(|(k, _)| *k != name);
        env.push((name, value));
    }
    env
}

/// `executor config -o json` with exactly `env`, as the pod would run it.
fn executor_config(env: &[(String, String)]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_executor"))
        .args(["config", "-o", "json"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("executor config -o json printed no JSON ({e}): {stderr}"));
    (out.status.code(), doc, stderr)
}

#[test]
fn every_overlays_and_components_environment_is_a_valid_configuration_with_no_unknown_variable() {
    // The plugin configuration is a file mounted in the pod; a file here stands in for it.
    let mounted = tempfile::NamedTempFile::new().unwrap();
    let mut cases: Vec<(String, Vec<Value>)> = ["sourcegraph", "simulator"]
        .iter()
        .map(|o| {
            (
                format!("overlays/{o}"),
                kustomize(&deploy().join("overlays").join(o)),
            )
        })
        .collect();
    cases.push(("base".to_owned(), kustomize(&deploy().join("base"))));
    for set in [
        &["plugins", "embedded-queue", "network-policy", "prometheus"][..],
        &["plugins-image"][..],
    ] {
        cases.push((format!("components {set:?}"), with_components(set)));
    }
    for (name, objects) in cases {
        let mut env = container_environment(&objects);
        for (k, v) in &mut env {
            if k == "EXECUTOR_PLUGINS_CONFIG" {
                *v = mounted.path().display().to_string();
            }
        }
        assert!(
            env.iter().any(|(k, _)| k == "EXECUTOR_DRAIN_TIMEOUT"),
            "{name}: the ConfigMap's data reached the environment: {env:?}"
        );
        let (code, doc, stderr) = executor_config(&env);
        assert_eq!(
            code,
            Some(0),
            "{name}: `executor config` refused the manifests' configuration: {stderr}"
        );
        assert_eq!(
            doc["warnings"],
            serde_json::json!([]),
            "{name}: the manifests set variables the executor warns about"
        );
        // Every variable the manifests set is one `executor config` shows as set.
        for (k, _) in &env {
            let Some(setting) = doc["settings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["variable"] == k.as_str())
            else {
                continue; // HOME, XDG_CACHE_HOME: not the executor's settings
            };
            assert_eq!(setting["source"], "environment", "{name}: {k}");
        }
    }
}

#[test]
fn a_misspelt_variable_in_a_configmap_is_named_with_the_variable_meant() {
    let mut env = container_environment(&kustomize(&deploy().join("overlays/sourcegraph")));
    env.push(("EXECUTOR_MAXIMUM_NUM_JOB".to_owned(), "8".to_owned()));
    env.push(("EXECUTOR_JOB_NUM_CPUS".to_owned(), "4".to_owned()));
    let (code, doc, _) = executor_config(&env);
    assert_eq!(code, Some(0), "a warning does not stop the executor");
    let warnings = doc["warnings"].to_string();
    assert!(
        warnings.contains("EXECUTOR_MAXIMUM_NUM_JOB is not a variable this executor knows; did you mean EXECUTOR_MAXIMUM_NUM_JOBS?")
            && warnings.contains("EXECUTOR_JOB_NUM_CPUS is ignored"),
        "{warnings}"
    );
}
