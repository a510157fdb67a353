//! What the host gives a plugin instance: the contract's `log` import, a WASI context that grants nothing, stdout/stderr captured into tracing, and the memory limiter.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamError};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::bindings::Contract;
use super::bindings::executor::plugin::host::{self, Level};
use super::text::{MAX_MESSAGES, printable};

/// At most this many `log` calls per call into the plugin; the rest are counted.
const LOG_CALLS_PER_CALL: u32 = MAX_MESSAGES as u32;

/// The WASI poll interface as wasmtime-wasi names it; its blocking calls are
/// replaced so that a plugin cannot park the host thread where the epoch
/// deadline cannot reach it.
const WASI_POLL: &str = "wasi:io/poll@0.2.12";
/// Output kept per stream and call; the rest is dropped and counted.
const MAX_OUTPUT: usize = 64 * 1024;

/// The data of one plugin store.
pub(crate) struct HostState {
    plugin: Arc<str>,
    wasi: WasiCtx,
    table: wasmtime::component::ResourceTable,
    pub(crate) limiter: MemoryCap,
    stdout: Capture,
    stderr: Capture,
    log_calls: u32,
}

impl HostState {
    pub(crate) fn new(plugin: Arc<str>, memory_bytes: usize) -> HostState {
        let stdout = Capture::default();
        let stderr = Capture::default();
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            plugin,
            wasi,
            table: wasmtime::component::ResourceTable::new(),
            limiter: MemoryCap {
                limit: memory_bytes,
                exceeded: false,
            },
            stdout,
            stderr,
            log_calls: 0,
        }
    }

    /// Sends what the plugin printed during the last call to tracing and
    /// returns the line of stderr worth quoting in an error ([`quotable`]).
    pub(crate) fn flush_output(&mut self) -> Option<String> {
        let plugin = &*self.plugin;
        for line in self.stdout.take_lines() {
            tracing::info!(plugin, stream = "stdout", "{line}");
        }
        let lines = self.stderr.take_lines();
        for line in &lines {
            tracing::warn!(plugin, stream = "stderr", "{line}");
        }
        if self.log_calls > LOG_CALLS_PER_CALL {
            let dropped = self.log_calls - LOG_CALLS_PER_CALL;
            tracing::warn!(plugin, dropped, "plugin logged too much; messages dropped");
        }
        self.log_calls = 0;
        quotable(&lines).map(str::to_owned)
    }
}

/// The guest's own error among what it printed before a trap. A language
/// runtime's last words only say that something failed ("Python function
/// threw an unexpected exception", Rust's hint about backtraces); the
/// error is earlier: the last line of a Python traceback, a JavaScript
/// `TypeError: ...`, the message of a Rust panic.
fn quotable(lines: &[String]) -> Option<&str> {
    // Python: the traceback's first unindented line after its frames.
    let traceback = lines
        .iter()
        .rposition(|l| l == "Traceback (most recent call last):")
        .and_then(|start| {
            lines[start + 1..]
                .iter()
                .find(|l| !l.starts_with(' ') && !l.is_empty())
        });
    traceback
        .or_else(|| lines.iter().rev().find(|l| names_an_error(l)))
        .or_else(|| {
            lines
                .iter()
                .rev()
                .find(|l| !l.starts_with("note: run with `RUST_BACKTRACE"))
        })
        .map(String::as_str)
}

/// `TypeError: x is undefined`, `Uncaught Error: boom`, `ValueError: bad`:
/// an error's type name, then its message.
fn names_an_error(line: &str) -> bool {
    let line = line.strip_prefix("Uncaught ").unwrap_or(line);
    let Some((name, _)) = line.split_once(": ") else {
        return false;
    };
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && (name.ends_with("Error") || name.ends_with("Exception"))
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        self.log_calls += 1;
        if self.log_calls > LOG_CALLS_PER_CALL {
            return;
        }
        let message = printable(&message);
        let plugin = &*self.plugin;
        match level {
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// The linker every plugin is instantiated with: the contract's `host`
/// interface and WASI p2, with blocking polls replaced by traps.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    host::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    // Every older version's `host` is the current one under another name:
    // the same `log`, so plugins of every version log through one function.
    for old in Contract::SUPPORTED
        .into_iter()
        .filter(|c| *c != Contract::CURRENT)
    {
        linker.instance(&old.interface("host"))?.func_wrap(
            "log",
            |mut store, (level, message): (Level, String)| -> wasmtime::Result<()> {
                host::Host::log(store.data_mut(), level, message);
                Ok(())
            },
        )?;
    }
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_POLL)?;
    poll.func_wrap(
        "poll",
        |_, (_,): (Vec<Resource<DynPollable>>,)| -> wasmtime::Result<(Vec<u32>,)> {
            Err(wasmtime::format_err!(
                "the plugin tried to wait (sleep or poll); plugins must not block"
            ))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |_, (_,): (Resource<DynPollable>,)| -> wasmtime::Result<()> {
            Err(wasmtime::format_err!(
                "the plugin tried to wait (sleep or poll); plugins must not block"
            ))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(linker)
}

/// Caps the linear memory of one instance and remembers whether the cap was
/// hit, so that the resulting trap can be reported as what it is.
pub(crate) struct MemoryCap {
    limit: usize,
    pub(crate) exceeded: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Clocks that always read zero: plugins get no time source (design rule),
/// while the WASI imports that Rust's standard library links stay satisfied.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A plugin's stdout or stderr: bytes are kept (up to a cap) until the host
/// drains them into tracing after the call.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<CaptureBuf>>);

#[derive(Default)]
struct CaptureBuf {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Capture {
    fn append(&self, data: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = MAX_OUTPUT.saturating_sub(buf.bytes.len());
        let take = room.min(data.len());
        buf.bytes.extend_from_slice(&data[..take]);
        buf.dropped += data.len() - take;
    }

    fn take_lines(&self) -> Vec<String> {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = std::mem::take(&mut buf.bytes);
        let dropped = std::mem::take(&mut buf.dropped);
        let mut lines: Vec<String> = String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(printable)
            .collect();
        if dropped > 0 {
            lines.push(format!("({dropped} more bytes of output dropped)"));
        }
        lines
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accept: output beyond the cap is dropped, not refused, so a
        // chatty plugin is not turned into a failing one.
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::quotable;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn the_guests_own_error_is_quoted_not_its_runtimes_last_words() {
        let python = lines(
            "Traceback (most recent call last):\n  File \"/0/app.py\", line 25, in admit\nRuntimeError: boom from python\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:\nPython function threw an unexpected exception\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        );
        assert_eq!(quotable(&python), Some("RuntimeError: boom from python"));
        let custom = lines(
            "Traceback (most recent call last):\n  File \"app.py\", line 3\n    raise Nope(\"no\")\napp.Nope: no\nPython function threw an unexpected exception",
        );
        assert_eq!(quotable(&custom), Some("app.Nope: no"));
        let js = lines("TypeError: job.metadata is undefined\nStack:\n  admit@app.js:4:7");
        assert_eq!(quotable(&js), Some("TypeError: job.metadata is undefined"));
        let rust = lines(
            "thread '<unnamed>' panicked at src/lib.rs:10:5:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        );
        assert_eq!(quotable(&rust), Some("boom"));
        assert_eq!(quotable(&[]), None);
    }
}
