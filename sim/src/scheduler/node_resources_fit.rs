//! The NodeResourcesFit filter plugin: the pod count and every requested resource against the node's allocatable, less what its pods already request.

use super::framework::{Incoming, NodeInfo, Rejection};
use super::snapshot::{Snapshot, Usage};

/// Rejects a node that falls short, with every reason it falls short for.
pub(super) fn filter(
    incoming: &Incoming<'_>,
    node: &NodeInfo<'_>,
    snapshot: &Snapshot<'_>,
) -> Result<(), Rejection> {
    let insufficient = insufficient_resources(incoming, node, snapshot.usage.get(node.name));
    if !insufficient.is_empty() {
        return Err(Rejection::unschedulable(insufficient));
    }
    Ok(())
}

pub(super) const ERR_TOO_MANY_PODS: &str = "Too many pods";

/// NodeResourcesFit's `fitsRequest`: every reason the node falls short, pod
/// count first.
pub(super) fn insufficient_resources(
    incoming: &Incoming<'_>,
    node: &NodeInfo<'_>,
    usage: Option<&Usage>,
) -> Vec<String> {
    let mut reasons = Vec::new();
    let placed = usage.map_or(0, |u| u.pods);
    if i128::try_from(placed)
        .unwrap_or(i128::MAX)
        .saturating_add(1)
        > node.max_pods
    {
        reasons.push(ERR_TOO_MANY_PODS.to_owned());
    }
    for (name, &wanted) in &incoming.requests {
        // A resource the pod does not ask for never disqualifies a node, even
        // an overcommitted one.
        if wanted <= 0 {
            continue;
        }
        let allocatable = node.allocatable.get(name).copied().unwrap_or(0);
        let requested = usage
            .and_then(|u| u.requested.get(name))
            .copied()
            .unwrap_or(0);
        if wanted > allocatable.saturating_sub(requested) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::super::requests::pod_requests;
    use super::super::testing::*;

    #[test]
    fn insufficient_cpu_and_memory_each_count_once_per_node() {
        let nodes = [node("a", "1", "1Gi"), node("b", "4", "1Gi")];
        assert_eq!(
            message(place(&pod("p", "2", "2Gi"), &nodes, &[])),
            "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory. \
             preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn occupying_pods_use_up_allocatable() {
        let nodes = [node("a", "2", "4Gi")];
        let pods = [running(pod("x", "1500m", "1Gi"), "a")];
        assert!(
            message(place(&pod("p", "600m", "1Gi"), &nodes, &pods)).contains("1 Insufficient cpu.")
        );
        // An exact fit is a fit.
        assert_eq!(
            place(&pod("p", "500m", "3Gi"), &nodes, &pods),
            Ok("a".to_owned())
        );
    }

    #[test]
    fn finished_deleting_and_elsewhere_pods_do_not_occupy() {
        let nodes = [node("a", "2", "4Gi")];
        let mut succeeded = running(pod("s", "2", "1Gi"), "a");
        succeeded["status"]["phase"] = json!("Succeeded");
        let mut failed = running(pod("f", "2", "1Gi"), "a");
        failed["status"]["phase"] = json!("Failed");
        let mut deleting = running(pod("d", "2", "1Gi"), "a");
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let pending = pod("q", "2", "1Gi");
        let elsewhere = running(pod("e", "2", "1Gi"), "b");
        let pods = [succeeded, failed, deleting, pending, elsewhere];
        assert_eq!(
            place(&pod("p", "2", "4Gi"), &nodes, &pods),
            Ok("a".to_owned())
        );
    }

    #[test]
    fn a_pod_without_requests_fits_an_overcommitted_node() {
        let nodes = [node("a", "1", "1Gi")];
        let pods = [running(pod("x", "2", "2Gi"), "a")];
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["containers"][0]["resources"] = json!({});
        assert_eq!(place(&p, &nodes, &pods), Ok("a".to_owned()));
    }

    #[test]
    fn init_containers_count_by_their_maximum_against_the_containers_sum() {
        let nodes = [node("a", "3", "8Gi")];
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["containers"] = json!([
            {"name": "a", "resources": {"requests": {"cpu": "1"}}},
            {"name": "b", "resources": {"requests": {"cpu": "1"}}},
        ]);
        // Sum of containers 2, largest init container 3: the pod needs 3.
        p["spec"]["initContainers"] = json!([
            {"name": "i1", "resources": {"requests": {"cpu": "3"}}},
            {"name": "i2", "resources": {"requests": {"cpu": "1"}}},
        ]);
        assert_eq!(place(&p, &nodes, &[]), Ok("a".to_owned()));
        p["spec"]["initContainers"][0]["resources"]["requests"]["cpu"] = json!("3100m");
        assert!(message(place(&p, &nodes, &[])).contains("1 Insufficient cpu."));
        // Init containers run one at a time, so they do not add up.
        p["spec"]["initContainers"] = json!([
            {"name": "i1", "resources": {"requests": {"cpu": "2"}}},
            {"name": "i2", "resources": {"requests": {"cpu": "2"}}},
        ]);
        assert_eq!(place(&p, &nodes, &[]), Ok("a".to_owned()));
    }

    #[test]
    fn sidecars_and_overhead_add_to_the_request() {
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["initContainers"] = json!([
            {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
            {"name": "init", "resources": {"requests": {"cpu": "1500m"}}},
        ]);
        p["spec"]["overhead"] = json!({"cpu": "250m"});
        let requests = pod_requests(&p);
        // max(1 + 1 sidecar, 1.5 + 1 sidecar before it) + 0.25 overhead.
        assert_eq!(requests.get("cpu"), Some(&2750));
        assert_eq!(requests.get("memory"), Some(&(1 << 30)));
    }

    #[test]
    fn limits_stand_in_for_missing_requests() {
        let nodes = [node("a", "2", "8Gi")];
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "3", "memory": "1Gi"}});
        assert!(message(place(&p, &nodes, &[])).contains("1 Insufficient cpu."));
        // Per resource: an explicit request wins over the limit.
        p["spec"]["containers"][0]["resources"] =
            json!({"requests": {"cpu": "1"}, "limits": {"cpu": "3", "memory": "9Gi"}});
        assert_eq!(
            message(place(&p, &nodes, &[])),
            "0/1 nodes are available: 1 Insufficient memory. \
             preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn extended_resources_are_checked_too() {
        let mut gpu_node = node("a", "8", "8Gi");
        gpu_node["status"]["allocatable"]["nvidia.com/gpu"] = json!("1");
        let nodes = [gpu_node, node("b", "8", "8Gi")];
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["containers"][0]["resources"]["limits"] = json!({"nvidia.com/gpu": "1"});
        assert_eq!(place(&p, &nodes, &[]), Ok("a".to_owned()));
        p["spec"]["containers"][0]["resources"]["limits"] = json!({"nvidia.com/gpu": "2"});
        assert!(message(place(&p, &nodes, &[])).contains("2 Insufficient nvidia.com/gpu."));
    }

    #[test]
    fn too_many_pods() {
        let mut small = node("a", "8", "8Gi");
        small["status"]["allocatable"]["pods"] = json!("2");
        let pods = [
            running(pod("x", "100m", "1Mi"), "a"),
            running(pod("y", "100m", "1Mi"), "a"),
        ];
        assert_eq!(
            message(place(
                &pod("p", "100m", "1Mi"),
                std::slice::from_ref(&small),
                &pods
            )),
            "0/1 nodes are available: 1 Too many pods. \
             preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
        assert_eq!(
            place(
                &pod("p", "100m", "1Mi"),
                std::slice::from_ref(&small),
                &pods[..1]
            ),
            Ok("a".to_owned())
        );
    }

    #[test]
    fn too_many_pods_and_insufficient_cpu_are_both_reported() {
        let mut small = node("a", "1", "8Gi");
        small["status"]["allocatable"]["pods"] = json!("1");
        let pods = [running(pod("x", "500m", "1Mi"), "a")];
        assert!(
            message(place(&pod("p", "1", "1Mi"), &[small], &pods))
                .starts_with("0/1 nodes are available: 1 Insufficient cpu, 1 Too many pods. ")
        );
    }

    #[test]
    fn pod_count_defaults_to_110() {
        let mut n = node("a", "1000", "1000Gi");
        n["status"]["allocatable"] = json!({"cpu": "1000", "memory": "1000Gi"});
        let pods: Vec<Value> = (0..110)
            .map(|i| running(pod(&format!("x{i}"), "1m", "1Mi"), "a"))
            .collect();
        assert!(
            message(place(
                &pod("p", "1m", "1Mi"),
                std::slice::from_ref(&n),
                &pods
            ))
            .contains("1 Too many pods.")
        );
        assert_eq!(
            place(&pod("p", "1m", "1Mi"), &[n], &pods[..109]),
            Ok("a".to_owned())
        );
    }

    #[test]
    fn exact_fits_do_not_depend_on_how_quantities_are_spelled() {
        let nodes = [node("a", "2", "1073741824")];
        assert_eq!(
            place(&pod("p", "2000m", "1Gi"), &nodes, &[]),
            Ok("a".to_owned())
        );
        let pods = [running(pod("x", "1", "512Mi"), "a")];
        assert_eq!(
            place(&pod("p", "1000m", "536870912"), &nodes, &pods),
            Ok("a".to_owned())
        );
        assert!(place(&pod("p", "1000m", "536870913"), &nodes, &pods).is_err());
    }

    #[test]
    fn numeric_quantities_are_read_too() {
        let mut n = node("a", "2", "4Gi");
        n["status"]["allocatable"]["cpu"] = json!(2);
        let mut p = pod("p", "1", "1Gi");
        p["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!(2.5);
        assert!(message(place(&p, &[n], &[])).contains("1 Insufficient cpu."));
    }
}
