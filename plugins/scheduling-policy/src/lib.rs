//! Admission plugin that applies scheduling rules (node selector, tolerations, node affinity) to jobs matched by queue, repository or step image, and denies images from registries outside an allow-list.

use std::collections::BTreeMap;

use plugin_sdk::image::ImageRef;
use plugin_sdk::k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PreferredSchedulingTerm, Toleration,
};
use plugin_sdk::{Admission, Error, Job, JobContext, JobView, Patch, Plugin, Verdict};
use serde::{Deserialize, Serialize};

/// Which jobs a rule applies to. Every criterion given must hold; within a
/// list, any entry may match. A rule without criteria applies to every job.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Queue names, exactly.
    #[serde(default)]
    pub queues: Vec<String>,
    /// Repository globs (`*` within a path segment, `**` across, `{a,b}`, `[ab]`).
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Image globs, matched against every step image.
    #[serde(default)]
    pub images: Vec<String>,
}

/// Node affinity to add.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAffinityRule {
    /// Requirements every node must meet; added to each required term.
    #[serde(default)]
    pub required: Vec<NodeSelectorRequirement>,
    /// Preferences, added as they are.
    #[serde(default)]
    pub preferred: Vec<PreferredSchedulingTerm>,
}

/// One rule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// A name for messages.
    #[serde(default)]
    pub name: Option<String>,
    /// Which jobs it applies to.
    #[serde(default, rename = "match")]
    pub matches: Match,
    /// Node selector entries to set.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations to add.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// Node affinity to add.
    #[serde(default)]
    pub node_affinity: Option<NodeAffinityRule>,
}

/// The plugin's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// Rules, applied in order; every rule that matches applies.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Registries (`ghcr.io`) or registry paths (`ghcr.io/acme`) every image
    /// of the Job must come from; absent means any.
    #[serde(default)]
    pub allowed_registries: Option<Vec<String>>,
}

/// The plugin: validated settings.
pub struct SchedulingPolicy {
    rules: Vec<Rule>,
    allowed: Option<Vec<String>>,
}

const OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"];

fn check_requirement(at: &str, r: &NodeSelectorRequirement) -> Result<(), Error> {
    if r.key.is_empty() {
        return Err(Error::new(format!("{at}.key: must not be empty")));
    }
    if !OPERATORS.contains(&r.operator.as_str()) {
        return Err(Error::new(format!(
            "{at}.operator: {:?} is not an operator; expected one of {}",
            r.operator,
            OPERATORS.join(", ")
        )));
    }
    let values = r.values.as_deref().unwrap_or_default();
    let ok = match r.operator.as_str() {
        "In" | "NotIn" => !values.is_empty(),
        "Exists" | "DoesNotExist" => values.is_empty(),
        _ => values.len() == 1 && values[0].parse::<i64>().is_ok(),
    };
    if !ok {
        return Err(Error::new(format!(
            "{at}.values: {values:?} does not suit operator {}; In/NotIn need values, Exists/DoesNotExist none, Gt/Lt one integer",
            r.operator
        )));
    }
    Ok(())
}

fn check_toleration(at: &str, t: &Toleration) -> Result<(), Error> {
    match t.operator.as_deref() {
        None | Some("Equal") => {}
        Some("Exists") if t.value.as_deref().unwrap_or("").is_empty() => {}
        Some("Exists") => {
            return Err(Error::new(format!(
                "{at}.value: must be empty with operator Exists"
            )));
        }
        Some(other) => {
            return Err(Error::new(format!(
                "{at}.operator: {other:?} is not an operator; expected Equal or Exists"
            )));
        }
    }
    match t.effect.as_deref() {
        None | Some("" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") => Ok(()),
        Some(other) => Err(Error::new(format!(
            "{at}.effect: {other:?} is not an effect; expected NoSchedule, PreferNoSchedule or NoExecute"
        ))),
    }
}

impl Plugin for SchedulingPolicy {
    type Settings = Settings;

    fn init(settings: Settings) -> Result<Self, Error> {
        for (i, rule) in settings.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let globs = rule.matches.repositories.iter().chain(&rule.matches.images);
            if globs
                .chain(&rule.matches.queues)
                .any(|g| g.trim().is_empty())
            {
                return Err(Error::new(format!(
                    "{at}.match: empty entries match nothing; remove them"
                )));
            }
            for (j, t) in rule.tolerations.iter().enumerate() {
                check_toleration(&format!("{at}.tolerations[{j}]"), t)?;
            }
            if let Some(aff) = &rule.node_affinity {
                for (j, r) in aff.required.iter().enumerate() {
                    check_requirement(&format!("{at}.nodeAffinity.required[{j}]"), r)?;
                }
                for (j, p) in aff.preferred.iter().enumerate() {
                    if !(1..=100).contains(&p.weight) {
                        return Err(Error::new(format!(
                            "{at}.nodeAffinity.preferred[{j}].weight: {} is out of range; expected 1 to 100",
                            p.weight
                        )));
                    }
                }
            }
        }
        if let Some(list) = &settings.allowed_registries {
            for (i, entry) in list.iter().enumerate() {
                if entry.is_empty() || entry.contains("://") || entry.ends_with('/') {
                    return Err(Error::new(format!(
                        "allowedRegistries[{i}]: {entry:?} is not a registry; expected a host such as \"ghcr.io\" or a host and path such as \"ghcr.io/acme\""
                    )));
                }
            }
        }
        Ok(SchedulingPolicy {
            rules: settings.rules,
            allowed: settings.allowed_registries,
        })
    }
}

impl Rule {
    fn applies(&self, ctx: &JobContext) -> bool {
        let m = &self.matches;
        (m.queues.is_empty() || m.queues.contains(&ctx.queue))
            && (m.repositories.is_empty()
                || ctx
                    .repository
                    .as_deref()
                    .is_some_and(|r| m.repositories.iter().any(|g| glob_match::glob_match(g, r))))
            && (m.images.is_empty()
                || ctx
                    .step_images
                    .iter()
                    .any(|i| m.images.iter().any(|g| glob_match::glob_match(g, i))))
    }

    fn apply(&self, pod: &mut Scheduling) {
        if !self.node_selector.is_empty() {
            pod.node_selector
                .get_or_insert_default()
                .extend(self.node_selector.clone());
        }
        if !self.tolerations.is_empty() {
            let list = pod.tolerations.get_or_insert_default();
            for t in &self.tolerations {
                if !list.contains(t) {
                    list.push(t.clone());
                }
            }
        }
        if let Some(rule) = &self.node_affinity {
            let affinity = pod.affinity.get_or_insert_with(Affinity::default);
            let node = affinity
                .node_affinity
                .get_or_insert_with(NodeAffinity::default);
            if !rule.required.is_empty() {
                let selector = node
                    .required_during_scheduling_ignored_during_execution
                    .get_or_insert_with(|| NodeSelector {
                        node_selector_terms: vec![],
                    });
                // Terms are ORed, so a requirement must join every term to hold.
                if selector.node_selector_terms.is_empty() {
                    selector
                        .node_selector_terms
                        .push(NodeSelectorTerm::default());
                }
                for term in &mut selector.node_selector_terms {
                    let exprs = term.match_expressions.get_or_insert_default();
                    for r in &rule.required {
                        if !exprs.contains(r) {
                            exprs.push(r.clone());
                        }
                    }
                }
            }
            if !rule.preferred.is_empty() {
                node.preferred_during_scheduling_ignored_during_execution
                    .get_or_insert_default()
                    .extend(rule.preferred.iter().cloned());
            }
        }
    }
}

fn registry_allowed(allowed: &[String], image: &str) -> bool {
    let name = ImageRef::parse(image).name();
    allowed.iter().any(|a| {
        name == *a
            || name
                .strip_prefix(a.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The parts of the pod spec the plugin reads and may change, in one parse.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Scheduling {
    #[serde(default)]
    init_containers: Vec<Named>,
    #[serde(default)]
    containers: Vec<Named>,
    node_selector: Option<BTreeMap<String, String>>,
    tolerations: Option<Vec<Toleration>>,
    affinity: Option<Affinity>,
}

/// The fields of [`Scheduling`] the plugin changes, to record their change.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Changed<'a> {
    #[serde(skip_serializing_if = "absent")]
    node_selector: &'a Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "absent")]
    tolerations: &'a Option<Vec<Toleration>>,
    #[serde(skip_serializing_if = "absent")]
    affinity: &'a Option<Affinity>,
}

fn absent<T>(value: &&Option<T>) -> bool {
    value.is_none()
}

impl<'a> Changed<'a> {
    fn of(pod: &'a Scheduling) -> Self {
        Changed {
            node_selector: &pod.node_selector,
            tolerations: &pod.tolerations,
            affinity: &pod.affinity,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct Named {
    #[serde(default)]
    name: String,
    image: Option<String>,
}

const POD_SPEC: &str = "/spec/template/spec";

impl Admission for SchedulingPolicy {
    fn admit(&self, ctx: &JobContext, job: &mut Job) -> Result<Verdict, Error> {
        plugin_sdk::admit_by_review(self, ctx, job)
    }

    fn review(
        &self,
        ctx: &JobContext,
        job: &JobView<'_>,
        patch: &mut Patch,
    ) -> Result<Verdict, Error> {
        let before: Scheduling = job.get(POD_SPEC)?.unwrap_or_default();
        if let Some(allowed) = &self.allowed {
            // Every container: the executor's own pull images too.
            for c in before.init_containers.iter().chain(&before.containers) {
                let image = c.image.as_deref().unwrap_or("");
                if !registry_allowed(allowed, image) {
                    return Ok(Verdict::deny(format!(
                        "image {image:?} of container {:?} comes from {}, which is not an allowed registry (allowed: {})",
                        c.name,
                        ImageRef::parse(image).registry,
                        allowed.join(", ")
                    )));
                }
            }
        }
        let mut pod = before.clone();
        let mut applied = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.applies(ctx) {
                rule.apply(&mut pod);
                applied.push(rule.name.clone().unwrap_or_else(|| format!("rules[{i}]")));
            }
        }
        patch.diff(POD_SPEC, Some(&Changed::of(&before)), &Changed::of(&pod))?;
        if !applied.is_empty() {
            plugin_sdk::debug(format!(
                "job {}: applied {}",
                ctx.job_id,
                applied.join(", ")
            ));
        }
        Ok(Verdict::allow())
    }
}

plugin_sdk::export_plugin!(SchedulingPolicy: admission);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{Harness, context, job};
    use serde_json::json;

    fn run(settings: serde_json::Value, ctx: &JobContext) -> plugin_sdk::testing::Admitted {
        Harness::<SchedulingPolicy>::new(settings)
            .unwrap()
            .admit(ctx, &job())
            .unwrap()
    }

    fn pod(out: &plugin_sdk::testing::Admitted) -> plugin_sdk::k8s_openapi::api::core::v1::PodSpec {
        out.job.spec.clone().unwrap().template.spec.unwrap()
    }

    fn gpu_rule() -> serde_json::Value {
        json!({"rules": [{
            "name": "gpu",
            "match": {"queues": ["batches"], "repositories": ["github.com/acme/*"], "images": ["alpine:*"]},
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeAffinity": {
                "required": [{"key": "zone", "operator": "In", "values": ["a", "b"]}],
                "preferred": [{"weight": 10, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}}]
            }
        }]})
    }

    #[test]
    fn a_matching_rule_sets_selector_tolerations_and_affinity() {
        let out = run(gpu_rule(), &context());
        assert!(out.allowed && out.mutated);
        let pod = pod(&out);
        assert_eq!(pod.node_selector.unwrap()["pool"], "gpu");
        assert_eq!(pod.tolerations.unwrap()[0].key.as_deref(), Some("gpu"));
        let node = pod.affinity.unwrap().node_affinity.unwrap();
        let terms = node
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0].match_expressions.as_ref().unwrap()[0].key, "zone");
        assert_eq!(
            node.preferred_during_scheduling_ignored_during_execution
                .unwrap()[0]
                .weight,
            10
        );
    }

    #[test]
    fn every_criterion_must_hold() {
        let mut ctx = context();
        ctx.repository = Some("github.com/other/api".into());
        assert!(!run(gpu_rule(), &ctx).mutated);
        let mut ctx = context();
        ctx.step_images = vec!["ubuntu:22.04".into()];
        assert!(!run(gpu_rule(), &ctx).mutated);
        let mut ctx = context();
        ctx.queue = "codeintel".into();
        assert!(!run(gpu_rule(), &ctx).mutated);
    }

    #[test]
    fn required_affinity_joins_every_existing_term() {
        let mut j = job();
        let pod = j.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        pod.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![
                        NodeSelectorTerm::default(),
                        NodeSelectorTerm::default(),
                    ],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let out = Harness::<SchedulingPolicy>::new(gpu_rule())
            .unwrap()
            .admit(&context(), &j)
            .unwrap();
        let terms = out
            .job
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        assert!(
            terms
                .iter()
                .all(|t| t.match_expressions.as_ref().unwrap()[0].key == "zone")
        );
    }

    #[test]
    fn images_outside_the_allowed_registries_are_denied_by_name() {
        let out = run(
            json!({"allowedRegistries": ["docker.io", "ghcr.io/acme"]}),
            &context(),
        );
        assert!(out.allowed, "{:?}", out.message);
        let out = run(json!({"allowedRegistries": ["ghcr.io/acme"]}), &context());
        assert!(!out.allowed);
        let msg = out.message.unwrap();
        assert!(
            msg.contains("\"sourcegraph/batcheshelper:insiders\"") && msg.contains("docker.io"),
            "{msg}"
        );
        assert!(!registry_allowed(
            &["ghcr.io/acme".into()],
            "ghcr.io/acme-evil/x"
        ));
    }

    #[test]
    fn bad_settings_name_the_setting() {
        for (settings, needle) in [
            (
                json!({"rules": [{"tolerations": [{"key": "a", "operator": "Maybe"}]}]}),
                "rules[0].tolerations[0].operator",
            ),
            (
                json!({"rules": [{"nodeAffinity": {"required": [{"key": "a", "operator": "In"}]}}]}),
                "rules[0].nodeAffinity.required[0].values",
            ),
            (
                json!({"allowedRegistries": ["https://ghcr.io"]}),
                "allowedRegistries[0]",
            ),
            (
                json!({"rules": [{"match": {"queue": ["x"]}}]}),
                "unknown field `queue`",
            ),
        ] {
            let err = Harness::<SchedulingPolicy>::new(settings).err().unwrap();
            assert!(err.message().contains(needle), "{err} lacks {needle}");
        }
    }
}
