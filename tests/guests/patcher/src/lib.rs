//! Test-only admission component, written against the raw WIT contract, that answers every Job with `allow-patched` and the text of its settings: whatever patch a test needs the host to judge.
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
        Ok(Response {
            decision: Decision::AllowPatched(PATCH.with(|p| p.borrow().clone())),
            warnings: vec![],
        })
    }
}

export!(Component);
