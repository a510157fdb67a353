//! The job controller: a pod per Job from its template, the outcome its pods and deadline decide, `backoffLimit`, `activeDeadlineSeconds`, `ttlSecondsAfterFinished`, and the Job's status and Events.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::{Cluster, resource};
use crate::logs::{now_nanos, parse_time};
use crate::store::{Key, now};

/// Jobs with a clock on them: deadlines and TTLs after they finish.
pub(super) fn periodic(c: &Arc<Cluster>) {
    let jobs = c.store.select(resource("batch", "jobs"), None, |j| {
        j["spec"]["activeDeadlineSeconds"].is_i64() || j["spec"]["ttlSecondsAfterFinished"].is_i64()
    });
    for j in &jobs {
        let ns = j["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = j["metadata"]["name"].as_str().unwrap_or_default();
        if let Some(finished) = finished_at(j)
            && let Some(ttl) = j["spec"]["ttlSecondsAfterFinished"].as_i64()
        {
            if now_nanos() >= finished + i128::from(ttl) * 1_000_000_000 {
                let key = Key::new(resource("batch", "jobs"), ns, name);
                let _ = c.delete(resource("batch", "jobs"), &key, "Background");
            }
            continue;
        }
        if j["spec"]["activeDeadlineSeconds"].is_i64() {
            sync_job(c, ns, name);
        }
    }
}

pub(super) fn owner_job(pod: &Value) -> Option<String> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == "Job" && r["controller"] == json!(true))
        .and_then(|r| r["name"].as_str().map(str::to_owned))
}

/// When the Job finished (`Complete` or `Failed`), if it did.
fn finished_at(job: &Value) -> Option<i128> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| {
            matches!(c["type"].as_str(), Some("Complete" | "Failed")) && c["status"] == "True"
        })
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(parse_time)
}

/// What the job controller counts of a Job's pods.
struct PodCounts<'a> {
    /// Pods neither finished nor being deleted.
    active: Vec<&'a Value>,
    succeeded: i64,
    failed: i64,
    /// Active pods whose `Ready` condition is true.
    ready: i64,
}

impl<'a> PodCounts<'a> {
    fn of(owned: &'a [Value]) -> PodCounts<'a> {
        let phase = |p: &Value| {
            p["status"]["phase"]
                .as_str()
                .unwrap_or("Pending")
                .to_owned()
        };
        let active: Vec<&Value> = owned
            .iter()
            .filter(|p| {
                !matches!(phase(p).as_str(), "Succeeded" | "Failed")
                    && p["metadata"].get("deletionTimestamp").is_none()
            })
            .collect();
        let ready = active
            .iter()
            .filter(|p| {
                p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count() as i64;
        PodCounts {
            succeeded: owned.iter().filter(|p| phase(p) == "Succeeded").count() as i64,
            failed: owned.iter().filter(|p| phase(p) == "Failed").count() as i64,
            active,
            ready,
        }
    }
}

/// How a Job ends: its final condition's type, reason and message.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    /// `Complete` or `Failed`.
    kind: &'static str,
    reason: &'static str,
    message: &'static str,
}

impl Outcome {
    fn failed(&self) -> bool {
        self.kind == "Failed"
    }

    /// The Job's outcome, if its pods or its deadline decide one.
    fn of(job: &Value, counts: &PodCounts<'_>, start: &str) -> Option<Outcome> {
        let completions = job["spec"]["completions"].as_i64().unwrap_or(1);
        let backoff_limit = job["spec"]["backoffLimit"].as_i64().unwrap_or(6);
        let deadline_passed = job["spec"]["activeDeadlineSeconds"]
            .as_i64()
            .zip(parse_time(start))
            .is_some_and(|(secs, at)| now_nanos() >= at + i128::from(secs) * 1_000_000_000);
        let (kind, reason, message) = if counts.succeeded >= completions {
            (
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            )
        } else if counts.failed > backoff_limit {
            (
                "Failed",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )
        } else if deadline_passed {
            (
                "Failed",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            )
        } else {
            return None;
        };
        Some(Outcome {
            kind,
            reason,
            message,
        })
    }
}

/// The job controller for one Job: makes its pod, counts outcomes, enforces
/// `backoffLimit` and `activeDeadlineSeconds`, and keeps its status.
pub(super) fn sync_job(c: &Arc<Cluster>, ns: &str, name: &str) {
    let key = Key::new(resource("batch", "jobs"), ns, name);
    let Some(job) = c.store.get(&key) else { return };
    if job["metadata"].get("deletionTimestamp").is_some() || finished_at(&job).is_some() {
        return;
    }
    if job["spec"]["suspend"] == json!(true) {
        return;
    }
    let uid = job["metadata"]["uid"].as_str().unwrap_or_default();
    let owned = c.store.select(resource("", "pods"), Some(ns), |p| {
        p["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)))
    });
    let counts = PodCounts::of(&owned);
    let start = job["status"]["startTime"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(now);
    let outcome = Outcome::of(&job, &counts, &start);
    let active = manage_pods(c, &job, &counts, outcome);
    write_status(c, &key, &start, &counts, active, outcome);
    if let Some(outcome) = outcome {
        let (reason, event_type, message) = if outcome.failed() {
            (outcome.reason, "Warning", outcome.message)
        } else {
            ("Completed", "Normal", "Job completed")
        };
        c.event(&job, event_type, reason, message);
    }
}

/// Deletes the active pods of a failed Job (as the real controller does), or
/// creates a pod when none is active and the Job goes on; the active count after.
fn manage_pods(
    c: &Arc<Cluster>,
    job: &Value,
    counts: &PodCounts<'_>,
    outcome: Option<Outcome>,
) -> i64 {
    let pods = resource("", "pods");
    let ns = job["metadata"]["namespace"].as_str().unwrap_or_default();
    match outcome {
        Some(o) if o.failed() => {
            for p in &counts.active {
                let pname = p["metadata"]["name"].as_str().unwrap_or_default();
                let _ = c.delete(pods, &Key::new(pods, ns, pname), "Background");
                c.event(
                    job,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {pname}"),
                );
            }
            0
        }
        None if counts.active.is_empty() => match create_pod(c, job) {
            Ok(pname) => {
                c.event(
                    job,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {pname}"),
                );
                1
            }
            Err(e) => {
                c.event(
                    job,
                    "Warning",
                    "FailedCreate",
                    &format!("Error creating: {}", e.message),
                );
                0
            }
        },
        _ => counts.active.len() as i64,
    }
}

/// Writes the Job's status: counts, start and completion times, and the
/// interim and final conditions of its outcome.
fn write_status(
    c: &Cluster,
    key: &Key,
    start: &str,
    counts: &PodCounts<'_>,
    active: i64,
    outcome: Option<Outcome>,
) {
    let at = now();
    let _ = c.store.update(resource("batch", "jobs"), key, |j| {
        let status = &mut j["status"];
        status["startTime"] = json!(start);
        status["active"] = json!(active);
        status["ready"] = json!(counts.ready);
        status["terminating"] = json!(0);
        for (field, n) in [("succeeded", counts.succeeded), ("failed", counts.failed)] {
            if n > 0 {
                status[field] = json!(n);
            } else if let Some(o) = status.as_object_mut() {
                o.remove(field);
            }
        }
        if active == 0 && let Some(o) = status.as_object_mut() {
            o.remove("active");
        }
        status["uncountedTerminatedPods"] = json!({});
        if let Some(Outcome { kind, reason, message }) = outcome {
            // 1.31+ sets the interim condition first, then the final one.
            let interim = if kind == "Complete" { "SuccessCriteriaMet" } else { "FailureTarget" };
            status["conditions"] = json!([
                {"type": interim, "status": "True", "reason": reason, "message": message, "lastProbeTime": at, "lastTransitionTime": at},
                {"type": kind, "status": "True", "reason": reason, "message": message, "lastProbeTime": at, "lastTransitionTime": at},
            ]);
            if kind == "Complete" {
                status["completionTime"] = json!(at);
            }
        }
        Ok(())
    });
}

/// The Job's pod, from its template; its name.
fn create_pod(c: &Arc<Cluster>, job: &Value) -> Result<String, crate::status::ApiError> {
    let pod = super::template::create_pod(c, job, "batch/v1", "Job")?;
    Ok(pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}
