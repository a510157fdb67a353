//! Log filtering for one job: one instance per log plugin for the job's whole log, replaced after a failure.

use std::sync::Arc;

use super::bindings::executor::plugin::host::{JobContext, LogContext, LogRecord};
use super::config::Mode;
use super::contract::{EditError, Filter, FilterIndices, holds_line_break};
use super::engine::Runtime;
use super::error::{Hook, PluginError};
use super::loader::{Live, LoadedPlugin};
use crate::ops::metrics::PLUGIN_FAILURES;

/// The log filters of one job. Not shared between jobs: each holds its own
/// instances, so a plugin's state never mixes two jobs' logs.
pub struct LogSession {
    runtime: Arc<Runtime>,
    ctx: JobContext,
    slots: Vec<Slot>,
    ignored: Vec<PluginError>,
}

struct Slot {
    plugin: Arc<LoadedPlugin>,
    indices: FilterIndices,
    live: Option<(Live, Filter)>,
}

impl LogSession {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        plugins: &[Arc<LoadedPlugin>],
        ctx: JobContext,
    ) -> LogSession {
        let slots = plugins
            .iter()
            .filter_map(|p| {
                Some(Slot {
                    indices: p.log_filter.clone()?,
                    plugin: p.clone(),
                    live: None,
                })
            })
            .collect();
        LogSession {
            runtime,
            ctx,
            slots,
            ignored: Vec::new(),
        }
    }

    /// Whether any log plugin is configured (if not, [`Self::filter`] is the identity).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Runs a batch of `entry`'s records through every log plugin in order.
    ///
    /// An `Err` comes from a plugin with failure policy `fail`: the batch must
    /// not be uploaded (it may hold what that plugin should have removed) and
    /// the job should fail. Failures of other plugins are logged, counted and
    /// kept in [`Self::ignored_failures`]; their input passes on unchanged.
    ///
    /// A record that holds line breaks is split into a record per line first:
    /// plugins see one line per record.
    pub fn filter(
        &mut self,
        entry: &str,
        mut records: Vec<LogRecord>,
    ) -> Result<Vec<LogRecord>, PluginError> {
        if self.slots.is_empty() {
            return Ok(records);
        }
        if records.iter().any(|r| holds_line_break(&r.text)) {
            records = one_line_each(records);
        }
        let ctx = LogContext {
            job: self.ctx.clone(),
            entry: entry.to_owned(),
        };
        for slot in &mut self.slots {
            let plugin = slot.plugin.clone();
            let spec = &plugin.spec;
            if let Err(err) = slot.run(&self.runtime, &ctx, &mut records) {
                // The instance may be in any state after a failure.
                slot.live = None;
                metrics::counter!(PLUGIN_FAILURES, "plugin" => spec.name.clone(), "hook" => "filter", "kind" => err.kind()).increment(1);
                if spec.ignores_failures() {
                    tracing::warn!(plugin = %spec.name, error = %err, "log plugin failed; batch passed on unfiltered by it, per its policy");
                    self.ignored.push(err);
                } else {
                    tracing::error!(plugin = %spec.name, error = %err, "log plugin failed; batch withheld per its policy");
                    return Err(err);
                }
            }
        }
        Ok(records)
    }

    /// Failures that were ignored per policy, oldest first.
    pub fn ignored_failures(&self) -> &[PluginError] {
        &self.ignored
    }
}

/// `records` with every record that holds line breaks split into its lines:
/// plugins are promised a line per record (the log follower splits on them;
/// other callers, such as a plugin's test cases, may not have).
fn one_line_each(records: Vec<LogRecord>) -> Vec<LogRecord> {
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        if holds_line_break(&record.text) {
            out.extend(record.text.split('\n').map(|text| LogRecord {
                stream: record.stream,
                text: text.to_owned(),
            }));
        } else {
            out.push(record);
        }
    }
    out
}

impl Slot {
    /// Filters `records` through this slot's plugin: in place when it
    /// enforces, only logged when it monitors. On an error `records` is as
    /// it was.
    fn run(
        &mut self,
        runtime: &Runtime,
        ctx: &LogContext,
        records: &mut Vec<LogRecord>,
    ) -> Result<(), PluginError> {
        let plugin = &self.plugin;
        let timeout = plugin.spec.log_timeout();
        let (live, guest) = match &mut self.live {
            Some(live) => live,
            none @ None => {
                let indices = &self.indices;
                none.insert(plugin.instantiate_guest(
                    runtime,
                    Hook::Filter,
                    timeout,
                    |store, instance| indices.load(store, instance),
                )?)
            }
        };
        let filtered = plugin.call(runtime, live, Hook::Filter, timeout, |store| {
            guest.call_filter(store, ctx, &records[..])
        })?;
        let bad = |err: EditError| PluginError::BadEdits {
            plugin: plugin.spec.name.clone(),
            detail: err.to_string(),
        };
        if plugin.spec.mode == Mode::Enforce {
            filtered.apply(records).map_err(bad)?;
        } else if !filtered.is_empty() {
            let mut would = records.clone();
            if filtered.apply(&mut would).map_err(bad)? && would != *records {
                tracing::info!(plugin = %plugin.spec.name, mode = "monitor", before = records.len(), after = would.len(), "plugin would change the log");
            }
        }
        Ok(())
    }
}
