//! Bytes on the wire for a 100 MB log: the uploader fed as fast as possible (real clock) and at 2 MB/s (virtual clock), against the bound its policy guarantees. Run: `cargo bench -p executor --bench upload`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use executor::job::log::LogEvent;
use executor::plugins::{LogRecord, Stream};
use executor::queue::client::ClientError;
use executor::queue::upload::{EntrySink, UploadPolicy, Uploaded, simulate, upload};
use executor::queue::wire::ExecutionLogEntry;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;

/// 1.2 M lines of 85 bytes each in `out` (`stdout: ` + 76 + newline): 102 MB.
const LINES: usize = 1_200_000;
const TEXT: usize = 76;
const BATCH: usize = 512;
/// The paced run's log rate, bytes of `out` per second.
const PACED_RATE: f64 = 2e6;

/// Counts what reaches it, answers at once.
#[derive(Default)]
struct Counting {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Counting {
    fn count(&self, e: &ExecutionLogEntry) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let len = e.out.as_ref().map_or(0, String::len) as u64;
        self.bytes.fetch_add(len, Ordering::Relaxed);
    }
}

impl EntrySink for Counting {
    async fn add(&self, e: &ExecutionLogEntry) -> Result<i64, ClientError> {
        self.count(e);
        Ok(1)
    }

    async fn update(&self, _id: i64, e: &ExecutionLogEntry) -> Result<(), ClientError> {
        self.count(e);
        Ok(())
    }
}

fn text(i: usize) -> String {
    let mut t = format!(
        "[{i:>7}] cc -O2 -c src/module_{:04}.c -o build/obj/",
        i % 9973
    );
    while t.len() < TEXT {
        t.push('x');
    }
    t.truncate(TEXT);
    t
}

/// The log as events: `Opened`, batches of lines, `Closed`, each at the time
/// a `rate` (bytes of `out` per second) would produce it.
fn events(rate: Option<f64>) -> impl Iterator<Item = (Duration, LogEvent)> {
    let per_line = "stdout: ".len() + TEXT + 1;
    let at = move |lines: usize| {
        rate.map_or(Duration::ZERO, |r| {
            Duration::from_secs_f64((lines * per_line) as f64 / r)
        })
    };
    let opened = LogEvent::Opened {
        entry: 0,
        key: "step.kubernetes.step.0.run".into(),
        command: vec!["make".into()],
        start: Timestamp::now(),
    };
    let batches = (0..LINES).step_by(BATCH).map(move |first| {
        let last = (first + BATCH).min(LINES);
        let records: Vec<LogRecord> = (first..last)
            .map(|i| LogRecord {
                stream: if i % 50 == 0 {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                },
                text: text(i),
            })
            .collect();
        let written = vec![Timestamp::now(); records.len()];
        (
            at(last),
            LogEvent::Lines {
                entry: 0,
                records,
                written,
            },
        )
    });
    let closed = std::iter::once_with(move || {
        (
            at(LINES),
            LogEvent::Closed {
                entry: 0,
                exit_code: 0,
                duration: at(LINES),
            },
        )
    });
    std::iter::once((Duration::ZERO, opened))
        .chain(batches)
        .chain(closed)
}

/// What resending the whole entry every second costs (Sourcegraph's way).
fn naive(total: u64, rate: f64) -> u64 {
    let seconds = (total as f64 / rate).ceil() as u64;
    (1..=seconds)
        .map(|s| (rate * s as f64).min(total as f64) as u64)
        .sum()
}

fn report(name: &str, up: &Uploaded, elapsed: Duration, policy: &UploadPolicy) {
    let mb = |b: u64| b as f64 / 1e6;
    let bound = policy.wire_bound(up.out_bytes, up.entries, elapsed);
    println!("{name}");
    println!("  log size      {:>10.1} MB", mb(up.out_bytes));
    println!(
        "  bytes sent    {:>10.1} MB  ({:.2}× the log)",
        mb(up.bytes_sent),
        up.bytes_sent as f64 / up.out_bytes as f64
    );
    println!("  requests      {:>10}", up.requests);
    println!(
        "  bound         {:>10.1} MB  ({:.2}× the log, over {:.1} s)",
        mb(bound),
        bound as f64 / up.out_bytes as f64,
        elapsed.as_secs_f64()
    );
    if !up.errors.is_empty() {
        println!("  errors        {:?}", up.errors);
    }
}

fn main() -> anyhow::Result<()> {
    let policy = UploadPolicy::default();
    println!("policy: {policy:?}\n");

    // As fast as the producer can make lines, through a channel, real clock.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sink = Counting::default();
    let started = Instant::now();
    let up = runtime.block_on(async {
        let (tx, rx) = mpsc::channel(64);
        let producer = tokio::spawn(async move {
            for (_, event) in events(None) {
                if tx.send(event).await.is_err() {
                    break;
                }
            }
        });
        let up = upload(rx, &sink, &policy).await;
        let _ = producer.await;
        up
    });
    let elapsed = started.elapsed();
    report("as fast as possible (real clock)", &up, elapsed, &policy);
    println!(
        "  wall time     {:>10.2} s  ({:.0} MB/s of log)",
        elapsed.as_secs_f64(),
        up.out_bytes as f64 / 1e6 / elapsed.as_secs_f64()
    );
    let counted = (
        sink.requests.load(Ordering::Relaxed),
        sink.bytes.load(Ordering::Relaxed),
    );
    anyhow::ensure!(
        counted == (up.requests, up.bytes_sent),
        "the sink counted {counted:?}, the uploader {:?}",
        (up.requests, up.bytes_sent)
    );
    anyhow::ensure!(
        up.bytes_sent <= policy.wire_bound(up.out_bytes, up.entries, elapsed),
        "over the bound"
    );

    // At 2 MB/s on a virtual clock, with a queue that takes 20 ms plus
    // 10 ms per MB to take an update.
    let latency = |n: usize| Duration::from_millis(20) + Duration::from_nanos(10 * n as u64);
    let sim = simulate(&policy, events(Some(PACED_RATE)), latency);
    println!();
    report(
        "paced at 2 MB/s (virtual clock)",
        &sim.uploaded,
        sim.elapsed,
        &policy,
    );
    let naive = naive(sim.uploaded.out_bytes, PACED_RATE);
    println!(
        "  resending every second would send {:.1} MB ({:.1}× the log)",
        naive as f64 / 1e6,
        naive as f64 / sim.uploaded.out_bytes as f64
    );
    anyhow::ensure!(
        sim.uploaded.bytes_sent <= policy.wire_bound(sim.uploaded.out_bytes, 1, sim.elapsed),
        "over the bound"
    );
    Ok(())
}
