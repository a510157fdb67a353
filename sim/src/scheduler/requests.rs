//! A pod's effective resource request as kube-scheduler computes it (`resourcehelper.PodRequests`): containers, init containers, sidecars and overhead.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::quantity::resource_amount;

/// Amounts per resource name: millicores for `cpu`, whole units (bytes,
/// devices) for everything else.
pub(super) type Resources = BTreeMap<String, i128>;

/// The pod's effective request (`resourcehelper.PodRequests`): the larger of
/// the containers' sum (plus restartable init containers, i.e. sidecars) and
/// what any init container needs while it runs (itself plus the sidecars
/// started before it), per resource, plus `spec.overhead`.
pub(super) fn pod_requests(pod: &Value) -> Resources {
    let spec = &pod["spec"];
    let mut requests = Resources::new();
    for container in spec["containers"].as_array().into_iter().flatten() {
        add_resources(&mut requests, &container_requests(container));
    }
    let mut sidecars = Resources::new();
    let mut init_peak = Resources::new();
    for container in spec["initContainers"].as_array().into_iter().flatten() {
        let own = container_requests(container);
        let while_running = if container["restartPolicy"].as_str() == Some("Always") {
            // A sidecar keeps running beside the app containers.
            add_resources(&mut requests, &own);
            add_resources(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut total = own;
            add_resources(&mut total, &sidecars);
            total
        };
        max_resources(&mut init_peak, &while_running);
    }
    max_resources(&mut requests, &init_peak);
    if let Some(overhead) = spec["overhead"].as_object() {
        add_resources(&mut requests, &resource_list(overhead));
    }
    requests
}

/// A container's requests, with each limit standing in for a missing
/// request of the same resource, as the API server's defaulting sets it.
pub(super) fn container_requests(container: &Value) -> Resources {
    let resources = &container["resources"];
    let mut requests = resources["requests"]
        .as_object()
        .map(resource_list)
        .unwrap_or_default();
    if let Some(limits) = resources["limits"].as_object() {
        for (name, amount) in resource_list(limits) {
            requests.entry(name).or_insert(amount);
        }
    }
    requests
}

/// A `ResourceList`; entries that do not parse are left out.
pub(super) fn resource_list(list: &Map<String, Value>) -> Resources {
    list.iter()
        .filter_map(|(name, quantity)| Some((name.clone(), resource_amount(name, quantity)?)))
        .collect()
}

pub(super) fn add_resources(into: &mut Resources, other: &Resources) {
    for (name, amount) in other {
        let total = into.entry(name.clone()).or_insert(0);
        *total = total.saturating_add(*amount);
    }
}

pub(super) fn max_resources(into: &mut Resources, other: &Resources) {
    for (name, amount) in other {
        let current = into.entry(name.clone()).or_insert(0);
        *current = (*current).max(*amount);
    }
}
