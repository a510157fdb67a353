//! The field checks of the RBAC kinds as kube-apiserver's rbac validation makes them: rules, role references and subjects.

use serde_json::Value;

use crate::status::{Cause, cause};

const GROUP: &str = "rbac.authorization.k8s.io";

/// Adds the causes `object` (a Role, ClusterRole, RoleBinding or
/// ClusterRoleBinding) fails with.
pub fn validate(kind: &str, object: &Value, causes: &mut Vec<Cause>) {
    match kind {
        "Role" => rules(object, true, causes),
        // An aggregated ClusterRole's rules are filled by its controller.
        "ClusterRole" if object.get("aggregationRule").is_none_or(Value::is_null) => {
            rules(object, false, causes)
        }
        "RoleBinding" => binding(object, true, causes),
        "ClusterRoleBinding" => binding(object, false, causes),
        _ => {}
    }
}

/// Why `name` cannot name an RBAC object (they are path segments, so
/// `system:discovery` is fine), as apimachinery's `IsValidPathSegmentName`.
pub fn path_segment_name(name: &str) -> Option<String> {
    if name == "." || name == ".." {
        return Some(format!("may not be '{name}'"));
    }
    ["/", "%"]
        .iter()
        .find(|bad| name.contains(**bad))
        .map(|bad| format!("may not contain '{bad}'"))
}

fn strings(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

fn rules(object: &Value, namespaced: bool, causes: &mut Vec<Cause>) {
    for (i, rule) in object["rules"].as_array().into_iter().flatten().enumerate() {
        let at = format!("rules[{i}]");
        if strings(&rule["verbs"]) == 0 {
            causes.push(cause(
                "FieldValueRequired",
                format!("{at}.verbs"),
                "Required value: verbs must contain at least one value",
            ));
        }
        if strings(&rule["nonResourceURLs"]) > 0 {
            let urls = rule["nonResourceURLs"].to_string();
            if namespaced {
                causes.push(cause(
                    "FieldValueInvalid",
                    format!("{at}.nonResourceURLs"),
                    format!(
                        "Invalid value: {urls}: namespaced rules cannot apply to non-resource URLs"
                    ),
                ));
            }
            if strings(&rule["apiGroups"])
                + strings(&rule["resources"])
                + strings(&rule["resourceNames"])
                > 0
            {
                causes.push(cause(
                    "FieldValueInvalid",
                    format!("{at}.nonResourceURLs"),
                    format!("Invalid value: {urls}: rules cannot apply to both regular resources and non-resource URLs"),
                ));
            }
            continue;
        }
        if strings(&rule["apiGroups"]) == 0 {
            causes.push(cause(
                "FieldValueRequired",
                format!("{at}.apiGroups"),
                "Required value: resource rules must supply at least one api group",
            ));
        }
        if strings(&rule["resources"]) == 0 {
            causes.push(cause(
                "FieldValueRequired",
                format!("{at}.resources"),
                "Required value: resource rules must supply at least one resource",
            ));
        }
    }
}

fn binding(object: &Value, namespaced: bool, causes: &mut Vec<Cause>) {
    let role_ref = &object["roleRef"];
    let group = role_ref["apiGroup"].as_str().unwrap_or_default();
    if group != GROUP {
        causes.push(cause(
            "FieldValueNotSupported",
            "roleRef.apiGroup",
            format!("Unsupported value: {group:?}: supported values: \"{GROUP}\""),
        ));
    }
    let kind = role_ref["kind"].as_str().unwrap_or_default();
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        let supported: Vec<String> = kinds.iter().map(|k| format!("{k:?}")).collect();
        causes.push(cause(
            "FieldValueNotSupported",
            "roleRef.kind",
            format!(
                "Unsupported value: {kind:?}: supported values: {}",
                supported.join(", ")
            ),
        ));
    }
    if role_ref["name"].as_str().is_none_or(str::is_empty) {
        causes.push(cause(
            "FieldValueRequired",
            "roleRef.name",
            "Required value",
        ));
    }
    for (i, s) in object["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        subject(s, namespaced, &format!("subjects[{i}]"), causes);
    }
}

fn subject(s: &Value, namespaced: bool, at: &str, causes: &mut Vec<Cause>) {
    let name = s["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            format!("{at}.name"),
            "Required value",
        ));
    }
    let group = s["apiGroup"].as_str().unwrap_or_default();
    match s["kind"].as_str().unwrap_or_default() {
        "ServiceAccount" => {
            if !group.is_empty() {
                causes.push(cause(
                    "FieldValueNotSupported",
                    format!("{at}.apiGroup"),
                    format!("Unsupported value: {group:?}: supported values: \"\""),
                ));
            }
            if !namespaced && s["namespace"].as_str().is_none_or(str::is_empty) {
                causes.push(cause(
                    "FieldValueRequired",
                    format!("{at}.namespace"),
                    "Required value",
                ));
            }
        }
        "User" | "Group" => {
            if group != GROUP {
                causes.push(cause(
                    "FieldValueNotSupported",
                    format!("{at}.apiGroup"),
                    format!("Unsupported value: {group:?}: supported values: \"{GROUP}\""),
                ));
            }
        }
        other => causes.push(cause(
            "FieldValueNotSupported",
            format!("{at}.kind"),
            format!(
                "Unsupported value: {other:?}: supported values: \"ServiceAccount\", \"User\", \"Group\""
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_role_cannot_name_non_resource_urls_and_a_rule_needs_verbs() {
        let mut causes = Vec::new();
        let role = json!({"rules": [{"nonResourceURLs": ["/x"], "verbs": []}]});
        validate("Role", &role, &mut causes);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["rules[0].verbs", "rules[0].nonResourceURLs"]);
    }

    #[test]
    fn a_cluster_role_binding_refers_to_a_cluster_role_and_namespaced_accounts() {
        let mut causes = Vec::new();
        let b = json!({
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "Robot", "name": "x"}],
        });
        validate("ClusterRoleBinding", &b, &mut causes);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            ["roleRef.kind", "subjects[0].namespace", "subjects[1].kind"]
        );
    }
}
