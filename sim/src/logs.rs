//! Container logs: timestamped lines per container in a registry the kubelet writes and `pods/log` reads; neither side reaches the other through it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

/// Which container a log belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerId {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: String,
}

/// Every container's log since it started, by container.
#[derive(Default)]
pub struct ContainerLogs {
    logs: Mutex<HashMap<ContainerId, Arc<Log>>>,
}

impl ContainerLogs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContainerId, Arc<Log>>> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log of a container that has started.
    pub fn get(&self, id: &ContainerId) -> Option<Arc<Log>> {
        self.lock().get(id).cloned()
    }

    /// A fresh log for a container that starts now (it replaces an earlier run's).
    pub fn start(&self, id: ContainerId) -> Arc<Log> {
        let log = Arc::new(Log::default());
        self.lock().insert(id, log.clone());
        log
    }
}

/// One line of a container's output.
#[derive(Debug, Clone)]
pub struct Line {
    /// When it was written, in nanoseconds since the epoch.
    pub at: i128,
    /// The line with its newline.
    pub text: String,
}

/// The most of a container's log kept, as the kubelet's rotation keeps
/// `containerLogMaxSize` (10 MiB) × `containerLogMaxFiles` (5): older lines
/// go, and a follower that fell behind them misses them, as on a node.
pub const MAX_LOG_BYTES: usize = 50 << 20;

/// The log of one container.
#[derive(Default)]
pub struct Log {
    inner: Mutex<Inner>,
    changed: Notify,
}

#[derive(Default)]
struct Inner {
    lines: std::collections::VecDeque<Line>,
    /// The index of `lines[0]` since the container started (lines before
    /// it were rotated away).
    first: usize,
    bytes: usize,
    finished: bool,
}

impl Log {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a line (a newline is added when missing), rotating the
    /// oldest lines out beyond [`MAX_LOG_BYTES`].
    pub fn push(&self, text: String) {
        self.push_part(text, true);
    }

    /// Appends part of a line: with `complete` its end (a newline is added
    /// when missing), else a part the runtime split off a longer line, served
    /// without a newline so the line reads whole again, a timestamp before
    /// each part, as the kubelet serves CRI's partial lines.
    pub fn push_part(&self, mut text: String, complete: bool) {
        if complete && !text.ends_with('\n') {
            text.push('\n');
        }
        let mut inner = self.lock();
        // A line's bookkeeping counts too: `yes` writes two bytes a line.
        inner.bytes += text.len() + std::mem::size_of::<Line>();
        inner.lines.push_back(Line {
            at: now_nanos(),
            text,
        });
        while inner.bytes > MAX_LOG_BYTES && inner.lines.len() > 1 {
            if let Some(old) = inner.lines.pop_front() {
                inner.bytes -= old.text.len() + std::mem::size_of::<Line>();
                inner.first += 1;
            }
        }
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Marks the container as ended: followers stop after the last line.
    pub fn finish(&self) {
        self.lock().finished = true;
        self.changed.notify_waiters();
    }

    /// Lines from index `from` (or the oldest kept, when those went), the
    /// index after them, and whether the log has ended.
    pub fn read(&self, from: usize) -> (Vec<Line>, usize, bool) {
        let inner = self.lock();
        let skip = from.saturating_sub(inner.first);
        let lines: Vec<Line> = inner.lines.iter().skip(skip).cloned().collect();
        let next = inner.first + skip + lines.len();
        (lines, next.max(from), inner.finished)
    }

    /// At most the last `lines` lines and `bytes` bytes, as one text (what
    /// `FallbackToLogsOnError` makes a termination message of).
    pub fn tail(&self, lines: usize, bytes: usize) -> String {
        let inner = self.lock();
        let start = inner.lines.len().saturating_sub(lines);
        let text: String = inner
            .lines
            .iter()
            .skip(start)
            .map(|l| l.text.as_str())
            .collect();
        let mut cut = text.len().saturating_sub(bytes);
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text[cut..].to_owned()
    }

    /// Waits until something is appended or the log ends; returns at once
    /// if that already happened after index `seen`.
    pub async fn wait(&self, seen: usize) {
        let notified = self.changed.notified();
        {
            let inner = self.lock();
            if inner.first + inner.lines.len() > seen || inner.finished {
                return;
            }
        }
        notified.await;
    }
}

/// Nanoseconds since the epoch.
pub fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// RFC 3339 with nanoseconds, as the kubelet writes log timestamps
/// (`2026-11-23T00:36:00.123456789Z`).
pub fn rfc3339_nanos(nanos: i128) -> String {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let frac = nanos.rem_euclid(1_000_000_000);
    let base = k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default();
    match base.strip_suffix('Z') {
        Some(head) => format!("{head}.{frac:09}Z"),
        None => base,
    }
}

/// Nanoseconds since the epoch of an RFC 3339 time.
pub fn parse_time(text: &str) -> Option<i128> {
    text.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_nanosecond())
}
