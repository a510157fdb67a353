use std::collections::BTreeMap;

use plugin_sdk::{Admission, Error, Job, JobContext, JobView, NoSettings, Patch, Plugin, Verdict};

pub struct PodOwner;

impl Plugin for PodOwner {
    type Settings = NoSettings;
    fn init(_: NoSettings) -> Result<Self, Error> {
        Ok(PodOwner)
    }
}

const POD_LABELS: &str = "/spec/template/metadata/labels";

impl Admission for PodOwner {
    // Native callers get the same logic as the component.
    fn admit(&self, ctx: &JobContext, job: &mut Job) -> Result<Verdict, Error> {
        plugin_sdk::admit_by_review(self, ctx, job)
    }

    // What the component runs: one map read, one key sent back.
    fn review(&self, ctx: &JobContext, job: &JobView<'_>, patch: &mut Patch) -> Result<Verdict, Error> {
        let before: Option<BTreeMap<String, String>> = job.get(POD_LABELS)?;
        let mut labels = before.clone().unwrap_or_default();
        labels.entry("owner".into()).or_insert_with(|| ctx.queue.clone());
        patch.diff(POD_LABELS, before.as_ref(), &labels)?;
        Ok(Verdict::allow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{Harness, context, job};

    #[test]
    fn the_pod_gets_an_owner_unless_it_has_one() {
        let h = Harness::<PodOwner>::new(plugin_sdk::serde_json::json!(null)).unwrap();
        let out = h.admit(&context(), &job()).unwrap();
        let labels = out.job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels["owner"], "batches");
        assert!(out.mutated);
    }
}
