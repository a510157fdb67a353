//! A container's user as the kubelet decides it: `runAsUser`/`runAsGroup` from the container's or the pod's securityContext, and the `runAsNonRoot` check; it reads the pod only.

use serde_json::Value;

/// The user an image runs as when nothing says otherwise: images are not
/// inspected, and a mapped local program has no `USER` either.
const IMAGE_UID: i64 = 0;

/// Why the container may not run as the user it would get (the container
/// waits in `CreateContainerConfigError` with this message, as the
/// kubelet's `verifyRunAsNonRoot` words it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum UserError {
    /// `runAsNonRoot` with `runAsUser: 0`.
    #[error(
        "container's runAsUser breaks non-root policy (pod: \"{pod}\", container: {container})"
    )]
    RunAsUserRoot {
        /// `name_namespace(uid)`, as the kubelet formats a pod.
        pod: String,
        /// The container.
        container: String,
    },
    /// `runAsNonRoot` without `runAsUser`, and the image runs as root.
    #[error(
        "container has runAsNonRoot and image will run as root (pod: \"{pod}\", container: {container})"
    )]
    ImageRoot {
        /// `name_namespace(uid)`.
        pod: String,
        /// The container.
        container: String,
    },
}

/// The user and group the container runs as inside its user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct User {
    /// `runAsUser`, else the image's (root).
    pub uid: i64,
    /// `runAsGroup`, else root's group.
    pub gid: i64,
}

/// The container's field `name` of its securityContext, else the pod's.
fn effective<'a>(pod: &'a Value, container: &'a Value, name: &str) -> Option<&'a Value> {
    container["securityContext"]
        .get(name)
        .filter(|v| !v.is_null())
        .or_else(|| {
            pod["spec"]["securityContext"]
                .get(name)
                .filter(|v| !v.is_null())
        })
}

/// The container's user, or why it may not run.
pub(super) fn user(pod: &Value, container: &Value) -> Result<User, UserError> {
    let run_as_user = effective(pod, container, "runAsUser").and_then(Value::as_i64);
    let gid = effective(pod, container, "runAsGroup")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let non_root = effective(pod, container, "runAsNonRoot").and_then(Value::as_bool) == Some(true);
    let uid = run_as_user.unwrap_or(IMAGE_UID);
    if non_root && uid == 0 {
        let meta = &pod["metadata"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let pod = format!(
            "{}_{}({})",
            text(&meta["name"]),
            text(&meta["namespace"]),
            text(&meta["uid"])
        );
        let container = text(&container["name"]);
        return Err(if run_as_user.is_some() {
            UserError::RunAsUserRoot { pod, container }
        } else {
            UserError::ImageRoot { pod, container }
        });
    }
    Ok(User { uid, gid })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(sc: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"}, "spec": {"securityContext": sc}})
    }

    #[test]
    fn the_containers_security_context_wins_over_the_pods() {
        let p = pod(json!({"runAsUser": 1000, "runAsGroup": 2000}));
        let c = json!({"name": "c", "securityContext": {"runAsUser": 1234}});
        assert_eq!(
            user(&p, &c).unwrap(),
            User {
                uid: 1234,
                gid: 2000
            }
        );
        assert_eq!(
            user(&pod(json!({})), &json!({"name": "c"})).unwrap(),
            User { uid: 0, gid: 0 }
        );
    }

    #[test]
    fn run_as_non_root_refuses_root_with_the_kubelets_words() {
        let c = json!({"name": "c"});
        let err = user(&pod(json!({"runAsNonRoot": true})), &c).unwrap_err();
        assert_eq!(
            err.to_string(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u-1)\", container: c)"
        );
        let err = user(&pod(json!({"runAsNonRoot": true, "runAsUser": 0})), &c).unwrap_err();
        assert_eq!(
            err.to_string(),
            "container's runAsUser breaks non-root policy (pod: \"p_ns(u-1)\", container: c)"
        );
        assert!(user(&pod(json!({"runAsNonRoot": true, "runAsUser": 7})), &c).is_ok());
    }
}
