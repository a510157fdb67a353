//! Test-only admission component, written against the raw WIT contract, that answers every Job with `allow-patched` and the text of its settings (whatever patch a test needs the host to judge), or, given `{"document": text}`, with `allow-mutated` and that text.
#![cfg(target_arch = "wasm32")]
#![allow(missing_docs, unsafe_code)]

use std::cell::RefCell;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "admission-plugin",
});

use executor::plugin::host::JobContext;
use exports::executor::plugin::admission::{Decision, Guest, Response};

thread_local! {
    static PATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

struct Component;

impl exports::executor::plugin::lifecycle::Guest for Component {
    fn init(settings: String) -> Result<(), String> {
        PATCH.with(|p| *p.borrow_mut() = settings);
        Ok(())
    }
}

impl Guest for Component {
    fn admit(_ctx: JobContext, _job: String) -> Result<Response, String> {
        let settings = PATCH.with(|p| p.borrow().clone());
        let document = serde_json::from_str::<serde_json::Value>(&settings)
            .ok()
            .and_then(|v| v.get("document")?.as_str().map(str::to_owned));
        let decision = match document {
            Some(text) => Decision::AllowMutated(text),
            None => Decision::AllowPatched(settings),
        };
        Ok(Response {
            decision,
            warnings: vec![],
        })
    }
}

export!(Component);
