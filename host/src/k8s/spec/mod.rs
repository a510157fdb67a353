//! The Kubernetes objects of one job (its Secrets and its `batch/v1` Job), built from the payload and the configuration by pure functions.
//!
//! Layout (design.md, "The Job the executor creates"): one pod per job; an
//! init container `setup-workspace` clones the repository and writes the
//! files, one init container per step runs it, and a `main` container only
//! completes. Everything secret (the job token, step environment values and
//! commands that contain a redacted value, workspace file contents) lives in
//! a per-job Secret the pod references, never in the Job itself.

mod invariants;
pub mod script;
#[cfg(test)]
mod tests;
mod valid;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    EphemeralVolumeSource, KeyToPath, LocalObjectReference, NodeAffinity, NodeSelector,
    NodeSelectorTerm, PersistentVolumeClaimSpec, PersistentVolumeClaimTemplate, PodAffinity,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements,
    SeccompProfile, Secret, SecretKeySelector, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};
use url::Url;

use crate::config::{KubernetesConfig, VolumeType};
use crate::k8s::names;
use crate::payload::{FileSource, JobPayload};
use crate::plugins::{AdmissionOutcome, JobContext, Plugins};

pub use invariants::{Enforced, enforce};
use script::{FILES_DIR, Routes, SetupFile, TOKEN_ENV};
pub use valid::{ApiServer, validate};

/// Prefix of every object name: `sg-executor-<queue>-<id>`.
pub const NAME_PREFIX: &str = "sg-executor";
/// Where the workspace volume is mounted in every container.
pub const WORKSPACE: &str = "/job";
/// Name of the container that prepares the workspace.
pub const SETUP_CONTAINER: &str = "setup-workspace";
/// Name of the container that only marks success.
pub const MAIN_CONTAINER: &str = "main";
/// `app.kubernetes.io/managed-by` value on every object.
pub const MANAGED_BY: &str = "executor";
/// Label: the executor that created the object.
pub const LABEL_EXECUTOR: &str = "executor.sourcegraph.com/executor";
/// Label: the queue of the job.
pub const LABEL_QUEUE: &str = "executor.sourcegraph.com/queue";
/// Label: the id of the job within its queue.
pub const LABEL_JOB_ID: &str = "executor.sourcegraph.com/job-id";
/// Label: the executor's identity that survives its restarts (its pod's
/// name or host name), for the sweep of Jobs left by an earlier life.
pub const LABEL_INSTANCE: &str = "executor.sourcegraph.com/instance";
/// Annotation: the full executor name when the label had to be shortened.
pub const ANNOTATION_EXECUTOR: &str = "executor.sourcegraph.com/executor-name";
/// Seconds a finished Job stays before Kubernetes deletes it, should the
/// executor not get to it (it normally deletes Jobs itself, at once).
pub const TTL_AFTER_FINISHED: i32 = 600;
/// The API server refuses Secrets whose data exceed 1 MiB.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

const WORKSPACE_VOLUME: &str = "workspace";
const FILES_VOLUME: &str = "files";
const TOKEN_KEY: &str = "token";
const STEP_SCRIPT_ENV: &str = "EXECUTOR_STEP_SCRIPT";

/// What the objects depend on besides the payload.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The Kubernetes settings.
    pub config: &'a KubernetesConfig,
    /// The queue the job came from.
    pub queue: &'a str,
    /// `<hostname>-<uuid>` of this executor process.
    pub executor_name: &'a str,
    /// What survives the executor's restarts (`Config::instance`).
    pub instance: &'a str,
    /// Base URL of the git and files routes (the frontend, or the embedded
    /// queue); needed only by jobs that clone or download files.
    pub routes: Option<&'a Url>,
}

/// Every object one job needs, in creation order: the Secrets, then the Job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobObjects {
    /// The per-job Secret (if the job has anything secret) and the registry
    /// Secret (if the job brings registry credentials).
    pub secrets: Vec<Secret>,
    /// The Job.
    pub job: Job,
}

/// Why a job's objects cannot be built; the job fails with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The job needs the git or files route but none is known.
    #[error("job {job} needs {what} but no route to it is configured; set EXECUTOR_FRONTEND_URL")]
    NoRoutes {
        /// The job's name.
        job: String,
        /// What it needed.
        what: String,
    },
    /// The job needs a credential for the routes and has none. The shared
    /// secret is no stand-in: it is valid for every queue, and a job's
    /// Secret is readable by whoever may read Secrets in its namespace.
    #[error(
        "job {job} needs {what} but its payload has no job token; the executor never gives a job the shared EXECUTOR_FRONTEND_PASSWORD, so the queue must issue job tokens (Sourcegraph 5.1 or later, or the embedded queue)"
    )]
    NoCredential {
        /// The job's name.
        job: String,
        /// What it needed.
        what: String,
    },
    /// The Secret would be larger than the API server accepts.
    #[error(
        "job {job} carries {bytes} bytes of secrets and workspace files; a Secret holds at most {MAX_SECRET_BYTES} bytes (give large files by bucket and key instead)"
    )]
    SecretTooLarge {
        /// The job's name.
        job: String,
        /// The bytes it would hold.
        bytes: usize,
    },
    /// A plugin's Job is not a valid `batch/v1` Job.
    #[error("the admitted Job is not a valid batch/v1 Job: {0}")]
    NotAJob(String),
    /// A plugin removed or reordered a container the job needs.
    #[error("the admitted Job {0}; plugins may not remove or reorder the executor's containers")]
    Containers(String),
}

/// The labels that identify a job's objects, on every one of them.
pub fn labels(
    queue: &str,
    id: i64,
    executor_name: &str,
    instance: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGED_BY.to_owned(),
        ),
        (LABEL_EXECUTOR.to_owned(), label_value(executor_name)),
        (LABEL_INSTANCE.to_owned(), label_value(instance)),
        (LABEL_QUEUE.to_owned(), label_value(queue)),
        (LABEL_JOB_ID.to_owned(), id.to_string()),
    ])
}

/// `value` as a label value: kept when valid, else cut to fit with a hash of
/// the whole so that two long executor names stay apart.
pub fn label_value(value: &str) -> String {
    if k8s_rules::names::label_value(value).is_ok() {
        return value.to_owned();
    }
    let hash = hex::encode(Sha256::digest(value.as_bytes()));
    let clean: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(52)
        .collect();
    let head = clean.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if head.is_empty() {
        hash[..10].to_owned()
    } else {
        format!("{head}-{}", &hash[..10])
    }
}

/// The context the plugins see for this job.
pub fn plugin_context(inputs: &Inputs<'_>, payload: &JobPayload) -> JobContext {
    JobContext {
        job_id: payload.id.to_string(),
        queue: inputs.queue.to_owned(),
        repository: payload.repository.as_ref().map(|r| r.name.clone()),
        commit: payload.repository.as_ref().map(|r| r.commit.clone()),
        step_images: payload.steps.iter().map(|s| s.image.clone()).collect(),
        executor_name: inputs.executor_name.to_owned(),
    }
}

/// The owner reference that ties an object to `job` once the API server has
/// given the Job its UID, so that deleting the Job deletes the object.
pub fn owned_by(job: &Job) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.metadata.name.clone()?,
        uid: job.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

impl JobObjects {
    /// A `v1` `List` of the objects in creation order, as `executor render`
    /// prints it. Unless `show_secrets`, each Secret value is replaced by a
    /// readable note of its size in `stringData`, so the masked Secret is
    /// still a valid one.
    pub fn to_list(&self, show_secrets: bool) -> serde_json::Value {
        let mut items = Vec::new();
        for secret in &self.secrets {
            let mut secret = secret.clone();
            if !show_secrets && let Some(data) = secret.data.take() {
                secret.string_data = Some(
                    data.into_iter()
                        .map(|(k, v)| (k, format!("<masked: {} bytes>", v.0.len())))
                        .collect(),
                );
            }
            items.push(serde_json::to_value(&secret).unwrap_or_default());
        }
        items.push(serde_json::to_value(&self.job).unwrap_or_default());
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
    }
}

/// The result of running the admission plugins on a job's objects.
pub struct Admission {
    /// What each plugin did.
    pub outcome: AdmissionOutcome,
    /// The objects to create, or why there are none.
    pub result: Result<Admitted, AdmitError>,
}

/// Objects that passed admission.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// The objects to create; the Job with the host invariants re-applied.
    pub objects: JobObjects,
    /// Plugin changes the host reverted (JSON pointers into the Job).
    pub reverted: Vec<String>,
}

/// Why admission refused a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// A plugin denied it (or failed with policy `fail`).
    #[error("admission refused the job: {0}")]
    Denied(String),
    /// The plugins left something that is not a Job the executor can run.
    #[error(transparent)]
    Invalid(#[from] SpecError),
}

/// Runs the admission chain on the Job of `built`, then re-applies the host
/// invariants. Blocks while plugins run: call it from a blocking thread.
pub fn admit(plugins: &Plugins, ctx: &JobContext, built: JobObjects) -> Admission {
    let job = match serde_json::to_value(&built.job) {
        Ok(job) => job,
        Err(e) => {
            return Admission {
                outcome: AdmissionOutcome {
                    decision: crate::plugins::Decision::Allowed,
                    job: serde_json::Value::Null,
                    warnings: Vec::new(),
                    trail: Vec::new(),
                },
                result: Err(SpecError::NotAJob(e.to_string()).into()),
            };
        }
    };
    let outcome = plugins.admit(ctx, job, &ApiServer);
    let result = if outcome.allowed() {
        enforce(&built.job, outcome.job.clone())
            .map(|enforced| Admitted {
                objects: JobObjects {
                    secrets: built.secrets,
                    job: enforced.job,
                },
                reverted: enforced.reverted,
            })
            .map_err(AdmitError::from)
    } else {
        Err(AdmitError::Denied(outcome.message().unwrap_or_default()))
    };
    Admission { outcome, result }
}

/// Collects what goes into the per-job Secret and hands out references to it.
struct SecretData {
    name: String,
    data: BTreeMap<String, ByteString>,
    needles: Vec<String>,
}

impl SecretData {
    fn put(&mut self, key: String, value: Vec<u8>) -> EnvVarSource {
        self.data.insert(key.clone(), ByteString(value));
        EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: self.name.clone(),
                key,
                optional: None,
            }),
            ..Default::default()
        }
    }

    /// Whether `text` holds a redacted value (or the token) and so must not
    /// appear in the Job.
    fn is_secret(&self, text: &str) -> bool {
        self.needles.iter().any(|n| text.contains(n.as_str()))
    }

    fn bytes(&self) -> usize {
        self.data.values().map(|v| v.0.len()).sum()
    }
}

/// Builds the objects of `payload`: pure, deterministic, and the only place
/// that decides what the executor sends to the API server.
pub fn build(inputs: &Inputs<'_>, payload: &JobPayload) -> Result<JobObjects, SpecError> {
    let cfg = inputs.config;
    let name = names::job_name(NAME_PREFIX, inputs.queue, payload.id);
    let labels = labels(
        inputs.queue,
        payload.id,
        inputs.executor_name,
        inputs.instance,
    );
    let meta = |name: &str, annotations: &BTreeMap<String, String>| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(cfg.namespace.clone()),
        labels: Some(labels.clone()),
        annotations: non_empty(annotations.clone()),
        ..Default::default()
    };
    let mut secret = SecretData {
        name: name.clone(),
        data: BTreeMap::new(),
        needles: payload
            .redacted_values
            .keys()
            .chain(payload.token.iter())
            .filter(|k| !k.is_empty())
            .cloned()
            .collect(),
    };

    // Setup: clone and files.
    let stored = payload
        .files
        .iter()
        .any(|f| matches!(f.source, FileSource::Stored { .. }));
    let needs_routes = payload.repository.is_some() || stored;
    let what = || match &payload.repository {
        Some(r) => format!("to clone {}", r.name),
        None => "to download workspace files".to_owned(),
    };
    let mut setup_env = Vec::new();
    let routes = if needs_routes {
        let base = inputs.routes.ok_or_else(|| SpecError::NoRoutes {
            job: name.clone(),
            what: what(),
        })?;
        let Some(token) = &payload.token else {
            return Err(SpecError::NoCredential {
                job: name,
                what: what(),
            });
        };
        let source = secret.put(TOKEN_KEY.into(), token.as_bytes().to_vec());
        setup_env.push(env_from(TOKEN_ENV, source));
        Some(Routes {
            base,
            job_id: payload.id,
            executor_name: inputs.executor_name,
        })
    } else {
        None
    };
    let mut setup_files = Vec::new();
    let mut file_items = Vec::new();
    for file in &payload.files {
        match &file.source {
            FileSource::Content(bytes) => {
                let key = format!("file-{}", file_items.len());
                secret.data.insert(key.clone(), ByteString(bytes.clone()));
                file_items.push(KeyToPath {
                    key: key.clone(),
                    path: key.clone(),
                    mode: None,
                });
                setup_files.push(SetupFile::FromSecret {
                    key,
                    path: &file.path,
                    modified_at: file.modified_at,
                });
            }
            FileSource::Stored { bucket, key } => setup_files.push(SetupFile::Stored {
                bucket,
                key,
                path: &file.path,
                modified_at: file.modified_at,
            }),
        }
    }
    let setup_script = script::setup(payload.repository.as_ref(), &setup_files, routes.as_ref());

    let workspace_mount = VolumeMount {
        name: WORKSPACE_VOLUME.into(),
        mount_path: WORKSPACE.into(),
        ..Default::default()
    };
    let mut mounts = vec![workspace_mount];
    mounts.extend(cfg.additional_volume_mounts.iter().cloned());
    let container =
        |name: String, image: &str, command: Vec<String>, working_dir: String| Container {
            name,
            image: Some(image.to_owned()),
            command: Some(command),
            working_dir: Some(working_dir),
            volume_mounts: Some(mounts.clone()),
            resources: resources(cfg),
            security_context: Some(container_security(cfg)),
            ..Default::default()
        };

    let mut setup = container(
        SETUP_CONTAINER.into(),
        &cfg.step_image,
        sh(setup_script),
        WORKSPACE.into(),
    );
    setup.env = non_empty_vec(setup_env);
    if !file_items.is_empty()
        && let Some(mounts) = setup.volume_mounts.as_mut()
    {
        mounts.push(VolumeMount {
            name: FILES_VOLUME.into(),
            mount_path: FILES_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }

    let mut init = vec![setup];
    for (i, step) in payload.steps.iter().enumerate() {
        let mut env = Vec::new();
        for (j, var) in step.env.iter().enumerate() {
            if secret.is_secret(&var.value) {
                let source = secret.put(format!("step-{i}-env-{j}"), var.value.clone().into());
                env.push(env_from(&var.name, source));
            } else {
                env.push(EnvVar {
                    name: var.name.clone(),
                    value: Some(script::escape_expansion(&var.value)),
                    value_from: None,
                });
            }
        }
        if !step.env.iter().any(|v| v.name == "HOME") {
            // Non-root users of arbitrary images often have no home; tools
            // that write dotfiles (git, npm) would fail on a read-only `/`.
            env.push(EnvVar {
                name: "HOME".into(),
                value: Some(WORKSPACE.into()),
                value_from: None,
            });
        }
        let step_script = script::step(&step.commands);
        let command = if secret.is_secret(&step_script) {
            // The script itself holds a secret: the shell reads it from the
            // environment, which the kubelet fills from the Secret.
            let source = secret.put(format!("step-{i}-script"), step_script.into_bytes());
            env.push(env_from(STEP_SCRIPT_ENV, source));
            sh(format!("eval \"${STEP_SCRIPT_ENV}\""))
        } else {
            sh(step_script)
        };
        let mut c = container(
            format!("step-{i}"),
            &step.image,
            command,
            workspace_path(&step.dir),
        );
        c.env = Some(env);
        init.push(c);
    }
    let main = container(
        MAIN_CONTAINER.into(),
        &cfg.step_image,
        sh("true".into()),
        WORKSPACE.into(),
    );

    // Volumes.
    let workspace = match cfg.volume_type {
        VolumeType::EmptyDir => Volume {
            name: WORKSPACE_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: Some(cfg.volume_size.quantity.clone()),
            }),
            ..Default::default()
        },
        // A generic ephemeral volume: a PVC per pod, created and deleted by
        // Kubernetes with the pod, so no claim outlives its job.
        VolumeType::Pvc => Volume {
            name: WORKSPACE_VOLUME.into(),
            ephemeral: Some(EphemeralVolumeSource {
                volume_claim_template: Some(PersistentVolumeClaimTemplate {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels.clone()),
                        ..Default::default()
                    }),
                    spec: PersistentVolumeClaimSpec {
                        access_modes: Some(vec!["ReadWriteOnce".into()]),
                        resources: Some(VolumeResourceRequirements {
                            requests: Some(BTreeMap::from([(
                                "storage".to_owned(),
                                cfg.volume_size.quantity.clone(),
                            )])),
                            limits: None,
                        }),
                        ..Default::default()
                    },
                }),
            }),
            ..Default::default()
        },
    };
    let mut volumes = vec![workspace];
    if !file_items.is_empty() {
        volumes.push(Volume {
            name: FILES_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(name.clone()),
                items: Some(file_items),
                default_mode: Some(0o444),
                optional: None,
            }),
            ..Default::default()
        });
    }
    volumes.extend(cfg.additional_volumes.iter().cloned());

    // Secrets, in creation order.
    let mut secrets = Vec::new();
    let bytes = secret.bytes();
    if bytes > MAX_SECRET_BYTES {
        return Err(SpecError::SecretTooLarge { job: name, bytes });
    }
    if !secret.data.is_empty() {
        secrets.push(Secret {
            metadata: meta(&name, &BTreeMap::new()),
            type_: Some("Opaque".into()),
            data: Some(secret.data),
            immutable: Some(true),
            ..Default::default()
        });
    }
    let mut pull_secrets: Vec<LocalObjectReference> = cfg
        .image_pull_secrets
        .iter()
        .map(|n| LocalObjectReference { name: n.clone() })
        .collect();
    if let Some(auth) = &payload.docker_auth_config {
        let registry = format!("{name}-registry");
        let config = serde_json::to_vec(auth).unwrap_or_default();
        secrets.push(Secret {
            metadata: meta(&registry, &BTreeMap::new()),
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            data: Some(BTreeMap::from([(
                ".dockerconfigjson".to_owned(),
                ByteString(config),
            )])),
            immutable: Some(true),
            ..Default::default()
        });
        pull_secrets.push(LocalObjectReference { name: registry });
    }

    let mut job_annotations = cfg.job_annotations.clone();
    if label_value(inputs.executor_name) != inputs.executor_name {
        job_annotations.insert(
            ANNOTATION_EXECUTOR.to_owned(),
            inputs.executor_name.to_owned(),
        );
    }
    // Owned by the executor's pod, when it says which: deleting the executor
    // (its Deployment scaled down, its pod evicted) deletes its Jobs.
    let owner = cfg.pod.as_ref().map(|pod| OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod.name.clone(),
        uid: pod.uid.clone(),
        controller: None,
        block_owner_deletion: None,
    });
    let job = Job {
        metadata: ObjectMeta {
            owner_references: owner.map(|o| vec![o]),
            ..meta(&name, &job_annotations)
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(cfg.job_deadline.as_secs() as i64),
            ttl_seconds_after_finished: (!cfg.keep_jobs).then_some(TTL_AFTER_FINISHED),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: non_empty(cfg.pod_annotations.clone()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    node_name: cfg.node_name.clone(),
                    node_selector: non_empty(cfg.node_selector.clone()),
                    affinity: affinity(cfg),
                    tolerations: non_empty_vec(cfg.tolerations.clone()),
                    image_pull_secrets: non_empty_vec(pull_secrets),
                    security_context: Some(pod_security(cfg)),
                    init_containers: Some(init),
                    containers: vec![main],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    };
    Ok(JobObjects { secrets, job })
}

fn sh(script: String) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        script::escape_expansion(&script),
    ]
}

fn env_from(name: &str, source: EnvVarSource) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(source),
    }
}

/// `/job/<dir>`, normalised (`./a/` → `/job/a`).
fn workspace_path(dir: &str) -> String {
    let parts: Vec<&str> = dir
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() {
        WORKSPACE.to_owned()
    } else {
        format!("{WORKSPACE}/{}", parts.join("/"))
    }
}

fn non_empty<K, V>(map: BTreeMap<K, V>) -> Option<BTreeMap<K, V>> {
    (!map.is_empty()).then_some(map)
}

fn non_empty_vec<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn resources(cfg: &KubernetesConfig) -> Option<ResourceRequirements> {
    let r = &cfg.resources;
    let pick = |cpu: &Option<crate::config::Amount>, memory: &Option<crate::config::Amount>| {
        let mut map: BTreeMap<String, Quantity> = BTreeMap::new();
        if let Some(cpu) = cpu {
            map.insert("cpu".into(), cpu.quantity.clone());
        }
        if let Some(memory) = memory {
            map.insert("memory".into(), memory.quantity.clone());
        }
        non_empty(map)
    };
    let limits = pick(&r.limit_cpu, &r.limit_memory);
    let requests = pick(&r.request_cpu, &r.request_memory);
    (limits.is_some() || requests.is_some()).then(|| ResourceRequirements {
        limits,
        requests,
        ..Default::default()
    })
}

fn runs_as_non_root(cfg: &KubernetesConfig) -> Option<bool> {
    cfg.run_as_user.filter(|u| *u > 0).map(|_| true)
}

fn pod_security(cfg: &KubernetesConfig) -> PodSecurityContext {
    PodSecurityContext {
        run_as_user: cfg.run_as_user,
        run_as_group: cfg.run_as_group,
        fs_group: cfg.fs_group,
        run_as_non_root: runs_as_non_root(cfg),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn container_security(cfg: &KubernetesConfig) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            add: None,
            drop: Some(vec!["ALL".into()]),
        }),
        run_as_non_root: runs_as_non_root(cfg),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// Scheduling exactly as configured; no empty term, no empty affinity.
fn affinity(cfg: &KubernetesConfig) -> Option<Affinity> {
    let node = (!cfg.required_match_expressions.is_empty()
        || !cfg.required_match_fields.is_empty())
    .then(|| NodeAffinity {
        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: non_empty_vec(cfg.required_match_expressions.clone()),
                match_fields: non_empty_vec(cfg.required_match_fields.clone()),
            }],
        }),
        preferred_during_scheduling_ignored_during_execution: None,
    });
    let pod = non_empty_vec(cfg.pod_affinity.clone()).map(|terms| PodAffinity {
        required_during_scheduling_ignored_during_execution: Some(terms),
        preferred_during_scheduling_ignored_during_execution: None,
    });
    let anti = non_empty_vec(cfg.pod_anti_affinity.clone()).map(|terms| PodAntiAffinity {
        required_during_scheduling_ignored_during_execution: Some(terms),
        preferred_during_scheduling_ignored_during_execution: None,
    });
    (node.is_some() || pod.is_some() || anti.is_some()).then_some(Affinity {
        node_affinity: node,
        pod_affinity: pod,
        pod_anti_affinity: anti,
    })
}
