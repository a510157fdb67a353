//! The TaintToleration filter plugin: `NoSchedule` and `NoExecute` taints keep out pods that do not tolerate them.

use serde_json::Value;

use super::framework::{Incoming, NodeInfo, Rejection};

/// Rejects a node with a taint the pod does not tolerate; the first such
/// taint in the node's order names the reason.
pub(super) fn filter(incoming: &Incoming<'_>, node: &NodeInfo<'_>) -> Result<(), Rejection> {
    let untolerated = node.node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|taint| {
            let effect = taint["effect"].as_str().unwrap_or_default();
            matches!(effect, "NoSchedule" | "NoExecute")
                && !tolerated(
                    incoming.tolerations,
                    taint["key"].as_str().unwrap_or_default(),
                    taint["value"].as_str().unwrap_or_default(),
                    effect,
                )
        });
    if let Some(taint) = untolerated {
        return Err(Rejection::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint["key"].as_str().unwrap_or_default(),
            taint["value"].as_str().unwrap_or_default(),
        )));
    }
    Ok(())
}

/// Whether some toleration tolerates the taint (`v1.Toleration.ToleratesTaint`):
/// an empty effect matches every effect, an empty key every key, and the
/// operator is `Equal` (the default) or `Exists`.
pub(super) fn tolerated(tolerations: &[Value], key: &str, value: &str, effect: &str) -> bool {
    tolerations.iter().any(|toleration| {
        let t_effect = toleration["effect"].as_str().unwrap_or_default();
        let t_key = toleration["key"].as_str().unwrap_or_default();
        if !t_effect.is_empty() && t_effect != effect {
            return false;
        }
        if !t_key.is_empty() && t_key != key {
            return false;
        }
        match toleration["operator"].as_str().unwrap_or_default() {
            "" | "Equal" => toleration["value"].as_str().unwrap_or_default() == value,
            "Exists" => true,
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    fn tainted(name: &str, taints: Value) -> Value {
        let mut n = node(name, "8", "8Gi");
        n["spec"]["taints"] = taints;
        n
    }

    fn tolerating(tolerations: Value) -> Value {
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["tolerations"] = tolerations;
        p
    }

    #[test]
    fn untolerated_taint_is_named_in_the_message() {
        let nodes = [tainted(
            "a",
            json!([{"key": "dedicated", "value": "ci", "effect": "NoSchedule"}]),
        )];
        assert_eq!(
            message(place(&pod("p", "1", "1Gi"), &nodes, &[])),
            format!(
                "0/1 nodes are available: 1 node(s) had untolerated taint {{dedicated: ci}}. {}",
                not_helpful(1)
            )
        );
        // A taint without a value prints an empty value, as kubectl users see it.
        let nodes = [tainted(
            "a",
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        )];
        assert!(message(place(&pod("p", "1", "1Gi"), &nodes, &[])).contains(
            "1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }."
        ));
    }

    #[test]
    fn equal_toleration_needs_the_value() {
        let nodes = [tainted(
            "a",
            json!([{"key": "dedicated", "value": "ci", "effect": "NoSchedule"}]),
        )];
        let matching = tolerating(
            json!([{"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}]),
        );
        assert_eq!(place(&matching, &nodes, &[]), Ok("a".to_owned()));
        // The operator defaults to Equal.
        let defaulted = tolerating(json!([{"key": "dedicated", "value": "ci"}]));
        assert_eq!(place(&defaulted, &nodes, &[]), Ok("a".to_owned()));
        let other_value =
            tolerating(json!([{"key": "dedicated", "value": "prod", "effect": "NoSchedule"}]));
        assert!(place(&other_value, &nodes, &[]).is_err());
        let other_effect =
            tolerating(json!([{"key": "dedicated", "value": "ci", "effect": "NoExecute"}]));
        assert!(place(&other_effect, &nodes, &[]).is_err());
    }

    #[test]
    fn exists_toleration_with_a_key_ignores_the_value() {
        let nodes = [tainted(
            "a",
            json!([{"key": "dedicated", "value": "ci", "effect": "NoExecute"}]),
        )];
        let p = tolerating(json!([{"key": "dedicated", "operator": "Exists"}]));
        assert_eq!(place(&p, &nodes, &[]), Ok("a".to_owned()));
        let other_key = tolerating(json!([{"key": "gpu", "operator": "Exists"}]));
        assert!(place(&other_key, &nodes, &[]).is_err());
    }

    #[test]
    fn exists_toleration_with_an_empty_key_tolerates_every_taint() {
        let nodes = [tainted(
            "a",
            json!([
                {"key": "dedicated", "value": "ci", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
            ]),
        )];
        assert_eq!(
            place(&tolerating(json!([{"operator": "Exists"}])), &nodes, &[]),
            Ok("a".to_owned())
        );
        // With an effect, only taints of that effect.
        let no_schedule_only = tolerating(json!([{"operator": "Exists", "effect": "NoSchedule"}]));
        assert!(
            message(place(&no_schedule_only, &nodes, &[]))
                .contains("untolerated taint {node.kubernetes.io/not-ready: }")
        );
    }

    #[test]
    fn prefer_no_schedule_taints_do_not_filter() {
        let nodes = [tainted(
            "a",
            json!([{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]),
        )];
        assert_eq!(
            place(&pod("p", "1", "1Gi"), &nodes, &[]),
            Ok("a".to_owned())
        );
    }

    #[test]
    fn the_first_untolerated_taint_is_reported() {
        let nodes = [tainted(
            "a",
            json!([
                {"key": "tolerated", "value": "x", "effect": "NoSchedule"},
                {"key": "first", "value": "1", "effect": "NoExecute"},
                {"key": "second", "value": "2", "effect": "NoSchedule"},
            ]),
        )];
        let p = tolerating(json!([{"key": "tolerated", "operator": "Exists"}]));
        assert!(
            message(place(&p, &nodes, &[])).contains("1 node(s) had untolerated taint {first: 1}.")
        );
    }
}
