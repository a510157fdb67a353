//! RBAC authorization as kube-apiserver's RBAC authorizer decides: `system:masters` may do everything; otherwise a ClusterRoleBinding, or a RoleBinding of the request's namespace, whose subjects include the user must reference a role with a rule that covers the request.

use serde_json::Value;

use super::User;
use super::attributes::Attributes;
use super::resource;
use crate::store::{Key, Store};

/// The authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// Why not, beyond "no rule allows it": the bindings whose roles are
    /// missing (`RBAC: role.rbac.authorization.k8s.io "x" not found`).
    pub reason: String,
}

/// Whether `user` may do what `attrs` say, per the RBAC objects in `store`.
pub fn authorize(store: &Store, user: &User, attrs: &Attributes) -> Decision {
    if user.is_master() {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    let mut errors = Vec::new();
    let group = "rbac.authorization.k8s.io";
    let cluster_bindings = store.select(resource(group, "clusterrolebindings"), None, |b| {
        subject_of(b, "", user).is_some()
    });
    for b in &cluster_bindings {
        if role_allows(store, b, "", attrs, &mut errors) {
            return allowed_by(b, "", user);
        }
    }
    if !attrs.namespace.is_empty() {
        let ns = attrs.namespace.as_str();
        let bindings = store.select(resource(group, "rolebindings"), Some(ns), |b| {
            subject_of(b, ns, user).is_some()
        });
        for b in &bindings {
            if role_allows(store, b, ns, attrs, &mut errors) {
                return allowed_by(b, ns, user);
            }
        }
    }
    let reason = match errors.as_slice() {
        [] => String::new(),
        [one] => format!("RBAC: {one}"),
        many => format!("RBAC: [{}]", many.join(", ")),
    };
    Decision {
        allowed: false,
        reason,
    }
}

/// `RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "r" to Group "g"`,
/// as the real authorizer describes the binding that allowed a request.
fn allowed_by(binding: &Value, ns: &str, user: &User) -> Decision {
    let name = binding["metadata"]["name"].as_str().unwrap_or_default();
    let (what, name) = if ns.is_empty() {
        ("ClusterRoleBinding", name.to_owned())
    } else {
        ("RoleBinding", format!("{name}/{ns}"))
    };
    let role = &binding["roleRef"];
    let subject = subject_of(binding, ns, user).map_or_else(String::new, |s| {
        let kind = s["kind"].as_str().unwrap_or_default();
        let name = s["name"].as_str().unwrap_or_default();
        match s["namespace"].as_str().filter(|n| !n.is_empty()) {
            Some(sns) if kind == "ServiceAccount" => format!("{kind} \"{sns}/{name}\""),
            _ => format!("{kind} {name:?}"),
        }
    });
    Decision {
        allowed: true,
        reason: format!(
            "RBAC: allowed by {what} {name:?} of {} {:?} to {subject}",
            role["kind"].as_str().unwrap_or_default(),
            role["name"].as_str().unwrap_or_default(),
        ),
    }
}

/// The first of the binding's `subjects` that names `user` (a
/// ServiceAccount subject without a namespace is in the binding's own).
fn subject_of<'a>(binding: &'a Value, binding_ns: &str, user: &User) -> Option<&'a Value> {
    binding["subjects"].as_array()?.iter().find(|s| {
        let name = s["name"].as_str().unwrap_or_default();
        match s["kind"].as_str() {
            Some("User") => user.name == name,
            Some("Group") => user.groups.iter().any(|g| g == name),
            Some("ServiceAccount") => {
                let ns = s["namespace"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(binding_ns);
                super::service_account_of(&user.name) == Some((ns, name))
            }
            _ => false,
        }
    })
}

/// Whether the role the binding references has a rule allowing `attrs`; a
/// missing role is recorded in `errors`.
fn role_allows(
    store: &Store,
    binding: &Value,
    ns: &str,
    attrs: &Attributes,
    errors: &mut Vec<String>,
) -> bool {
    let role_ref = &binding["roleRef"];
    let name = role_ref["name"].as_str().unwrap_or_default();
    let (plural, key_ns) = match role_ref["kind"].as_str() {
        Some("Role") if !ns.is_empty() => ("roles", ns),
        Some("ClusterRole") => ("clusterroles", ""),
        _ => return false,
    };
    let r = resource("rbac.authorization.k8s.io", plural);
    let Some(role) = store.get(&Key::new(r, key_ns, name)) else {
        errors.push(format!(
            "{}.rbac.authorization.k8s.io {name:?} not found",
            &plural[..plural.len() - 1]
        ));
        return false;
    };
    role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rule| rule_allows(rule, attrs))
}

/// One `PolicyRule` against the attributes (rbac's `RuleAllows`).
pub fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    let has = |field: &str, want: &str| {
        rule[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|v| v == "*" || v == want)
    };
    if !has("verbs", &attrs.verb) {
        return false;
    }
    if !attrs.resource_request {
        return rule["nonResourceURLs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|u| {
                u == "*"
                    || u == attrs.path
                    || u.strip_suffix('*')
                        .is_some_and(|prefix| attrs.path.starts_with(prefix))
            });
    }
    if !has("apiGroups", &attrs.group) {
        return false;
    }
    let combined = attrs.combined_resource();
    let resource_matches = rule["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|r| {
            r == "*"
                || r == combined
                || (!attrs.subresource.is_empty()
                    && r.strip_prefix("*/") == Some(attrs.subresource.as_str()))
        });
    if !resource_matches {
        return false;
    }
    match rule["resourceNames"].as_array() {
        Some(names) if !names.is_empty() => names
            .iter()
            .filter_map(Value::as_str)
            .any(|n| n == attrs.name),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: "ns".into(),
            name: name.into(),
            path: String::new(),
        }
    }

    #[test]
    fn a_rule_matches_by_group_resource_verb_and_name() {
        let rule = json!({"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list"]});
        assert!(rule_allows(&rule, &attrs("get", "batch", "jobs", "", "x")));
        assert!(!rule_allows(
            &rule,
            &attrs("create", "batch", "jobs", "", "")
        ));
        assert!(!rule_allows(&rule, &attrs("get", "", "jobs", "", "x")));
        // A subresource is its own resource.
        assert!(!rule_allows(
            &rule,
            &attrs("get", "batch", "jobs", "status", "x")
        ));
        let named = json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"], "resourceNames": ["a"]});
        assert!(rule_allows(&named, &attrs("get", "", "secrets", "", "a")));
        assert!(!rule_allows(&named, &attrs("get", "", "secrets", "", "b")));
        assert!(!rule_allows(&named, &attrs("list", "", "secrets", "", "")));
    }

    #[test]
    fn wildcards_cover_subresources_as_the_real_authorizer_does() {
        let status = json!({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["update"]});
        assert!(rule_allows(
            &status,
            &attrs("update", "batch", "jobs", "status", "j")
        ));
        assert!(!rule_allows(
            &status,
            &attrs("update", "batch", "jobs", "", "j")
        ));
        let log = json!({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]});
        assert!(rule_allows(&log, &attrs("get", "", "pods", "log", "p")));
        assert!(!rule_allows(&log, &attrs("get", "", "pods", "", "p")));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_a_trailing_star() {
        let rule = json!({"nonResourceURLs": ["/healthz", "/apis/*"], "verbs": ["get"]});
        let at = |path: &str| Attributes {
            verb: "get".into(),
            path: path.into(),
            ..Attributes::default()
        };
        assert!(rule_allows(&rule, &at("/healthz")));
        assert!(rule_allows(&rule, &at("/apis/batch/v1")));
        assert!(!rule_allows(&rule, &at("/sim/stats")));
    }
}
