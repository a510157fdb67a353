//! Uploads one job's execution log entries to the queue, sending each entry only when it changed and less often as it grows.
//!
//! The protocol re-sends an entry's whole `out` on every update, so sending
//! a growing log every second costs bytes quadratic in its size. Here an
//! entry is sent only when it changed since its last send, and:
//!
//! - when it is opened (`addExecutionLogEntry`: whole while below
//!   [`UploadPolicy::small`], so that an entry already ended costs one
//!   request; else with an empty `out`) and when it is closed (its final
//!   state), at once;
//! - while `out` is below [`UploadPolicy::small`], at most once per
//!   [`UploadPolicy::min_interval`];
//! - above, when `out` has grown by a factor of [`UploadPolicy::growth`] since
//!   the last send (and `min_interval` passed), or when it was last sent
//!   [`UploadPolicy::max_staleness`] ago (`len / stale_rate`);
//! - when the events end, every entry that changed since its last send.
//!
//! # Bytes on the wire
//!
//! For an entry with final size `F` that is open for `T` (events `Opened`,
//! `Lines`…, `Closed`, and a sink that does not fail), with growth `g`:
//!
//! ```text
//! bytes ≤ g/(g−1)·F  +  F  +  small·(⌊T/min_interval⌋ + 1)  +  stale_rate·T
//! ```
//!
//! - sends triggered by growth each exceed `g` times the send before them, so
//!   they form a geometric series whose largest term is at most `F`;
//! - `F` is the send at `Closed` (the add carries less than `small`, counted
//!   in the `+ 1` below, and after `Closed` nothing has changed at the end);
//! - sends below `small` are spaced by `min_interval` and smaller than `small`;
//! - a send for staleness of `L` bytes comes at least `L / stale_rate` after the
//!   send before it, so those sends add up to at most `stale_rate·T`.
//!
//! With the defaults (`g` = 1.5, `small` = 1 MiB, `min_interval` = 1 s,
//! `stale_rate` = 64 KiB/s) a log costs at most 4× its size, plus 1 MiB and
//! 64 KiB for every second it is open ([`UploadPolicy::wire_bound`]
//! computes it; `cargo bench -p executor --bench upload` measures 1.0× for
//! 100 MB written at once and 2.9× at 2 MB/s, where resending every second
//! would cost 26×). When the sink fails, each failed send may add one more
//! send of the entry, and an entry that changes after `Closed` one more at
//! the end.
//!
//! Nothing is lost to a failed send: the entry stays changed and is sent
//! again (an entry whose `add` failed is added again, whole, before any
//! update). A [`ClientError::Gone`] stops all sending: the job is no longer
//! this executor's.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::client::{ClientError, JobClient};
use super::wire::ExecutionLogEntry;
use crate::job::log::LogEvent;
use crate::plugins::Stream;

/// Events taken from the channel at once before the next send is considered.
const DRAIN: usize = 256;
/// Errors kept in [`Uploaded::errors`]; the rest are counted.
const MAX_ERRORS: usize = 50;
/// The growth factor is never below this: at 1 the series has no bound.
const MIN_GROWTH: f64 = 1.1;

/// Where an uploader sends entries: the queue ([`JobClient`]) or a test double.
pub trait EntrySink: Send + Sync {
    /// Creates an entry; its id.
    fn add(&self, e: &ExecutionLogEntry) -> impl Future<Output = Result<i64, ClientError>> + Send;
    /// Replaces entry `id` with `e`.
    fn update(
        &self,
        id: i64,
        e: &ExecutionLogEntry,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
}

impl EntrySink for JobClient {
    fn add(&self, e: &ExecutionLogEntry) -> impl Future<Output = Result<i64, ClientError>> + Send {
        self.add_entry(e)
    }

    fn update(
        &self,
        id: i64,
        e: &ExecutionLogEntry,
    ) -> impl Future<Output = Result<(), ClientError>> + Send {
        self.update_entry(id, e)
    }
}

/// When entries are sent; see the module documentation for the bound it gives.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadPolicy {
    /// Below this many bytes of `out`, any change is sent at most once per
    /// `min_interval` (1 MiB).
    pub small: usize,
    /// The shortest time between two sends of an entry, except those at
    /// `Opened` and `Closed` (1 s).
    pub min_interval: Duration,
    /// Above `small`, an entry is sent once its `out` has grown by this factor
    /// since its last send (1.5; values below 1.1 count as 1.1).
    pub growth: f64,
    /// Bytes per second: an entry of `len` bytes that changed is sent at
    /// the latest `len / stale_rate` after its last send, however slowly it
    /// grows (64 KiB/s; 0 turns this off).
    pub stale_rate: u64,
    /// After consecutive failures an entry waits `min_interval × 2^failures`,
    /// at most this long, before it is tried again (60 s).
    pub max_retry_wait: Duration,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        UploadPolicy {
            small: 1 << 20,
            min_interval: Duration::from_secs(1),
            growth: 1.5,
            stale_rate: 64 << 10,
            max_retry_wait: Duration::from_secs(60),
        }
    }
}

impl UploadPolicy {
    fn growth(&self) -> f64 {
        if self.growth.is_finite() {
            self.growth.max(MIN_GROWTH)
        } else {
            MIN_GROWTH
        }
    }

    /// The longest an entry of `len` bytes that changed goes unsent (above
    /// `small`; at least `min_interval`).
    pub fn max_staleness(&self, len: usize) -> Duration {
        if self.stale_rate == 0 {
            return Duration::MAX;
        }
        let stale = Duration::from_secs_f64(len as f64 / self.stale_rate as f64);
        stale.max(self.min_interval)
    }

    /// The most bytes of `out` sent for `entries` entries whose final sizes
    /// add up to `out_bytes`, each open for at most `duration`, with a sink
    /// that does not fail (the module documentation derives it).
    pub fn wire_bound(&self, out_bytes: u64, entries: usize, duration: Duration) -> u64 {
        let g = self.growth();
        let growth_sends = out_bytes as f64 * g / (g - 1.0);
        let intervals = if self.min_interval.is_zero() {
            f64::INFINITY
        } else {
            (duration.as_secs_f64() / self.min_interval.as_secs_f64()).floor()
        };
        let per_entry =
            self.small as f64 * (intervals + 1.0) + self.stale_rate as f64 * duration.as_secs_f64();
        let bound = growth_sends + out_bytes as f64 + entries as f64 * per_entry;
        if bound >= u64::MAX as f64 {
            u64::MAX
        } else {
            bound.ceil() as u64
        }
    }
}

/// What an upload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uploaded {
    /// Entries opened.
    pub entries: usize,
    /// Calls made to the sink (adds and updates, failed ones included).
    pub requests: u64,
    /// The sum of the `out` lengths sent, failed sends included.
    pub bytes_sent: u64,
    /// The sum of the entries' final `out` lengths.
    pub out_bytes: u64,
    /// What went wrong, one message per failure (the first 50, then a count).
    pub errors: Vec<String>,
    /// When the last event arrived (for measuring what follows the last
    /// log line: the executor's overhead before `markComplete`).
    pub last_event: Option<std::time::Instant>,
}

/// Uploads the entries of one job's log until `events` closes and every
/// changed entry has been sent once more (or sending stopped because the job
/// is gone). Reading events goes on while a send is awaited, so a slow sink
/// never holds up the pipeline that feeds `events`.
pub async fn upload<S: EntrySink>(
    mut events: mpsc::Receiver<LogEvent>,
    sink: &S,
    policy: &UploadPolicy,
) -> Uploaded {
    enum Step {
        Sent(Completed, Result<Option<i64>, ClientError>),
        Event(Option<LogEvent>),
        Due,
    }
    let mut state = State::new(policy.clone());
    let mut inflight: Option<InFlight<'_>> = None;
    let mut open = true;
    let mut last_event = None;
    loop {
        if inflight.is_none()
            && !state.stopped
            && let Some(send) = state.next_send(Instant::now(), !open)
        {
            inflight = Some(send.run(sink));
        }
        if inflight.is_none() && !open {
            break;
        }
        let due = match inflight {
            None if !state.stopped => state.next_due(!open),
            _ => None,
        };
        // The send is polled first so that a stream of events cannot starve it.
        let step = tokio::select! {
            biased;
            (done, result) = finish(&mut inflight) => Step::Sent(done, result),
            event = events.recv(), if open => Step::Event(event),
            () = sleep_until(due) => Step::Due,
        };
        match step {
            Step::Sent(done, result) => {
                inflight = None;
                state.finish(done, result);
            }
            // Once the job is gone its log has nowhere to go; events are
            // still read so that the pipeline is never blocked.
            Step::Event(Some(_)) if state.stopped => last_event = Some(std::time::Instant::now()),
            Step::Event(Some(event)) => {
                last_event = Some(std::time::Instant::now());
                let now = Instant::now();
                state.apply(event, now);
                for _ in 0..DRAIN {
                    match events.try_recv() {
                        Ok(event) => state.apply(event, now),
                        Err(_) => break,
                    }
                }
            }
            Step::Event(None) => open = false,
            Step::Due => {}
        }
    }
    Uploaded {
        last_event,
        ..state.into_uploaded()
    }
}

/// Runs the uploader's decisions on a virtual clock, for measuring a policy
/// without a queue or waiting: `events` are `(offset from the start, event)`
/// in order, and a send of `n` bytes of `out` takes `latency(n)`; the sink
/// never fails. The same decisions as [`upload`], which reads the clock.
pub fn simulate<I>(
    policy: &UploadPolicy,
    events: I,
    latency: impl FnMut(usize) -> Duration,
) -> Simulated
where
    I: IntoIterator<Item = (Duration, LogEvent)>,
{
    simulate_with(policy, events, latency, |_, _| {})
}

/// What [`simulate`] measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulated {
    /// What the upload did.
    pub uploaded: Uploaded,
    /// Virtual time from the start to the end of the last send (or the last
    /// event, if later): the `duration` of [`UploadPolicy::wire_bound`].
    pub elapsed: Duration,
}

/// [`simulate`], calling `on_send` with the time and the send as each send starts.
fn simulate_with<I>(
    policy: &UploadPolicy,
    events: I,
    mut latency: impl FnMut(usize) -> Duration,
    mut on_send: impl FnMut(Duration, &PendingSend),
) -> Simulated
where
    I: IntoIterator<Item = (Duration, LogEvent)>,
{
    let start = Instant::now();
    let mut state = State::new(policy.clone());
    let mut events = events.into_iter().peekable();
    let mut now = start;
    let mut inflight: Option<(Instant, PendingSend)> = None;
    let mut next_id = 0;
    loop {
        while let Some((at, _)) = events.peek() {
            if start + *at > now {
                break;
            }
            if let Some((_, event)) = events.next() {
                state.apply(event, now);
            }
        }
        if let Some((done_at, send)) = inflight.take() {
            if done_at <= now {
                next_id += 1;
                let id = send.id.unwrap_or(next_id);
                state.finish(send.completed(), Ok(Some(id)));
                continue;
            }
            inflight = Some((done_at, send));
        }
        let ending = events.peek().is_none();
        if inflight.is_none() {
            if let Some(send) = state.next_send(now, ending) {
                on_send(now - start, &send);
                let took = latency(send.snapshot.out.as_ref().map_or(0, String::len));
                inflight = Some((now + took, send));
                continue;
            }
            if ending {
                break;
            }
        }
        let next_event = events.peek().map(|(at, _)| start + *at);
        let next = match &inflight {
            Some((done_at, _)) => Some(*done_at),
            None => state.next_due(ending),
        };
        match [next_event, next].into_iter().flatten().min() {
            Some(t) => now = now.max(t),
            None => break,
        }
    }
    Simulated {
        uploaded: state.into_uploaded(),
        elapsed: now - start,
    }
}

type InFlight<'a> =
    Pin<Box<dyn Future<Output = (Completed, Result<Option<i64>, ClientError>)> + Send + 'a>>;

async fn finish(
    inflight: &mut Option<InFlight<'_>>,
) -> (Completed, Result<Option<i64>, ClientError>) {
    match inflight {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One entry as known here and as last sent.
struct Entry {
    wire: ExecutionLogEntry,
    opened: Option<Instant>,
    closed: bool,
    id: Option<i64>,
    /// Counts changes to `out`, the exit code and the duration.
    version: u64,
    /// The version the queue has (0 after the first add, which sends none).
    acked: u64,
    last_attempt: Option<Instant>,
    /// `out`'s length at the last attempt: what growth is measured from.
    attempted_len: usize,
    /// Consecutive failed sends.
    failures: u32,
    /// Tried once since the events ended.
    flushed: bool,
    /// The version each batch of lines made and when its oldest line was
    /// written, until the queue has it: for the upload delay metric.
    unsent: VecDeque<(u64, Timestamp)>,
}

impl Entry {
    fn new(entry: usize) -> Entry {
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
            unsent: VecDeque::new(),
        }
    }

    fn len(&self) -> usize {
        self.wire.out.as_ref().map_or(0, String::len)
    }
}

/// A send chosen by [`State::next_send`], not yet made.
struct PendingSend {
    entry: usize,
    /// `None`: an add.
    id: Option<i64>,
    version: u64,
    snapshot: ExecutionLogEntry,
}

/// What [`State::finish`] needs to know about a send that ended.
struct Completed {
    entry: usize,
    version: u64,
}

impl PendingSend {
    fn completed(&self) -> Completed {
        Completed {
            entry: self.entry,
            version: self.version,
        }
    }

    fn run<S: EntrySink>(self, sink: &S) -> InFlight<'_> {
        Box::pin(async move {
            let done = self.completed();
            let result = match self.id {
                None => sink.add(&self.snapshot).await.map(Some),
                Some(id) => sink.update(id, &self.snapshot).await.map(|()| None),
            };
            (done, result)
        })
    }
}

/// The uploader's decisions, without I/O or a clock of its own.
struct State {
    policy: UploadPolicy,
    entries: BTreeMap<usize, Entry>,
    stopped: bool,
    requests: u64,
    bytes_sent: u64,
    errors: Vec<String>,
    errors_dropped: usize,
}

impl State {
    fn new(policy: UploadPolicy) -> State {
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

    fn error(&mut self, message: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(message);
        } else {
            self.errors_dropped += 1;
        }
    }

    fn apply(&mut self, event: LogEvent, now: Instant) {
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
                let e = self
                    .entries
                    .entry(entry)
                    .or_insert_with(|| Entry::new(entry));
                let out = e.wire.out.get_or_insert_with(String::new);
                let extra: usize = records.iter().map(|r| r.text.len() + 9).sum();
                out.reserve(extra);
                for r in records {
                    out.push_str(match r.stream {
                        Stream::Stdout => "stdout: ",
                        Stream::Stderr => "stderr: ",
                    });
                    out.push_str(&r.text);
                    out.push('\n');
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
    fn due(&self, e: &Entry, ending: bool) -> Option<Instant> {
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

    fn next_due(&self, ending: bool) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| self.due(e, ending))
            .min()
    }

    /// The send to make now, if any, recorded as attempted.
    fn next_send(&mut self, now: Instant, ending: bool) -> Option<PendingSend> {
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
            (e.wire.clone(), e.version)
        };
        let len = snapshot.out.as_ref().map_or(0, String::len);
        e.last_attempt = Some(now);
        e.attempted_len = len;
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

    fn finish(&mut self, done: Completed, result: Result<Option<i64>, ClientError>) {
        let Some(e) = self.entries.get_mut(&done.entry) else {
            return;
        };
        match result {
            Ok(id) => {
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
                    metrics::histogram!("executor_log_upload_delay_seconds")
                        .record(delay.as_secs_f64().max(0.0));
                }
            }
            Err(err) => {
                let key = e.wire.key.clone();
                e.failures = e.failures.saturating_add(1);
                let gone = matches!(err, ClientError::Gone { .. });
                tracing::warn!(entry = done.entry, %key, failures = e.failures, error = %err, "sending an execution log entry failed");
                metrics::counter!("executor_log_upload_failures_total").increment(1);
                self.error(format!("entry {} ({key}): {err}", done.entry));
                if gone {
                    self.stopped = true;
                }
            }
        }
    }

    fn into_uploaded(mut self) -> Uploaded {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::plugins::LogRecord;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
    use tokio::sync::Semaphore;

    const LINE: &str =
        "[build] compiling crate 0042 of 1200: target/debug/deps/libexample-0123456789abcdef.rlib";

    fn opened(entry: usize) -> LogEvent {
        LogEvent::Opened {
            entry,
            key: format!("step.kubernetes.step.{entry}"),
            command: vec!["sh".into(), "-c".into(), "make".into()],
            start: Timestamp::UNIX_EPOCH,
        }
    }

    fn lines(entry: usize, records: Vec<LogRecord>) -> LogEvent {
        let written = vec![Timestamp::now(); records.len()];
        LogEvent::Lines {
            entry,
            records,
            written,
        }
    }

    fn record(stream: Stream, text: &str) -> LogRecord {
        LogRecord {
            stream,
            text: text.to_owned(),
        }
    }

    fn batch(entry: usize, n: usize) -> LogEvent {
        lines(
            entry,
            (0..n).map(|_| record(Stream::Stdout, LINE)).collect(),
        )
    }

    fn closed(entry: usize, exit_code: i32) -> LogEvent {
        LogEvent::Closed {
            entry,
            exit_code,
            duration: Duration::from_millis(1500),
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Call {
        Add(ExecutionLogEntry),
        Update(i64, ExecutionLogEntry),
    }

    /// Records calls; can fail the first `fail_adds` adds, answer every call
    /// with `Gone`, or hold updates until `gate` has permits.
    struct Recorder {
        calls: Mutex<Vec<Call>>,
        seen: tokio::sync::mpsc::UnboundedSender<Call>,
        fail_adds: AtomicUsize,
        gone: bool,
        gate: Option<Semaphore>,
        next_id: AtomicI64,
    }

    impl Recorder {
        fn new() -> (Recorder, tokio::sync::mpsc::UnboundedReceiver<Call>) {
            let (seen, rx) = tokio::sync::mpsc::unbounded_channel();
            let r = Recorder {
                calls: Mutex::new(Vec::new()),
                seen,
                fail_adds: AtomicUsize::new(0),
                gone: false,
                gate: None,
                next_id: AtomicI64::new(100),
            };
            (r, rx)
        }

        fn record(&self, call: Call) {
            self.calls.lock().unwrap().push(call.clone());
            let _ = self.seen.send(call);
        }

        fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }

        fn gone() -> ClientError {
            ClientError::Gone {
                call: "addExecutionLogEntry",
                path: "/.executors/queue/q/addExecutionLogEntry".into(),
                job: crate::queue::client::JobRef {
                    queue: "q".into(),
                    id: 1,
                },
            }
        }
    }

    impl EntrySink for Recorder {
        async fn add(&self, e: &ExecutionLogEntry) -> Result<i64, ClientError> {
            self.record(Call::Add(e.clone()));
            if self.gone {
                return Err(Recorder::gone());
            }
            let failing = self
                .fail_adds
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err(ClientError::Status {
                    call: "addExecutionLogEntry",
                    path: "/.executors/queue/q/addExecutionLogEntry".into(),
                    status: 400,
                    body: "boom".into(),
                });
            }
            Ok(self.next_id.fetch_add(1, Ordering::SeqCst))
        }

        async fn update(&self, id: i64, e: &ExecutionLogEntry) -> Result<(), ClientError> {
            self.record(Call::Update(id, e.clone()));
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            if self.gone {
                return Err(Recorder::gone());
            }
            Ok(())
        }
    }

    /// A policy whose intervals never pass in a test that runs in real time.
    fn patient() -> UploadPolicy {
        UploadPolicy {
            min_interval: Duration::from_secs(3600),
            max_retry_wait: Duration::from_secs(3600),
            ..UploadPolicy::default()
        }
    }

    #[tokio::test]
    async fn entries_are_added_before_they_are_updated_and_closed_at_once() {
        let (sink, mut seen) = Recorder::new();
        let (tx, rx) = mpsc::channel(16);
        let policy = patient();
        let uploading = upload(rx, &sink, &policy);
        let driving = async {
            tx.send(opened(0)).await.unwrap();
            let Call::Add(added) = seen.recv().await.unwrap() else {
                panic!("the first call is not an add");
            };
            assert_eq!(added.key, "step.kubernetes.step.0");
            assert_eq!(added.command, ["sh", "-c", "make"]);
            assert_eq!(added.start_time, "1970-01-01T00:00:00Z");
            assert_eq!(added.out.as_deref(), Some(""));
            assert_eq!((added.exit_code, added.duration_ms), (None, None));
            tx.send(lines(
                0,
                vec![record(Stream::Stdout, "a"), record(Stream::Stderr, "b")],
            ))
            .await
            .unwrap();
            tx.send(closed(0, 3)).await.unwrap();
            let Call::Update(id, last) = seen.recv().await.unwrap() else {
                panic!("the second call is not an update");
            };
            assert_eq!(id, 100);
            assert_eq!(last.out.as_deref(), Some("stdout: a\nstderr: b\n"));
            assert_eq!((last.exit_code, last.duration_ms), (Some(3), Some(1500)));
            drop(tx);
        };
        let (uploaded, ()) = tokio::join!(uploading, driving);
        assert_eq!(sink.calls().len(), 2, "{:?}", sink.calls());
        assert_eq!(
            uploaded,
            Uploaded {
                entries: 1,
                requests: 2,
                bytes_sent: 20,
                out_bytes: 20,
                errors: vec![],
                last_event: uploaded.last_event,
            }
        );
    }

    #[tokio::test]
    async fn a_failed_add_is_retried_whole_before_any_update() {
        let (sink, _seen) = Recorder::new();
        sink.fail_adds.store(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel(16);
        for event in [opened(0), batch(0, 2), closed(0, 0)] {
            tx.send(event).await.unwrap();
        }
        drop(tx);
        let uploaded = upload(rx, &sink, &patient()).await;
        let calls = sink.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        let Call::Add(whole) = &calls[1] else {
            panic!("the retry is not an add: {calls:?}");
        };
        assert_eq!(
            whole.out.as_deref().map(str::len),
            Some(2 * (LINE.len() + 9))
        );
        assert_eq!(whole.exit_code, Some(0));
        assert_eq!(uploaded.errors.len(), 1);
        assert!(
            uploaded.errors[0].contains("HTTP 400: boom"),
            "{:?}",
            uploaded.errors
        );
    }

    #[tokio::test]
    async fn a_slow_sink_does_not_hold_up_the_events() {
        let (mut sink, mut seen) = Recorder::new();
        sink.gate = Some(Semaphore::new(0));
        let (tx, rx) = mpsc::channel(2);
        let policy = patient();
        let uploading = upload(rx, &sink, &policy);
        let driving = async {
            tx.send(opened(0)).await.unwrap();
            while !matches!(seen.recv().await, Some(Call::Add(..))) {}
            tx.send(closed(0, 0)).await.unwrap();
            while !matches!(seen.recv().await, Some(Call::Update(..))) {}
            // The update is held; 200 events through a channel of 2 only
            // pass if the uploader keeps reading.
            let flood = async {
                tx.send(opened(1)).await.unwrap();
                for _ in 0..200 {
                    tx.send(batch(1, 1)).await.unwrap();
                }
            };
            tokio::time::timeout(Duration::from_secs(30), flood)
                .await
                .expect("the uploader stopped reading events while a send was held");
            sink.gate.as_ref().unwrap().add_permits(10);
            drop(tx);
        };
        let (uploaded, ()) = tokio::join!(uploading, driving);
        assert!(uploaded.errors.is_empty(), "{:?}", uploaded.errors);
        let last = sink.calls().into_iter().last().unwrap();
        let entry = match last {
            Call::Add(e) | Call::Update(_, e) => e,
        };
        assert_eq!(entry.key, "step.kubernetes.step.1");
        assert_eq!(entry.out.unwrap().len(), 200 * (LINE.len() + 9));
    }

    #[tokio::test]
    async fn a_gone_job_stops_the_upload_but_not_the_reading() {
        let (mut sink, _seen) = Recorder::new();
        sink.gone = true;
        let (tx, rx) = mpsc::channel(1);
        let policy = patient();
        let driving = async move {
            for event in [
                opened(0),
                batch(0, 3),
                closed(0, 0),
                opened(1),
                batch(1, 3),
                closed(1, 0),
            ] {
                tx.send(event).await.unwrap();
            }
        };
        let (uploaded, ()) = tokio::join!(upload(rx, &sink, &policy), driving);
        assert_eq!(sink.calls().len(), 1, "{:?}", sink.calls());
        assert_eq!(uploaded.requests, 1);
        assert_eq!(uploaded.errors.len(), 1);
        assert!(
            uploaded.errors[0].contains("no longer known"),
            "{:?}",
            uploaded.errors
        );
    }

    /// When a send started, its entry, its entry id (`None`: an add) and what it sent.
    type SendAt = (Duration, usize, Option<i64>, ExecutionLogEntry);

    /// Runs `events` through the scheduler on a virtual clock; every send
    /// with its start time.
    fn sends(
        policy: &UploadPolicy,
        events: impl IntoIterator<Item = (Duration, LogEvent)>,
        latency: impl FnMut(usize) -> Duration,
    ) -> (Simulated, Vec<SendAt>) {
        let mut log = Vec::new();
        let sim = simulate_with(policy, events, latency, |at, send| {
            log.push((at, send.entry, send.id, send.snapshot.clone()));
        });
        (sim, log)
    }

    fn instant(_: usize) -> Duration {
        Duration::ZERO
    }

    #[test]
    fn an_upload_to_the_queue_can_be_spawned() {
        fn spawnable<T: Send + 'static>(_: T) {}
        let client = crate::queue::client::QueueClient::new(crate::queue::client::ClientOptions {
            base: url::Url::parse("http://127.0.0.1:9").unwrap(),
            password: "p".into(),
            executor_name: "e".into(),
            queues: vec!["q".into()],
            multi_queue: false,
            outage_limit: Duration::from_secs(1),
        })
        .unwrap();
        let job = client.job(
            crate::queue::client::JobRef {
                queue: "q".into(),
                id: 1,
            },
            None,
            tokio_util::sync::CancellationToken::new(),
        );
        let (_tx, rx) = mpsc::channel(1);
        spawnable(async move { upload(rx, &job, &UploadPolicy::default()).await });
    }

    #[test]
    fn nothing_is_sent_when_nothing_changed() {
        let events = vec![
            (secs(0.0), opened(0)),
            (secs(0.1), batch(0, 1)),
            (secs(5.0), closed(0, 0)),
            (secs(3600.0), opened(1)),
            (secs(3601.0), closed(1, 0)),
        ];
        let (sim, log) = sends(&UploadPolicy::default(), events, instant);
        let at: Vec<(f64, usize)> = log.iter().map(|(t, e, ..)| (t.as_secs_f64(), *e)).collect();
        assert_eq!(at, [(0.0, 0), (1.0, 0), (5.0, 0), (3600.0, 1), (3601.0, 1)]);
        assert_eq!(sim.uploaded.requests, 5);
        assert!(sim.uploaded.errors.is_empty());
    }

    #[test]
    fn small_entries_are_sent_at_most_once_per_interval() {
        let policy = UploadPolicy::default();
        let mut events = vec![(secs(0.0), opened(0))];
        events.extend((1..=100).map(|i| (secs(i as f64 / 10.0), batch(0, 1))));
        events.push((secs(10.05), closed(0, 0)));
        let (_, log) = sends(&policy, events, instant);
        let updates: Vec<Duration> = log.iter().filter(|s| s.2.is_some()).map(|s| s.0).collect();
        // One per second while lines arrive, and the final state at once.
        assert_eq!(updates.len(), 11, "{updates:?}");
        for pair in updates[..10].windows(2) {
            assert!(pair[1] - pair[0] >= policy.min_interval, "{updates:?}");
        }
        let (_, _, _, last) = log.last().unwrap();
        assert_eq!(last.out.as_ref().unwrap().len(), 100 * (LINE.len() + 9));
        assert_eq!(last.exit_code, Some(0));
    }

    #[test]
    fn an_entry_is_flushed_when_the_events_end_even_unclosed() {
        let events = vec![
            (secs(0.0), batch(0, 2)),
            (secs(0.0), opened(0)),
            (secs(0.2), batch(0, 1)),
        ];
        let (sim, log) = sends(&UploadPolicy::default(), events, instant);
        assert_eq!(log.len(), 2, "{log:?}");
        // A small entry's add carries what it has (the lines that came
        // before its Opened included).
        assert_eq!(log[0].3.out.as_ref().unwrap().len(), 2 * (LINE.len() + 9));
        assert_eq!(log[1].0, secs(0.2));
        assert_eq!(log[1].3.out.as_ref().unwrap().len(), 3 * (LINE.len() + 9));
        assert_eq!(log[1].3.exit_code, None);
        assert_eq!(sim.uploaded.out_bytes, 3 * (LINE.len() as u64 + 9));
    }

    /// `total` bytes of lines in batches of 512, at `rate` bytes per second
    /// (`None`: all at once), then `Closed`.
    fn log_of(total: usize, rate: Option<f64>) -> impl Iterator<Item = (Duration, LogEvent)> {
        let per_line = LINE.len() + 9;
        let batches = total.div_ceil(per_line * 512);
        let at = move |bytes: usize| rate.map_or(Duration::ZERO, |r| secs(bytes as f64 / r));
        std::iter::once((Duration::ZERO, opened(0)))
            .chain((1..=batches).map(move |i| (at(i * 512 * per_line), batch(0, 512))))
            .chain(std::iter::once_with(move || {
                (at(batches * 512 * per_line), closed(0, 0))
            }))
    }

    /// What resending the whole entry every second costs (Sourcegraph's way).
    fn naive(total: u64, rate: f64) -> u64 {
        let seconds = (total as f64 / rate).ceil() as u64;
        (1..=seconds)
            .map(|s| (rate * s as f64).min(total as f64) as u64)
            .sum()
    }

    #[test]
    fn the_wire_bound_holds_for_a_large_log() {
        let policy = UploadPolicy::default();
        let total = 32 << 20;
        // Paced at 2 MB/s with a sink that takes 100 ms plus 10 ns a byte.
        let slow = |n: usize| Duration::from_millis(100) + Duration::from_nanos(10 * n as u64);
        for (name, rate, latency) in [
            ("paced", Some(2e6), &slow as &dyn Fn(usize) -> Duration),
            ("paced, instant sink", Some(2e6), &instant),
            ("all at once", None, &slow),
        ] {
            let sim = simulate(&policy, log_of(total, rate), latency);
            let up = &sim.uploaded;
            let bound = policy.wire_bound(up.out_bytes, 1, sim.elapsed);
            assert!(up.out_bytes >= total as u64);
            assert!(
                up.bytes_sent <= bound,
                "{name}: {up:?} over {bound} in {:?}",
                sim.elapsed
            );
            // The bound's terms other than the geometric series are small here.
            assert!(up.bytes_sent <= 4 * up.out_bytes, "{name}: {up:?}");
            if let Some(rate) = rate {
                let naive = naive(up.out_bytes, rate);
                assert!(
                    up.bytes_sent * 2 < naive,
                    "{name}: {} vs naive {naive}",
                    up.bytes_sent
                );
            }
            assert!(up.errors.is_empty(), "{name}: {:?}", up.errors);
        }
    }

    #[test]
    fn a_large_log_that_grows_slowly_is_still_refreshed() {
        let policy = UploadPolicy::default();
        let mut events: Vec<(Duration, LogEvent)> = log_of(4 << 20, None)
            .filter(|(_, e)| !matches!(e, LogEvent::Closed { .. }))
            .collect();
        events.extend((1..=900).map(|s| (secs(s as f64), batch(0, 1))));
        events.push((secs(900.5), closed(0, 0)));
        let (sim, log) = sends(&policy, events, instant);
        let up = &sim.uploaded;
        let gaps: Vec<Duration> = log.windows(2).map(|w| w[1].0 - w[0].0).collect();
        let stale = policy.max_staleness(up.out_bytes as usize);
        assert!(
            gaps.iter().all(|g| *g <= stale + policy.min_interval),
            "{gaps:?}"
        );
        // Refreshed for staleness, not every second.
        assert!(
            (12..=20).contains(&log.len()),
            "{} sends: {gaps:?}",
            log.len()
        );
        let bound = policy.wire_bound(up.out_bytes, 1, sim.elapsed);
        assert!(up.bytes_sent <= bound, "{up:?} over {bound}");
    }

    #[test]
    fn the_bound_counts_every_term() {
        let p = UploadPolicy::default();
        // 3·F from the series at 1.5, F for Closed, one small send per second
        // plus one, and 64 KiB/s.
        let f = 100_000_000u64;
        let t = Duration::from_secs(50);
        let want = 3 * f + f + (1 << 20) * 51 + (64 << 10) * 50;
        assert_eq!(p.wire_bound(f, 1, t), want);
        assert_eq!(p.max_staleness(64 << 20), Duration::from_secs(1024));
        assert_eq!(p.max_staleness(10), p.min_interval);
    }
}
