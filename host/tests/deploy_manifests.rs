//! `deploy/` as an operator renders it: the base, every overlay and every component build with `kubectl kustomize`, and each object validates strictly against the official Kubernetes schemas. `scripts/test` installs kubectl when it is missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

mod common;

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
