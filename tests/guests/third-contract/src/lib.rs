//! Test-only plugin built against contract 0.3.0 (`wit/0.3.0`), as a plugin built before 0.4.0 was: it labels the Job with a patch and tags every log line, which it receives a string each.
#![cfg(target_arch = "wasm32")]
#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({ path: "../../../wit/0.3.0", world: "plugin" });

use executor::plugin::host::{JobContext, LogContext, LogEdit, LogRecord};
use exports::executor::plugin::admission::{Decision, Response};

struct Component;

impl exports::executor::plugin::lifecycle::Guest for Component {
    fn init(_settings: String) -> Result<(), String> {
        Ok(())
    }
}

impl exports::executor::plugin::admission::Guest for Component {
    fn admit(_ctx: JobContext, _job: String) -> Result<Response, String> {
        let patch = r#"[{"op": "add", "path": "/metadata/labels/contract-3", "value": "0.3.0"}]"#;
        Ok(Response {
            decision: Decision::AllowPatched(patch.into()),
            warnings: vec![],
        })
    }
}

impl exports::executor::plugin::log_filter::Guest for Component {
    fn filter(_ctx: LogContext, records: Vec<LogRecord>) -> Result<Vec<LogEdit>, String> {
        Ok(records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let text = format!("{} (0.3.0)", r.text);
                LogEdit::Replace((i as u32, LogRecord { text, ..r }))
            })
            .collect())
    }
}

export!(Component);
