//! Sample Jobs exactly as the executor renders them at its default configuration, for the job of [`super::context`].
//!
//! Each is the `batch/v1` Job of `executor render` for a payload in the
//! executor's `host/tests/payloads/sdk/`, with every default setting (the
//! executor's test `sdk_samples` fails when they drift; regenerate with
//! `UPDATE_SDK_SAMPLES=1 cargo test -p executor --test integration sdk_samples::`). Every
//! container carries the default resources (`12Gi` of memory requested and
//! as the limit), as real Jobs do: a resource policy must allow the
//! executor's own containers too, or it denies every job.
//!
//! In each: init container `setup-workspace` (the executor's), one init
//! container `step-<i>` per step (the job's), container `main` (the
//! executor's); the workspace volume mounted at `/job`.

use crate::Job;

/// One step (`alpine:3`, `echo hello`) and no repository: `setup-workspace`
/// only makes the workspace.
pub fn basic() -> Job {
    parse(include_str!("jobs/basic.json"))
}

/// The usual job: `setup-workspace` clones `github.com/acme/api` at a commit
/// (the job token comes from the job's Secret), then one step in the
/// checkout. What [`super::job`] returns.
pub fn clone() -> Job {
    parse(include_str!("jobs/clone.json"))
}

/// Three steps with different images (`golang:1.24`, `node:22`,
/// `ghcr.io/acme/tools:1.4`) and working directories.
pub fn steps() -> Job {
    parse(include_str!("jobs/steps.json"))
}

/// A step whose environment holds a redacted value and a workspace file:
/// both reach the pod from the job's Secret (`secretKeyRef`, a `files`
/// volume), never as plain text in the Job.
pub fn secrets() -> Job {
    parse(include_str!("jobs/secrets.json"))
}

/// [`clone`] with `KUBERNETES_JOB_VOLUME_TYPE=pvc`: the workspace is a
/// generic ephemeral volume (a PVC per pod) instead of an `emptyDir`.
pub fn pvc() -> Job {
    parse(include_str!("jobs/pvc.json"))
}

fn parse(text: &str) -> Job {
    // The files are the executor's own output; the executor's tests check
    // that each one parses to the Job it renders.
    serde_json::from_str(text).unwrap_or_default()
}
