//! How a job ended, read from its Job and pod as the API reports them, in words its user understands, and whether the queue may retry it.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step succeeded.
    Succeeded,
    /// A container exited non-zero.
    StepFailed {
        /// The container (`setup-workspace`, `step-<i>`, `main`).
        container: String,
        /// Its exit code.
        exit_code: i32,
    },
    /// No node could take the pod within the pending timeout.
    Unschedulable {
        /// The scheduler's message.
        message: String,
        /// How long it waited.
        waited: Duration,
    },
    /// An image could not be pulled within the grace period.
    ImagePull {
        /// The container.
        container: String,
        /// The image.
        image: String,
        /// `ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`.
        reason: String,
        /// The kubelet's message.
        message: String,
    },
    /// A container could not be configured (a missing Secret or key).
    ConfigError {
        /// The container.
        container: String,
        /// The kubelet's message.
        message: String,
    },
    /// The Job's `activeDeadlineSeconds` passed.
    DeadlineExceeded,
    /// The pod was lost: its node went away, it was evicted or deleted.
    PodLost {
        /// `NodeLost`, `Evicted`, `DeletionByTaintManager`, ...
        reason: String,
        /// What the cluster said.
        message: String,
    },
    /// `EXECUTOR_MAXIMUM_RUNTIME_PER_JOB` passed.
    RuntimeExceeded {
        /// The limit.
        limit: Duration,
    },
    /// The job was cancelled (by its queue, or by a signal).
    Cancelled,
    /// The job cannot be run as given: a bad payload, or a Job the
    /// admission plugins denied or broke.
    Refused(String),
    /// A log plugin with failure policy `fail` failed; the rest of the log
    /// was withheld.
    LogFilterFailed(String),
    /// The cluster could not be used: creating the objects failed after
    /// retries, or following the pod did.
    Infrastructure(String),
}

impl Outcome {
    /// Whether the failure is the job's own (`markFailed`: retrying cannot
    /// help) rather than the infrastructure's (`markErrored`: the queue may
    /// retry it elsewhere).
    pub fn permanent(&self) -> bool {
        matches!(
            self,
            Outcome::StepFailed { .. }
                | Outcome::DeadlineExceeded
                | Outcome::RuntimeExceeded { .. }
                | Outcome::Cancelled
                | Outcome::Refused(_)
                | Outcome::LogFilterFailed(_)
        )
    }

    /// The message for the job's user.
    pub fn message(&self) -> String {
        match self {
            Outcome::Succeeded => "the job succeeded".into(),
            Outcome::StepFailed {
                container,
                exit_code,
            } => format!("{container} failed with exit code {exit_code}"),
            Outcome::Unschedulable { message, waited } => format!(
                "no node could run the job within {}: {message}",
                humantime::format_duration(Duration::from_secs(waited.as_secs()))
            ),
            Outcome::ImagePull {
                container,
                image,
                reason,
                message,
            } => {
                format!("image {image:?} of {container} could not be pulled ({reason}): {message}")
            }
            Outcome::ConfigError { container, message } => {
                format!(
                    "{container} could not be configured (CreateContainerConfigError): {message}"
                )
            }
            Outcome::DeadlineExceeded => {
                "the Job ran longer than its deadline (KUBERNETES_JOB_DEADLINE) and was stopped"
                    .into()
            }
            Outcome::PodLost { reason, message } => {
                format!("the job's pod was lost ({reason}): {message}")
            }
            Outcome::RuntimeExceeded { limit } => format!(
                "the job ran longer than EXECUTOR_MAXIMUM_RUNTIME_PER_JOB ({}) and was stopped",
                humantime::format_duration(*limit)
            ),
            Outcome::Cancelled => "the job was cancelled".into(),
            Outcome::Refused(why) => why.clone(),
            Outcome::LogFilterFailed(why) => {
                format!("the job's log could not be filtered, so the rest was withheld: {why}")
            }
            Outcome::Infrastructure(why) => format!("the cluster could not run the job: {why}"),
        }
    }
}

/// When to give up on a pod that is not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a pod may stay unschedulable.
    pub pending_timeout: Duration,
    /// How long an image may fail to pull (pulls are retried by the kubelet).
    pub pull_grace: Duration,
    /// `EXECUTOR_MAXIMUM_RUNTIME_PER_JOB`.
    pub max_runtime: Duration,
}

/// Waiting reasons of a container whose image cannot be pulled (yet).
const PULL_FAILURES: &[&str] = &["ErrImagePull", "ImagePullBackOff", "InvalidImageName"];

/// Every container status of `pod`, init containers first.
pub fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let init = status.and_then(|s| s.init_container_statuses.as_ref());
    let main = status.and_then(|s| s.container_statuses.as_ref());
    init.into_iter().flatten().chain(main.into_iter().flatten())
}

/// The pod's `PodScheduled: False` condition with reason `Unschedulable`.
pub fn unschedulable(pod: &Pod) -> Option<&PodCondition> {
    pod.status.as_ref()?.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })
}

/// Whether some container of `pod` waits for an image that fails to pull.
pub fn pull_failing(pod: &Pod) -> bool {
    container_statuses(pod).any(|c| {
        c.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref()?.reason.as_deref())
            .is_some_and(|r| PULL_FAILURES.contains(&r))
    })
}

/// What the executor knows when it looks.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The Job, if it still exists.
    pub job: Option<&'a Job>,
    /// Its pod, if there is one.
    pub pod: Option<&'a Pod>,
    /// How long the pod has been unschedulable (zero if it is not).
    pub unschedulable_for: Duration,
    /// How long some image has been failing to pull (zero if none is).
    pub pull_failing_for: Duration,
    /// How long the job has been running.
    pub running_for: Duration,
}

/// The outcome if the job has ended (or must be ended), `None` while it
/// is still on its way. The order matters: what the cluster decided (the
/// deadline, a lost pod) comes before what the containers did.
pub fn classify(o: &Observation<'_>, limits: &Limits) -> Option<Outcome> {
    let job_failed = o
        .job
        .and_then(|j| j.status.as_ref()?.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "Failed" && c.status == "True")
        });
    if job_failed.is_some_and(|c| c.reason.as_deref() == Some("DeadlineExceeded")) {
        return Some(Outcome::DeadlineExceeded);
    }
    let pod = o.pod?;
    let status = pod.status.as_ref()?;
    let disruption = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True");
    if let Some(reason) = status
        .reason
        .clone()
        .filter(|r| {
            matches!(
                r.as_str(),
                "NodeLost" | "Evicted" | "Preempting" | "Terminated"
            )
        })
        .or_else(|| disruption.and_then(|c| c.reason.clone()))
    {
        let message = status
            .message
            .clone()
            .or_else(|| disruption.and_then(|c| c.message.clone()))
            .unwrap_or_default();
        return Some(Outcome::PodLost { reason, message });
    }
    let containers: Vec<&ContainerStatus> = container_statuses(pod).collect();
    match status.phase.as_deref() {
        Some("Succeeded") => return Some(Outcome::Succeeded),
        Some("Failed") => {
            // The first container in order that failed is the step to blame.
            let failed = containers.iter().find_map(|c| {
                let t = c.state.as_ref()?.terminated.as_ref()?;
                (t.exit_code != 0).then(|| (c.name.clone(), t.exit_code))
            });
            return Some(match failed {
                Some((container, exit_code)) => Outcome::StepFailed {
                    container,
                    exit_code,
                },
                None => Outcome::PodLost {
                    reason: status.reason.clone().unwrap_or_else(|| "Failed".into()),
                    message: status
                        .message
                        .clone()
                        .unwrap_or_else(|| "the pod failed without a failing container".into()),
                },
            });
        }
        _ => {}
    }
    for c in &containers {
        let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.clone().unwrap_or_default();
        let message = waiting.message.clone().unwrap_or_default();
        match reason.as_str() {
            "CreateContainerConfigError" => {
                return Some(Outcome::ConfigError {
                    container: c.name.clone(),
                    message,
                });
            }
            r if PULL_FAILURES.contains(&r) && o.pull_failing_for >= limits.pull_grace => {
                return Some(Outcome::ImagePull {
                    container: c.name.clone(),
                    image: c.image.clone(),
                    reason,
                    message,
                });
            }
            _ => {}
        }
    }
    if let Some(c) = unschedulable(pod)
        && o.unschedulable_for >= limits.pending_timeout
    {
        return Some(Outcome::Unschedulable {
            message: c.message.clone().unwrap_or_default(),
            waited: o.unschedulable_for,
        });
    }
    if o.running_for >= limits.max_runtime {
        return Some(Outcome::RuntimeExceeded {
            limit: limits.max_runtime,
        });
    }
    if let Some(c) = job_failed {
        return Some(Outcome::PodLost {
            reason: c.reason.clone().unwrap_or_else(|| "Failed".into()),
            message: c.message.clone().unwrap_or_default(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: Limits = Limits {
        pending_timeout: Duration::from_secs(60),
        pull_grace: Duration::from_secs(30),
        max_runtime: Duration::from_secs(1800),
    };

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    }

    fn look<'a>(pod: &'a Pod, job: Option<&'a Job>) -> Observation<'a> {
        Observation {
            job,
            pod: Some(pod),
            unschedulable_for: Duration::ZERO,
            pull_failing_for: Duration::ZERO,
            running_for: Duration::from_secs(1),
        }
    }

    fn terminated(name: &str, code: i32) -> serde_json::Value {
        json!({"name": name, "image": "x", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}}})
    }

    fn waiting(name: &str, image: &str, reason: &str, message: &str) -> serde_json::Value {
        json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0,
               "state": {"waiting": {"reason": reason, "message": message}}})
    }

    #[test]
    fn a_failed_pod_blames_the_first_failing_step_with_its_exit_code() {
        let p = pod(json!({"phase": "Failed",
            "initContainerStatuses": [terminated("setup-workspace", 0), terminated("step-0", 3)],
            "containerStatuses": [waiting("main", "x", "PodInitializing", "")]}));
        let outcome = classify(&look(&p, None), &LIMITS).unwrap();
        assert_eq!(
            outcome,
            Outcome::StepFailed {
                container: "step-0".into(),
                exit_code: 3
            }
        );
        assert!(outcome.permanent());
        assert_eq!(outcome.message(), "step-0 failed with exit code 3");
        let ok = pod(json!({"phase": "Succeeded"}));
        assert_eq!(
            classify(&look(&ok, None), &LIMITS),
            Some(Outcome::Succeeded)
        );
    }

    #[test]
    fn pull_failures_wait_for_the_grace_and_name_the_image() {
        let p = pod(json!({"phase": "Pending", "containerStatuses": [
            waiting("main", "sim.invalid/nope:1", "ImagePullBackOff", "Back-off pulling image")]}));
        let mut o = look(&p, None);
        o.pull_failing_for = Duration::from_secs(5);
        assert_eq!(
            classify(&o, &LIMITS),
            None,
            "within the grace: the kubelet retries"
        );
        o.pull_failing_for = Duration::from_secs(30);
        let outcome = classify(&o, &LIMITS).unwrap();
        assert!(!outcome.permanent(), "infrastructure: the queue may retry");
        assert_eq!(
            outcome.message(),
            "image \"sim.invalid/nope:1\" of main could not be pulled (ImagePullBackOff): Back-off pulling image"
        );
    }

    #[test]
    fn unschedulable_pods_end_at_the_pending_timeout_with_the_schedulers_words() {
        let p = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu."}]}),
        );
        let mut o = look(&p, None);
        o.unschedulable_for = Duration::from_secs(59);
        assert_eq!(classify(&o, &LIMITS), None);
        o.unschedulable_for = Duration::from_secs(60);
        assert_eq!(
            classify(&o, &LIMITS).unwrap().message(),
            "no node could run the job within 1m: 0/3 nodes are available: 3 Insufficient cpu."
        );
    }

    #[test]
    fn what_the_cluster_decided_comes_first() {
        let job: Job =
            serde_json::from_value(json!({"metadata": {"name": "j"}, "status": {"conditions": [
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}}))
            .unwrap();
        let running = pod(json!({"phase": "Running"}));
        assert_eq!(
            classify(&look(&running, Some(&job)), &LIMITS),
            Some(Outcome::DeadlineExceeded)
        );
        let lost = pod(json!({"phase": "Failed", "reason": "NodeLost",
            "message": "Node n1 which was running pod p is unresponsive",
            "containerStatuses": [terminated("main", 137)]}));
        let outcome = classify(&look(&lost, None), &LIMITS).unwrap();
        assert_eq!(
            outcome.message(),
            "the job's pod was lost (NodeLost): Node n1 which was running pod p is unresponsive"
        );
        assert!(!outcome.permanent());
    }

    #[test]
    fn config_errors_and_the_runtime_limit_end_the_job() {
        let p = pod(json!({"phase": "Pending", "containerStatuses": [
            waiting("step-0", "x", "CreateContainerConfigError", "secret \"s\" not found")]}));
        assert_eq!(
            classify(&look(&p, None), &LIMITS).unwrap().message(),
            "step-0 could not be configured (CreateContainerConfigError): secret \"s\" not found"
        );
        let running = pod(json!({"phase": "Running"}));
        let mut o = look(&running, None);
        assert_eq!(classify(&o, &LIMITS), None, "running normally");
        o.running_for = Duration::from_secs(1800);
        assert_eq!(
            classify(&o, &LIMITS).unwrap().message(),
            "the job ran longer than EXECUTOR_MAXIMUM_RUNTIME_PER_JOB (30m) and was stopped"
        );
    }
}
