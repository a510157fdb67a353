//! Admission plugin that adds image pull secrets to the pod, chosen by the registry of each image the Job uses.

use plugin_sdk::image::ImageRef;
use plugin_sdk::k8s_openapi::api::core::v1::LocalObjectReference;
use plugin_sdk::{Admission, Error, Job, JobContext, JobView, Patch, Plugin, Verdict, names};
use serde::Deserialize;

/// Secrets for the images of one registry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// A registry host glob (`ghcr.io`, `*.dkr.ecr.*.amazonaws.com`), or a
    /// host and path prefix (`ghcr.io/acme`).
    pub registry: String,
    /// Names of `kubernetes.io/dockerconfigjson` Secrets in the Job's namespace.
    pub secrets: Vec<String>,
}

/// The plugin's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Registries and their secrets; every entry that matches an image applies.
    #[serde(default)]
    pub registries: Vec<Entry>,
    /// Secrets added to every Job.
    #[serde(default)]
    pub default: Vec<String>,
}

/// The plugin.
pub struct PullSecrets {
    settings: Settings,
}

impl Plugin for PullSecrets {
    type Settings = Settings;

    fn init(settings: Settings) -> Result<Self, Error> {
        let check = |at: String, names: &[String]| {
            names.iter().enumerate().try_for_each(|(j, n)| {
                if names::dns1123_subdomain(n).is_ok() {
                    Ok(())
                } else {
                    Err(Error::new(format!("{at}[{j}]: {n:?} is not a valid Secret name; expected a DNS subdomain (lowercase letters, digits, '-' and '.')")))
                }
            })
        };
        check("default".into(), &settings.default)?;
        for (i, e) in settings.registries.iter().enumerate() {
            if e.registry.is_empty() || e.registry.contains("://") {
                return Err(Error::new(format!(
                    "registries[{i}].registry: {:?} is not a registry; expected e.g. \"ghcr.io\" or \"*.dkr.ecr.*.amazonaws.com\"",
                    e.registry
                )));
            }
            if e.secrets.is_empty() {
                return Err(Error::new(format!(
                    "registries[{i}].secrets: empty; expected at least one Secret name"
                )));
            }
            check(format!("registries[{i}].secrets"), &e.secrets)?;
        }
        Ok(PullSecrets { settings })
    }
}

impl Entry {
    fn matches(&self, image: &ImageRef) -> bool {
        match self.registry.split_once('/') {
            // host/path: a prefix of the image's name, on a path boundary.
            Some(_) => {
                let name = image.name();
                name == self.registry
                    || name
                        .strip_prefix(self.registry.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            None => glob_match::glob_match(&self.registry, &image.registry),
        }
    }
}

/// The parts of the pod spec the plugin reads: one parse, of these fields only.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pod {
    #[serde(default)]
    init_containers: Vec<Image>,
    #[serde(default)]
    containers: Vec<Image>,
    #[serde(default)]
    image_pull_secrets: Option<Vec<LocalObjectReference>>,
}

#[derive(Deserialize)]
struct Image {
    image: Option<String>,
}

const POD_SPEC: &str = "/spec/template/spec";

impl Admission for PullSecrets {
    fn admit(&self, ctx: &JobContext, job: &mut Job) -> Result<Verdict, Error> {
        plugin_sdk::admit_by_review(self, ctx, job)
    }

    fn review(
        &self,
        _ctx: &JobContext,
        job: &JobView<'_>,
        patch: &mut Patch,
    ) -> Result<Verdict, Error> {
        let pod: Pod = job.get(POD_SPEC)?.unwrap_or_default();
        let images: Vec<ImageRef> = pod
            .init_containers
            .iter()
            .chain(&pod.containers)
            .filter_map(|c| c.image.as_deref())
            .map(ImageRef::parse)
            .collect();
        let mut wanted: Vec<&String> = self.settings.default.iter().collect();
        for entry in &self.settings.registries {
            if images.iter().any(|i| entry.matches(i)) {
                wanted.extend(&entry.secrets);
            }
        }
        let mut list = pod.image_pull_secrets.clone().unwrap_or_default();
        for name in wanted {
            if !list.iter().any(|r| &r.name == name) {
                list.push(LocalObjectReference { name: name.clone() });
            }
        }
        if list.len() != pod.image_pull_secrets.as_ref().map_or(0, Vec::len) {
            let at = format!("{POD_SPEC}/imagePullSecrets");
            patch.diff(&at, pod.image_pull_secrets.as_ref(), &list)?;
        }
        Ok(Verdict::allow())
    }
}

plugin_sdk::export_plugin!(PullSecrets: admission);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{Harness, context, job};
    use serde_json::json;

    fn secrets(settings: serde_json::Value, job: &Job) -> Vec<String> {
        let out = Harness::<PullSecrets>::new(settings)
            .unwrap()
            .admit(&context(), job)
            .unwrap();
        let pod = out.job.spec.unwrap().template.spec.unwrap();
        pod.image_pull_secrets
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    fn pod_mut(j: &mut Job) -> &mut plugin_sdk::k8s_openapi::api::core::v1::PodSpec {
        j.spec.as_mut().unwrap().template.spec.as_mut().unwrap()
    }

    fn with_step_image(image: &str) -> Job {
        let mut j = job();
        pod_mut(&mut j).init_containers.as_mut().unwrap()[1].image = Some(image.into());
        j
    }

    #[test]
    fn secrets_follow_the_registries_of_the_images() {
        let settings = json!({"registries": [
            {"registry": "ghcr.io", "secrets": ["ghcr-pull"]},
            {"registry": "*.dkr.ecr.*.amazonaws.com", "secrets": ["ecr-pull"]},
            {"registry": "docker.io/sourcegraph", "secrets": ["sg-pull"]}
        ], "default": ["mirror"]});
        assert_eq!(
            secrets(settings.clone(), &with_step_image("ghcr.io/acme/tool:1")),
            ["mirror", "ghcr-pull", "sg-pull"]
        );
        assert_eq!(
            secrets(
                settings.clone(),
                &with_step_image("123.dkr.ecr.eu-west-1.amazonaws.com/app")
            ),
            ["mirror", "ecr-pull", "sg-pull"]
        );
        assert_eq!(
            secrets(
                json!({"registries": [{"registry": "ghcr.io", "secrets": ["g"]}]}),
                &job()
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn existing_secrets_are_kept_and_not_duplicated() {
        let mut j = with_step_image("ghcr.io/acme/tool:1");
        pod_mut(&mut j).image_pull_secrets = Some(vec![
            LocalObjectReference {
                name: "ghcr-pull".into(),
            },
            LocalObjectReference {
                name: "other".into(),
            },
        ]);
        let got = secrets(
            json!({"registries": [{"registry": "ghcr.io", "secrets": ["ghcr-pull"]}]}),
            &j,
        );
        assert_eq!(got, ["ghcr-pull", "other"]);
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let err = Harness::<PullSecrets>::new(
            json!({"registries": [{"registry": "ghcr.io", "secrets": ["Bad_Name"]}]}),
        )
        .err()
        .unwrap();
        assert!(
            err.message()
                .contains("registries[0].secrets[0]: \"Bad_Name\""),
            "{err}"
        );
        let err = Harness::<PullSecrets>::new(
            json!({"registries": [{"registry": "ghcr.io", "secrets": []}]}),
        )
        .err()
        .unwrap();
        assert!(
            err.message().contains("registries[0].secrets: empty"),
            "{err}"
        );
    }
}
