//! The validated Kubernetes settings: the types `k8s::spec` builds Jobs from; no parsing here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, PodAffinityTerm, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube_quantity::ParsedQuantity;

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
