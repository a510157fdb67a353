//! The uploader's tests: its state machine on a virtual clock, and the driver against a sink that records, stalls or fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use k8s_openapi::jiff::Timestamp;
use tokio::sync::Semaphore;

use super::*;
use crate::plugins::{LogRecord, Stream};

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
    // Large, and within what an entry keeps whole.
    let total = 24 << 20;
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

#[test]
fn an_entry_over_its_limit_keeps_its_head_and_tail_and_says_what_was_dropped() {
    let policy = UploadPolicy {
        max_entry: 64 << 10,
        ..UploadPolicy::default()
    };
    // 10 000 numbered lines of ~100 bytes: 1 MB, far over 64 KiB.
    let numbered = |i: usize| record(Stream::Stdout, &format!("{i:05} {LINE}"));
    let mut events = vec![(Duration::ZERO, opened(0))];
    for chunk in 0..100 {
        let records = (chunk * 100..(chunk + 1) * 100).map(numbered).collect();
        events.push((secs(chunk as f64 * 0.01), lines(0, records)));
    }
    events.push((secs(1.0), closed(0, 0)));
    let (sim, log) = sends(&policy, events, instant);
    let (_, _, _, last) = log.last().unwrap();
    let out = last.out.as_deref().unwrap();
    assert!(out.len() <= policy.max_entry + 200, "{}", out.len());
    assert!(
        out.starts_with(&format!("stdout: 00000 {LINE}\n")),
        "the head is kept"
    );
    assert!(
        out.ends_with(&format!("stdout: 09999 {LINE}\n")),
        "so is the tail"
    );
    let note = out
        .lines()
        .find(|l| l.contains("dropped here"))
        .expect("a note where lines were dropped");
    assert!(
        note.starts_with("stderr: [executor: ") && note.contains("lines ("),
        "{note}"
    );
    // Nothing between head and tail but the note: counted lines add up.
    let kept = out.lines().filter(|l| l.starts_with("stdout: ")).count();
    let dropped: usize = note
        .trim_start_matches("stderr: [executor: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(kept + dropped, 10_000);
    assert!(sim.uploaded.errors.is_empty());
}

/// A slow send of one entry does not hold up another's: the end of a job
/// waits for its last sends together, not one after the other.
#[tokio::test]
async fn sends_of_different_entries_overlap_and_each_entrys_stay_in_order() {
    let (mut sink, mut seen) = Recorder::new();
    sink.gate = Some(Semaphore::new(0));
    let (tx, rx) = mpsc::channel(16);
    let policy = patient();
    let uploading = upload(rx, &sink, &policy);
    let driving = async {
        tx.send(opened(0)).await.unwrap();
        tx.send(opened(1)).await.unwrap();
        for _ in 0..2 {
            assert!(matches!(seen.recv().await, Some(Call::Add(_))));
        }
        tx.send(closed(0, 0)).await.unwrap();
        tx.send(closed(1, 0)).await.unwrap();
        // Both updates arrive while the sink holds the first: one send in
        // flight per job would wait here for ever (the timeout turns that
        // into a failure).
        let mut held = Vec::new();
        for _ in 0..2 {
            let call = tokio::time::timeout(Duration::from_secs(30), seen.recv())
                .await
                .expect("the second entry's update is sent while the first is held");
            let Some(Call::Update(id, _)) = call else {
                panic!("expected an update, got {call:?}");
            };
            held.push(id);
        }
        held.sort();
        assert_eq!(held, [100, 101]);
        // A later change of entry 0 waits for its held send.
        tx.send(batch(0, 1)).await.unwrap();
        drop(tx);
        sink.gate.as_ref().unwrap().add_permits(2);
        assert!(matches!(seen.recv().await, Some(Call::Update(100, _))));
        sink.gate.as_ref().unwrap().add_permits(1);
    };
    let (uploaded, ()) = tokio::join!(uploading, driving);
    assert_eq!(uploaded.requests, 5, "{:?}", sink.calls());
    assert!(uploaded.errors.is_empty(), "{:?}", uploaded.errors);
}
