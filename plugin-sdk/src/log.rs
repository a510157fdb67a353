//! The `log` helper: messages from the plugin to the host's log.

use std::cell::{Cell, RefCell};

/// How important a message is; mirrors `level` in the WIT contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Detail for the plugin's developer.
    Debug,
    /// Normal operation.
    Info,
    /// Something the operator should look at.
    Warn,
    /// Something went wrong inside the plugin.
    Error,
}

/// Where messages go inside a component: the contract's `log` import.
type Sink = fn(Level, &str);

thread_local! {
    static SINK: Cell<Option<Sink>> = const { Cell::new(None) };
    static CAPTURED: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
}

/// Sends a message to the host's log, tagged with the plugin's name.
///
/// Inside the executor it goes through the contract's `log` import; under
/// [`crate::testing`] it is captured, see [`crate::testing::take_logs`].
pub fn log(level: Level, message: impl AsRef<str>) {
    let message = message.as_ref();
    match SINK.with(Cell::get) {
        Some(sink) => sink(level, message),
        None => CAPTURED.with(|c| c.borrow_mut().push((level, message.to_owned()))),
    }
}

/// [`log`] at [`Level::Debug`].
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

/// [`log`] at [`Level::Info`].
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

/// [`log`] at [`Level::Warn`].
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

/// [`log`] at [`Level::Error`].
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}

pub(crate) fn set_sink(sink: Sink) {
    SINK.with(|s| s.set(Some(sink)));
}

pub(crate) fn take_captured() -> Vec<(Level, String)> {
    CAPTURED.with(|c| std::mem::take(&mut *c.borrow_mut()))
}
