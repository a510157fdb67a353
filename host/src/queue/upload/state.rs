//! The uploader's decisions as a pure state machine: what each entry is, which send is due next and what a finished send changes; no I/O and no clock of its own (the driver passes `now`).

use std::collections::{BTreeMap, VecDeque};

use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::{UploadPolicy, Uploaded};
use crate::job::log::LogEvent;
use crate::ops::metrics::{
    LOG_LINES, LOG_LINES_DROPPED, LOG_UPLOAD_FAILURES, LOG_UPLOAD_LAG, LOG_UPLOADED_BYTES,
};
use crate::plugins::Stream;
use crate::queue::client::ClientError;
use crate::queue::wire::ExecutionLogEntry;

/// Errors kept in [`Uploaded::errors`]; the rest are counted.
const MAX_ERRORS: usize = 50;

/// One entry as known here and as last sent.
pub(super) struct Entry {
    pub(super) wire: ExecutionLogEntry,
    pub(super) opened: Option<Instant>,
    pub(super) closed: bool,
    pub(super) id: Option<i64>,
    /// Counts changes to `out`, the exit code and the duration.
    pub(super) version: u64,
    /// The version the queue has (0 after the first add, which sends none).
    pub(super) acked: u64,
    pub(super) last_attempt: Option<Instant>,
    /// `out`'s length at the last attempt: what growth is measured from.
    pub(super) attempted_len: usize,
    /// Consecutive failed sends.
    pub(super) failures: u32,
    /// Tried once since the events ended.
    pub(super) flushed: bool,
    /// A send of this entry is awaited: the next waits for it, so that the
    /// queue sees an entry's sends in order, while other entries' go on.
    pub(super) in_flight: bool,
    /// The version each batch of lines made and when its oldest line was
    /// written, until the queue has it: for the upload delay metric.
    pub(super) unsent: VecDeque<(u64, Timestamp)>,
    /// Once `out` (the head) is full: the latest lines, within half of
    /// [`UploadPolicy::max_entry`], and what fell out between the two.
    pub(super) tail: Tail,
    /// Escaped bytes of the head (`wire.out`).
    pub(super) head_escaped: usize,
}

/// The end of an entry too long to keep whole.
#[derive(Default)]
pub(super) struct Tail {
    lines: VecDeque<String>,
    /// Escaped bytes of `lines`.
    bytes: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
    /// Bytes each of the head and the tail may hold.
    half: usize,
}

impl Tail {
    fn note(&self) -> String {
        format!(
            "stderr: [executor: {} lines ({} bytes) of output dropped here; an entry keeps its first and last {} bytes]\n",
            self.dropped_lines, self.dropped_bytes, self.half
        )
    }
}

/// What a kept tail line costs beside its text (its `String` and the
/// allocator's share), so that millions of tiny lines stay within bounds.
const LINE_OVERHEAD: usize = 32;

/// The length of `text` as a JSON string's content: what the entry costs on
/// the wire and in the queue's request limit.
fn escaped_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

impl Entry {
    pub(super) fn new(entry: usize) -> Entry {
        Entry {
            wire: ExecutionLogEntry {
                key: format!("entry.{entry}"),
                out: Some(String::new()),
                ..ExecutionLogEntry::default()
            },
            opened: None,
            closed: false,
            id: None,
            version: 0,
            acked: 0,
            last_attempt: None,
            attempted_len: 0,
            failures: 0,
            flushed: false,
            in_flight: false,
            unsent: VecDeque::new(),
            tail: Tail::default(),
            head_escaped: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        let head = self.wire.out.as_ref().map_or(0, String::len);
        if self.tail.lines.is_empty() && self.tail.dropped_lines == 0 {
            return head;
        }
        head + self.tail.note().len() + self.tail.lines.iter().map(String::len).sum::<usize>()
    }

    /// Appends one formatted line (`stdout: text\n`): to the head while it
    /// has room, then to the tail, dropping the tail's oldest lines beyond
    /// half of `max_entry`.
    fn push(&mut self, line: String, max_entry: usize, head_escaped: &mut usize) {
        let half = max_entry / 2;
        let len = escaped_len(&line);
        if self.tail.lines.is_empty() && *head_escaped + len <= half {
            *head_escaped += len;
            self.wire
                .out
                .get_or_insert_with(String::new)
                .push_str(&line);
            return;
        }
        self.tail.half = half;
        // A line's own bookkeeping counts too: `yes` writes two bytes a line.
        let len = len + LINE_OVERHEAD;
        self.tail.bytes += len;
        self.tail.lines.push_back(line);
        while self.tail.bytes > half {
            let Some(old) = self.tail.lines.pop_front() else {
                break;
            };
            let old_len = escaped_len(&old) + LINE_OVERHEAD;
            self.tail.bytes -= old_len;
            self.tail.dropped_lines += 1;
            self.tail.dropped_bytes += old.len() as u64;
            metrics::counter!(LOG_LINES_DROPPED).increment(1);
        }
    }

    /// The entry as it is sent: the head, and when it overflowed the note
    /// and the tail.
    fn snapshot(&self) -> ExecutionLogEntry {
        let mut wire = self.wire.clone();
        if self.tail.lines.is_empty() && self.tail.dropped_lines == 0 {
            return wire;
        }
        let out = wire.out.get_or_insert_with(String::new);
        if self.tail.dropped_lines > 0 {
            out.push_str(&self.tail.note());
        }
        for line in &self.tail.lines {
            out.push_str(line);
        }
        wire
    }
}

/// A send chosen by [`State::next_send`], not yet made.
pub(super) struct PendingSend {
    pub(super) entry: usize,
    /// `None`: an add.
    pub(super) id: Option<i64>,
    pub(super) version: u64,
    pub(super) snapshot: ExecutionLogEntry,
}

/// What [`State::finish`] needs to know about a send that ended.
pub(super) struct Completed {
    pub(super) entry: usize,
    pub(super) version: u64,
    /// The length of `out` sent.
    pub(super) bytes: usize,
}

impl PendingSend {
    pub(super) fn completed(&self) -> Completed {
        Completed {
            entry: self.entry,
            version: self.version,
            bytes: self.snapshot.out.as_ref().map_or(0, String::len),
        }
    }
}

/// The uploader's decisions, without I/O or a clock of its own.
pub(super) struct State {
    pub(super) policy: UploadPolicy,
    pub(super) entries: BTreeMap<usize, Entry>,
    pub(super) stopped: bool,
    pub(super) requests: u64,
    pub(super) bytes_sent: u64,
    pub(super) errors: Vec<String>,
    pub(super) errors_dropped: usize,
}

impl State {
    pub(super) fn new(policy: UploadPolicy) -> State {
        State {
            policy,
            entries: BTreeMap::new(),
            stopped: false,
            requests: 0,
            bytes_sent: 0,
            errors: Vec::new(),
            errors_dropped: 0,
        }
    }

    pub(super) fn error(&mut self, message: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(message);
        } else {
            self.errors_dropped += 1;
        }
    }

    pub(super) fn apply(&mut self, event: LogEvent, now: Instant) {
        match event {
            LogEvent::Opened {
                entry,
                key,
                command,
                start,
            } => {
                let e = self
                    .entries
                    .entry(entry)
                    .or_insert_with(|| Entry::new(entry));
                if e.opened.is_some() {
                    let message = format!("entry {entry} ({key}) was opened twice; kept the first");
                    tracing::warn!(entry, %key, "an execution log entry was opened twice");
                    self.error(message);
                    return;
                }
                e.opened = Some(now);
                e.wire.key = key;
                e.wire.command = command;
                e.wire.start_time = start.to_string();
            }
            LogEvent::Lines {
                entry,
                records,
                written,
            } => {
                if records.is_empty() {
                    return;
                }
                metrics::counter!(LOG_LINES).increment(records.len() as u64);
                let e = self
                    .entries
                    .entry(entry)
                    .or_insert_with(|| Entry::new(entry));
                let max_entry = self.policy.max_entry;
                for r in records {
                    let prefix = match r.stream {
                        Stream::Stdout => "stdout: ",
                        Stream::Stderr => "stderr: ",
                    };
                    let mut head_escaped = e.head_escaped;
                    e.push(
                        format!("{prefix}{}\n", r.text),
                        max_entry,
                        &mut head_escaped,
                    );
                    e.head_escaped = head_escaped;
                }
                e.version += 1;
                if let Some(oldest) = written.iter().min() {
                    e.unsent.push_back((e.version, *oldest));
                }
            }
            LogEvent::Closed {
                entry,
                exit_code,
                duration,
            } => {
                let e = self
                    .entries
                    .entry(entry)
                    .or_insert_with(|| Entry::new(entry));
                e.closed = true;
                e.wire.exit_code = Some(exit_code);
                e.wire.duration_ms = Some(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
                e.version += 1;
            }
        }
    }

    /// When `e` should be sent next; `None` when it need not be.
    pub(super) fn due(&self, e: &Entry, ending: bool) -> Option<Instant> {
        if e.in_flight {
            return None;
        }
        let opened = e.opened?;
        let Some(last) = e.last_attempt else {
            return Some(opened);
        };
        if e.id.is_some() && e.version == e.acked {
            return None;
        }
        if ending {
            return (!e.flushed).then_some(last);
        }
        let p = &self.policy;
        let retry_at = if e.failures > 0 {
            let wait = p
                .min_interval
                .saturating_mul(1 << e.failures.min(16))
                .min(p.max_retry_wait);
            last + wait
        } else {
            last
        };
        if e.closed {
            return Some(retry_at);
        }
        let len = e.len();
        let grown = len as f64 >= p.growth() * e.attempted_len as f64;
        let wait = if len < p.small || grown {
            p.min_interval
        } else {
            p.max_staleness(len)
        };
        // Past the clock's range (staleness turned off): only growth, `Closed`
        // or the end sends it.
        let at = last.checked_add(wait)?;
        Some(retry_at.max(at))
    }

    pub(super) fn next_due(&self, ending: bool) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| self.due(e, ending))
            .min()
    }

    /// The send to make now, if any, recorded as attempted.
    pub(super) fn next_send(&mut self, now: Instant, ending: bool) -> Option<PendingSend> {
        let (index, _) = self
            .entries
            .iter()
            .filter_map(|(i, e)| Some((*i, self.due(e, ending)?)))
            .filter(|(_, due)| *due <= now)
            .min_by_key(|(i, due)| (*due, *i))?;
        let e = self.entries.get_mut(&index)?;
        // The first add of a large entry creates it and nothing more; its
        // lines follow in updates, so a large log is never sent before it
        // is due. A small one goes whole: an entry that already ended (the
        // admission trail, a quick setup) then costs one request, not two.
        let small = e.wire.out.as_ref().map_or(0, String::len) <= self.policy.small;
        let first = e.id.is_none() && e.last_attempt.is_none() && !ending && !small;
        let (snapshot, version) = if first {
            let header = ExecutionLogEntry {
                key: e.wire.key.clone(),
                command: e.wire.command.clone(),
                start_time: e.wire.start_time.clone(),
                out: Some(String::new()),
                exit_code: None,
                duration_ms: None,
            };
            (header, 0)
        } else {
            (e.snapshot(), e.version)
        };
        let len = snapshot.out.as_ref().map_or(0, String::len);
        e.last_attempt = Some(now);
        e.attempted_len = len;
        e.in_flight = true;
        if ending {
            e.flushed = true;
        }
        self.requests += 1;
        self.bytes_sent += len as u64;
        Some(PendingSend {
            entry: index,
            id: e.id,
            version,
            snapshot,
        })
    }

    pub(super) fn finish(&mut self, done: Completed, result: Result<Option<i64>, ClientError>) {
        let Some(e) = self.entries.get_mut(&done.entry) else {
            return;
        };
        e.in_flight = false;
        match result {
            Ok(id) => {
                metrics::counter!(LOG_UPLOADED_BYTES).increment(done.bytes as u64);
                if id.is_some() && e.id.is_none() {
                    e.id = id;
                }
                e.acked = e.acked.max(done.version);
                e.failures = 0;
                let mut oldest = None;
                while let Some((version, written)) = e.unsent.front() {
                    if *version > e.acked {
                        break;
                    }
                    oldest = Some(oldest.map_or(*written, |o: Timestamp| o.min(*written)));
                    e.unsent.pop_front();
                }
                if let Some(written) = oldest {
                    let delay = Timestamp::now().duration_since(written);
                    metrics::histogram!(LOG_UPLOAD_LAG).record(delay.as_secs_f64().max(0.0));
                }
            }
            Err(err) => {
                let key = e.wire.key.clone();
                e.failures = e.failures.saturating_add(1);
                let gone = matches!(err, ClientError::Gone { .. });
                tracing::warn!(entry = done.entry, %key, failures = e.failures, error = %err, "sending an execution log entry failed");
                metrics::counter!(LOG_UPLOAD_FAILURES).increment(1);
                self.error(format!("entry {} ({key}): {err}", done.entry));
                if gone {
                    self.stopped = true;
                }
            }
        }
    }

    pub(super) fn into_uploaded(mut self) -> Uploaded {
        let never_opened: Vec<(usize, usize)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.opened.is_none())
            .map(|(i, e)| (*i, e.len()))
            .collect();
        for (entry, len) in never_opened {
            tracing::warn!(
                entry,
                len,
                "an execution log entry had events but was never opened"
            );
            self.error(format!(
                "entry {entry} was never opened; its {len} bytes of output were not uploaded"
            ));
        }
        if self.errors_dropped > 0 {
            let n = self.errors_dropped;
            self.errors.push(format!("…and {n} more errors"));
        }
        Uploaded {
            entries: self.entries.values().filter(|e| e.opened.is_some()).count(),
            requests: self.requests,
            bytes_sent: self.bytes_sent,
            out_bytes: self.entries.values().map(|e| e.len() as u64).sum(),
            errors: self.errors,
            last_event: None,
        }
    }
}
