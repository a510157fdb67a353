//! Support code for the `export_plugin!` expansion; not a public API.
//!
//! Everything between the generated bindings and the author's traits lives
//! here, as plain Rust, so that the native test harness runs exactly the code
//! a component runs.

use std::cell::RefCell;

use crate::{Admission, Job, JobContext, LogContext, LogFilter, LogRecord, Plugin};

pub use wit_bindgen;

/// The admission decision as it crosses the boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Create the Job unchanged.
    Allow,
    /// Create this Job instead (JSON).
    AllowMutated(String),
    /// Refuse the Job.
    Deny(String),
}

/// The admission response as it crosses the boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// What to do.
    pub decision: Decision,
    /// Warnings for the user.
    pub warnings: Vec<String>,
}

/// Routes [`crate::log`] to the host's `log` import.
pub fn set_log_sink(sink: fn(crate::Level, &str)) {
    crate::log::set_sink(sink);
}

/// Parses the settings JSON and builds the plugin.
pub fn init<P: Plugin>(settings: &str) -> Result<P, String> {
    let parsed = match serde_json::from_str::<P::Settings>(settings) {
        Ok(parsed) => parsed,
        // Absent settings arrive as `null`; let settings types whose fields
        // all have defaults accept that as an empty object.
        Err(err) if settings.trim() == "null" => serde_json::from_str::<P::Settings>("{}")
            .map_err(|_| format!("invalid settings: {err}"))?,
        Err(err) => return Err(format!("invalid settings: {err}")),
    };
    P::init(parsed).map_err(|err| format!("invalid settings: {err}"))
}

/// Runs the admission hook on a Job given as JSON.
pub fn admit<P: Admission>(plugin: &P, ctx: &JobContext, job: &str) -> Result<Response, String> {
    let original: Job = serde_json::from_str(job)
        .map_err(|err| format!("the Job document does not parse as a batch/v1 Job: {err}"))?;
    let mut job = original.clone();
    let verdict = plugin.admit(ctx, &mut job).map_err(|err| err.to_string())?;
    let (denied, warnings) = verdict.into_parts();
    let decision = match denied {
        Some(message) => Decision::Deny(message),
        None if job != original => Decision::AllowMutated(
            serde_json::to_string(&job)
                .map_err(|err| format!("cannot serialize the Job: {err}"))?,
        ),
        None => Decision::Allow,
    };
    Ok(Response { decision, warnings })
}

/// Runs the log hook.
pub fn filter<P: LogFilter>(
    plugin: &mut P,
    ctx: &LogContext,
    records: Vec<LogRecord>,
) -> Result<Vec<LogRecord>, String> {
    plugin.filter(ctx, records).map_err(|err| err.to_string())
}

/// Holds the plugin instance between `init` and the hooks.
pub struct Slot<P>(RefCell<Option<P>>);

impl<P: Plugin> Slot<P> {
    /// An empty slot.
    pub const fn new() -> Self {
        Slot(RefCell::new(None))
    }

    /// Runs `init` and keeps the plugin.
    pub fn init(&self, settings: &str) -> Result<(), String> {
        let plugin = init::<P>(settings)?;
        *self.0.borrow_mut() = Some(plugin);
        Ok(())
    }

    fn missing() -> String {
        "the host called a hook before `init`".to_owned()
    }

    /// Runs the admission hook on the kept plugin.
    pub fn admit(&self, ctx: &JobContext, job: &str) -> Result<Response, String>
    where
        P: Admission,
    {
        let plugin = self.0.borrow();
        admit(plugin.as_ref().ok_or_else(Self::missing)?, ctx, job)
    }

    /// Runs the log hook on the kept plugin.
    pub fn filter(
        &self,
        ctx: &LogContext,
        records: Vec<LogRecord>,
    ) -> Result<Vec<LogRecord>, String>
    where
        P: LogFilter,
    {
        let mut plugin = self.0.borrow_mut();
        filter(plugin.as_mut().ok_or_else(Self::missing)?, ctx, records)
    }
}

impl<P: Plugin> Default for Slot<P> {
    fn default() -> Self {
        Self::new()
    }
}
