//! The Kubernetes section: how Jobs are built and where they run, and the executor's own pod; it checks these variables only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use k8s_openapi::api::core::v1::{Volume, VolumeMount};

use super::check::Checker;
use super::parse::{self, DAY, SECOND};

mod model;
mod placement;

pub use model::{Amount, ApiLimits, KubernetesConfig, PodIdentity, Resources, VolumeType};
pub use placement::RawPlacement;

/// Volume names the Job uses itself (see `k8s::spec`).
const RESERVED_VOLUMES: &[&str] = &["workspace", "files"];
/// Mount paths the Job uses itself (see `k8s::spec`).
const RESERVED_MOUNTS: &[&str] = &["/job", "/executor/files"];

/// Default of `KUBERNETES_SINGLE_JOB_STEP_IMAGE`. Not clap's default: the
/// check must see whether either name of the setting was given.
pub const DEFAULT_STEP_IMAGE: &str = "sourcegraph/batcheshelper:insiders";

/// Settings with a second name: (the second name, the setting's own). The
/// setting's own name wins when both are set.
pub(in crate::config) const ALIASES: &[(&str, &str)] = &[(JOB_STEP_IMAGE, SINGLE_JOB_STEP_IMAGE)];

/// Defaults applied by the checks rather than by clap, because a second
/// name may stand in for the setting.
pub(in crate::config) const CHECKED_DEFAULTS: &[(&str, &str)] =
    &[(SINGLE_JOB_STEP_IMAGE, DEFAULT_STEP_IMAGE)];

/// Default of `EXECUTOR_KUBERNETES_PERSISTENCE_VOLUME_NAME`.
pub const DEFAULT_PERSISTENCE_VOLUME_NAME: &str = "sg-executor-pvc";

const KUBERNETES_CONFIG_PATH: &str = "EXECUTOR_KUBERNETES_CONFIG_PATH";
const NODE_NAME: &str = "EXECUTOR_KUBERNETES_NODE_NAME";
const NAMESPACE: &str = "EXECUTOR_KUBERNETES_NAMESPACE";
const PERSISTENCE_VOLUME_NAME: &str = "EXECUTOR_KUBERNETES_PERSISTENCE_VOLUME_NAME";
const RESOURCE_LIMIT_CPU: &str = "EXECUTOR_KUBERNETES_RESOURCE_LIMIT_CPU";
const RESOURCE_LIMIT_MEMORY: &str = "EXECUTOR_KUBERNETES_RESOURCE_LIMIT_MEMORY";
const RESOURCE_REQUEST_CPU: &str = "EXECUTOR_KUBERNETES_RESOURCE_REQUEST_CPU";
const RESOURCE_REQUEST_MEMORY: &str = "EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY";
const JOB_DEADLINE: &str = "KUBERNETES_JOB_DEADLINE";
const RUN_AS_USER: &str = "KUBERNETES_RUN_AS_USER";
const RUN_AS_GROUP: &str = "KUBERNETES_RUN_AS_GROUP";
const FS_GROUP: &str = "KUBERNETES_FS_GROUP";
const KEEP_JOBS: &str = "KUBERNETES_KEEP_JOBS";
const JOB_ANNOTATIONS: &str = "KUBERNETES_JOB_ANNOTATIONS";
const JOB_POD_ANNOTATIONS: &str = "KUBERNETES_JOB_POD_ANNOTATIONS";
const IMAGE_PULL_SECRETS: &str = "KUBERNETES_IMAGE_PULL_SECRETS";
const JOB_VOLUME_TYPE: &str = "KUBERNETES_JOB_VOLUME_TYPE";
const JOB_VOLUME_SIZE: &str = "KUBERNETES_JOB_VOLUME_SIZE";
const ADDITIONAL_JOB_VOLUMES: &str = "KUBERNETES_ADDITIONAL_JOB_VOLUMES";
const ADDITIONAL_JOB_VOLUME_MOUNTS: &str = "KUBERNETES_ADDITIONAL_JOB_VOLUME_MOUNTS";
const SINGLE_JOB_STEP_IMAGE: &str = "KUBERNETES_SINGLE_JOB_STEP_IMAGE";
/// This executor's earlier name of `KUBERNETES_SINGLE_JOB_STEP_IMAGE`, kept
/// so that configurations written for it go on working.
const JOB_STEP_IMAGE: &str = "KUBERNETES_JOB_STEP_IMAGE";
const SINGLE_JOB_POD: &str = "KUBERNETES_SINGLE_JOB_POD";
const API_QPS: &str = "EXECUTOR_KUBERNETES_API_QPS";
const API_BURST: &str = "EXECUTOR_KUBERNETES_API_BURST";
const API_DELETE_QPS: &str = "EXECUTOR_KUBERNETES_API_DELETE_QPS";
const API_DELETE_BURST: &str = "EXECUTOR_KUBERNETES_API_DELETE_BURST";
const POD_PENDING_TIMEOUT: &str = "EXECUTOR_KUBERNETES_POD_PENDING_TIMEOUT";
const IMAGE_PULL_GRACE: &str = "EXECUTOR_KUBERNETES_IMAGE_PULL_GRACE";
const POD_NAME: &str = "EXECUTOR_POD_NAME";
const POD_UID: &str = "EXECUTOR_POD_UID";

/// The Kubernetes settings as text, from a flag or else its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct RawKubernetes {
    /// Path to a kubeconfig; absent: in-cluster configuration, else the default kubeconfig.
    #[arg(long = "kubeconfig", env = KUBERNETES_CONFIG_PATH)]
    pub kubernetes_config_path: Option<String>,
    /// Node to run every Job's pod on (e.g. the executor's own node, via the Downward API).
    #[arg(long, env = NODE_NAME)]
    pub node_name: Option<String>,
    /// Where Jobs' pods may run.
    #[command(flatten)]
    pub placement: RawPlacement,
    /// Namespace to create Jobs in.
    #[arg(long, env = NAMESPACE, default_value = "default")]
    pub namespace: String,
    /// Accepted for compatibility; no effect (each job's workspace is its own volume, see KUBERNETES_JOB_VOLUME_TYPE).
    #[arg(long, env = PERSISTENCE_VOLUME_NAME, default_value = DEFAULT_PERSISTENCE_VOLUME_NAME)]
    pub persistence_volume_name: String,
    /// CPU limit of every container (a quantity).
    #[arg(long, env = RESOURCE_LIMIT_CPU)]
    pub resource_limit_cpu: Option<String>,
    /// Memory limit of every container (a quantity).
    #[arg(long, env = RESOURCE_LIMIT_MEMORY, default_value = "12Gi")]
    pub resource_limit_memory: String,
    /// CPU request of every container (a quantity; at most the limit).
    #[arg(long, env = RESOURCE_REQUEST_CPU)]
    pub resource_request_cpu: Option<String>,
    /// Memory request of every container (a quantity; at most the limit).
    #[arg(long, env = RESOURCE_REQUEST_MEMORY, default_value = "12Gi")]
    pub resource_request_memory: String,
    /// Seconds after which a Job is terminated (activeDeadlineSeconds, pending time included).
    #[arg(long, env = JOB_DEADLINE, default_value = "1200")]
    pub job_deadline: String,
    /// User ID the containers run as.
    #[arg(long, env = RUN_AS_USER)]
    pub run_as_user: Option<String>,
    /// Group ID the containers run as.
    #[arg(long, env = RUN_AS_GROUP)]
    pub run_as_group: Option<String>,
    /// Group that owns the pod's volumes (fsGroup).
    #[arg(long, env = FS_GROUP, default_value = "1000")]
    pub fs_group: String,
    /// Keep Jobs after they finish (for debugging).
    #[arg(long, env = KEEP_JOBS, default_value = "false")]
    pub keep_jobs: String,
    /// Annotations for every Job (JSON object of strings).
    #[arg(long, env = JOB_ANNOTATIONS)]
    pub job_annotations: Option<String>,
    /// Annotations for every Job's pod (JSON object of strings).
    #[arg(long, env = JOB_POD_ANNOTATIONS)]
    pub job_pod_annotations: Option<String>,
    /// Image pull secrets for every Job: comma-separated Secret names.
    #[arg(long, env = IMAGE_PULL_SECRETS)]
    pub image_pull_secrets: Option<String>,
    /// Workspace volume type: emptyDir, or pvc (a per-job ephemeral PVC).
    #[arg(long, env = JOB_VOLUME_TYPE, default_value = "emptyDir")]
    pub job_volume_type: String,
    /// Workspace volume size (a quantity).
    #[arg(long, env = JOB_VOLUME_SIZE, default_value = "5Gi")]
    pub job_volume_size: String,
    /// Additional volumes for every Job (JSON list of Volume).
    #[arg(long, env = ADDITIONAL_JOB_VOLUMES)]
    pub additional_job_volumes: Option<String>,
    /// Where the additional volumes are mounted in every container (JSON list of VolumeMount).
    #[arg(long, env = ADDITIONAL_JOB_VOLUME_MOUNTS)]
    pub additional_job_volume_mounts: Option<String>,
    /// Image of the setup and main containers; it needs `sh` and `git` (default: sourcegraph/batcheshelper:insiders).
    #[arg(long, env = SINGLE_JOB_STEP_IMAGE)]
    pub single_job_step_image: Option<String>,
    /// The earlier name of KUBERNETES_SINGLE_JOB_STEP_IMAGE, which wins when both are set.
    #[arg(long, env = JOB_STEP_IMAGE)]
    pub job_step_image: Option<String>,
    /// One pod per job: `true` is the only mode of this executor; `false` is warned about and ignored.
    #[arg(long, env = SINGLE_JOB_POD, default_value = "true")]
    pub single_job_pod: String,
    /// Requests per second the executor makes to the Kubernetes API (reads, creates, watches, logs).
    #[arg(long, env = API_QPS, default_value = "20")]
    pub api_qps: String,
    /// Requests the executor may make at once above EXECUTOR_KUBERNETES_API_QPS.
    #[arg(long, env = API_BURST, default_value = "40")]
    pub api_burst: String,
    /// Deletes per second, a budget of their own so that cleanup never waits behind reads.
    #[arg(long, env = API_DELETE_QPS, default_value = "10")]
    pub api_delete_qps: String,
    /// Deletes the executor may make at once above EXECUTOR_KUBERNETES_API_DELETE_QPS.
    #[arg(long, env = API_DELETE_BURST, default_value = "20")]
    pub api_delete_burst: String,
    /// How long a job's pod may stay unschedulable before the job errors (the queue may retry it).
    #[arg(long, env = POD_PENDING_TIMEOUT, default_value = "5m")]
    pub pod_pending_timeout: String,
    /// How long an image may keep failing to pull before the job errors.
    #[arg(long, env = IMAGE_PULL_GRACE, default_value = "30s")]
    pub image_pull_grace: String,
    /// The executor's own pod name (Downward API metadata.name): its Jobs are owned by that pod.
    #[arg(long, env = POD_NAME)]
    pub pod_name: Option<String>,
    /// The executor's own pod UID (Downward API metadata.uid); needed with EXECUTOR_POD_NAME.
    #[arg(long, env = POD_UID)]
    pub pod_uid: Option<String>,
}

/// The workspace volume and the additional volumes.
struct Volumes {
    volume_type: Option<VolumeType>,
    volume_size: Option<Amount>,
    additional_volumes: Vec<Volume>,
    additional_volume_mounts: Vec<VolumeMount>,
}

impl RawKubernetes {
    /// Checks every Kubernetes setting; `None` when any is invalid (each recorded in `c`).
    pub(super) fn check(&self, c: &mut Checker) -> Option<KubernetesConfig> {
        let placement = self.placement.check(c);
        let namespace = self.namespace.trim().to_owned();
        if k8s_rules::names::dns1123_label(&namespace).is_err() {
            c.problem(NAMESPACE, format!("{namespace:?} is not a namespace name; expected a DNS label (lowercase letters, digits, '-', at most 63)"));
        }
        let resources = self.resources(c);
        let job_deadline = c.check(
            JOB_DEADLINE,
            parse::integer(&self.job_deadline, 1..=i64::from(i32::MAX)),
        );
        let id = |v: &str| parse::integer(v, 0..=i64::from(i32::MAX));
        let run_as_user = c.optional(RUN_AS_USER, &self.run_as_user, id);
        let run_as_group = c.optional(RUN_AS_GROUP, &self.run_as_group, id);
        let fs_group = c.optional(FS_GROUP, &Some(self.fs_group.clone()), id);
        let keep_jobs = c
            .check(KEEP_JOBS, parse::boolean(&self.keep_jobs))
            .unwrap_or(false);
        let (job_annotations, pod_annotations) = self.annotations(c);
        let image_pull_secrets = self.image_pull_secrets(c);
        let volumes = self.volumes(c);
        let step_image = self.step_image(c);
        self.single_job_pod(c);
        let api = self.api_limits(c);
        let pending_timeout = c.check(
            POD_PENDING_TIMEOUT,
            parse::duration_in(&self.pod_pending_timeout, SECOND..=DAY),
        );
        let image_pull_grace = c.check(
            IMAGE_PULL_GRACE,
            parse::duration_in(&self.image_pull_grace, Duration::ZERO..=DAY),
        );
        let pod = self.pod(c);
        Some(KubernetesConfig {
            config_path: self.kubernetes_config_path.as_deref().map(PathBuf::from),
            node_name: self.node_name.clone().filter(|n| !n.trim().is_empty()),
            node_selector: placement.node_selector,
            required_match_expressions: placement.required_match_expressions,
            required_match_fields: placement.required_match_fields,
            pod_affinity: placement.pod_affinity,
            pod_anti_affinity: placement.pod_anti_affinity,
            tolerations: placement.tolerations,
            namespace,
            persistence_volume_name: self.persistence_volume_name.clone(),
            resources,
            job_deadline: Duration::from_secs(job_deadline? as u64),
            run_as_user,
            run_as_group,
            fs_group,
            keep_jobs,
            job_annotations,
            pod_annotations,
            image_pull_secrets,
            volume_type: volumes.volume_type?,
            volume_size: volumes.volume_size?,
            additional_volumes: volumes.additional_volumes,
            additional_volume_mounts: volumes.additional_volume_mounts,
            step_image,
            api: api?,
            pending_timeout: pending_timeout?,
            image_pull_grace: image_pull_grace?,
            pod,
        })
    }

    /// The step image under the seed's name, else the earlier one, else the
    /// default; the seed's name wins when both are set, with a warning if
    /// they differ.
    fn step_image(&self, c: &mut Checker) -> String {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let (variable, image) = match (
            given(&self.single_job_step_image),
            given(&self.job_step_image),
        ) {
            (Some(seed), Some(earlier)) => {
                if seed != earlier {
                    c.warn(format!(
                        "{JOB_STEP_IMAGE}={earlier:?} is ignored: {SINGLE_JOB_STEP_IMAGE}={seed:?} is set too, and the seed's name wins"
                    ));
                }
                (SINGLE_JOB_STEP_IMAGE, seed)
            }
            (Some(seed), None) => (SINGLE_JOB_STEP_IMAGE, seed),
            (None, Some(earlier)) => (JOB_STEP_IMAGE, earlier),
            (None, None) => (SINGLE_JOB_STEP_IMAGE, DEFAULT_STEP_IMAGE.to_owned()),
        };
        if image.contains(char::is_whitespace) {
            c.problem(variable, format!("{image:?} is not an image reference"));
        }
        image
    }

    /// The seed's switch between a Job per step and one pod per job: this
    /// executor has only the second, so `false` is said aloud, not obeyed.
    fn single_job_pod(&self, c: &mut Checker) {
        if c.check(SINGLE_JOB_POD, parse::boolean(&self.single_job_pod)) == Some(false) {
            c.warn(format!(
                "{SINGLE_JOB_POD}=false is ignored: this executor runs each job as one pod (the workspace set up by an init container, each step an init container after it, all on one workspace volume), the only mode it has. The seed's other mode, a Job per step sharing the executor's volume, needs every job's pods on the executor's node; one pod per job needs no shared volume and no node pinning"
            ));
        }
    }

    fn resources(&self, c: &mut Checker) -> Resources {
        let resources = Resources {
            limit_cpu: amount(c, RESOURCE_LIMIT_CPU, self.resource_limit_cpu.as_deref()),
            limit_memory: amount(c, RESOURCE_LIMIT_MEMORY, Some(&self.resource_limit_memory)),
            request_cpu: amount(
                c,
                RESOURCE_REQUEST_CPU,
                self.resource_request_cpu.as_deref(),
            ),
            request_memory: amount(
                c,
                RESOURCE_REQUEST_MEMORY,
                Some(&self.resource_request_memory),
            ),
        };
        for (variable, request, limit) in [
            (
                RESOURCE_REQUEST_CPU,
                &resources.request_cpu,
                &resources.limit_cpu,
            ),
            (
                RESOURCE_REQUEST_MEMORY,
                &resources.request_memory,
                &resources.limit_memory,
            ),
        ] {
            if let (Some(r), Some(l)) = (request, limit)
                && r.parsed > l.parsed
            {
                c.problem(
                    variable,
                    format!(
                        "{:?} is above its limit {:?}; a request must not exceed the limit",
                        r.quantity.0, l.quantity.0
                    ),
                );
            }
        }
        resources
    }

    /// The Job's and the pod's annotations, in that order.
    fn annotations(&self, c: &mut Checker) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let object = "a JSON object of strings";
        let job: BTreeMap<String, String> = c.json(JOB_ANNOTATIONS, &self.job_annotations, object);
        let pod: BTreeMap<String, String> =
            c.json(JOB_POD_ANNOTATIONS, &self.job_pod_annotations, object);
        for (variable, map) in [(JOB_ANNOTATIONS, &job), (JOB_POD_ANNOTATIONS, &pod)] {
            if let Some(key) = map
                .keys()
                .find(|k| k8s_rules::names::qualified_name(k).is_err())
            {
                c.problem(variable, format!("{key:?} is not a valid annotation key; expected an optional DNS prefix and '/', then at most 63 characters of [A-Za-z0-9._-]"));
            }
        }
        (job, pod)
    }

    fn image_pull_secrets(&self, c: &mut Checker) -> Vec<String> {
        let secrets = self
            .image_pull_secrets
            .as_deref()
            .map(parse::list)
            .unwrap_or_default();
        if let Some(bad) = secrets
            .iter()
            .find(|s| k8s_rules::names::dns1123_subdomain(s).is_err())
        {
            c.problem(
                IMAGE_PULL_SECRETS,
                format!("{bad:?} is not a Secret name; expected comma-separated DNS subdomains"),
            );
        }
        secrets
    }

    fn volumes(&self, c: &mut Checker) -> Volumes {
        let volume_type = match self.job_volume_type.trim() {
            "emptyDir" => Some(VolumeType::EmptyDir),
            "pvc" => Some(VolumeType::Pvc),
            other => c.check(
                JOB_VOLUME_TYPE,
                Err(format!(
                    "{other:?} is not a volume type; expected emptyDir or pvc"
                )),
            ),
        };
        let volume_size = amount(c, JOB_VOLUME_SIZE, Some(&self.job_volume_size));
        let additional_volumes: Vec<Volume> = c.json(
            ADDITIONAL_JOB_VOLUMES,
            &self.additional_job_volumes,
            "a JSON list of Volume",
        );
        let additional_volume_mounts: Vec<VolumeMount> = c.json(
            ADDITIONAL_JOB_VOLUME_MOUNTS,
            &self.additional_job_volume_mounts,
            "a JSON list of VolumeMount",
        );
        if let Some(m) = additional_volume_mounts
            .iter()
            .find(|m| !additional_volumes.iter().any(|v| v.name == m.name))
        {
            c.problem(
                ADDITIONAL_JOB_VOLUME_MOUNTS,
                format!(
                    "mount {:?} names no volume of {ADDITIONAL_JOB_VOLUMES}",
                    m.name
                ),
            );
        }
        // The Job has volumes and mounts of its own; the API server would
        // refuse a duplicate name or mount path only when a job is created.
        if let Some(v) = additional_volumes
            .iter()
            .find(|v| RESERVED_VOLUMES.contains(&v.name.as_str()))
        {
            c.problem(
                ADDITIONAL_JOB_VOLUMES,
                format!(
                    "volume name {:?} is the executor's own; expected a name other than {}",
                    v.name,
                    RESERVED_VOLUMES.join(", ")
                ),
            );
        }
        if let Some(m) = additional_volume_mounts.iter().find(|m| {
            RESERVED_MOUNTS
                .iter()
                .any(|r| m.mount_path.trim_end_matches('/') == *r)
        }) {
            c.problem(
                ADDITIONAL_JOB_VOLUME_MOUNTS,
                format!(
                    "mount path {:?} is the executor's own; expected a path other than {}",
                    m.mount_path,
                    RESERVED_MOUNTS.join(", ")
                ),
            );
        }
        Volumes {
            volume_type,
            volume_size,
            additional_volumes,
            additional_volume_mounts,
        }
    }

    fn api_limits(&self, c: &mut Checker) -> Option<ApiLimits> {
        let mut rate = |variable, value: &str| {
            c.check(variable, parse::integer(value, 1..=100_000))
                .map(|n| n as u32)
        };
        let qps = rate(API_QPS, &self.api_qps);
        let burst = rate(API_BURST, &self.api_burst);
        let delete_qps = rate(API_DELETE_QPS, &self.api_delete_qps);
        let delete_burst = rate(API_DELETE_BURST, &self.api_delete_burst);
        Some(ApiLimits {
            qps: qps?,
            burst: burst?,
            delete_qps: delete_qps?,
            delete_burst: delete_burst?,
        })
    }

    /// The executor's own pod: both its name and its UID, or neither.
    fn pod(&self, c: &mut Checker) -> Option<PodIdentity> {
        let nonempty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        match (nonempty(&self.pod_name), nonempty(&self.pod_uid)) {
            (Some(name), Some(uid)) => {
                if k8s_rules::names::dns1123_subdomain(&name).is_err() {
                    c.problem(
                        POD_NAME,
                        format!("{name:?} is not a pod name; expected a DNS subdomain"),
                    );
                }
                Some(PodIdentity { name, uid })
            }
            (None, None) => None,
            (Some(_), None) => {
                c.problem(POD_UID, format!("missing; {POD_NAME} needs it (Downward API metadata.uid) to own the executor's Jobs"));
                None
            }
            (None, Some(_)) => {
                c.problem(
                    POD_NAME,
                    format!("missing; {POD_UID} needs it (Downward API metadata.name)"),
                );
                None
            }
        }
    }
}

impl KubernetesConfig {
    /// Settings that are valid but weaken the defaults or have no effect here.
    pub(super) fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.run_as_user == Some(0) {
            out.push(format!(
                "{RUN_AS_USER}=0: every container of every job runs as root"
            ));
        }
        if self.run_as_group == Some(0) {
            out.push(format!(
                "{RUN_AS_GROUP}=0: every container of every job runs with group root"
            ));
        }
        if self.persistence_volume_name != DEFAULT_PERSISTENCE_VOLUME_NAME {
            out.push(format!("{PERSISTENCE_VOLUME_NAME}={:?} has no effect: this executor runs each job in a single pod with its own workspace volume ({JOB_VOLUME_TYPE})", self.persistence_volume_name));
        }
        if self.keep_jobs {
            out.push(format!(
                "{KEEP_JOBS}=true: finished Jobs, their pods and Secrets stay until deleted by hand"
            ));
        }
        out
    }
}

/// A quantity that may be absent; blank counts as absent.
fn amount(c: &mut Checker, variable: &'static str, raw: Option<&str>) -> Option<Amount> {
    let value = raw.map(str::trim).filter(|v| !v.is_empty())?;
    c.check(variable, parse::quantity(value))
        .map(|(quantity, parsed)| Amount { quantity, parsed })
}
