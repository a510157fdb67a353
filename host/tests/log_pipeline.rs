//! A job's log pipeline with real log plugins, on a multi-threaded runtime as `serve` runs it: a plugin that prints or that is slow must not break or stall anything else.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::mpsc as std_mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use executor::job::log::{Input, LogEvent, spawn};
use executor::job::redact::Redactor;
use executor::k8s::logs::Line;
use executor::plugins::{
    FailurePolicy, JobContext, PluginSpec, Plugins, PluginsConfig, Runtime, RuntimeOptions,
};
use executor_tests::components;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use tokio::sync::mpsc;

fn misbehave(filter: &str, policy: FailurePolicy) -> Plugins {
    let mut spec = PluginSpec::new("misbehave", components().path("misbehave"));
    spec.settings = json!({ "filter": filter });
    spec.failure_policy = policy;
    // Far longer than the test needs: the call must still be running when
    // the rest of the runtime is asked to do something.
    spec.timeout = Some(Duration::from_secs(30));
    let runtime = Runtime::new(&RuntimeOptions {
        max_instances: 8,
        cache_dir: Some(executor_tests::plugin_cache()),
    })
    .unwrap();
    Plugins::load(
        runtime,
        &PluginsConfig {
            plugins: vec![spec],
        },
    )
    .unwrap()
}

fn ctx() -> JobContext {
    JobContext {
        job_id: "1".into(),
        queue: "default".into(),
        repository: None,
        commit: None,
        step_images: vec!["alpine:3".into()],
        executor_name: "test".into(),
    }
}

fn line(text: &str) -> Input {
    Input::Line(
        0,
        Line {
            at: Timestamp::now(),
            text: text.into(),
        },
    )
}

fn close() -> Input {
    Input::Close {
        entry: 0,
        exit_code: 0,
        duration: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_filter_that_prints_keeps_the_pipeline_running() {
    let plugins = tokio::task::spawn_blocking(|| misbehave("chatty", FailurePolicy::Fail))
        .await
        .unwrap();
    let (out, mut events) = mpsc::channel(16);
    let (input, pipeline) = spawn(Redactor::new([]).unwrap(), plugins.log_session(ctx()), out);
    input.send(line("hello")).await.unwrap();
    input.send(close()).await.unwrap();
    drop(input);
    let result = pipeline
        .await
        .expect("a plugin printing must not crash the pipeline");
    assert_eq!(result, Ok(()), "the filter must succeed");
    let Some(LogEvent::Lines { records, .. }) = events.recv().await else {
        panic!("the batch must be sent")
    };
    assert_eq!(records[0].text, "hello", "the filter keeps the line");
}

/// Sends each message the `log` import writes to the channel set by the
/// test, whichever thread the plugin runs on.
fn watch_plugin_logs() -> std_mpsc::Receiver<String> {
    use tracing_subscriber::layer::SubscriberExt;

    static SINK: OnceLock<Mutex<Option<std_mpsc::Sender<String>>>> = OnceLock::new();
    struct Forward;
    struct Message(Option<String>);
    impl tracing::field::Visit for Message {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = Some(format!("{value:?}"));
            }
        }
    }
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Forward {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let mut message = Message(None);
            event.record(&mut message);
            if let (Some(m), Some(sink)) = (message.0, SINK.get())
                && let Some(tx) = sink.lock().unwrap().as_ref()
            {
                let _ = tx.send(m);
            }
        }
    }
    let (tx, rx) = std_mpsc::channel();
    *SINK.get_or_init(|| Mutex::new(None)).lock().unwrap() = Some(tx);
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Forward));
    rx
}

#[test]
fn a_slow_log_filter_leaves_the_runtime_free_for_other_work() {
    let logs = watch_plugin_logs();
    let plugins = misbehave("announce-loop", FailurePolicy::Ignore);
    // One worker thread: a plugin call on it would stop everything else.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (out, mut events) = mpsc::channel(16);
    let (input, _pipeline) = runtime
        .block_on(async { spawn(Redactor::new([]).unwrap(), plugins.log_session(ctx()), out) });
    input.blocking_send(line("hello")).unwrap();
    input.blocking_send(close()).unwrap();
    // Only a bound against hanging forever, not a measure of speed.
    let started = std::iter::from_fn(|| logs.recv_timeout(Duration::from_secs(120)).ok())
        .any(|m| m == "filter started");
    assert!(started, "the filter never started");

    // Another job's work (a heartbeat, say) while the filter runs.
    let answer = runtime.block_on(async { tokio::spawn(async { "heartbeat" }).await.unwrap() });
    assert_eq!(answer, "heartbeat");
    assert!(
        events.try_recv().is_err(),
        "other work had to wait for the plugin's deadline: the plugin ran on the runtime's only worker"
    );
    runtime.shutdown_background();
}
