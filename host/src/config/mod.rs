//! All configuration from environment variables and flags, parsed and validated in one place; nothing else in the executor reads the environment.

pub mod parse;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, PodAffinityTerm, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube_quantity::ParsedQuantity;

/// Volume names the Job uses itself (see `k8s::spec`).
const RESERVED_VOLUMES: &[&str] = &["workspace", "files"];
/// Mount paths the Job uses itself (see `k8s::spec`).
const RESERVED_MOUNTS: &[&str] = &["/job", "/executor/files"];

/// Default of `EXECUTOR_KUBERNETES_PERSISTENCE_VOLUME_NAME`.
pub const DEFAULT_PERSISTENCE_VOLUME_NAME: &str = "sg-executor-pvc";

/// Every setting as text, from a flag or else its environment variable,
/// else its default. Validation happens in [`Config::from_raw`], so that all
/// problems are reported together rather than the first one alone.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Configuration (flags override environment variables)")]
pub struct RawConfig {
    /// Path to a kubeconfig; absent: in-cluster configuration, else the default kubeconfig.
    #[arg(long = "kubeconfig", env = "EXECUTOR_KUBERNETES_CONFIG_PATH")]
    pub kubernetes_config_path: Option<String>,
    /// Node to run every Job's pod on (e.g. the executor's own node, via the Downward API).
    #[arg(long, env = "EXECUTOR_KUBERNETES_NODE_NAME")]
    pub node_name: Option<String>,
    /// Node selector for Jobs: comma-separated key=value pairs.
    #[arg(long, env = "EXECUTOR_KUBERNETES_NODE_SELECTOR")]
    pub node_selector: Option<String>,
    /// Required node affinity match expressions (JSON list of NodeSelectorRequirement).
    #[arg(
        long,
        env = "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_EXPRESSIONS"
    )]
    pub node_required_affinity_match_expressions: Option<String>,
    /// Required node affinity match fields (JSON list of NodeSelectorRequirement).
    #[arg(long, env = "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_FIELDS")]
    pub node_required_affinity_match_fields: Option<String>,
    /// Required pod affinity (JSON list of PodAffinityTerm; topologyKey required).
    #[arg(long, env = "EXECUTOR_KUBERNETES_POD_AFFINITY")]
    pub pod_affinity: Option<String>,
    /// Required pod anti-affinity (JSON list of PodAffinityTerm; topologyKey required).
    #[arg(long, env = "EXECUTOR_KUBERNETES_POD_ANTI_AFFINITY")]
    pub pod_anti_affinity: Option<String>,
    /// Tolerations for Jobs (JSON list of Toleration).
    #[arg(long, env = "EXECUTOR_KUBERNETES_NODE_TOLERATIONS")]
    pub node_tolerations: Option<String>,
    /// Namespace to create Jobs in.
    #[arg(long, env = "EXECUTOR_KUBERNETES_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Accepted for compatibility; no effect (each job's workspace is its own volume, see KUBERNETES_JOB_VOLUME_TYPE).
    #[arg(
        long,
        env = "EXECUTOR_KUBERNETES_PERSISTENCE_VOLUME_NAME",
        default_value = DEFAULT_PERSISTENCE_VOLUME_NAME
    )]
    pub persistence_volume_name: String,
    /// CPU limit of every container (a quantity).
    #[arg(long, env = "EXECUTOR_KUBERNETES_RESOURCE_LIMIT_CPU")]
    pub resource_limit_cpu: Option<String>,
    /// Memory limit of every container (a quantity).
    #[arg(
        long,
        env = "EXECUTOR_KUBERNETES_RESOURCE_LIMIT_MEMORY",
        default_value = "12Gi"
    )]
    pub resource_limit_memory: String,
    /// CPU request of every container (a quantity; at most the limit).
    #[arg(long, env = "EXECUTOR_KUBERNETES_RESOURCE_REQUEST_CPU")]
    pub resource_request_cpu: Option<String>,
    /// Memory request of every container (a quantity; at most the limit).
    #[arg(
        long,
        env = "EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY",
        default_value = "12Gi"
    )]
    pub resource_request_memory: String,
    /// Seconds after which a Job is terminated (activeDeadlineSeconds, pending time included).
    #[arg(long, env = "KUBERNETES_JOB_DEADLINE", default_value = "1200")]
    pub job_deadline: String,
    /// User ID the containers run as.
    #[arg(long, env = "KUBERNETES_RUN_AS_USER")]
    pub run_as_user: Option<String>,
    /// Group ID the containers run as.
    #[arg(long, env = "KUBERNETES_RUN_AS_GROUP")]
    pub run_as_group: Option<String>,
    /// Group that owns the pod's volumes (fsGroup).
    #[arg(long, env = "KUBERNETES_FS_GROUP", default_value = "1000")]
    pub fs_group: String,
    /// Keep Jobs after they finish (for debugging).
    #[arg(long, env = "KUBERNETES_KEEP_JOBS", default_value = "false")]
    pub keep_jobs: String,
    /// Annotations for every Job (JSON object of strings).
    #[arg(long, env = "KUBERNETES_JOB_ANNOTATIONS")]
    pub job_annotations: Option<String>,
    /// Annotations for every Job's pod (JSON object of strings).
    #[arg(long, env = "KUBERNETES_JOB_POD_ANNOTATIONS")]
    pub job_pod_annotations: Option<String>,
    /// Image pull secrets for every Job: comma-separated Secret names.
    #[arg(long, env = "KUBERNETES_IMAGE_PULL_SECRETS")]
    pub image_pull_secrets: Option<String>,
    /// Workspace volume type: emptyDir, or pvc (a per-job ephemeral PVC).
    #[arg(long, env = "KUBERNETES_JOB_VOLUME_TYPE", default_value = "emptyDir")]
    pub job_volume_type: String,
    /// Workspace volume size (a quantity).
    #[arg(long, env = "KUBERNETES_JOB_VOLUME_SIZE", default_value = "5Gi")]
    pub job_volume_size: String,
    /// Additional volumes for every Job (JSON list of Volume).
    #[arg(long, env = "KUBERNETES_ADDITIONAL_JOB_VOLUMES")]
    pub additional_job_volumes: Option<String>,
    /// Where the additional volumes are mounted in every container (JSON list of VolumeMount).
    #[arg(long, env = "KUBERNETES_ADDITIONAL_JOB_VOLUME_MOUNTS")]
    pub additional_job_volume_mounts: Option<String>,
    /// Image of the setup and main containers; it needs `sh` and `git`.
    #[arg(
        long,
        env = "KUBERNETES_JOB_STEP_IMAGE",
        default_value = "sourcegraph/batcheshelper:insiders"
    )]
    pub job_step_image: String,
    /// Requests per second the executor makes to the Kubernetes API (reads, creates, watches, logs).
    #[arg(long, env = "EXECUTOR_KUBERNETES_API_QPS", default_value = "20")]
    pub api_qps: String,
    /// Requests the executor may make at once above EXECUTOR_KUBERNETES_API_QPS.
    #[arg(long, env = "EXECUTOR_KUBERNETES_API_BURST", default_value = "40")]
    pub api_burst: String,
    /// Deletes per second, a budget of their own so that cleanup never waits behind reads.
    #[arg(long, env = "EXECUTOR_KUBERNETES_API_DELETE_QPS", default_value = "10")]
    pub api_delete_qps: String,
    /// Deletes the executor may make at once above EXECUTOR_KUBERNETES_API_DELETE_QPS.
    #[arg(
        long,
        env = "EXECUTOR_KUBERNETES_API_DELETE_BURST",
        default_value = "20"
    )]
    pub api_delete_burst: String,
    /// How long a job's pod may stay unschedulable before the job errors (the queue may retry it).
    #[arg(
        long,
        env = "EXECUTOR_KUBERNETES_POD_PENDING_TIMEOUT",
        default_value = "5m"
    )]
    pub pod_pending_timeout: String,
    /// How long an image may keep failing to pull before the job errors.
    #[arg(
        long,
        env = "EXECUTOR_KUBERNETES_IMAGE_PULL_GRACE",
        default_value = "30s"
    )]
    pub image_pull_grace: String,
    /// The executor's own pod name (Downward API metadata.name): its Jobs are owned by that pod.
    #[arg(long, env = "EXECUTOR_POD_NAME")]
    pub pod_name: Option<String>,
    /// The executor's own pod UID (Downward API metadata.uid); needed with EXECUTOR_POD_NAME.
    #[arg(long, env = "EXECUTOR_POD_UID")]
    pub pod_uid: Option<String>,
    /// URL of the Sourcegraph instance; absent: serve the embedded queue.
    #[arg(long, env = "EXECUTOR_FRONTEND_URL")]
    pub frontend_url: Option<String>,
    /// Shared secret for the queue (token-executor authentication).
    #[arg(long, env = "EXECUTOR_FRONTEND_PASSWORD", hide_env_values = true)]
    pub frontend_password: Option<String>,
    /// The queue to take jobs from (single-queue mode).
    #[arg(long, env = "EXECUTOR_QUEUE_NAME")]
    pub queue_name: Option<String>,
    /// The queues to take jobs from: comma-separated (multi-queue mode).
    #[arg(long, env = "EXECUTOR_QUEUE_NAMES")]
    pub queue_names: Option<String>,
    /// How often to ask the queue for a job when there was none.
    #[arg(long, env = "EXECUTOR_QUEUE_POLL_INTERVAL", default_value = "1s")]
    pub queue_poll_interval: String,
    /// Jobs run at once.
    #[arg(long, env = "EXECUTOR_MAXIMUM_NUM_JOBS", default_value = "1")]
    pub maximum_num_jobs: String,
    /// Longest a job may run before it is stopped.
    #[arg(long, env = "EXECUTOR_MAXIMUM_RUNTIME_PER_JOB", default_value = "30m")]
    pub maximum_runtime_per_job: String,
    /// Stop after this many jobs (0: never).
    #[arg(long, env = "EXECUTOR_NUM_TOTAL_JOBS", default_value = "0")]
    pub num_total_jobs: String,
    /// Stop taking jobs after running this long (0: never).
    #[arg(long, env = "EXECUTOR_MAX_ACTIVE_TIME", default_value = "0s")]
    pub max_active_time: String,
    /// The plugin configuration file (YAML).
    #[arg(long = "plugins", env = "EXECUTOR_PLUGINS_CONFIG")]
    pub plugins_config: Option<String>,
    /// How long running jobs may finish after SIGTERM/SIGINT before they are cancelled and handed back to the queue.
    #[arg(long, env = "EXECUTOR_DRAIN_TIMEOUT", default_value = "5m")]
    pub drain_timeout: String,
    /// Address of the embedded queue (no EXECUTOR_FRONTEND_URL): its protocol, user API and git routes.
    #[arg(long, env = "EXECUTOR_LISTEN", default_value = "127.0.0.1:3180")]
    pub listen: String,
    /// Where the embedded queue keeps its database and `executor serve` its address file (default: $XDG_STATE_HOME/executor, else ~/.local/state/executor).
    #[arg(long, env = "EXECUTOR_DATA_DIR")]
    pub data_dir: Option<String>,
    /// Token of the embedded queue's user API (default: generated at first start, kept in the data directory, printed).
    #[arg(long, env = "EXECUTOR_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
}

/// Where a job's workspace lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeType {
    /// An `emptyDir` with a size limit.
    EmptyDir,
    /// A PersistentVolumeClaim per job.
    Pvc,
}

/// A resource quantity, kept as written and as parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Amount {
    /// As it goes into the Job.
    pub quantity: Quantity,
    /// For comparisons.
    pub parsed: ParsedQuantity,
}

/// Requests and limits applied to every container.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    /// CPU limit.
    pub limit_cpu: Option<Amount>,
    /// Memory limit.
    pub limit_memory: Option<Amount>,
    /// CPU request.
    pub request_cpu: Option<Amount>,
    /// Memory request.
    pub request_memory: Option<Amount>,
}

/// Client-side limits on the executor's Kubernetes API requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApiLimits {
    /// Requests per second, deletes aside.
    pub qps: u32,
    /// Requests at once above `qps`.
    pub burst: u32,
    /// Deletes per second.
    pub delete_qps: u32,
    /// Deletes at once above `delete_qps`.
    pub delete_burst: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            qps: 20,
            burst: 40,
            delete_qps: 10,
            delete_burst: 20,
        }
    }
}

/// The executor's own pod, as the Downward API tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
}

/// How Jobs are built and where they run.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesConfig {
    /// Explicit kubeconfig.
    pub config_path: Option<PathBuf>,
    /// Node to pin pods to.
    pub node_name: Option<String>,
    /// Node selector.
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity: expressions.
    pub required_match_expressions: Vec<NodeSelectorRequirement>,
    /// Required node affinity: fields.
    pub required_match_fields: Vec<NodeSelectorRequirement>,
    /// Required pod affinity.
    pub pod_affinity: Vec<PodAffinityTerm>,
    /// Required pod anti-affinity.
    pub pod_anti_affinity: Vec<PodAffinityTerm>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
    /// Namespace of the Jobs.
    pub namespace: String,
    /// The executor's PVC name.
    pub persistence_volume_name: String,
    /// Container resources.
    pub resources: Resources,
    /// `activeDeadlineSeconds`.
    pub job_deadline: Duration,
    /// `runAsUser`.
    pub run_as_user: Option<i64>,
    /// `runAsGroup`.
    pub run_as_group: Option<i64>,
    /// `fsGroup`.
    pub fs_group: Option<i64>,
    /// Keep finished Jobs.
    pub keep_jobs: bool,
    /// Job annotations.
    pub job_annotations: BTreeMap<String, String>,
    /// Pod annotations.
    pub pod_annotations: BTreeMap<String, String>,
    /// Image pull secrets.
    pub image_pull_secrets: Vec<String>,
    /// Workspace volume type.
    pub volume_type: VolumeType,
    /// Workspace size.
    pub volume_size: Amount,
    /// Extra volumes.
    pub additional_volumes: Vec<Volume>,
    /// Their mounts.
    pub additional_volume_mounts: Vec<VolumeMount>,
    /// Setup/main image.
    pub step_image: String,
    /// Client-side request limits.
    pub api: ApiLimits,
    /// How long a pod may stay unschedulable.
    pub pending_timeout: Duration,
    /// How long an image may fail to pull.
    pub image_pull_grace: Duration,
    /// The executor's own pod, when it runs in one and says so.
    pub pod: Option<PodIdentity>,
}

/// Where jobs come from and how many run.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// The Sourcegraph instance; `None`: the embedded queue.
    pub frontend_url: Option<url::Url>,
    /// The shared queue secret.
    pub frontend_password: Option<String>,
    /// The queues (one: single-queue mode).
    pub queue_names: Vec<String>,
    /// Whether the names came from `EXECUTOR_QUEUE_NAMES` (multi-queue protocol).
    pub multi_queue: bool,
    /// Poll interval.
    pub poll_interval: Duration,
    /// Concurrent jobs.
    pub maximum_num_jobs: u32,
    /// Runtime limit per job.
    pub maximum_runtime_per_job: Duration,
    /// Total jobs before exiting (`None`: no limit).
    pub num_total_jobs: Option<u64>,
    /// Active time before exiting (`None`: no limit).
    pub max_active_time: Option<Duration>,
    /// How long running jobs may finish after a stop signal.
    pub drain_timeout: Duration,
}

/// The embedded queue (used when there is no `EXECUTOR_FRONTEND_URL`).
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedConfig {
    /// Where it listens.
    pub listen: std::net::SocketAddr,
    /// Its database and the address file; `None` when neither
    /// `EXECUTOR_DATA_DIR` nor a home directory says where (only `serve`
    /// and the user commands need one, and they say so).
    pub data_dir: Option<PathBuf>,
    /// The user API token, when configured.
    pub api_token: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Kubernetes settings.
    pub kubernetes: KubernetesConfig,
    /// Queue settings.
    pub queue: QueueConfig,
    /// The embedded queue's settings.
    pub embedded: EmbeddedConfig,
    /// The plugin configuration file.
    pub plugins_config: Option<PathBuf>,
}

/// One invalid setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The environment variable (flags share its name in messages).
    pub variable: &'static str,
    /// What is wrong, naming the value and the expected form.
    pub message: String,
}

/// Every invalid setting, found in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration ({} problem(s)):\n  - {}", .0.len(), .0.iter().map(|p| format!("{}: {}", p.variable, p.message)).collect::<Vec<_>>().join("\n  - "))]
pub struct ConfigError(pub Vec<Problem>);

struct Checker(Vec<Problem>);

impl Checker {
    fn check<T>(&mut self, variable: &'static str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(message) => {
                self.0.push(Problem { variable, message });
                None
            }
        }
    }

    fn optional<T>(
        &mut self,
        variable: &'static str,
        raw: &Option<String>,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = raw.as_deref().map(str::trim).filter(|v| !v.is_empty())?;
        self.check(variable, f(value))
    }

    fn json<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        variable: &'static str,
        raw: &Option<String>,
        expected: &str,
    ) -> T {
        self.optional(variable, raw, |v| {
            parse::strict_json(v, expected).map_err(|e| format!("{v:?} {e}"))
        })
        .unwrap_or_default()
    }

    fn amount(&mut self, variable: &'static str, raw: Option<&str>) -> Option<Amount> {
        let value = raw.map(str::trim).filter(|v| !v.is_empty())?;
        self.check(variable, parse::quantity(value))
            .map(|(quantity, parsed)| Amount { quantity, parsed })
    }
}

const OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"];

fn check_requirements(reqs: &[NodeSelectorRequirement]) -> Result<(), String> {
    for (i, r) in reqs.iter().enumerate() {
        if !OPERATORS.contains(&r.operator.as_str()) {
            return Err(format!(
                "[{i}].operator: {:?} is not an operator; expected one of {}",
                r.operator,
                OPERATORS.join(", ")
            ));
        }
    }
    Ok(())
}

fn check_terms(terms: &[PodAffinityTerm]) -> Result<(), String> {
    match terms.iter().position(|t| t.topology_key.trim().is_empty()) {
        Some(i) => Err(format!(
            "[{i}].topologyKey: empty; every term needs a topologyKey such as kubernetes.io/hostname"
        )),
        None => Ok(()),
    }
}

fn check_tolerations(tolerations: &[Toleration]) -> Result<(), String> {
    for (i, t) in tolerations.iter().enumerate() {
        if !matches!(t.operator.as_deref(), None | Some("Equal" | "Exists")) {
            return Err(format!(
                "[{i}].operator: {:?} is not an operator; expected Equal or Exists",
                t.operator.as_deref().unwrap_or("")
            ));
        }
        if !matches!(
            t.effect.as_deref(),
            None | Some("" | "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        ) {
            return Err(format!(
                "[{i}].effect: {:?} is not an effect; expected NoSchedule, PreferNoSchedule or NoExecute",
                t.effect.as_deref().unwrap_or("")
            ));
        }
    }
    Ok(())
}

fn queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// This process's executor name, `<hostname>-<uuid v4>` (in a pod the
/// hostname is the pod's name), made once per start so that a restarted
/// executor is never mistaken for its earlier life.
pub fn executor_name() -> String {
    format!("{}-{}", hostname(), uuid::Uuid::new_v4())
}

/// The host name (in a pod: the pod's name), `executor` if there is none.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "executor".to_owned())
}

impl Config {
    /// What stays the same when the executor's process restarts (unlike
    /// [`executor_name`]): its pod's name, else the host name. Jobs carry it
    /// so that a restarted executor finds and deletes those of its earlier life.
    pub fn instance(&self) -> String {
        match &self.kubernetes.pod {
            Some(pod) => pod.name.clone(),
            None => hostname(),
        }
    }

    /// Settings that are valid but deserve a word at start-up: they weaken
    /// the defaults or have no effect here. Never silent (design.md).
    pub fn warnings(&self) -> Vec<String> {
        let k = &self.kubernetes;
        let mut out = Vec::new();
        if k.run_as_user == Some(0) {
            out.push(
                "KUBERNETES_RUN_AS_USER=0: every container of every job runs as root".to_owned(),
            );
        }
        if k.run_as_group == Some(0) {
            out.push(
                "KUBERNETES_RUN_AS_GROUP=0: every container of every job runs with group root"
                    .to_owned(),
            );
        }
        if k.persistence_volume_name != DEFAULT_PERSISTENCE_VOLUME_NAME {
            out.push(format!("EXECUTOR_KUBERNETES_PERSISTENCE_VOLUME_NAME={:?} has no effect: this executor runs each job in a single pod with its own workspace volume (KUBERNETES_JOB_VOLUME_TYPE)", k.persistence_volume_name));
        }
        if k.keep_jobs {
            out.push("KUBERNETES_KEEP_JOBS=true: finished Jobs, their pods and Secrets stay until deleted by hand".to_owned());
        }
        out
    }

    /// Validates every setting, reporting all problems at once.
    pub fn from_raw(raw: &RawConfig) -> Result<Config, ConfigError> {
        let mut c = Checker(Vec::new());

        let node_selector = c
            .optional(
                "EXECUTOR_KUBERNETES_NODE_SELECTOR",
                &raw.node_selector,
                parse::key_values,
            )
            .unwrap_or_default();
        let exprs: Vec<NodeSelectorRequirement> = c.json(
            "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_EXPRESSIONS",
            &raw.node_required_affinity_match_expressions,
            "a JSON list of NodeSelectorRequirement",
        );
        c.check(
            "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_EXPRESSIONS",
            check_requirements(&exprs),
        );
        let fields: Vec<NodeSelectorRequirement> = c.json(
            "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_FIELDS",
            &raw.node_required_affinity_match_fields,
            "a JSON list of NodeSelectorRequirement",
        );
        c.check(
            "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_FIELDS",
            check_requirements(&fields),
        );
        let pod_affinity: Vec<PodAffinityTerm> = c.json(
            "EXECUTOR_KUBERNETES_POD_AFFINITY",
            &raw.pod_affinity,
            "a JSON list of PodAffinityTerm",
        );
        c.check(
            "EXECUTOR_KUBERNETES_POD_AFFINITY",
            check_terms(&pod_affinity),
        );
        let pod_anti_affinity: Vec<PodAffinityTerm> = c.json(
            "EXECUTOR_KUBERNETES_POD_ANTI_AFFINITY",
            &raw.pod_anti_affinity,
            "a JSON list of PodAffinityTerm",
        );
        c.check(
            "EXECUTOR_KUBERNETES_POD_ANTI_AFFINITY",
            check_terms(&pod_anti_affinity),
        );
        let tolerations: Vec<Toleration> = c.json(
            "EXECUTOR_KUBERNETES_NODE_TOLERATIONS",
            &raw.node_tolerations,
            "a JSON list of Toleration",
        );
        c.check(
            "EXECUTOR_KUBERNETES_NODE_TOLERATIONS",
            check_tolerations(&tolerations),
        );

        let namespace = raw.namespace.trim().to_owned();
        if k8s_rules::names::dns1123_label(&namespace).is_err() {
            c.check::<()>("EXECUTOR_KUBERNETES_NAMESPACE", Err(format!("{namespace:?} is not a namespace name; expected a DNS label (lowercase letters, digits, '-', at most 63)")));
        }

        let resources = Resources {
            limit_cpu: c.amount(
                "EXECUTOR_KUBERNETES_RESOURCE_LIMIT_CPU",
                raw.resource_limit_cpu.as_deref(),
            ),
            limit_memory: c.amount(
                "EXECUTOR_KUBERNETES_RESOURCE_LIMIT_MEMORY",
                Some(&raw.resource_limit_memory),
            ),
            request_cpu: c.amount(
                "EXECUTOR_KUBERNETES_RESOURCE_REQUEST_CPU",
                raw.resource_request_cpu.as_deref(),
            ),
            request_memory: c.amount(
                "EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY",
                Some(&raw.resource_request_memory),
            ),
        };
        for (variable, request, limit) in [
            (
                "EXECUTOR_KUBERNETES_RESOURCE_REQUEST_CPU",
                &resources.request_cpu,
                &resources.limit_cpu,
            ),
            (
                "EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY",
                &resources.request_memory,
                &resources.limit_memory,
            ),
        ] {
            if let (Some(r), Some(l)) = (request, limit)
                && r.parsed > l.parsed
            {
                c.check::<()>(
                    variable,
                    Err(format!(
                        "{:?} is above its limit {:?}; a request must not exceed the limit",
                        r.quantity.0, l.quantity.0
                    )),
                );
            }
        }

        let job_deadline = c.check(
            "KUBERNETES_JOB_DEADLINE",
            parse::integer(&raw.job_deadline, 1..=i64::from(i32::MAX)),
        );
        let id = |v: &str| parse::integer(v, 0..=i64::from(i32::MAX));
        let run_as_user = c.optional("KUBERNETES_RUN_AS_USER", &raw.run_as_user, id);
        let run_as_group = c.optional("KUBERNETES_RUN_AS_GROUP", &raw.run_as_group, id);
        let fs_group = c.optional("KUBERNETES_FS_GROUP", &Some(raw.fs_group.clone()), id);
        let keep_jobs = c
            .check("KUBERNETES_KEEP_JOBS", parse::boolean(&raw.keep_jobs))
            .unwrap_or(false);
        let job_annotations: BTreeMap<String, String> = c.json(
            "KUBERNETES_JOB_ANNOTATIONS",
            &raw.job_annotations,
            "a JSON object of strings",
        );
        let pod_annotations: BTreeMap<String, String> = c.json(
            "KUBERNETES_JOB_POD_ANNOTATIONS",
            &raw.job_pod_annotations,
            "a JSON object of strings",
        );
        for (variable, map) in [
            ("KUBERNETES_JOB_ANNOTATIONS", &job_annotations),
            ("KUBERNETES_JOB_POD_ANNOTATIONS", &pod_annotations),
        ] {
            if let Some(key) = map
                .keys()
                .find(|k| k8s_rules::names::qualified_name(k).is_err())
            {
                c.check::<()>(variable, Err(format!("{key:?} is not a valid annotation key; expected an optional DNS prefix and '/', then at most 63 characters of [A-Za-z0-9._-]")));
            }
        }
        let image_pull_secrets = raw
            .image_pull_secrets
            .as_deref()
            .map(parse::list)
            .unwrap_or_default();
        if let Some(bad) = image_pull_secrets
            .iter()
            .find(|s| k8s_rules::names::dns1123_subdomain(s).is_err())
        {
            c.check::<()>(
                "KUBERNETES_IMAGE_PULL_SECRETS",
                Err(format!(
                    "{bad:?} is not a Secret name; expected comma-separated DNS subdomains"
                )),
            );
        }
        let volume_type = match raw.job_volume_type.trim() {
            "emptyDir" => Some(VolumeType::EmptyDir),
            "pvc" => Some(VolumeType::Pvc),
            other => c.check(
                "KUBERNETES_JOB_VOLUME_TYPE",
                Err(format!(
                    "{other:?} is not a volume type; expected emptyDir or pvc"
                )),
            ),
        };
        let volume_size = c.amount("KUBERNETES_JOB_VOLUME_SIZE", Some(&raw.job_volume_size));
        let additional_volumes: Vec<Volume> = c.json(
            "KUBERNETES_ADDITIONAL_JOB_VOLUMES",
            &raw.additional_job_volumes,
            "a JSON list of Volume",
        );
        let additional_volume_mounts: Vec<VolumeMount> = c.json(
            "KUBERNETES_ADDITIONAL_JOB_VOLUME_MOUNTS",
            &raw.additional_job_volume_mounts,
            "a JSON list of VolumeMount",
        );
        if let Some(m) = additional_volume_mounts
            .iter()
            .find(|m| !additional_volumes.iter().any(|v| v.name == m.name))
        {
            c.check::<()>(
                "KUBERNETES_ADDITIONAL_JOB_VOLUME_MOUNTS",
                Err(format!(
                    "mount {:?} names no volume of KUBERNETES_ADDITIONAL_JOB_VOLUMES",
                    m.name
                )),
            );
        }
        // The Job has volumes and mounts of its own; the API server would
        // refuse a duplicate name or mount path only when a job is created.
        if let Some(v) = additional_volumes
            .iter()
            .find(|v| RESERVED_VOLUMES.contains(&v.name.as_str()))
        {
            c.check::<()>(
                "KUBERNETES_ADDITIONAL_JOB_VOLUMES",
                Err(format!(
                    "volume name {:?} is the executor's own; expected a name other than {}",
                    v.name,
                    RESERVED_VOLUMES.join(", ")
                )),
            );
        }
        if let Some(m) = additional_volume_mounts.iter().find(|m| {
            RESERVED_MOUNTS
                .iter()
                .any(|r| m.mount_path.trim_end_matches('/') == *r)
        }) {
            c.check::<()>(
                "KUBERNETES_ADDITIONAL_JOB_VOLUME_MOUNTS",
                Err(format!(
                    "mount path {:?} is the executor's own; expected a path other than {}",
                    m.mount_path,
                    RESERVED_MOUNTS.join(", ")
                )),
            );
        }
        let step_image = raw.job_step_image.trim().to_owned();
        if step_image.is_empty() || step_image.contains(char::is_whitespace) {
            c.check::<()>(
                "KUBERNETES_JOB_STEP_IMAGE",
                Err(format!("{step_image:?} is not an image reference")),
            );
        }

        let rate = |c: &mut Checker, variable, value: &str| {
            c.check(variable, parse::integer(value, 1..=100_000))
                .map(|n| n as u32)
        };
        let api = (
            rate(&mut c, "EXECUTOR_KUBERNETES_API_QPS", &raw.api_qps),
            rate(&mut c, "EXECUTOR_KUBERNETES_API_BURST", &raw.api_burst),
            rate(
                &mut c,
                "EXECUTOR_KUBERNETES_API_DELETE_QPS",
                &raw.api_delete_qps,
            ),
            rate(
                &mut c,
                "EXECUTOR_KUBERNETES_API_DELETE_BURST",
                &raw.api_delete_burst,
            ),
        );
        let pending_timeout = c.check(
            "EXECUTOR_KUBERNETES_POD_PENDING_TIMEOUT",
            parse::duration(&raw.pod_pending_timeout),
        );
        let image_pull_grace = c.check(
            "EXECUTOR_KUBERNETES_IMAGE_PULL_GRACE",
            parse::duration(&raw.image_pull_grace),
        );
        let nonempty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let pod = match (nonempty(&raw.pod_name), nonempty(&raw.pod_uid)) {
            (Some(name), Some(uid)) => {
                if k8s_rules::names::dns1123_subdomain(&name).is_err() {
                    c.check::<()>(
                        "EXECUTOR_POD_NAME",
                        Err(format!(
                            "{name:?} is not a pod name; expected a DNS subdomain"
                        )),
                    );
                }
                Some(PodIdentity { name, uid })
            }
            (None, None) => None,
            (Some(_), None) => {
                c.check::<()>("EXECUTOR_POD_UID", Err("missing; EXECUTOR_POD_NAME needs it (Downward API metadata.uid) to own the executor's Jobs".into()));
                None
            }
            (None, Some(_)) => {
                c.check::<()>(
                    "EXECUTOR_POD_NAME",
                    Err("missing; EXECUTOR_POD_UID needs it (Downward API metadata.name)".into()),
                );
                None
            }
        };

        let frontend_url =
            c.optional(
                "EXECUTOR_FRONTEND_URL",
                &raw.frontend_url,
                |v| match url::Url::parse(v) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
                    _ => Err(format!(
                        "{v:?} is not an http(s) URL; expected e.g. https://sourcegraph.example.com"
                    )),
                },
            );
        let (queue_names, multi_queue) = match (
            raw.queue_name.as_deref().filter(|s| !s.trim().is_empty()),
            raw.queue_names.as_deref().filter(|s| !s.trim().is_empty()),
        ) {
            (Some(_), Some(_)) => {
                c.check::<()>(
                    "EXECUTOR_QUEUE_NAMES",
                    Err("set together with EXECUTOR_QUEUE_NAME; expected one or the other".into()),
                );
                (vec![], false)
            }
            (Some(one), None) => (vec![one.trim().to_owned()], false),
            (None, Some(many)) => (parse::list(many), true),
            (None, None) => (vec![], false),
        };
        if let Some(bad) = queue_names.iter().find(|q| !queue_name(q)) {
            let variable = if multi_queue {
                "EXECUTOR_QUEUE_NAMES"
            } else {
                "EXECUTOR_QUEUE_NAME"
            };
            c.check::<()>(
                variable,
                Err(format!(
                    "{bad:?} is not a queue name; expected 1 to 63 of [a-z0-9-]"
                )),
            );
        }
        if frontend_url.is_some() && queue_names.is_empty() {
            c.check::<()>("EXECUTOR_QUEUE_NAME", Err("missing; a Sourcegraph queue (EXECUTOR_FRONTEND_URL) needs EXECUTOR_QUEUE_NAME or EXECUTOR_QUEUE_NAMES".into()));
        }
        let poll_interval = c.check(
            "EXECUTOR_QUEUE_POLL_INTERVAL",
            parse::duration(&raw.queue_poll_interval),
        );
        let maximum_num_jobs = c.check(
            "EXECUTOR_MAXIMUM_NUM_JOBS",
            parse::integer(&raw.maximum_num_jobs, 1..=10_000),
        );
        let maximum_runtime = c.check(
            "EXECUTOR_MAXIMUM_RUNTIME_PER_JOB",
            parse::duration(&raw.maximum_runtime_per_job),
        );
        let num_total_jobs = c.check(
            "EXECUTOR_NUM_TOTAL_JOBS",
            parse::integer(&raw.num_total_jobs, 0..=i64::MAX),
        );
        let max_active_time = c.check(
            "EXECUTOR_MAX_ACTIVE_TIME",
            parse::duration(&raw.max_active_time),
        );
        let drain_timeout = c.check(
            "EXECUTOR_DRAIN_TIMEOUT",
            parse::duration(&raw.drain_timeout),
        );
        let listen = c.check(
            "EXECUTOR_LISTEN",
            raw.listen
                .trim()
                .parse::<std::net::SocketAddr>()
                .map_err(|_| {
                    format!(
                        "{:?} is not an address; expected IP:PORT such as 127.0.0.1:3180",
                        raw.listen
                    )
                }),
        );
        let data_dir = match raw.data_dir.as_deref().map(str::trim) {
            Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
            _ => default_data_dir().ok(),
        };
        let plugins_config = raw
            .plugins_config
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        if let Some(path) = &plugins_config
            && !path.is_file()
        {
            c.check::<()>(
                "EXECUTOR_PLUGINS_CONFIG",
                Err(format!(
                    "{} does not exist or is not a file",
                    path.display()
                )),
            );
        }

        if !c.0.is_empty() {
            return Err(ConfigError(c.0));
        }
        // Every `None` below was recorded as a problem above.
        let invalid = || ConfigError(vec![]);
        Ok(Config {
            kubernetes: KubernetesConfig {
                config_path: raw.kubernetes_config_path.as_deref().map(PathBuf::from),
                node_name: raw.node_name.clone().filter(|n| !n.trim().is_empty()),
                node_selector,
                required_match_expressions: exprs,
                required_match_fields: fields,
                pod_affinity,
                pod_anti_affinity,
                tolerations,
                namespace,
                persistence_volume_name: raw.persistence_volume_name.clone(),
                resources,
                job_deadline: Duration::from_secs(job_deadline.ok_or_else(invalid)? as u64),
                run_as_user,
                run_as_group,
                fs_group,
                keep_jobs,
                job_annotations,
                pod_annotations,
                image_pull_secrets,
                volume_type: volume_type.ok_or_else(invalid)?,
                volume_size: volume_size.ok_or_else(invalid)?,
                additional_volumes,
                additional_volume_mounts,
                step_image,
                api: ApiLimits {
                    qps: api.0.ok_or_else(invalid)?,
                    burst: api.1.ok_or_else(invalid)?,
                    delete_qps: api.2.ok_or_else(invalid)?,
                    delete_burst: api.3.ok_or_else(invalid)?,
                },
                pending_timeout: pending_timeout.ok_or_else(invalid)?,
                image_pull_grace: image_pull_grace.ok_or_else(invalid)?,
                pod,
            },
            queue: QueueConfig {
                frontend_url,
                frontend_password: raw.frontend_password.clone(),
                queue_names,
                multi_queue,
                poll_interval: poll_interval.ok_or_else(invalid)?,
                maximum_num_jobs: maximum_num_jobs.ok_or_else(invalid)? as u32,
                maximum_runtime_per_job: maximum_runtime.ok_or_else(invalid)?,
                num_total_jobs: num_total_jobs.filter(|n| *n > 0).map(|n| n as u64),
                max_active_time: max_active_time.filter(|d| !d.is_zero()),
                drain_timeout: drain_timeout.ok_or_else(invalid)?,
            },
            embedded: EmbeddedConfig {
                listen: listen.ok_or_else(invalid)?,
                data_dir,
                api_token: raw.api_token.clone().filter(|t| !t.trim().is_empty()),
            },
            plugins_config,
        })
    }
}

/// `$XDG_STATE_HOME/executor`, else `~/.local/state/executor`.
pub fn default_data_dir() -> Result<PathBuf, String> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(state) = nonempty("XDG_STATE_HOME") {
        return Ok(PathBuf::from(state).join("executor"));
    }
    nonempty("HOME")
        .map(|home| PathBuf::from(home).join(".local/state/executor"))
        .ok_or_else(|| {
            "not set, and neither XDG_STATE_HOME nor HOME is: expected a directory".into()
        })
}

#[cfg(test)]
mod tests;
