//! The log of one job as its uploader sees it: an entry per container, lines grouped into batches by size and time, redacted with the job's `redactedValues`, then filtered by the log plugins.

use std::time::{Duration, Instant};

use aho_corasick::{AhoCorasick, MatchKind};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;

use crate::k8s::logs::Line;
use crate::plugins::{LogRecord, LogSession, Mode, PluginError, Step, Stream, TrailEntry};
use json_patch::PatchOperation;

/// A batch closes at this many lines...
pub const BATCH_LINES: usize = 512;
/// ...or this many bytes...
pub const BATCH_BYTES: usize = 64 * 1024;
/// ...or this long after its first line, whichever comes first.
pub const BATCH_DELAY: Duration = Duration::from_millis(100);

/// The entry index of the admission trail (`setup.admission`), apart from
/// the containers' entries, which count from zero.
pub const ADMISSION_ENTRY: usize = usize::MAX;

/// The admission trail as one closed log entry: a line per plugin with what
/// it did and the paths it changed (never the values, which may be secret).
pub fn admission_entry(trail: &[TrailEntry], allowed: bool, redactor: &Redactor) -> Vec<LogEvent> {
    let now = Timestamp::now();
    let mut records = Vec::new();
    for t in trail {
        let mode = match t.mode {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        };
        let what = match &t.step {
            Step::Allowed => "allowed".to_owned(),
            Step::Mutated => {
                let paths: Vec<String> = t
                    .patch
                    .iter()
                    .map(|op| {
                        let (verb, path) = match op {
                            PatchOperation::Add(o) => ("add", &o.path),
                            PatchOperation::Remove(o) => ("remove", &o.path),
                            PatchOperation::Replace(o) => ("replace", &o.path),
                            PatchOperation::Move(o) => ("move", &o.path),
                            PatchOperation::Copy(o) => ("copy", &o.path),
                            PatchOperation::Test(o) => ("test", &o.path),
                        };
                        format!("{verb} {path}")
                    })
                    .collect();
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
        records.push(format!("{} ({mode}): {what}", t.plugin));
        records.extend(
            t.warnings
                .iter()
                .map(|w| format!("{} warning: {w}", t.plugin)),
        );
    }
    let elapsed: Duration = trail.iter().map(|t| t.elapsed).sum();
    vec![
        LogEvent::Opened {
            entry: ADMISSION_ENTRY,
            key: "setup.admission".to_owned(),
            command: Vec::new(),
            start: now,
        },
        LogEvent::Lines {
            entry: ADMISSION_ENTRY,
            written: vec![now; records.len()],
            records: records
                .iter()
                .map(|text| LogRecord {
                    stream: Stream::Stdout,
                    text: redactor.apply(text),
                })
                .collect(),
        },
        LogEvent::Closed {
            entry: ADMISSION_ENTRY,
            exit_code: if allowed { 0 } else { 1 },
            duration: elapsed,
        },
    ]
}

/// What the uploader receives, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// A container started: a new execution log entry.
    Opened {
        /// The entry's index within the job.
        entry: usize,
        /// `setup.workspace`, `step.kubernetes.<key>`.
        key: String,
        /// The command, redacted.
        command: Vec<String>,
        /// When the container started.
        start: Timestamp,
    },
    /// Lines of an entry, redacted and filtered.
    Lines {
        /// The entry.
        entry: usize,
        /// What is left after the filters.
        records: Vec<LogRecord>,
        /// When the pod wrote each line that went into the batch (before
        /// filtering), for measuring latency.
        written: Vec<Timestamp>,
    },
    /// A container ended, per its status.
    Closed {
        /// The entry.
        entry: usize,
        /// Its exit code.
        exit_code: i32,
        /// From its start to its end, per its status.
        duration: Duration,
    },
}

/// What the followers of a job's containers tell the pipeline.
#[derive(Debug)]
pub enum Input {
    /// An entry begins (its command unredacted).
    Open {
        /// The entry.
        entry: usize,
        /// Its key.
        key: String,
        /// Its command.
        command: Vec<String>,
        /// Its start.
        start: Timestamp,
    },
    /// A line of an entry.
    Line(usize, Line),
    /// An entry ends.
    Close {
        /// The entry.
        entry: usize,
        /// Exit code.
        exit_code: i32,
        /// Duration.
        duration: Duration,
    },
}

/// Replaces secrets with their stand-ins, the longest match first.
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    replacements: Vec<String>,
}

impl Redactor {
    /// From the payload's `redactedValues` (secret → replacement); empty
    /// secrets are ignored.
    pub fn new<'a>(values: impl IntoIterator<Item = (&'a String, &'a String)>) -> Redactor {
        let (secrets, replacements): (Vec<&str>, Vec<String>) = values
            .into_iter()
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, v)| (k.as_str(), v.clone()))
            .unzip();
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&secrets)
            .ok()
            .filter(|_| !secrets.is_empty());
        Redactor {
            matcher,
            replacements,
        }
    }

    /// `text` with every secret replaced.
    pub fn apply(&self, text: &str) -> String {
        match &self.matcher {
            Some(m) => m.replace_all(text, &self.replacements),
            None => text.to_owned(),
        }
    }
}

struct Batch {
    entry: usize,
    records: Vec<LogRecord>,
    written: Vec<Timestamp>,
    bytes: usize,
    opened: Instant,
}

/// Runs the pipeline of one job until every sender of `input` is gone.
/// A log plugin with failure policy `fail` that fails stops the filtering:
/// that batch and all later lines are withheld, and the error is returned
/// (the job fails). Events already sent stay sent.
pub async fn run(
    mut input: mpsc::Receiver<Input>,
    redactor: Redactor,
    filters: LogSession,
    keys: Vec<String>,
    out: mpsc::Sender<LogEvent>,
) -> Result<(), PluginError> {
    let mut p = Pipeline {
        redactor,
        filters,
        keys,
        out,
        batch: None,
        failed: None,
    };
    loop {
        let next = match p.batch.as_ref().map(|b| b.opened + BATCH_DELAY) {
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), input.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    p.flush().await;
                    continue;
                }
            },
            None => input.recv().await,
        };
        let Some(next) = next else {
            p.flush().await;
            return p.failed.map_or(Ok(()), Err);
        };
        match next {
            Input::Line(entry, line) => {
                if p.batch.as_ref().is_some_and(|b| b.entry != entry) {
                    p.flush().await;
                }
                let b = p.batch.get_or_insert_with(|| Batch {
                    entry,
                    records: Vec::new(),
                    written: Vec::new(),
                    bytes: 0,
                    opened: Instant::now(),
                });
                b.bytes += line.text.len();
                b.written.push(line.at);
                b.records.push(LogRecord {
                    stream: Stream::Stdout,
                    text: line.text,
                });
                if b.records.len() >= BATCH_LINES || b.bytes >= BATCH_BYTES {
                    p.flush().await;
                }
            }
            Input::Open {
                entry,
                key,
                command,
                start,
            } => {
                p.flush().await;
                let command = command.iter().map(|c| p.redactor.apply(c)).collect();
                p.send(LogEvent::Opened {
                    entry,
                    key,
                    command,
                    start,
                })
                .await;
            }
            Input::Close {
                entry,
                exit_code,
                duration,
            } => {
                p.flush().await;
                p.send(LogEvent::Closed {
                    entry,
                    exit_code,
                    duration,
                })
                .await;
            }
        }
    }
}

/// The state of one job's pipeline between inputs.
struct Pipeline {
    redactor: Redactor,
    filters: LogSession,
    keys: Vec<String>,
    out: mpsc::Sender<LogEvent>,
    batch: Option<Batch>,
    failed: Option<PluginError>,
}

impl Pipeline {
    async fn send(&mut self, event: LogEvent) {
        // A receiver that hung up no longer wants the log; the job goes on.
        let _ = self.out.send(event).await;
    }

    /// Redacts, filters and sends the open batch, if any.
    async fn flush(&mut self) {
        let Some(b) = self.batch.take() else {
            return;
        };
        if self.failed.is_some() {
            return;
        }
        let redacted: Vec<LogRecord> = b
            .records
            .into_iter()
            .map(|r| LogRecord {
                stream: r.stream,
                text: self.redactor.apply(&r.text),
            })
            .collect();
        let key = self
            .keys
            .get(b.entry)
            .map(String::as_str)
            .unwrap_or_default();
        // Plugin calls are bounded by their deadlines (milliseconds); running
        // them here keeps one job's batches in order without a thread hop.
        let records = match self.filters.filter(key, redacted) {
            Ok(records) => records,
            Err(e) => {
                self.failed = Some(e);
                return;
            }
        };
        self.send(LogEvent::Lines {
            entry: b.entry,
            records,
            written: b.written,
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_longest_secret_is_replaced_first() {
        let values = BTreeMap::from([
            ("abc".to_owned(), "[short]".to_owned()),
            ("abcdef".to_owned(), "[long]".to_owned()),
            (String::new(), "[never]".to_owned()),
        ]);
        let r = Redactor::new(&values);
        assert_eq!(r.apply("x abcdef abc y"), "x [long] [short] y");
        assert_eq!(Redactor::new(&BTreeMap::new()).apply("abc"), "abc");
    }
}
