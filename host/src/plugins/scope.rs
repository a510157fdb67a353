//! What a plugin may change: JSON-pointer patterns, the default scope, and the check of a before/after pair of documents.

use std::fmt;

use serde_json::Value;

/// A JSON pointer (RFC 6901) whose segments may be `*`, matching any array
/// index or object key. A pattern grants its whole subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    raw: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Any,
}

/// Why a string is not a path pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{pattern:?} is not a JSON pointer: {reason}; expected e.g. \"/spec/template/spec/containers/*/env\""
)]
pub struct PatternError {
    pattern: String,
    reason: &'static str,
}

impl PathPattern {
    /// Parses a pointer such as `/spec/template/spec/containers/*/resources`.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let err = |reason| PatternError {
            pattern: pattern.to_owned(),
            reason,
        };
        let Some(rest) = pattern.strip_prefix('/') else {
            return Err(err("it must start with '/'"));
        };
        if rest.is_empty() {
            return Err(err("it grants the whole document"));
        }
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            if raw == "*" {
                segments.push(Segment::Any);
                continue;
            }
            let mut key = String::new();
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                match (c, c == '~') {
                    (_, true) => match chars.next() {
                        Some('0') => key.push('~'),
                        Some('1') => key.push('/'),
                        _ => return Err(err("'~' must be followed by '0' or '1'")),
                    },
                    (c, false) => key.push(c),
                }
            }
            segments.push(Segment::Key(key));
        }
        Ok(PathPattern {
            raw: pattern.to_owned(),
            segments,
        })
    }

    fn matches_at(&self, depth: usize, key: &str) -> bool {
        match self.segments.get(depth) {
            Some(Segment::Any) => true,
            Some(Segment::Key(k)) => k == key,
            None => true,
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// What every plugin may change without a grant: metadata labels and
/// annotations of the Job and its pod template, scheduling (affinity,
/// tolerations, node selector, priority class), image pull secrets, and
/// container resources.
pub const DEFAULT_SCOPE: &[&str] = &[
    "/metadata/labels",
    "/metadata/annotations",
    "/spec/template/metadata/labels",
    "/spec/template/metadata/annotations",
    "/spec/template/spec/affinity",
    "/spec/template/spec/tolerations",
    "/spec/template/spec/nodeSelector",
    "/spec/template/spec/imagePullSecrets",
    "/spec/template/spec/priorityClassName",
    "/spec/template/spec/containers/*/resources",
    "/spec/template/spec/initContainers/*/resources",
];

/// The default scope as patterns.
pub fn default_scope() -> Vec<PathPattern> {
    DEFAULT_SCOPE
        .iter()
        .filter_map(|p| PathPattern::parse(p).ok())
        .collect()
}

/// Pod-template annotation keys (by prefix) that change how the pod is
/// confined: AppArmor and seccomp profiles, and the container runtimes'
/// own settings (CRI-O, Kata). The default scope's grant of the pod
/// template's annotations stops short of them, so that a plugin meant to
/// label pods cannot unconfine them; a plugin needs a grant of its own that
/// reaches the key (`.../annotations/*`, or the key's path).
pub const CONFINEMENT_ANNOTATIONS: &[&str] = &[
    "container.apparmor.security.beta.kubernetes.io/",
    "seccomp.security.alpha.kubernetes.io/",
    "container.seccomp.security.alpha.kubernetes.io/",
    "io.kubernetes.cri-o.",
    "io.katacontainers.",
];

const POD_ANNOTATIONS: &str = "/spec/template/metadata/annotations";

/// The changes to confinement annotations of the pod template that no
/// pattern beyond the default scope grants.
fn confinement_violations(
    before: &Value,
    after: &Value,
    allowed: &[PathPattern],
) -> Vec<Violation> {
    let annotations = |doc: &Value| {
        doc.pointer(POD_ANNOTATIONS)
            .and_then(Value::as_object)
            .cloned()
    };
    let (b, a) = (
        annotations(before).unwrap_or_default(),
        annotations(after).unwrap_or_default(),
    );
    let granted = |key: &str| {
        let mut segments: Vec<&str> = POD_ANNOTATIONS.split('/').skip(1).collect();
        segments.push(key);
        allowed
            .iter()
            .filter(|p| !DEFAULT_SCOPE.contains(&p.raw.as_str()))
            .any(|p| {
                segments
                    .iter()
                    .enumerate()
                    .all(|(depth, k)| p.matches_at(depth, k))
            })
    };
    let keys = b.keys().chain(a.keys().filter(|k| !b.contains_key(*k)));
    keys.filter(|k| {
        CONFINEMENT_ANNOTATIONS
            .iter()
            .any(|prefix| k.starts_with(prefix))
    })
    .filter(|k| b.get(*k) != a.get(*k) && !granted(k))
    .map(|k| Violation {
        op: match (b.contains_key(k), a.contains_key(k)) {
            (false, _) => "add",
            (true, false) => "remove",
            (true, true) => "replace",
        },
        path: format!("{POD_ANNOTATIONS}/{}", escape(k)),
    })
    .collect()
}

/// Whether a change at `path` (its keys, unescaped) is within what
/// `allowed` grants, judged from the path alone. `false` means "compare the
/// documents": for a path at or above a grant's root (a new parent is judged
/// by what it holds), at the root, or at, above or in the pod's annotations,
/// whose confinement keys are judged key by key.
pub fn granted<K: AsRef<str>>(allowed: &[PathPattern], path: &[K]) -> bool {
    let pod_annotations: Vec<&str> = POD_ANNOTATIONS.split('/').skip(1).collect();
    let shared = path.len().min(pod_annotations.len());
    if path.is_empty()
        || path[..shared]
            .iter()
            .zip(&pod_annotations)
            .all(|(k, p)| k.as_ref() == *p)
    {
        return false;
    }
    allowed.iter().any(|p| {
        p.segments.len() <= path.len()
            && path
                .iter()
                .enumerate()
                .take(p.segments.len())
                .all(|(depth, k)| p.matches_at(depth, k.as_ref()))
    })
}

/// One change outside the allowed paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `add`, `remove` or `replace`, as in RFC 6902.
    pub op: &'static str,
    /// The JSON pointer of the changed value.
    pub path: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.path)
    }
}

/// Lists every change from `before` to `after` outside `allowed`, down to the
/// leaves. A change is in scope only if every path it creates (or removes)
/// is, with one exception: a new object member that holds something, on the
/// way to an allowed path (e.g. the pod template's `metadata` for its
/// labels), is judged by what it holds. A new array element is a new thing
/// in its own right (a container holding only `resources` is still a new
/// container), and an empty object holds nothing that could be allowed, so
/// each is judged at its own path.
pub fn violations(before: &Value, after: &Value, allowed: &[PathPattern]) -> Vec<Violation> {
    let mut out = Vec::new();
    let live: Vec<&PathPattern> = allowed.iter().collect();
    walk(
        Some(before),
        Some(after),
        &mut String::new(),
        0,
        &live,
        false,
        &mut out,
    );
    out.extend(confinement_violations(before, after, allowed));
    out
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Checks the change at `path`, whose value is an array element when `element`.
fn walk(
    before: Option<&Value>,
    after: Option<&Value>,
    path: &mut String,
    depth: usize,
    live: &[&PathPattern],
    element: bool,
    out: &mut Vec<Violation>,
) {
    if live.iter().any(|p| p.segments.len() == depth) {
        return; // a pattern ends here: the whole subtree is granted
    }
    let mut descend = |key: &str,
                       b: Option<&Value>,
                       a: Option<&Value>,
                       element: bool,
                       out: &mut Vec<Violation>| {
        let next: Vec<&PathPattern> = live
            .iter()
            .copied()
            .filter(|p| p.matches_at(depth, key))
            .collect();
        let len = path.len();
        path.push('/');
        path.push_str(&escape(key));
        walk(b, a, path, depth + 1, &next, element, out);
        path.truncate(len);
    };
    match (before, after) {
        (Some(b), Some(a)) if b == a => {}
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            for (k, bv) in b {
                descend(k, Some(bv), a.get(k), false, out);
            }
            for (k, av) in a.iter().filter(|(k, _)| !b.contains_key(*k)) {
                descend(k, None, Some(av), false, out);
            }
        }
        (Some(Value::Array(b)), Some(Value::Array(a))) => {
            for i in 0..b.len().max(a.len()) {
                descend(&i.to_string(), b.get(i), a.get(i), true, out);
            }
        }
        (None, Some(Value::Object(a))) if !a.is_empty() && !element => {
            for (k, av) in a {
                descend(k, None, Some(av), false, out);
            }
        }
        (Some(Value::Object(b)), None) if !b.is_empty() && !element => {
            for (k, bv) in b {
                descend(k, Some(bv), None, false, out);
            }
        }
        (None, Some(_)) => out.push(Violation {
            op: "add",
            path: path.clone(),
        }),
        (Some(_), None) => out.push(Violation {
            op: "remove",
            path: path.clone(),
        }),
        (Some(_), Some(_)) => out.push(Violation {
            op: "replace",
            path: path.clone(),
        }),
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job() -> Value {
        json!({"metadata": {"name": "j", "labels": {"a": "1"}},
               "spec": {"template": {"spec": {
                   "containers": [{"name": "main", "image": "x", "command": ["true"]}]}}}})
    }

    /// What a path alone may be trusted with: within a grant, and never
    /// where a whole-document comparison judges more finely.
    #[test]
    fn a_path_is_granted_only_inside_a_grant_and_away_from_pod_annotations() {
        let scope = default_scope();
        let yes = |path: &str| granted(&scope, &path.split('/').skip(1).collect::<Vec<_>>());
        assert!(yes("/metadata/labels"));
        assert!(yes("/metadata/labels/example.com~1team"));
        assert!(yes("/spec/template/metadata/labels/a"));
        assert!(yes("/spec/template/spec/containers/3/resources/limits"));
        assert!(yes("/spec/template/spec/tolerations/-"));
        assert!(!yes("/metadata"), "a new parent is judged by what it holds");
        assert!(!yes("/metadata/name"));
        assert!(!yes("/spec/template/spec/containers/0/image"));
        assert!(!yes("/spec/template/metadata/annotations"));
        assert!(!yes(
            "/spec/template/metadata/annotations/seccomp.security.alpha.kubernetes.io~1pod"
        ));
        assert!(!yes("/spec/template/metadata"));
        assert!(!granted::<&str>(&scope, &[]), "the root");
    }

    #[test]
    fn changes_in_the_default_scope_pass() {
        let mut after = job();
        after["metadata"]["labels"]["b"] = json!("2");
        after["metadata"]["annotations"] = json!({"c": "3"});
        after["spec"]["template"]["metadata"] = json!({"labels": {"d": "4"}});
        after["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "gpu"}]);
        after["spec"]["template"]["spec"]["containers"][0]["resources"] =
            json!({"limits": {"cpu": "1"}});
        assert_eq!(violations(&job(), &after, &default_scope()), vec![]);
    }

    #[test]
    fn changes_outside_are_listed_by_leaf() {
        let mut after = job();
        after["spec"]["template"]["spec"]["containers"][0]["command"] = json!(["sh"]);
        after["spec"]["template"]["spec"]["containers"][0]["securityContext"] =
            json!({"privileged": true});
        after["metadata"]["name"] = json!("other");
        let v: Vec<String> = violations(&job(), &after, &default_scope())
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(
            v,
            [
                "replace /metadata/name",
                "replace /spec/template/spec/containers/0/command/0",
                "add /spec/template/spec/containers/0/securityContext/privileged",
            ]
        );
    }

    #[test]
    fn added_containers_and_removed_fields_are_violations() {
        let mut after = job();
        after["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sidecar", "resources": {}}));
        after["metadata"].as_object_mut().unwrap().remove("name");
        let v: Vec<String> = violations(&job(), &after, &default_scope())
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(
            v,
            [
                "remove /metadata/name",
                "add /spec/template/spec/containers/1"
            ]
        );
    }

    fn listed(before: &Value, after: &Value, allowed: &[PathPattern]) -> Vec<String> {
        violations(before, after, allowed)
            .iter()
            .map(|v| v.to_string())
            .collect()
    }

    #[test]
    fn a_new_array_element_is_out_of_scope_even_when_its_keys_are_in() {
        let mut before = job();
        before["spec"]["template"]["spec"]["initContainers"] =
            json!([{"name": "setup", "image": "x"}]);
        let mut after = before.clone();
        after["spec"]["template"]["spec"]["initContainers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"resources": {"limits": {"cpu": "1"}}}));
        assert_eq!(
            listed(&before, &after, &default_scope()),
            ["add /spec/template/spec/initContainers/1"]
        );
        // And the other way round: removing one is out of scope too.
        assert_eq!(
            listed(&after, &before, &default_scope()),
            ["remove /spec/template/spec/initContainers/1"]
        );
        // A grant of the list itself allows it.
        let grant = [PathPattern::parse("/spec/template/spec/initContainers").unwrap()];
        assert_eq!(listed(&before, &after, &grant), Vec::<String>::new());
    }

    #[test]
    fn an_empty_object_added_or_removed_out_of_scope_is_a_violation() {
        let mut after = job();
        after["spec"]["template"]["spec"]["dnsConfig"] = json!({});
        assert_eq!(
            listed(&job(), &after, &default_scope()),
            ["add /spec/template/spec/dnsConfig"]
        );
        assert_eq!(
            listed(&after, &job(), &default_scope()),
            ["remove /spec/template/spec/dnsConfig"]
        );
        // In scope, an empty object is as good as any other value.
        let mut after = job();
        after["spec"]["template"]["spec"]["nodeSelector"] = json!({});
        assert_eq!(
            listed(&job(), &after, &default_scope()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn grants_extend_the_scope_with_wildcards_and_escapes() {
        let mut after = job();
        after["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "A", "value": "1"}]);
        after["metadata"]["annotations"] = json!({"a/b": "x"});
        let only = [
            PathPattern::parse("/spec/template/spec/containers/*/env").unwrap(),
            PathPattern::parse("/metadata/annotations/a~1b").unwrap(),
        ];
        assert_eq!(violations(&job(), &after, &only), vec![]);
        assert_eq!(violations(&job(), &after, &[]).len(), 2);
    }

    #[test]
    fn confinement_annotations_of_the_pod_need_a_grant_of_their_own() {
        let mut before = job();
        before["spec"]["template"]["metadata"] =
            json!({"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"}});
        let mut after = before.clone();
        after["spec"]["template"]["metadata"]["annotations"] = json!({
            "team": "infra",
            "container.apparmor.security.beta.kubernetes.io/step-0": "unconfined",
        });
        let v: Vec<String> = violations(&before, &after, &default_scope())
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(
            v,
            [
                "remove /spec/template/metadata/annotations/seccomp.security.alpha.kubernetes.io~1pod",
                "add /spec/template/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1step-0",
            ],
            "a plugin in the default scope could unconfine the job's pod"
        );
        let mut granted = default_scope();
        granted.push(PathPattern::parse("/spec/template/metadata/annotations/*").unwrap());
        assert_eq!(violations(&before, &after, &granted), vec![]);
        let one = PathPattern::parse(
            "/spec/template/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1step-0",
        )
        .unwrap();
        let mut partly = default_scope();
        partly.push(one);
        assert_eq!(
            violations(&before, &after, &partly).len(),
            1,
            "the seccomp removal is still out of scope"
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(
            PathPattern::parse("spec")
                .unwrap_err()
                .to_string()
                .contains("must start with '/'")
        );
        assert!(PathPattern::parse("/").is_err());
        assert!(PathPattern::parse("/a~2").is_err());
    }
}
