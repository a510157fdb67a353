//! The admission trail as the job's first log entry (`setup.admission`): a line per plugin with what it did and the paths it changed, never the values, which may be secret.

use std::time::Duration;

use json_patch::PatchOperation;
use k8s_openapi::jiff::Timestamp;

use super::log::Input;
use crate::k8s::logs::Line;
use crate::plugins::{Mode, Step, TrailEntry};

/// The trail's entry: the first of the job's log, before any container's.
pub const ENTRY: usize = 0;

/// The inputs that open, fill and close the trail's entry; none when no
/// plugin ran.
pub fn inputs(trail: &[TrailEntry], allowed: bool) -> Vec<Input> {
    if trail.is_empty() {
        return Vec::new();
    }
    let now = Timestamp::now();
    let mut inputs = vec![Input::Open {
        entry: ENTRY,
        key: "setup.admission".to_owned(),
        command: Vec::new(),
        start: now,
    }];
    inputs.extend(
        trail
            .iter()
            .flat_map(lines)
            .map(|text| Input::Line(ENTRY, Line { at: now, text })),
    );
    inputs.push(Input::Close {
        entry: ENTRY,
        exit_code: if allowed { 0 } else { 1 },
        duration: trail.iter().map(|t| t.elapsed).sum::<Duration>(),
    });
    inputs
}

/// `annotate (enforce): mutated: add /metadata/annotations/team`, then
/// the plugin's warnings.
fn lines(t: &TrailEntry) -> Vec<String> {
    let mode = match t.mode {
        Mode::Enforce => "enforce",
        Mode::Monitor => "monitor",
    };
    let what = match &t.step {
        Step::Allowed => "allowed".to_owned(),
        Step::Mutated => {
            let paths: Vec<String> = t.patch.iter().map(operation).collect();
            format!("mutated: {}", paths.join(", "))
        }
        Step::Denied { message } => format!("denied: {message}"),
        Step::Failed { error, ignored } => {
            format!(
                "failed{}: {error}",
                if *ignored { " (ignored)" } else { "" }
            )
        }
    };
    let mut lines = vec![format!("{} ({mode}): {what}", t.plugin)];
    lines.extend(
        t.warnings
            .iter()
            .map(|w| format!("{} warning: {w}", t.plugin)),
    );
    lines
}

/// `add /spec/...`: the verb and the path, without the value.
fn operation(op: &PatchOperation) -> String {
    let (verb, path) = match op {
        PatchOperation::Add(o) => ("add", &o.path),
        PatchOperation::Remove(o) => ("remove", &o.path),
        PatchOperation::Replace(o) => ("replace", &o.path),
        PatchOperation::Move(o) => ("move", &o.path),
        PatchOperation::Copy(o) => ("copy", &o.path),
        PatchOperation::Test(o) => ("test", &o.path),
    };
    format!("{verb} {path}")
}
