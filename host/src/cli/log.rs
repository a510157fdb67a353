//! Installs the executor's own log on stderr: the filter and format the configuration's logging section chose; it decides nothing about them.

use clap::{Args, FromArgMatches};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LoggingConfig, RawLogging};

/// The logging settings from the environment alone, for the commands that
/// take no configuration flags (`plugin`, `sim`, the client commands).
pub(super) fn from_environment() -> RawLogging {
    let command = RawLogging::augment_args(clap::Command::new("executor"));
    command
        .try_get_matches_from(["executor"])
        .ok()
        .and_then(|m| RawLogging::from_arg_matches(&m).ok())
        .unwrap_or_default()
}

/// Installs the log. Invalid settings leave the defaults in place: the
/// commands that take a configuration report them with every other
/// problem, and stop.
pub(super) fn init(raw: &RawLogging, daemon: bool) {
    let config = raw.resolve().unwrap_or_default();
    // Plugin authors want to see what their plugin logs; the rest only when
    // it matters, except for the daemon, whose operators follow its jobs.
    let default = if daemon {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    };
    install(&config, default);
}

fn install(config: &LoggingConfig, default: tracing::Level) {
    let filter = EnvFilter::builder()
        .parse(config.directives(default))
        .unwrap_or_else(|_| EnvFilter::new(default.as_str()));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer(
            config.format,
            std::io::stderr,
            super::colour(
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
                std::env::var_os("NO_COLOR").as_deref(),
            ),
        ))
        .try_init();
}

/// The layer that writes events to `writer` in `format`; the text formats
/// in colour only with `ansi` (a terminal): escape codes in a file or a
/// pod's log are noise.
fn layer<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => Box::new(
            tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .with_writer(writer),
        ),
        LogFormat::Condensed => Box::new(
            tracing_subscriber::fmt::layer()
                .compact()
                .with_ansi(ansi)
                .with_writer(writer),
        ),
        LogFormat::Logfmt => Box::new(tracing_logfmt::builder().layer().with_writer(writer)),
        // One JSON object per line: time, level, target, the event's fields
        // and the fields of the executor's spans around it (`executor.name`,
        // `job.id`, `job.queue`) at the top level, where a log pipeline
        // finds them without walking a list.
        LogFormat::Json => {
            let mut json = json_subscriber::JsonLayer::new(writer);
            json.with_timer("timestamp", tracing_subscriber::fmt::time::SystemTime)
                .with_level("level")
                .with_target("target")
                .with_flattened_event();
            json.add_multiple_dynamic_fields(|event, ctx, out| {
                let Some(scope) = ctx.event_scope(event) else {
                    return;
                };
                for span in scope.from_root() {
                    if let Some(fields) = span.extensions().get::<SpanFields>() {
                        for (key, value) in &fields.0 {
                            let _ = out.write_field(key, value);
                        }
                    }
                }
            });
            Box::new(SpanRecorder.and_then(json))
        }
    }
}

/// The fields of one of the executor's own spans, kept on the span for the
/// JSON format. json-subscriber's own flattening of spans would also write
/// each span's name as `name`, which an event's `name` field would repeat:
/// a JSON object with a key twice.
#[derive(Debug, Default)]
struct SpanFields(Vec<(&'static str, serde_json::Value)>);

impl Visit for SpanFields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push((field.name(), value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.name(), value.into()));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), value.into()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name(), format!("{value:?}").into()));
    }
}

/// Keeps [`SpanFields`] on the executor's own spans; other crates' spans
/// (an HTTP client's, say) are theirs, with fields that might repeat an
/// event's.
struct SpanRecorder;

impl<S> Layer<S> for SpanRecorder
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !attrs.metadata().target().starts_with("executor") {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        if !fields.0.is_empty() {
            span.extensions_mut().insert(fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what a layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Captured {
            self.clone()
        }
    }

    /// What `format` writes for a plugin's message inside a job of an executor.
    fn written(format: LogFormat) -> String {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(layer(format, out.clone(), false));
        tracing::subscriber::with_default(subscriber, || {
            let executor = crate::job::executor_span("executor-7d9f-1b2c");
            let _in_executor = executor.enter();
            let job = crate::job::span("batches", 42);
            let _in_job = job.enter();
            tracing::info!(
                plugin = "redact",
                queue = "batches",
                name = "sg-executor-batches-42",
                "plugin would change the log"
            );
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_logs_carry_the_executor_job_queue_and_plugin_as_top_level_fields() {
        let text = written(LogFormat::Json);
        let line: serde_json::Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {text}"));
        assert_eq!(line["executor.name"], "executor-7d9f-1b2c", "{text}");
        assert_eq!(line["job.id"], 42, "{text}");
        assert_eq!(line["job.queue"], "batches", "{text}");
        assert_eq!(line["plugin"], "redact", "{text}");
        assert_eq!(line["message"], "plugin would change the log", "{text}");
        assert_eq!(line["level"], "INFO", "{text}");
        // An event's own `queue` and `name` beside the spans': each key once.
        assert_eq!(line["queue"], "batches", "{text}");
        assert_eq!(line["name"], "sg-executor-batches-42", "{text}");
        for key in ["queue", "name", "job.id"] {
            assert_eq!(
                text.matches(&format!("\"{key}\":")).count(),
                1,
                "{key}: {text}"
            );
        }
    }

    #[test]
    fn logfmt_and_condensed_lines_carry_the_same_fields() {
        for format in [LogFormat::Logfmt, LogFormat::Condensed, LogFormat::Text] {
            let text = written(format);
            assert_eq!(text.lines().count(), 1, "{format:?}: {text}");
            for needle in ["executor-7d9f-1b2c", "job.id=42", "batches", "redact"] {
                assert!(text.contains(needle), "{format:?}: no {needle} in {text}");
            }
        }
        assert!(written(LogFormat::Logfmt).contains("level=info"));
    }
}
