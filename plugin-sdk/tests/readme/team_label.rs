use std::collections::BTreeMap;

use plugin_sdk::{Admission, Error, Job, JobContext, Plugin, Verdict};
use serde::Deserialize;

/// Settings, from the `settings` of the plugin's entry in the executor's configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Repository prefix → team.
    owners: BTreeMap<String, String>,
}

pub struct TeamLabel {
    owners: BTreeMap<String, String>,
}

impl Plugin for TeamLabel {
    type Settings = Settings;

    // Called once per instance: validate here, so bad settings are refused at start-up.
    fn init(settings: Settings) -> Result<Self, Error> {
        if settings.owners.is_empty() {
            return Err(Error::new("owners: empty; expected at least one repository prefix"));
        }
        Ok(TeamLabel { owners: settings.owners })
    }
}

impl Admission for TeamLabel {
    fn admit(&self, ctx: &JobContext, job: &mut Job) -> Result<Verdict, Error> {
        let repo = ctx.repository.as_deref().unwrap_or("");
        let Some(team) = self.owners.iter().find(|(prefix, _)| repo.starts_with(prefix.as_str())).map(|(_, t)| t) else {
            return Ok(Verdict::deny(format!("no team owns {repo:?}; ask #platform to add it")));
        };
        plugin_sdk::info(format!("job {} belongs to {team}", ctx.job_id));
        plugin_sdk::pod_labels_mut(job).insert("acme.com/team".into(), team.clone());
        Ok(Verdict::allow())
    }
}

plugin_sdk::export_plugin!(TeamLabel: admission);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::serde_json::json;
    use plugin_sdk::testing::{Harness, context, job};

    #[test]
    fn labels_owned_repositories_and_denies_the_rest() {
        let h = Harness::<TeamLabel>::new(json!({"owners": {"github.com/acme/": "infra"}})).unwrap();
        // `job()` is the Job the executor renders for `context()`'s job.
        let out = h.admit(&context(), &job()).unwrap();
        assert!(out.allowed && out.mutated);
        let pod = out.job.spec.unwrap().template.metadata.unwrap();
        assert_eq!(pod.labels.unwrap()["acme.com/team"], "infra");

        let mut ctx = context();
        ctx.repository = Some("github.com/other/x".into());
        let out = h.admit(&ctx, &job()).unwrap();
        assert_eq!(out.message.as_deref(), Some("no team owns \"github.com/other/x\"; ask #platform to add it"));
    }
}
