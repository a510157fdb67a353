//! The log of one job as its uploader sees it: an entry per container (and one for the admission trail), lines grouped into batches by size and time, redacted, then filtered by the log plugins.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::redact::Redactor;
use crate::k8s::logs::Line;
use crate::plugins::{LogRecord, LogSession, PluginError, Stream};

/// A batch closes at this many lines...
pub const BATCH_LINES: usize = 512;
/// ...or this many bytes...
pub const BATCH_BYTES: usize = 64 * 1024;
/// ...or this long after its first line, whichever comes first. An
/// entry's first batch goes as soon as the lines that came with its first
/// are in: they waited for the container's start to reach the executor and
/// for the log request, so they are late already, and a step's reader
/// waits for its first line most.
pub const BATCH_DELAY: Duration = Duration::from_millis(100);

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

struct Batch {
    entry: usize,
    lines: Vec<Line>,
    bytes: usize,
    /// When it closes if no size limit closes it first (on the runtime's
    /// clock, which its timers use).
    due: Instant,
}

/// How many inputs may wait for the pipeline before followers wait too.
const INPUT_CAPACITY: usize = 1024;

/// Starts the pipeline of one job; it runs until every clone of the
/// returned sender is gone. A log plugin with failure policy `fail` that
/// fails stops the filtering: that batch and all later lines are withheld,
/// and the task returns the error (the job fails). Events already sent stay
/// sent.
pub fn spawn(
    redactor: Redactor,
    filters: LogSession,
    out: mpsc::Sender<LogEvent>,
) -> (mpsc::Sender<Input>, JoinHandle<Result<(), PluginError>>) {
    let (input, lines) = mpsc::channel(INPUT_CAPACITY);
    let pipeline = Pipeline {
        redactor,
        filters: Some(filters),
        keys: HashMap::new(),
        held: HashMap::new(),
        batched: HashSet::new(),
        out,
        batch: None,
        failed: None,
    };
    // In the job's span, so that what the pipeline logs names the job.
    (input, tokio::spawn(pipeline.run(lines).in_current_span()))
}

/// The state of one job's pipeline between inputs.
struct Pipeline {
    redactor: Redactor,
    /// `None` only while a batch is being filtered on a blocking thread.
    filters: Option<LogSession>,
    /// Each open entry's key, which its log plugins are told.
    keys: HashMap<usize, String>,
    /// Each entry's lines that may begin a secret spanning lines, until
    /// the next lines (or the entry's end) tell.
    held: HashMap<usize, Vec<Line>>,
    /// The entries that have had a batch.
    batched: HashSet<usize>,
    out: mpsc::Sender<LogEvent>,
    batch: Option<Batch>,
    failed: Option<PluginError>,
}

impl Pipeline {
    async fn run(mut self, mut input: mpsc::Receiver<Input>) -> Result<(), PluginError> {
        loop {
            let next = match self.batch.as_ref().map(|b| b.due) {
                Some(deadline) => match tokio::time::timeout_at(deadline, input.recv()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.flush().await;
                        continue;
                    }
                },
                None => input.recv().await,
            };
            let Some(next) = next else {
                self.flush().await;
                let mut entries: Vec<usize> = self.held.keys().copied().collect();
                entries.sort_unstable();
                for entry in entries {
                    self.send_lines(entry, Vec::new(), true).await;
                }
                return self.failed.map_or(Ok(()), Err);
            };
            match next {
                Input::Line(entry, line) => self.line(entry, line).await,
                Input::Open {
                    entry,
                    key,
                    command,
                    start,
                } => {
                    self.flush().await;
                    let command = command.iter().map(|c| self.redactor.apply(c)).collect();
                    self.keys.insert(entry, key.clone());
                    self.send(LogEvent::Opened {
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
                    self.flush().await;
                    self.send_lines(entry, Vec::new(), true).await;
                    self.send(LogEvent::Closed {
                        entry,
                        exit_code,
                        duration,
                    })
                    .await;
                }
            }
        }
    }

    /// Adds a line to the open batch, closing the batch first when the line
    /// is of another entry, and after when it is full.
    async fn line(&mut self, entry: usize, line: Line) {
        if self.batch.as_ref().is_some_and(|b| b.entry != entry) {
            self.flush().await;
        }
        // `timeout_at` polls for input before it looks at the time, so a
        // batch due now still takes every line already waiting.
        let batched = &mut self.batched;
        let b = self.batch.get_or_insert_with(|| {
            let first = batched.insert(entry);
            Batch {
                entry,
                lines: Vec::new(),
                bytes: 0,
                due: Instant::now() + if first { Duration::ZERO } else { BATCH_DELAY },
            }
        });
        b.bytes += line.text.len();
        b.lines.push(line);
        if b.lines.len() >= BATCH_LINES || b.bytes >= BATCH_BYTES {
            self.flush().await;
        }
    }

    async fn send(&mut self, event: LogEvent) {
        // A receiver that hung up no longer wants the log; the job goes on.
        let _ = self.out.send(event).await;
    }

    /// Redacts, filters and sends the open batch, if any.
    async fn flush(&mut self) {
        let Some(b) = self.batch.take() else {
            return;
        };
        self.send_lines(b.entry, b.lines, false).await;
    }

    /// Redacts `lines` of `entry` after those held back for it, then
    /// filters and sends what the redactor lets go; all of it when this is
    /// the entry's `last` call.
    async fn send_lines(&mut self, entry: usize, lines: Vec<Line>, last: bool) {
        if self.failed.is_some() {
            return;
        }
        let held = self.held.entry(entry).or_default();
        let released = self.redactor.lines(held, lines, last);
        if held.is_empty() {
            self.held.remove(&entry);
        }
        if released.texts.is_empty() {
            return;
        }
        let redacted: Vec<LogRecord> = released
            .texts
            .into_iter()
            .map(|text| LogRecord {
                stream: Stream::Stdout,
                text,
            })
            .collect();
        let key = self.keys.get(&entry).cloned().unwrap_or_default();
        let records = match self.filter(key, redacted).await {
            Ok(records) => records,
            Err(e) => {
                self.failed = Some(e);
                return;
            }
        };
        self.send(LogEvent::Lines {
            entry,
            records,
            written: released.written,
        })
        .await;
    }

    /// Runs `records` through the log plugins. A plugin call blocks its
    /// thread for up to its deadline, and WASI's output streams block on the
    /// runtime: on a worker thread it would stall every other job and the
    /// heartbeats, and a plugin that prints would panic. So it runs on a
    /// blocking thread, awaited here to keep the job's batches in order.
    async fn filter(
        &mut self,
        key: String,
        records: Vec<LogRecord>,
    ) -> Result<Vec<LogRecord>, PluginError> {
        let Some(mut filters) = self.filters.take() else {
            return Ok(records);
        };
        if filters.is_empty() {
            self.filters = Some(filters);
            return Ok(records);
        }
        let span = tracing::Span::current();
        let filtered = tokio::task::spawn_blocking(move || {
            // What the plugins log names the job they filter for.
            let _job = span.enter();
            let result = filters.filter(&key, records);
            (filters, result)
        })
        .await;
        match filtered {
            Ok((filters, result)) => {
                self.filters = Some(filters);
                result
            }
            // Plugin failures, panics included, come back as `Err` above;
            // this is the host's own bug: let it be one.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down; nothing will be uploaded.
            Err(_) => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::plugins::{JobContext, Plugins, Runtime, RuntimeOptions};

    fn session() -> LogSession {
        let runtime = Runtime::new(&RuntimeOptions {
            max_instances: 4,
            cache_dir: None,
        })
        .unwrap();
        Plugins::none(runtime).log_session(JobContext {
            job_id: "1".into(),
            queue: "q".into(),
            repository: None,
            commit: None,
            step_images: Vec::new(),
            executor_name: "e".into(),
        })
    }

    fn line(text: &str) -> Input {
        Input::Line(
            1,
            Line {
                at: Timestamp::UNIX_EPOCH,
                text: text.to_owned(),
            },
        )
    }

    #[tokio::test]
    async fn a_secret_whose_lines_fall_in_two_batches_is_redacted() {
        let secret = "{\n  \"private_key\": \"-----BEGIN PRIVATE KEY-----MIIEv\"\n}".to_owned();
        let values = BTreeMap::from([(secret, "[gcp credential]".to_owned())]);
        let (out, mut events) = mpsc::channel(16);
        let (input, pipeline) = spawn(Redactor::new(&values).unwrap(), session(), out);
        input
            .send(Input::Open {
                entry: 1,
                key: "step.kubernetes.0".into(),
                command: Vec::new(),
                start: Timestamp::UNIX_EPOCH,
            })
            .await
            .unwrap();
        // The entry's first batch goes at once; the next closes when full,
        // with the secret's first line last.
        input.send(line("first")).await.unwrap();
        assert!(matches!(events.recv().await, Some(LogEvent::Opened { .. })));
        assert!(matches!(events.recv().await, Some(LogEvent::Lines { .. })));
        for i in 0..BATCH_LINES - 1 {
            input.send(line(&format!("line {i}"))).await.unwrap();
        }
        for text in [
            "{",
            "  \"private_key\": \"-----BEGIN PRIVATE KEY-----MIIEv\"",
            "}",
            "done",
        ] {
            input.send(line(text)).await.unwrap();
        }
        input
            .send(Input::Close {
                entry: 1,
                exit_code: 0,
                duration: Duration::ZERO,
            })
            .await
            .unwrap();
        drop(input);
        pipeline.await.unwrap().unwrap();
        let mut texts = Vec::new();
        while let Some(event) = events.recv().await {
            if let LogEvent::Lines { records, .. } = event {
                texts.extend(records.into_iter().map(|r| r.text));
            }
        }
        assert!(
            !texts.iter().any(|t| t.contains("MIIEv")),
            "the credential reached the upload: {:?}",
            &texts[texts.len().saturating_sub(4)..]
        );
        assert_eq!(texts[texts.len() - 2..], ["[gcp credential]", "done"]);
        assert_eq!(texts.len(), BATCH_LINES + 1);
    }

    /// Sends `texts` and returns those of the next batch, and how long (in
    /// the paused clock) it took to come.
    async fn batch_after(
        input: &mpsc::Sender<Input>,
        events: &mut mpsc::Receiver<LogEvent>,
        texts: &[&str],
    ) -> (Vec<String>, Duration) {
        let sent = Instant::now();
        for text in texts {
            input.send(line(text)).await.unwrap();
        }
        loop {
            match events.recv().await {
                Some(LogEvent::Lines { records, .. }) => {
                    let texts = records.into_iter().map(|r| r.text).collect();
                    return (texts, sent.elapsed());
                }
                Some(_) => continue,
                None => panic!("the pipeline ended"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_entrys_first_lines_go_at_once_and_later_ones_wait_for_the_batch_window() {
        let (out, mut events) = mpsc::channel(16);
        let (input, _pipeline) = spawn(Redactor::new(&BTreeMap::new()).unwrap(), session(), out);
        let open = Input::Open {
            entry: 1,
            key: "step.kubernetes.0".into(),
            command: Vec::new(),
            start: Timestamp::UNIX_EPOCH,
        };
        input.send(open).await.unwrap();
        // What was waiting when the log was first read comes as one batch,
        // with no wait for the window.
        let (texts, waited) = batch_after(&input, &mut events, &["a", "b"]).await;
        assert_eq!(
            (texts, waited),
            (vec!["a".to_owned(), "b".to_owned()], Duration::ZERO)
        );
        let (texts, waited) = batch_after(&input, &mut events, &["c", "d"]).await;
        assert_eq!(
            (texts, waited),
            (vec!["c".to_owned(), "d".to_owned()], BATCH_DELAY)
        );
    }
}
