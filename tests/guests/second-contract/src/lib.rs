//! Test-only plugin built against contract 0.2.0 (`wit/0.2.0`), as a plugin built before 0.3.0 was: it labels the Job with a whole document and tags every log line with an edit.
#![cfg(target_arch = "wasm32")]
#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({ path: "../../../wit/0.2.0", world: "plugin" });

use executor::plugin::host::{
    AdmissionResponse, Decision, JobContext, LogContext, LogEdit, LogRecord,
};

struct Component;

impl exports::executor::plugin::lifecycle::Guest for Component {
    fn init(_settings: String) -> Result<(), String> {
        Ok(())
    }
}

impl exports::executor::plugin::admission::Guest for Component {
    fn admit(_ctx: JobContext, job: String) -> Result<AdmissionResponse, String> {
        let mut job: serde_json::Value = serde_json::from_str(&job).map_err(|e| e.to_string())?;
        job["metadata"]["labels"]["contract"] = "0.2.0".into();
        Ok(AdmissionResponse {
            decision: Decision::AllowMutated(job.to_string()),
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
                let text = format!("{} (0.2.0)", r.text);
                LogEdit::Replace((i as u32, LogRecord { text, ..r }))
            })
            .collect())
    }
}

export!(Component);
