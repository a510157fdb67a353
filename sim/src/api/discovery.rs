//! Discovery as kube-apiserver serves it: `/version`, the group and resource lists, and the reduced OpenAPI v3 documents; nothing here reads the store.

use serde_json::{Value, json};

use crate::resources::{self, RESOURCES};

/// Whether `group`/`version` is a named API group the simulator serves.
pub(super) fn group_known(group: &str, version: &str) -> bool {
    RESOURCES
        .iter()
        .any(|r| r.group == group && r.version == version && !group.is_empty())
}

/// `/openapi/v3`: where each group version's document is.
pub(super) fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": "/openapi/v3/api/v1?hash=sim"}),
    );
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        let key = format!("apis/{}/{}", r.group, r.version);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash=sim")}),
        );
    }
    json!({"paths": paths})
}

/// A group version's OpenAPI v3 document, reduced to what clients ask of
/// it: each resource's operations with their group-version-kind and the
/// `fieldValidation` parameter (which tells `kubectl` that the server
/// validates fields itself), and the kinds' schemas as open objects. It
/// does not carry the full field schemas, so `kubectl` falls back to its
/// compiled-in types for patches.
pub(super) fn openapi_group(group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let params = json!([
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
    ]);
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let collection = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.name)
        } else {
            format!("{prefix}/{}", r.name)
        };
        let op = |verb: &str| json!({"x-kubernetes-action": verb, "x-kubernetes-group-version-kind": gvk, "parameters": params});
        paths.insert(
            collection.clone(),
            json!({"post": op("post"), "get": op("list")}),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
        );
        let schema_name = if group.is_empty() {
            format!("io.k8s.api.core.{version}.{}", r.kind)
        } else {
            format!("io.k8s.api.{group}.{version}.{}", r.kind)
        };
        schemas.insert(
            schema_name,
            json!({"type": "object", "x-kubernetes-group-version-kind": [gvk]}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (simulated)", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

pub(super) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub(super) fn group(name: &str) -> Value {
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": [{"groupVersion": format!("{name}/v1"), "version": "v1"}],
        "preferredVersion": {"groupVersion": format!("{name}/v1"), "version": "v1"},
    })
}

pub(super) fn group_list() -> Value {
    let mut groups: Vec<&str> = RESOURCES
        .iter()
        .map(|r| r.group)
        .filter(|g| !g.is_empty())
        .collect();
    // First appearance order, each group once.
    let mut seen = std::collections::BTreeSet::new();
    groups.retain(|g| seen.insert(*g));
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|g| {
            let mut v = group(g);
            if let Some(o) = v.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            v
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(super) fn resource_list(group: &str, version: &str) -> Value {
    let mut list = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        list.push(json!({
            "name": r.name,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": resources::verbs_of(r),
            "shortNames": r.short_names,
        }));
        for sub in r.subresources {
            let (verbs, kind): (&[&str], &str) = match *sub {
                "log" => (&["get"], "Pod"),
                "token" => (&["create"], "TokenRequest"),
                _ => (&["get", "patch", "update"], r.kind),
            };
            let mut entry = json!({
                "name": format!("{}/{sub}", r.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if *sub == "token" {
                entry["group"] = json!("authentication.k8s.io");
                entry["version"] = json!("v1");
            }
            list.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list})
}
