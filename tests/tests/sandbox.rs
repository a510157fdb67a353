//! The sandbox rules, with a guest that misbehaves on request: each failure gets the outcome its policy says, names the plugin and the hook, and the next call works.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{ctx, load, runtime, spec};
use executor::k8s::spec::{ApiServer, validate};
use executor::plugins::{
    Decision, FailurePolicy, LoadError, LogRecord, Mode, PathPattern, PluginError, PluginSpec,
    Plugins, PluginsConfig, Runtime, RuntimeOptions, Step, Stream,
};
use executor_tests::{components, realistic_job};
use serde_json::json;

fn misbehave(admit: &str, policy: FailurePolicy) -> PluginSpec {
    let mut s = spec("misbehave", json!({ "admit": admit, "filter": admit }));
    s.failure_policy = policy;
    // Only the endless loop should meet the deadline; the rest get room to
    // fail in their own way on a loaded machine.
    s.timeout = Some(Duration::from_millis(if admit == "loop" {
        50
    } else {
        5_000
    }));
    s
}

fn annotate() -> PluginSpec {
    spec(
        "annotate",
        json!({"job": {"annotations": {"seen-by": "annotate"}}}),
    )
}

fn annotated(job: &serde_json::Value) -> bool {
    job["metadata"]["annotations"]["seen-by"] == "annotate"
}

/// The misbehaviours of the admission hook, and words the error must contain.
const FAILURES: &[(&str, &str)] = &[
    ("loop", "timed out in admit after 50 ms"),
    ("hog", "exceeded its memory limit of 64 MiB in admit"),
    ("trap", "trapped in admit"),
    ("sleep", "plugins must not block"),
    ("error", "failed in admit: cannot decide"),
    (
        "not-json",
        "returned from admit a Job that is not a JSON object",
    ),
    (
        "not-object",
        "returned from admit a Job that is not a JSON object: it is [1,2,3]",
    ),
    (
        "command",
        "outside its allowed paths in admit: replace /spec/template/spec/containers/0/command/0, replace /spec/template/spec/containers/0/command/2",
    ),
    (
        "privileged",
        "add /spec/template/spec/containers/0/securityContext/privileged",
    ),
    (
        "new-init-container",
        "outside its allowed paths in admit: add /spec/template/spec/initContainers/3;",
    ),
    (
        "empty-dns-config",
        "outside its allowed paths in admit: add /spec/template/spec/dnsConfig;",
    ),
];

#[test]
fn failures_under_policy_fail_refuse_the_job_and_name_plugin_and_hook() {
    for (mode, words) in FAILURES {
        let plugins = load(vec![misbehave(mode, FailurePolicy::Fail), annotate()]);
        for attempt in 0..2 {
            let out = plugins.admit(&ctx(), realistic_job(), &validate);
            let Decision::Failed(err) = &out.decision else {
                panic!(
                    "{mode}: a failing plugin with policy fail must refuse the job, got {:?}",
                    out.decision
                )
            };
            let msg = out.message().unwrap();
            assert!(
                msg.contains("plugin `misbehave`") && msg.contains(words),
                "{mode} (attempt {attempt}): {msg}"
            );
            assert!(!err.to_string().is_empty());
            assert_eq!(
                out.trail.len(),
                1,
                "{mode}: the chain must stop at the failing plugin"
            );
            assert!(!annotated(&out.job), "{mode}: later plugins must not run");
        }
    }
}

#[test]
fn failures_under_policy_ignore_skip_the_plugin_with_a_warning() {
    for (mode, words) in FAILURES {
        let plugins = load(vec![misbehave(mode, FailurePolicy::Ignore), annotate()]);
        let out = plugins.admit(&ctx(), realistic_job(), &validate);
        assert!(out.allowed(), "{mode}: {:?}", out.decision);
        assert!(
            annotated(&out.job),
            "{mode}: the next plugin must still run"
        );
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains(words) && w.ends_with("(ignored)")),
            "{mode}: {:?}",
            out.warnings
        );
        assert!(matches!(
            &out.trail[0].step,
            Step::Failed { ignored: true, .. }
        ));
        // The failed instance left nothing behind: the job is exactly what annotate made of it.
        let mut expected = realistic_job();
        expected["metadata"]["annotations"]["seen-by"] = json!("annotate");
        assert_eq!(out.job, expected, "{mode}");
    }
}

#[test]
fn the_host_keeps_serving_after_many_failures() {
    // More failing calls than the pool has instances: every slot must be released.
    let plugins = load(vec![
        misbehave("trap", FailurePolicy::Ignore),
        misbehave("hog", FailurePolicy::Ignore),
    ]);
    for _ in 0..80 {
        assert!(plugins.admit(&ctx(), realistic_job(), &validate).allowed());
    }
    let fine = load(vec![annotate()]);
    assert!(annotated(
        &fine.admit(&ctx(), realistic_job(), &validate).job
    ));
}

#[test]
fn a_deny_stops_the_chain_with_the_plugin_message() {
    let plugins = load(vec![misbehave("deny", FailurePolicy::Fail), annotate()]);
    let out = plugins.admit(&ctx(), realistic_job(), &validate);
    assert_eq!(
        out.decision,
        Decision::Denied {
            plugin: "misbehave".into(),
            message: "job 1234 of queue batches is not welcome".into()
        }
    );
    assert_eq!(
        out.message().unwrap(),
        "denied by plugin `misbehave`: job 1234 of queue batches is not welcome"
    );
    assert_eq!(out.trail.len(), 1);
}

#[test]
fn monitor_mode_records_but_never_applies() {
    let mut deny = misbehave("deny", FailurePolicy::Fail);
    deny.mode = Mode::Monitor;
    let mut change = spec("misbehave", json!({"admit": "annotate"}));
    change.name = "monitored-annotate".into();
    change.mode = Mode::Monitor;
    let mut fail = misbehave("trap", FailurePolicy::Fail);
    fail.name = "monitored-trap".into();
    fail.mode = Mode::Monitor;
    let plugins = load(vec![deny, change, fail]);
    let out = plugins.admit(&ctx(), realistic_job(), &validate);
    assert!(out.allowed(), "{:?}", out.decision);
    assert_eq!(
        out.job,
        realistic_job(),
        "monitor mode must not change the job"
    );
    assert!(matches!(out.trail[0].step, Step::Denied { .. }));
    assert_eq!(out.trail[1].step, Step::Mutated);
    assert_eq!(
        out.trail[1].patch.0.len(),
        1,
        "the would-be patch is recorded"
    );
    assert!(matches!(
        out.trail[2].step,
        Step::Failed { ignored: true, .. }
    ));
}

#[test]
fn a_refused_change_after_a_good_one_fails_its_plugin_and_keeps_the_good_change() {
    let plugins = load(vec![
        annotate(),
        misbehave("annotations-huge", FailurePolicy::Fail),
    ]);
    let out = plugins.admit(&ctx(), realistic_job(), &validate);
    let Decision::Failed(err) = &out.decision else {
        panic!("the job must fail, got {:?}", out.decision)
    };
    assert_eq!(err.kind(), "invalid");
    assert!(err.to_string().starts_with("plugin `misbehave`"), "{err}");
    assert_eq!(out.trail.len(), 2, "{:?}", out.trail);
    assert_eq!(out.trail[0].step, Step::Mutated);
    assert!(matches!(
        out.trail[1].step,
        Step::Failed { ignored: false, .. }
    ));
    assert!(annotated(&out.job), "annotate's change stays: {}", out.job);
}

#[test]
fn a_change_the_api_server_would_refuse_fails_the_plugin_that_made_it() {
    for (mode, words) in [
        (
            "annotations-huge",
            "returned from admit a Job the API server would refuse: metadata.annotations: Too long: may not be more than 262144 bytes (got 307",
        ),
        (
            "annotations-number",
            "returned from admit a Job the API server would refuse: it is not a batch/v1 Job at metadata.annotations: invalid type: integer `42`",
        ),
    ] {
        let plugins = load(vec![misbehave(mode, FailurePolicy::Fail), annotate()]);
        let out = plugins.admit(&ctx(), realistic_job(), &validate);
        let Decision::Failed(err) = &out.decision else {
            panic!("{mode}: the job must fail, got {:?}", out.decision)
        };
        assert_eq!(err.kind(), "invalid");
        // The chain's documents are checked once, at its end; the blame
        // still falls on the first change the cluster would refuse, and
        // nothing of it or of the plugins after it is kept.
        assert_eq!(out.trail.len(), 1, "{mode}: {:?}", out.trail);
        assert!(matches!(
            out.trail[0].step,
            Step::Failed { ignored: false, .. }
        ));
        assert_eq!(out.job, realistic_job(), "{mode}");
        let msg = out.message().unwrap();
        assert!(
            msg.starts_with("plugin `misbehave` returned from admit") && msg.contains(words),
            "{mode}: {msg}"
        );
        // Under policy ignore the change is dropped and the chain goes on.
        let plugins = load(vec![misbehave(mode, FailurePolicy::Ignore), annotate()]);
        let out = plugins.admit(&ctx(), realistic_job(), &validate);
        assert!(
            out.allowed() && annotated(&out.job),
            "{mode}: {:?}",
            out.decision
        );
        assert_eq!(validate(&out.job.to_string()), Ok(()), "{mode}");
    }
}

#[test]
fn mutations_are_applied_and_recorded_as_patches() {
    let plugins = load(vec![spec("misbehave", json!({"admit": "annotate"}))]);
    let out = plugins.admit(&ctx(), realistic_job(), &validate);
    assert!(out.allowed());
    assert_eq!(out.job["metadata"]["annotations"]["misbehave/seen"], "1234");
    let patch = serde_json::to_value(&out.trail[0].patch).unwrap();
    assert_eq!(
        patch,
        json!([{"op": "add", "path": "/metadata/annotations/misbehave~1seen", "value": "1234"}])
    );
    assert_eq!(out.warnings, ["misbehave: annotated"]);
}

#[test]
fn grants_widen_the_scope() {
    let mut env = misbehave("env", FailurePolicy::Fail);
    assert!(
        !load(vec![env.clone()])
            .admit(&ctx(), realistic_job(), &validate)
            .allowed()
    );
    env.allowed_paths = vec![PathPattern::parse("/spec/template/spec/containers/*/env").unwrap()];
    let out = load(vec![env]).admit(&ctx(), realistic_job(), &validate);
    assert!(out.allowed(), "{:?}", out.message());
    assert_eq!(
        out.job["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"],
        "INJECTED"
    );
}

#[test]
fn plugin_output_and_logs_are_captured_without_failing_the_call() {
    let out = load(vec![misbehave("chatty", FailurePolicy::Fail)]).admit(
        &ctx(),
        realistic_job(),
        &validate,
    );
    assert!(out.allowed(), "{:?}", out.message());
}

fn load_err(spec: PluginSpec) -> LoadError {
    match Plugins::load(
        runtime(),
        &PluginsConfig {
            plugins: vec![spec],
        },
    ) {
        Ok(_) => panic!("the plugin must be refused"),
        Err(mut errs) => errs.0.remove(0),
    }
}

#[test]
fn settings_rejected_by_init_refuse_the_plugin_at_load() {
    let err = load_err(spec("misbehave", json!({"init": "reject"})));
    assert!(
        matches!(&err, LoadError::Init(PluginError::Settings { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "plugin `misbehave` refused its settings: setting `threshold` must be a number, got \"high\""
    );
    let err = load_err(spec(
        "annotate",
        json!({"job": {"labels": {"x": "{{nope}}"}}}),
    ));
    assert!(
        err.to_string()
            .contains("job.labels.x: unknown placeholder {{nope}}"),
        "{err}"
    );
    let err = load_err(spec("misbehave", json!({"init": "trap"})));
    assert!(
        err.to_string().contains("trapped in init") && err.to_string().contains("init exploded"),
        "{err}"
    );
}

#[test]
fn a_sha256_pin_mismatch_refuses_the_plugin() {
    let mut pinned = spec("annotate", json!(null));
    pinned.sha256 = Some("0".repeat(64));
    let err = load_err(pinned.clone());
    assert!(
        err.to_string().contains("but the configuration pins 0000"),
        "{err}"
    );
    // With the right digest it loads.
    let digest = executor_tests::sha256_hex(&components().bytes("annotate"));
    pinned.sha256 = Some(digest);
    load(vec![pinned]);
}

#[test]
fn files_that_are_not_plugins_are_refused_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(
        &core,
        wat::parse_str("(module (func (export \"f\")))").unwrap(),
    )
    .unwrap();
    let err = load_err(PluginSpec::new("core", &core));
    assert!(
        err.to_string()
            .contains("is a core WebAssembly module, not a component"),
        "{err}"
    );

    let text = dir.path().join("text.wasm");
    std::fs::write(&text, "hello").unwrap();
    assert!(
        load_err(PluginSpec::new("text", &text))
            .to_string()
            .contains("is not a WebAssembly file")
    );

    let err = load_err(spec("other-world", json!(null)));
    assert!(
        err.to_string().contains("is not an executor plugin") && err.to_string().contains("greet"),
        "{err}"
    );

    let err = load_err(spec("no-hooks", json!(null)));
    assert_eq!(
        err.to_string(),
        "plugin `no-hooks` implements neither hook: it exports neither `executor:plugin/admission@0.4.0` nor `executor:plugin/log-filter@0.4.0`"
    );

    let err = load_err(PluginSpec::new("missing", dir.path().join("missing.wasm")));
    assert!(
        err.to_string().contains("plugin `missing`: cannot read"),
        "{err}"
    );
}

#[test]
fn compiled_plugins_are_cached_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let options = RuntimeOptions {
        max_instances: 8,
        cache_dir: Some(dir.path().join("cache")),
    };
    let config = PluginsConfig {
        plugins: vec![annotate()],
    };
    let first = Plugins::load(Runtime::new(&options).unwrap(), &config)
        .unwrap()
        .info();
    let second = Plugins::load(Runtime::new(&options).unwrap(), &config)
        .unwrap()
        .info();
    assert!(
        !first[0].cached && second[0].cached,
        "the second load must come from the cache"
    );
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1);
    // A cached plugin behaves exactly like a freshly compiled one.
    let plugins = Plugins::load(Runtime::new(&options).unwrap(), &config).unwrap();
    assert!(annotated(
        &plugins.admit(&ctx(), realistic_job(), &validate).job
    ));
}

#[test]
fn a_plugin_that_fails_to_load_is_skipped_under_policy_ignore() {
    let mut bad = spec("misbehave", json!({"init": "reject"}));
    bad.failure_policy = FailurePolicy::Ignore;
    let plugins = Plugins::load(
        runtime(),
        &PluginsConfig {
            plugins: vec![bad, annotate()],
        },
    )
    .unwrap();
    assert_eq!(plugins.skipped().len(), 1);
    assert_eq!(plugins.info().len(), 1);
    assert!(annotated(
        &plugins.admit(&ctx(), realistic_job(), &validate).job
    ));
}

#[test]
fn hooks_are_detected_from_the_exports() {
    let plugins = load(vec![
        annotate(),
        spec("redact", json!(null)),
        spec("misbehave", json!({})),
    ]);
    let hooks: Vec<Vec<&str>> = plugins.info().into_iter().map(|i| i.hooks).collect();
    assert_eq!(
        hooks,
        [vec!["admission"], vec!["logs"], vec!["admission", "logs"]]
    );
}

fn lines(texts: &[&str]) -> Vec<LogRecord> {
    texts
        .iter()
        .map(|t| LogRecord {
            stream: Stream::Stdout,
            text: (*t).into(),
        })
        .collect()
}

fn texts(records: &[LogRecord]) -> Vec<&str> {
    records.iter().map(|r| r.text.as_str()).collect()
}

/// A 0.1.0 plugin (`misbehave`, built against `wit/0.1.0`), a 0.2.0 one
/// (`second-contract`), a 0.3.0 one (`third-contract`) and 0.4.0 ones (built
/// with the SDK) run side by side in one set, each in its own form.
#[test]
fn plugins_of_every_supported_contract_version_run_in_one_chain() {
    let plugins = load(vec![
        spec("misbehave", json!({"filter": "upper"})),
        spec("second-contract", json!(null)),
        spec("third-contract", json!(null)),
        spec(
            "redact",
            json!({"literals": ["HUNTER2"], "dropLines": ["^TRACE "]}),
        ),
        annotate(),
    ]);
    let versions: Vec<(String, &str)> = plugins
        .info()
        .into_iter()
        .map(|i| (i.name, i.contract))
        .collect();
    assert_eq!(
        versions,
        [
            ("misbehave".to_owned(), "0.1.0"),
            ("second-contract".to_owned(), "0.2.0"),
            ("third-contract".to_owned(), "0.3.0"),
            ("redact".to_owned(), "0.4.0"),
            ("annotate".to_owned(), "0.4.0")
        ]
    );
    let mut session = plugins.log_session(ctx());
    assert_eq!(
        texts(
            &session
                .filter(
                    "step.0",
                    lines(&["login with hunter2", "trace noise", "ok"])
                )
                .unwrap()
        ),
        [
            "LOGIN WITH [REDACTED] (0.2.0) (0.3.0)",
            "OK (0.2.0) (0.3.0)"
        ]
    );
    // A whole document (0.2.0), then patches (0.3.0 and annotate, 0.4.0).
    let out = plugins.admit(&ctx(), realistic_job(), &validate);
    assert_eq!(out.decision, Decision::Allowed);
    assert_eq!(out.job["metadata"]["labels"]["contract"], "0.2.0");
    assert_eq!(out.job["metadata"]["labels"]["contract-3"], "0.3.0");
    assert!(annotated(&out.job));
}

/// A record that holds line breaks (a plugin's test case may give one)
/// reaches plugins as a record per line, as a 0.4.0 plugin reads its batch.
#[test]
fn a_record_of_several_lines_reaches_plugins_as_a_record_per_line() {
    let plugins = load(vec![spec("redact", json!({"literals": ["hunter2"]}))]);
    let mut session = plugins.log_session(ctx());
    let out = session
        .filter("step.0", lines(&["first\nlogin with hunter2", "last"]))
        .unwrap();
    assert_eq!(texts(&out), ["first", "login with [REDACTED]", "last"]);
}

#[test]
fn a_plugin_of_an_unknown_contract_version_is_refused_with_both_versions_named() {
    let dir = tempfile::tempdir().unwrap();
    let future = dir.path().join("future.wasm");
    // Only the export names matter: the version is read before compiling.
    let component = r#"(component
        (instance $i)
        (export "executor:plugin/lifecycle@0.9.0" (instance $i))
    )"#;
    std::fs::write(&future, wat::parse_str(component).unwrap()).unwrap();
    assert_eq!(
        load_err(PluginSpec::new("future", &future)).to_string(),
        "plugin `future` was built against executor:plugin@0.9.0, but this executor loads plugins of executor:plugin versions 0.1.0, 0.2.0, 0.3.0 and 0.4.0 only; rebuild it with a plugin-sdk that targets one of them"
    );
}

#[test]
fn a_log_instance_lives_for_the_job_and_is_replaced_after_a_failure() {
    let plugins = load(vec![spec("misbehave", json!({"filter": "number"}))]);
    let mut session = plugins.log_session(ctx());
    assert_eq!(
        texts(&session.filter("step.0", lines(&["a"])).unwrap()),
        ["1:a"]
    );
    assert_eq!(
        texts(&session.filter("step.0", lines(&["b", "c"])).unwrap()),
        ["2:b", "2:c"]
    );
    // A second job gets its own instance.
    let mut other = plugins.log_session(ctx());
    assert_eq!(
        texts(&other.filter("step.0", lines(&["x"])).unwrap()),
        ["1:x"]
    );

    let mut flaky = spec("misbehave", json!({"filter": "trap-second"}));
    flaky.failure_policy = FailurePolicy::Ignore;
    let plugins = load(vec![flaky]);
    let mut session = plugins.log_session(ctx());
    assert_eq!(
        texts(&session.filter("e", lines(&["one"])).unwrap()),
        ["one"]
    );
    assert_eq!(
        texts(&session.filter("e", lines(&["two"])).unwrap()),
        ["two"],
        "ignored: passed on unfiltered"
    );
    assert!(
        session.ignored_failures()[0]
            .to_string()
            .contains("trapped in filter")
    );
    // A fresh instance: its first call succeeds again.
    assert_eq!(
        texts(&session.filter("e", lines(&["three"])).unwrap()),
        ["three"]
    );
    assert_eq!(session.ignored_failures().len(), 1);
}

#[test]
fn log_filter_failures_under_policy_fail_withhold_the_batch() {
    for (mode, words) in [
        ("loop", "timed out in filter after 50 ms"),
        ("hog", "exceeded its memory limit of 64 MiB in filter"),
        ("trap", "trapped in filter"),
        ("error", "failed in filter: cannot filter"),
    ] {
        let plugins = load(vec![misbehave(mode, FailurePolicy::Fail)]);
        let mut session = plugins.log_session(ctx());
        for _ in 0..2 {
            let err = session.filter("e", lines(&["secret"])).unwrap_err();
            assert!(
                err.to_string().contains("plugin `misbehave`") && err.to_string().contains(words),
                "{mode}: {err}"
            );
        }
    }
}

#[test]
fn monitor_log_plugins_do_not_change_the_log() {
    let mut upper = spec("misbehave", json!({"filter": "drop-all"}));
    upper.mode = Mode::Monitor;
    let plugins = load(vec![upper]);
    let mut session = plugins.log_session(ctx());
    assert_eq!(
        texts(&session.filter("e", lines(&["kept"])).unwrap()),
        ["kept"]
    );
}

/// The longest a plugin's message may be once the host has bounded it: the
/// cap, a note of what was cut, and the host's own words around it.
const BOUNDED: usize = 4096 + 200;

#[test]
fn deny_messages_warnings_and_errors_are_capped_like_log_messages() {
    let out = load(vec![misbehave("flood-deny", FailurePolicy::Fail)]).admit(
        &ctx(),
        realistic_job(),
        &validate,
    );
    let Decision::Denied { message, .. } = &out.decision else {
        panic!("the plugin denies the job, got {:?}", out.decision)
    };
    assert!(
        message.len() <= BOUNDED && message.ends_with("more bytes)"),
        "a deny message of 8 MiB was kept as {} bytes",
        message.len()
    );
    assert!(out.message().unwrap().len() <= BOUNDED);

    let out = load(vec![misbehave("flood-warnings", FailurePolicy::Fail)]).admit(
        &ctx(),
        realistic_job(),
        &validate,
    );
    assert!(out.allowed(), "{:?}", out.decision);
    assert!(
        out.warnings.len() <= 101 && out.trail[0].warnings.len() <= 101,
        "200 000 warnings were kept as {}",
        out.warnings.len()
    );
    assert_eq!(
        out.warnings.last().map(String::as_str),
        Some("misbehave: (199900 more messages dropped)")
    );

    let out = load(vec![misbehave("flood-error", FailurePolicy::Fail)]).admit(
        &ctx(),
        realistic_job(),
        &validate,
    );
    let msg = out.message().unwrap();
    assert!(
        msg.starts_with("plugin `misbehave` failed in admit: eee") && msg.len() <= BOUNDED,
        "an error of 8 MiB was kept as {} bytes",
        msg.len()
    );

    let err = load_err(spec("misbehave", json!({"init": "flood"}))).to_string();
    assert!(
        err.starts_with("plugin `misbehave` refused its settings: eee") && err.len() <= BOUNDED,
        "an init error of 8 MiB was kept as {} bytes",
        err.len()
    );
}

/// Every message the host logs while `f` runs on this thread.
fn logged<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    use std::cell::RefCell;
    use tracing_subscriber::layer::SubscriberExt;

    thread_local! {
        static CAPTURED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
    }
    struct Capture;
    struct Message(Option<String>);
    impl tracing::field::Visit for Message {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = Some(format!("{value:?}"));
            }
        }
    }
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            CAPTURED.with_borrow_mut(|captured| {
                if let Some(captured) = captured {
                    let mut message = Message(None);
                    event.record(&mut message);
                    captured.extend(message.0);
                }
            });
        }
    }
    // One global subscriber for the whole binary, capturing on the threads
    // that ask. A scoped one (`with_default`) raced the other test threads
    // over tracing's per-callsite interest cache and now and then missed an
    // event.
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture))
            .expect("no other global subscriber in this test binary");
    });
    CAPTURED.set(Some(Vec::new()));
    let result = f();
    let messages = CAPTURED.take().unwrap_or_default();
    (result, messages)
}

/// Whether `text` could start a line or drive a terminal when printed.
fn forges(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c))
}

#[test]
fn plugin_text_cannot_forge_log_lines_or_terminal_sequences() {
    let plugins = load(vec![misbehave("forge", FailurePolicy::Fail)]);
    let (out, logs) = logged(|| plugins.admit(&ctx(), realistic_job(), &validate));
    let Decision::Denied { message, .. } = &out.decision else {
        panic!("the plugin denies the job, got {:?}", out.decision)
    };
    assert_eq!(
        message, r"nope\nmisbehave: the job succeeded\r\x1b[2J\x1b]0;pwned\x07\u{202e}",
        "control characters are shown escaped"
    );
    for text in out.warnings.iter().chain(&out.trail[0].warnings) {
        assert!(!forges(text), "warning {text:?}");
    }
    let from_plugin: Vec<&String> = logs.iter().filter(|l| l.contains("pwned")).collect();
    assert_eq!(
        from_plugin.len(),
        2,
        "the log call and the printed line: {logs:?}"
    );
    for line in from_plugin {
        assert!(!forges(line), "logged {line:?}");
    }

    let out = load(vec![misbehave("forge-error", FailurePolicy::Fail)]).admit(
        &ctx(),
        realistic_job(),
        &validate,
    );
    let msg = out.message().unwrap();
    assert!(msg.contains("pwned") && !forges(&msg), "{msg:?}");

    let err = load_err(spec("misbehave", json!({"init": "forge"}))).to_string();
    assert!(err.contains("pwned") && !forges(&err), "{err:?}");
}

#[test]
fn a_component_without_the_contracts_exports_is_refused_without_compiling_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = RuntimeOptions {
        max_instances: 8,
        cache_dir: Some(dir.path().join("cache")),
    };
    for (name, words) in [
        ("other-world", "is not an executor plugin"),
        ("no-hooks", "implements neither hook"),
    ] {
        let refused = Plugins::load(
            Runtime::new(&options).unwrap(),
            &PluginsConfig {
                plugins: vec![spec(name, json!(null))],
            },
        );
        let err = refused
            .err()
            .expect("the plugin must be refused")
            .to_string();
        assert!(err.contains(words), "{name}: {err}");
    }
    // Whatever is compiled is cached: nothing was.
    let compiled = std::fs::read_dir(dir.path().join("cache"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        compiled, 0,
        "the components were compiled before being refused"
    );
}

#[test]
fn a_plugin_file_over_the_size_limit_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let header = b"\0asm\x0d\0\x01\0";
    let big = dir.path().join("big.wasm");
    let mut bytes = header.to_vec();
    bytes.resize(33 << 20, 0);
    std::fs::write(&big, bytes).unwrap();
    let err = load_err(PluginSpec::new("big", &big)).to_string();
    assert!(
        err.contains("is 34603008 bytes; a plugin may be at most 33554432 bytes (32 MiB)"),
        "{err}"
    );
    // A file far larger than memory is refused as quickly: it is never read.
    let huge = dir.path().join("huge.wasm");
    let file = std::fs::File::create(&huge).unwrap();
    std::io::Write::write_all(&mut &file, header).unwrap();
    file.set_len(1 << 40).unwrap();
    let err = load_err(PluginSpec::new("huge", &huge)).to_string();
    assert!(err.contains("is 1099511627776 bytes"), "{err}");
}

/// The test guest that answers with the patch its settings hold.
fn patcher(patch: serde_json::Value) -> PluginSpec {
    spec("patcher", patch)
}

/// A contract 0.3.0 plugin's patch is applied to the Job it was given, and
/// judged as a whole document would be: in scope or refused, and the next
/// plugin sees the patched Job.
#[test]
fn a_patch_is_applied_and_judged_like_a_whole_document() {
    let add = json!([
        {"op": "test", "path": "/metadata/name", "value": realistic_job()["metadata"]["name"]},
        {"op": "add", "path": "/metadata/labels/team", "value": "infra"},
        {"op": "add", "path": "/spec/template/metadata/annotations", "value": {"a": "b"}}
    ]);
    let out =
        load(vec![patcher(add.clone()), annotate()]).admit(&ctx(), realistic_job(), &validate);
    assert!(out.allowed(), "{:?}", out.decision);
    assert_eq!(out.job["metadata"]["labels"]["team"], "infra");
    assert_eq!(
        out.job["spec"]["template"]["metadata"]["annotations"]["a"],
        "b"
    );
    assert!(annotated(&out.job), "the next plugin sees the patched Job");
    assert_eq!(out.trail[0].step, Step::Mutated);
    // The trail keeps what changed; the `test` changed nothing.
    assert_eq!(
        serde_json::to_value(&out.trail[0].patch).unwrap(),
        json!(add.as_array().unwrap()[1..])
    );

    // A patch of `test` operations only changes nothing.
    let name = realistic_job()["metadata"]["name"].clone();
    let out = load(vec![patcher(
        json!([{"op": "test", "path": "/metadata/name", "value": name}]),
    )])
    .admit(&ctx(), realistic_job(), &validate);
    assert_eq!(out.trail[0].step, Step::Allowed);
    assert_eq!(out.job, realistic_job());
}

#[test]
fn a_patch_that_is_unusable_or_out_of_scope_fails_the_plugin() {
    // Each copy doubles the labels: unbounded, 40 of them would need terabytes.
    let mut bomb = vec![json!({"op": "copy", "from": "/spec", "path": "/metadata/labels/x"})];
    bomb.extend((0..40).map(|i| {
        json!({"op": "copy", "from": "/metadata/labels", "path": format!("/metadata/labels/c{i}")})
    }));
    let cases = [
        (
            json!({"op": "add"}),
            "a patch that cannot be used: it is not an RFC 6902 JSON Patch",
        ),
        (
            json!([{"op": "add", "path": "/metadata/labels/ok", "value": "1"},
                   {"op": "add", "path": "/metadata/nope/x", "value": 1}]),
            "operation 1 at \"/metadata/nope/x\" does not apply",
        ),
        (
            json!([{"op": "test", "path": "/metadata/name", "value": "another"}]),
            "operation 0 at \"/metadata/name\" does not apply",
        ),
        // Within the grants, so applied to the Job itself: all or nothing.
        (
            json!([{"op": "add", "path": "/metadata/labels/ok", "value": "1"},
                   {"op": "remove", "path": "/metadata/labels/absent"}]),
            "operation 1 at \"/metadata/labels/absent\" does not apply",
        ),
        (json!(bomb), "(copy) makes it copy more than 1048576 bytes"),
        (
            json!((0..1001).map(|i| json!({"op": "add", "path": format!("/metadata/labels/k{i}"), "value": ""})).collect::<Vec<_>>()),
            "it has 1001 operations; at most 1000 are taken",
        ),
        // serde quotes an unknown variant whole: the message is bounded and escaped.
        (
            json!([{"op": format!("x\n{}", "y".repeat(10_000)), "path": "/a"}]),
            "it is not an RFC 6902 JSON Patch: unknown variant `x\\n",
        ),
        (
            json!([{"op": "replace", "path": "", "value": [1]}]),
            "the patched Job is not a JSON object: it is [1]",
        ),
        (
            json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "evil:1"}]),
            "outside its allowed paths in admit: replace /spec/template/spec/containers/0/image",
        ),
        (
            json!([{"op": "add",
                    "path": "/spec/template/metadata/annotations",
                    "value": {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}}]),
            "outside its allowed paths in admit: add /spec/template/metadata/annotations/container.apparmor",
        ),
    ];
    for (patch, words) in cases {
        let out = load(vec![patcher(patch.clone()), annotate()]).admit(
            &ctx(),
            realistic_job(),
            &validate,
        );
        let msg = out.message().unwrap_or_default();
        assert!(
            matches!(out.decision, Decision::Failed(_))
                && msg.contains("plugin `patcher`")
                && msg.contains(words),
            "{patch}: {msg}"
        );
        assert_eq!(
            out.job,
            realistic_job(),
            "{patch}: nothing of the patch is kept"
        );
    }
}

/// With the executor's own check, a chain of patches is judged part by
/// part; a part the API server would refuse still fails the plugin that
/// patched it, with the whole Job's words, and keeps what came before.
#[test]
fn a_refused_part_fails_the_plugin_that_patched_it() {
    let good = patcher(json!([{"op": "add", "path": "/metadata/labels/team", "value": "infra"}]));
    let mut bad =
        patcher(json!([{"op": "add", "path": "/metadata/labels/colour", "value": "dark red"}]));
    bad.name = "bad".into();
    let out = load(vec![good.clone()]).admit(&ctx(), realistic_job(), &ApiServer);
    assert!(out.allowed(), "{:?}", out.decision);
    let out = load(vec![good, bad, annotate()]).admit(&ctx(), realistic_job(), &ApiServer);
    let msg = out.message().unwrap_or_default();
    assert!(
        msg.starts_with("plugin `bad` returned from admit a Job the API server would refuse: metadata.labels: Invalid value: \"dark red\""),
        "{msg}"
    );
    assert_eq!(
        out.job["metadata"]["labels"]["team"], "infra",
        "the good change stays"
    );
    assert!(out.job["metadata"]["labels"].get("colour").is_none());
    assert_eq!(out.trail.len(), 2);
}

/// A grant that ends at a list element lets a plugin change that element,
/// not add one beside it: the paths alone cannot say that, so the documents
/// are compared.
#[test]
fn adding_beside_a_granted_element_is_refused() {
    let mut spec = patcher(
        json!([{"op": "add", "path": "/spec/template/spec/containers/0",
        "value": {"name": "x", "image": "evil:1", "securityContext": {"privileged": true}}}]),
    );
    spec.allowed_paths = vec![PathPattern::parse("/spec/template/spec/containers/0").unwrap()];
    let out = load(vec![spec]).admit(&ctx(), realistic_job(), &ApiServer);
    let msg = out.message().unwrap_or_default();
    assert!(
        msg.contains("outside its allowed paths in admit: add /spec/template/spec/containers/1"),
        "{msg}"
    );
    assert_eq!(out.job, realistic_job());
}

/// A whole document with a key given twice means its last value to the
/// cluster; the plugins after it must see that one, not the first.
#[test]
fn a_document_with_a_key_twice_shows_later_plugins_what_the_cluster_gets() {
    let job = realistic_job();
    let real_spec = job["spec"].to_string();
    let mut body = job.as_object().unwrap().clone();
    body.remove("spec");
    let rest = serde_json::Value::Object(body).to_string();
    let decoy = r#"{"template": {"spec": {"containers": [{"name": "main", "image": "allowed.example/x"}]}}}"#;
    let document = format!(
        r#"{{"spec": {decoy}, {}, "spec": {real_spec}}}"#,
        &rest[1..rest.len() - 1]
    );
    let policy = spec(
        "scheduling-policy",
        json!({"allowedRegistries": ["allowed.example"]}),
    );
    let out = load(vec![patcher(json!({"document": document})), policy]).admit(
        &ctx(),
        realistic_job(),
        &ApiServer,
    );
    let Decision::Denied { plugin, .. } = &out.decision else {
        panic!("the policy must see the real images: {:?}", out.decision);
    };
    assert_eq!(plugin, "scheduling-policy");
}
