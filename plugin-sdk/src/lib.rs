//! The Rust API for executor plugins: the hook traits, the types that cross the boundary, the export macro and a native test harness.
//!
//! A plugin is a type that implements [`Plugin`] (how it is built from its
//! settings) and one or both hooks, [`Admission`] and [`LogFilter`], exported
//! with [`export_plugin!`]:
//!
//! ```
//! use plugin_sdk::{Admission, Error, Job, JobContext, Plugin, Verdict};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Settings {
//!     team: String,
//! }
//!
//! struct Team(String);
//!
//! impl Plugin for Team {
//!     type Settings = Settings;
//!     fn init(settings: Settings) -> Result<Self, Error> {
//!         Ok(Team(settings.team))
//!     }
//! }
//!
//! impl Admission for Team {
//!     fn admit(&self, _ctx: &JobContext, job: &mut Job) -> Result<Verdict, Error> {
//!         job.metadata
//!             .labels
//!             .get_or_insert_default()
//!             .insert("team".into(), self.0.clone());
//!         Ok(Verdict::allow())
//!     }
//! }
//!
//! // In the plugin crate (a `cdylib` built for `wasm32-wasip2`):
//! // plugin_sdk::export_plugin!(Team: admission);
//! # let h = plugin_sdk::testing::Harness::<Team>::new(serde_json::json!({"team": "infra"})).unwrap();
//! # let out = h.admit(&plugin_sdk::testing::context(), &plugin_sdk::testing::job()).unwrap();
//! # assert_eq!(out.job.metadata.labels.unwrap()["team"], "infra");
//! ```
//!
//! The same code runs natively under [`testing::Harness`], so plugin logic is
//! unit-tested with plain `cargo test`, on the Jobs the executor really
//! renders ([`testing::jobs`]). Helpers cover what most policies touch:
//! every container with its role ([`containers`]: the job's steps are the
//! init containers `step-<i>`, beside the executor's own `setup-workspace`
//! and `main`), the pod's labels and annotations ([`pod_labels_mut`],
//! [`pod_annotations_mut`]) and resource quantities ([`quantity`]).
//!
//! Use [`k8s_openapi`] and [`serde_json`] through these re-exports: they are
//! the versions the executor uses (Kubernetes 1.33), and a `k8s-openapi` of
//! your own with another version feature does not build beside them.

mod batch;
pub mod containers;
mod error;
pub mod image;
mod log;
mod metadata;
pub mod names;
mod patch;
pub mod quantity;
mod settings;
mod types;
mod verdict;
mod view;

pub mod testing;

#[doc(hidden)]
pub mod __private;

pub use batch::{LogBatch, LogLine};
pub use error::Error;
pub use k8s_openapi;
/// The Kubernetes `batch/v1` Job that admission plugins see and change.
pub use k8s_openapi::api::batch::v1::Job;
pub use log::{Level, debug, error, info, log, warn};
pub use metadata::{annotations_mut, labels_mut, pod_annotations_mut, pod_labels_mut};
pub use patch::{Patch, pointer};
pub use serde_json;
pub use settings::NoSettings;
pub use types::{JobContext, LogContext, LogEdit, LogRecord, Stream};
pub use verdict::Verdict;
pub use view::JobView;

/// A plugin: a type built from the settings the operator gives it.
///
/// The host calls [`Plugin::init`] once on every new instance: before every
/// admission call (each one runs on a fresh instance) and once per job for log
/// filtering. Keep it cheap: parse, validate, precompute.
pub trait Plugin: Sized + 'static {
    /// The settings, parsed from the `settings` of the plugin's entry in the
    /// executor's plugin configuration. Absent settings arrive as `null`,
    /// and parse as `{}` when `null` does not fit, so a struct whose fields
    /// all have defaults works without any; a plugin that takes none uses
    /// [`NoSettings`].
    type Settings: serde::de::DeserializeOwned;

    /// Builds the plugin, or refuses the settings with a message that names
    /// the offending setting and what was expected.
    fn init(settings: Self::Settings) -> Result<Self, Error>;
}

/// The admission hook: sees each Job before it is created.
pub trait Admission: Plugin {
    /// Decides on `job`, changing it in place to mutate it. Changes to a
    /// denied Job are discarded. The host checks every change against the
    /// plugin's allowed paths; returning `Err` is a plugin failure, handled by
    /// the plugin's failure policy, not a denial.
    fn admit(&self, ctx: &JobContext, job: &mut Job) -> Result<Verdict, Error>;

    /// What the component runs on each Job. The default parses the whole Job,
    /// runs [`Admission::admit`] on it and, if it changed, sends the whole
    /// document back.
    ///
    /// A plugin that reads a few fields overrides this: it reads them with
    /// [`JobView::get`] and records what it changes in `patch`. The parse
    /// and re-serialization of the whole Job that this skips are most of a
    /// cheap plugin's cost (and the host then applies the patch instead of
    /// parsing and comparing a whole document). Such a plugin implements
    /// `admit` with [`admit_by_review`], so that its logic lives in one
    /// place; the test harness checks that the two agree. Changes recorded
    /// in `patch` are discarded when the Job is denied.
    fn review(
        &self,
        ctx: &JobContext,
        job: &JobView<'_>,
        patch: &mut Patch,
    ) -> Result<Verdict, Error> {
        let original = job.job()?;
        let mut changed = original.clone();
        let verdict = self.admit(ctx, &mut changed)?;
        if changed != original {
            patch.set_document(changed);
        }
        Ok(verdict)
    }
}

/// [`Admission::admit`] for a plugin that overrides [`Admission::review`]:
/// runs `review` on `job` and applies its patch. (With the default `review`,
/// which calls `admit`, this would never return.)
pub fn admit_by_review<P: Admission>(
    plugin: &P,
    ctx: &JobContext,
    job: &mut Job,
) -> Result<Verdict, Error> {
    let text = serde_json::to_string(job)?;
    let mut patch = Patch::new();
    let verdict = plugin.review(ctx, &JobView::new(&text), &mut patch)?;
    if verdict.denied().is_none() && !patch.is_empty() {
        *job = patch.apply(&text)?;
    }
    Ok(verdict)
}

/// The log hook: sees each batch of log records before it is uploaded.
pub trait LogFilter: Plugin {
    /// Returns the records to keep, in order. The same instance sees every
    /// batch of a job's log, in order, so it may carry state between calls.
    fn filter(
        &mut self,
        ctx: &LogContext,
        records: Vec<LogRecord>,
    ) -> Result<Vec<LogRecord>, Error>;

    /// How to change a batch: what the component sends the host, which
    /// uploads the records no edit names as they are. The default makes
    /// owned records of the batch, runs [`LogFilter::filter`] on them and
    /// compares its answer with the batch. A filter that can say what it
    /// changes as it goes (a line masked, a line dropped) overrides this to
    /// read the batch's lines in place ([`LogBatch::lines`]) and skip the
    /// records and the comparison, which are most of a cheap filter's cost.
    /// The two must agree: the test harness runs this one.
    fn edits(&mut self, ctx: &LogContext, batch: &LogBatch<'_>) -> Result<Vec<LogEdit>, Error> {
        let input: Vec<LogLine<'_>> = batch.lines().map(|(_, line)| line).collect();
        let output = self.filter(ctx, input.iter().map(LogLine::to_record).collect())?;
        Ok(__private::edits(&input, output))
    }
}

include!(concat!(env!("OUT_DIR"), "/generate_world.rs"));

/// Exports a plugin type as a WebAssembly component, naming the hooks it implements.
///
/// ```ignore
/// plugin_sdk::export_plugin!(MyPlugin: admission);       // Admission only
/// plugin_sdk::export_plugin!(MyPlugin: logs);            // LogFilter only
/// plugin_sdk::export_plugin!(MyPlugin: admission, logs); // both
/// ```
///
/// Use it once, in a crate with `crate-type = ["cdylib"]` (add `"rlib"` to
/// test it natively), and build with
/// `cargo build --release --target wasm32-wasip2`. The crate must depend on
/// this SDK under its default name, `plugin_sdk`. On other targets the macro
/// expands to nothing, so `cargo test` runs the plugin's logic natively.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty : admission) => {
        $crate::__export!($ty, "admission-plugin", [admission]);
    };
    ($ty:ty : logs) => {
        $crate::__export!($ty, "log-plugin", [logs]);
    };
    ($ty:ty : admission, logs) => {
        $crate::__export!($ty, "plugin", [admission logs]);
    };
    ($ty:ty : logs, admission) => {
        $crate::__export!($ty, "plugin", [admission logs]);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export {
    ($ty:ty, $world:tt, [$($hook:ident)*]) => {
        // Only a component has somewhere to export to; natively the plugin is
        // exercised through `plugin_sdk::testing` instead.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(dead_code, missing_docs, unsafe_code, unused_imports, clippy::all)]
        mod __executor_plugin_export {
            use super::*;
            $crate::__generate_world!($world);

            use self::executor::plugin::host as wit;

            thread_local! {
                static SLOT: $crate::__private::Slot<$ty> = const { $crate::__private::Slot::new() };
            }

            fn sink(level: $crate::Level, message: &str) {
                let level = match level {
                    $crate::Level::Debug => wit::Level::Debug,
                    $crate::Level::Info => wit::Level::Info,
                    $crate::Level::Warn => wit::Level::Warn,
                    $crate::Level::Error => wit::Level::Error,
                };
                wit::log(level, message);
            }

            fn context(ctx: wit::JobContext) -> $crate::JobContext {
                $crate::JobContext {
                    job_id: ctx.job_id,
                    queue: ctx.queue,
                    repository: ctx.repository,
                    commit: ctx.commit,
                    step_images: ctx.step_images,
                    executor_name: ctx.executor_name,
                }
            }

            pub struct Component;

            impl exports::executor::plugin::lifecycle::Guest for Component {
                fn init(settings: String) -> Result<(), String> {
                    $crate::__private::set_log_sink(sink);
                    SLOT.with(|slot| slot.init(&settings))
                }
            }

            $($crate::__export_hook!($hook);)*

            export!(Component);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_hook {
    (admission) => {
        impl exports::executor::plugin::admission::Guest for Component {
            fn admit(
                ctx: wit::JobContext,
                job: String,
            ) -> Result<exports::executor::plugin::admission::Response, String> {
                let ctx = context(ctx);
                use exports::executor::plugin::admission as out;
                let response = SLOT.with(|slot| slot.admit(&ctx, &job))?;
                Ok(out::Response {
                    decision: match response.decision {
                        $crate::__private::Decision::Allow => out::Decision::Allow,
                        $crate::__private::Decision::AllowPatched(patch) => {
                            out::Decision::AllowPatched(patch)
                        }
                        $crate::__private::Decision::AllowMutated(job) => {
                            out::Decision::AllowMutated(job)
                        }
                        $crate::__private::Decision::Deny(message) => out::Decision::Deny(message),
                    },
                    warnings: response.warnings,
                })
            }
        }
    };
    (logs) => {
        impl exports::executor::plugin::log_filter::Guest for Component {
            fn filter(
                ctx: wit::LogContext,
                batch: exports::executor::plugin::log_filter::LogBatch,
            ) -> Result<Vec<wit::LogEdit>, String> {
                fn record(r: $crate::LogRecord) -> wit::LogRecord {
                    wit::LogRecord {
                        stream: match r.stream {
                            $crate::Stream::Stdout => wit::Stream::Stdout,
                            $crate::Stream::Stderr => wit::Stream::Stderr,
                        },
                        text: r.text,
                    }
                }
                let ctx = $crate::LogContext {
                    job: context(ctx.job),
                    entry: ctx.entry,
                };
                let streams: Vec<$crate::Stream> = batch
                    .streams
                    .iter()
                    .map(|s| match s {
                        wit::Stream::Stdout => $crate::Stream::Stdout,
                        wit::Stream::Stderr => $crate::Stream::Stderr,
                    })
                    .collect();
                let batch = $crate::LogBatch::new(&batch.text, &streams);
                let edits = SLOT.with(|slot| slot.filter(&ctx, &batch))?;
                Ok(edits
                    .into_iter()
                    .map(|edit| match edit {
                        $crate::LogEdit::Drop(i) => wit::LogEdit::Drop(i),
                        $crate::LogEdit::Replace(i, r) => wit::LogEdit::Replace((i, record(r))),
                        $crate::LogEdit::Insert(i, r) => wit::LogEdit::Insert((i, record(r))),
                    })
                    .collect())
            }
        }
    };
}
