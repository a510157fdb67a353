//! Support code for the `export_plugin!` expansion; not a public API.
//!
//! Everything between the generated bindings and the author's traits lives
//! here, as plain Rust, so that the native test harness runs exactly the code
//! a component runs.

use std::cell::RefCell;

use crate::patch::Change;
use crate::{
    Admission, Error, Job, JobContext, JobView, LogBatch, LogContext, LogEdit as Edit, LogFilter,
    LogLine, LogRecord, Patch, Plugin,
};

pub use wit_bindgen;

/// The admission decision as it crosses the boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Create the Job unchanged.
    Allow,
    /// Create the Job with this RFC 6902 patch applied (JSON).
    AllowPatched(String),
    /// Create this Job instead (JSON).
    AllowMutated(String),
    /// Refuse the Job.
    Deny(String),
}

/// The admission response as it crosses the boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// What to do.
    pub decision: Decision,
    /// Warnings for the user.
    pub warnings: Vec<String>,
}

/// Routes [`crate::log`] to the host's `log` import.
pub fn set_log_sink(sink: fn(crate::Level, &str)) {
    crate::log::set_sink(sink);
}

/// Parses the settings JSON and builds the plugin.
pub fn init<P: Plugin>(settings: &str) -> Result<P, String> {
    let parsed = match serde_json::from_str::<P::Settings>(settings) {
        Ok(parsed) => parsed,
        // Absent settings arrive as `null`; let settings types whose fields
        // all have defaults accept that as an empty object.
        Err(err) if settings.trim() == "null" => serde_json::from_str::<P::Settings>("{}")
            .map_err(|_| format!("invalid settings: {err}"))?,
        Err(err) => return Err(format!("invalid settings: {err}")),
    };
    P::init(parsed).map_err(|err| format!("invalid settings: {err}"))
}

/// Runs the admission hook on a Job given as JSON.
pub fn admit<P: Admission>(plugin: &P, ctx: &JobContext, job: &str) -> Result<Response, String> {
    let mut patch = Patch::new();
    let verdict = plugin
        .review(ctx, &JobView::new(job), &mut patch)
        .map_err(|err| err.to_string())?;
    let (denied, warnings) = verdict.into_parts();
    let decision = match denied {
        Some(message) => Decision::Deny(message),
        None => match patch
            .into_change()
            .map_err(|err| format!("cannot serialize the change to the Job: {err}"))?
        {
            Change::None => Decision::Allow,
            Change::Patch(ops) => Decision::AllowPatched(ops),
            Change::Document(job) => Decision::AllowMutated(job),
        },
    };
    Ok(Response { decision, warnings })
}

/// The Job in `text` with the patch the component sent (`ops`, JSON) applied.
pub fn apply_patch(text: &str, ops: &str) -> Result<Job, Error> {
    let ops: json_patch::Patch = serde_json::from_str(ops)?;
    crate::patch::apply(text, &ops)
}

/// Runs the log hook: the plugin's edits of the batch.
pub fn filter<P: LogFilter>(
    plugin: &mut P,
    ctx: &LogContext,
    batch: &LogBatch<'_>,
) -> Result<Vec<Edit>, String> {
    plugin.edits(ctx, batch).map_err(|err| err.to_string())
}

/// How far ahead [`edits`] looks for a record that was kept after others
/// were dropped or added: a bound on its work per record.
const LOOKAHEAD: usize = 16;

/// Edits that turn `input`, a batch's lines, into `output`, in the
/// contract's order (by index, inserts first). Records kept in place cost a
/// comparison and no edit; the alignment is greedy within [`LOOKAHEAD`], so
/// a change it does not recognise becomes a replace, never a wrong result.
pub fn edits(input: &[LogLine<'_>], output: Vec<LogRecord>) -> Vec<Edit> {
    let mut edits = Vec::new();
    let mut i = 0usize;
    for (j, record) in output.iter().enumerate() {
        if input.get(i).is_some_and(|line| line == record) {
            i += 1;
            continue;
        }
        let window = input.len().min(i + 1 + LOOKAHEAD);
        if let Some(k) = (i + 1..window).find(|&k| input[k] == *record) {
            // input[i..k] were left out.
            edits.extend((i..k).map(|d| Edit::Drop(d as u32)));
            i = k + 1;
            continue;
        }
        let later_kept = input.get(i).is_some_and(|current| {
            output
                .iter()
                .skip(j + 1)
                .take(LOOKAHEAD)
                .any(|r| current == r)
        });
        if i < input.len() && !later_kept {
            edits.push(Edit::Replace(i as u32, record.clone()));
            i += 1;
        } else {
            edits.push(Edit::Insert(i as u32, record.clone()));
        }
    }
    edits.extend((i..input.len()).map(|d| Edit::Drop(d as u32)));
    edits
}

/// `records` with `edits` applied: what the host does with them, for tests.
pub fn apply(records: &[LogRecord], edits: Vec<Edit>) -> Vec<LogRecord> {
    let mut out = Vec::with_capacity(records.len());
    let mut next = 0usize;
    for edit in edits {
        let (Edit::Drop(at) | Edit::Replace(at, _) | Edit::Insert(at, _)) = &edit;
        let at = (*at as usize).min(records.len());
        out.extend_from_slice(&records[next.min(at)..at]);
        next = next.max(at);
        match edit {
            Edit::Drop(_) => next += 1,
            Edit::Replace(_, record) => {
                out.push(record);
                next += 1;
            }
            Edit::Insert(_, record) => out.push(record),
        }
    }
    out.extend_from_slice(&records[next.min(records.len())..]);
    out
}

/// Holds the plugin instance between `init` and the hooks.
pub struct Slot<P>(RefCell<Option<P>>);

impl<P: Plugin> Slot<P> {
    /// An empty slot.
    pub const fn new() -> Self {
        Slot(RefCell::new(None))
    }

    /// Runs `init` and keeps the plugin.
    pub fn init(&self, settings: &str) -> Result<(), String> {
        let plugin = init::<P>(settings)?;
        *self.0.borrow_mut() = Some(plugin);
        Ok(())
    }

    fn missing() -> String {
        "the host called a hook before `init`".to_owned()
    }

    /// Runs the admission hook on the kept plugin.
    pub fn admit(&self, ctx: &JobContext, job: &str) -> Result<Response, String>
    where
        P: Admission,
    {
        let plugin = self.0.borrow();
        admit(plugin.as_ref().ok_or_else(Self::missing)?, ctx, job)
    }

    /// Runs the log hook on the kept plugin.
    pub fn filter(&self, ctx: &LogContext, batch: &LogBatch<'_>) -> Result<Vec<Edit>, String>
    where
        P: LogFilter,
    {
        let mut plugin = self.0.borrow_mut();
        filter(plugin.as_mut().ok_or_else(Self::missing)?, ctx, batch)
    }
}

impl<P: Plugin> Default for Slot<P> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(texts: &[&str]) -> Vec<LogRecord> {
        texts.iter().map(|t| LogRecord::stdout(*t)).collect()
    }

    /// The edits from `input`, sent as the host sends a batch, to `output`.
    fn edits(input: &[LogRecord], output: Vec<LogRecord>) -> Vec<Edit> {
        let joined = crate::batch::Joined::new(input).unwrap();
        let lines: Vec<LogLine<'_>> = joined.batch().lines().map(|(_, line)| line).collect();
        super::edits(&lines, output)
    }

    #[test]
    fn an_unchanged_batch_sends_no_edits() {
        let input = records(&["a", "b", "c"]);
        assert_eq!(edits(&input, input.clone()), vec![]);
    }

    #[test]
    fn typical_changes_become_the_smallest_edits() {
        let input = records(&["a", "token=x", "b", "noise", "c"]);
        let output = records(&["a", "token=***", "b", "c", "summary"]);
        assert_eq!(
            edits(&input, output),
            vec![
                Edit::Replace(1, LogRecord::stdout("token=***")),
                Edit::Drop(3),
                Edit::Insert(5, LogRecord::stdout("summary")),
            ]
        );
        let input = records(&["a", "b"]);
        let output = records(&["header", "a", "b"]);
        assert_eq!(
            edits(&input, output),
            vec![Edit::Insert(0, LogRecord::stdout("header"))]
        );
    }

    /// Whatever a filter returns, the edits rebuild exactly that: checked on
    /// many pseudo-random batches (a fixed seed, so a failure repeats).
    #[test]
    fn the_edits_always_rebuild_the_filters_output() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let words = ["a", "b", "c", "d", "secret", ""];
        for _ in 0..5000 {
            let input: Vec<LogRecord> = (0..next(30))
                .map(|_| LogRecord::stdout(words[next(6) as usize]))
                .collect();
            let mut output = Vec::new();
            for record in &input {
                match next(6) {
                    0 => {}
                    1 => output.push(LogRecord::stderr(record.text.clone())),
                    2 => output.push(LogRecord::stdout(words[next(6) as usize])),
                    3 => {
                        output.push(LogRecord::stdout("added"));
                        output.push(record.clone());
                    }
                    _ => output.push(record.clone()),
                }
            }
            if next(4) == 0 {
                output.reverse();
            }
            let sent = edits(&input, output.clone());
            assert_eq!(apply(&input, sent), output, "input {input:?}");
        }
    }
}
