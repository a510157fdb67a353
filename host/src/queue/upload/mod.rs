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

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::client::{ClientError, JobClient};
use super::wire::ExecutionLogEntry;
use crate::job::log::LogEvent;

mod state;
use self::state::{Completed, PendingSend, State};

/// Events taken from the channel at once before the next send is considered.
const DRAIN: usize = 256;
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
    /// The most of an entry's `out` kept, counted as JSON-escaped bytes on
    /// the wire (32 MiB, half the embedded queue's request limit): its
    /// first half and its last half, with a line between saying how much
    /// was dropped. One job printing without end must not hold the
    /// executor's memory, during a queue outage least of all.
    pub max_entry: usize,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        UploadPolicy {
            small: 1 << 20,
            min_interval: Duration::from_secs(1),
            growth: 1.5,
            stale_rate: 64 << 10,
            max_retry_wait: Duration::from_secs(60),
            max_entry: 32 << 20,
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
/// is gone). Reading events goes on while sends are awaited, so a slow sink
/// never holds up the pipeline that feeds `events`. Each entry has at most
/// one send in flight, so the queue sees its sends in order; different
/// entries' sends overlap, so that a job's last entries do not queue behind
/// each other (the end of a job waits for all of them).
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
    let mut inflight: FuturesUnordered<InFlight<'_>> = FuturesUnordered::new();
    let mut open = true;
    let mut last_event = None;
    loop {
        while !state.stopped
            && let Some(send) = state.next_send(Instant::now(), !open)
        {
            inflight.push(send.run(sink));
        }
        if inflight.is_empty() && !open {
            break;
        }
        let due = match state.stopped {
            false => state.next_due(!open),
            true => None,
        };
        // Sends are polled first so that a stream of events cannot starve them.
        let step = tokio::select! {
            biased;
            Some((done, result)) = inflight.next(), if !inflight.is_empty() => Step::Sent(done, result),
            event = events.recv(), if open => Step::Event(event),
            () = sleep_until(due) => Step::Due,
        };
        match step {
            Step::Sent(done, result) => state.finish(done, result),
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

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl PendingSend {
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

#[cfg(test)]
mod tests;
