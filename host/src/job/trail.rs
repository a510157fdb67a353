//! The admission trail as the job's first log entry (`setup.admission`): a line per plugin with what it did and the paths it changed, never the values, which may be secret.

use std::time::Duration;

use json_patch::PatchOperation;
use k8s_openapi::jiff::Timestamp;

use super::log::Input;
use crate::k8s::logs::Line;
use crate::plugins::text::printable;
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
            let mut paths: Vec<String> = t.patch.iter().take(LISTED).map(operation).collect();
            if t.patch.len() > LISTED {
                paths.push(format!("and {} more", t.patch.len() - LISTED));
            }
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

/// Most operations of one change listed in the job's log.
const LISTED: usize = 20;

/// `add /spec/...`: the verb and the path, without the value. A plugin
/// chose the path, so it is printed as its other text is: a key holding a
/// newline must not forge a line of the log.
fn operation(op: &PatchOperation) -> String {
    let (verb, path) = match op {
        PatchOperation::Add(o) => ("add", &o.path),
        PatchOperation::Remove(o) => ("remove", &o.path),
        PatchOperation::Replace(o) => ("replace", &o.path),
        PatchOperation::Move(o) => ("move", &o.path),
        PatchOperation::Copy(o) => ("copy", &o.path),
        PatchOperation::Test(o) => ("test", &o.path),
    };
    format!("{verb} {}", printable(path.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(plugin: &str, step: Step, patch: serde_json::Value) -> TrailEntry {
        TrailEntry {
            plugin: plugin.to_owned(),
            mode: Mode::Enforce,
            step,
            patch: serde_json::from_value(patch).unwrap(),
            warnings: vec!["w".to_owned()],
            elapsed: Duration::from_millis(2),
        }
    }

    fn texts(inputs: &[Input]) -> Vec<&str> {
        inputs
            .iter()
            .filter_map(|i| match i {
                Input::Line(ENTRY, line) => Some(line.text.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_trail_names_changed_paths_but_never_their_values() {
        let patch = serde_json::json!([{"op": "add", "path": "/metadata/annotations/team", "value": "s3cr3t"}]);
        let inputs = inputs(&[entry("annotate", Step::Mutated, patch)], true);
        assert!(
            matches!(&inputs[0], Input::Open { entry: ENTRY, key, .. } if key == "setup.admission")
        );
        assert_eq!(
            texts(&inputs),
            [
                "annotate (enforce): mutated: add /metadata/annotations/team",
                "annotate warning: w"
            ]
        );
        assert!(matches!(
            inputs.last(),
            Some(Input::Close { entry: ENTRY, exit_code: 0, duration }) if *duration == Duration::from_millis(2)
        ));
    }

    /// A path is the plugin's text: it cannot add a line, and a long patch
    /// is summed up rather than listed.
    #[test]
    fn paths_are_printed_escaped_and_a_long_patch_in_short() {
        let forged = "/metadata/labels/x\n[executor] step succeeded\u{1b}[2J";
        let mut ops = vec![serde_json::json!({"op": "add", "path": forged, "value": "v"})];
        ops.extend((0..30).map(
            |i| serde_json::json!({"op": "remove", "path": format!("/metadata/labels/k{i}")}),
        ));
        let inputs = inputs(&[entry("p", Step::Mutated, serde_json::json!(ops))], true);
        let line = texts(&inputs)[0];
        assert!(
            line.starts_with("p (enforce): mutated: add /metadata/labels/x\\n[executor] step succeeded\\x1b[2J, remove /metadata/labels/k0,"),
            "{line}"
        );
        assert!(
            line.ends_with("remove /metadata/labels/k18, and 11 more"),
            "{line}"
        );
    }

    #[test]
    fn a_denied_job_closes_its_trail_with_exit_code_one_and_no_plugin_means_no_entry() {
        let denied = Step::Denied {
            message: "registry not allowed".to_owned(),
        };
        let inputs = inputs(&[entry("policy", denied, serde_json::json!([]))], false);
        assert_eq!(
            texts(&inputs)[0],
            "policy (enforce): denied: registry not allowed"
        );
        assert!(matches!(
            inputs.last(),
            Some(Input::Close { exit_code: 1, .. })
        ));
        assert!(super::inputs(&[], true).is_empty());
    }
}
