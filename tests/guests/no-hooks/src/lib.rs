//! Test-only component that speaks the contract (exports `lifecycle`) but implements neither hook: the executor must say so.
#![cfg(target_arch = "wasm32")]
#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({
    inline: "package test:no-hooks; world lifecycle-only { import executor:plugin/host@0.4.0; export executor:plugin/lifecycle@0.4.0; }",
    path: "../../../wit",
    world: "test:no-hooks/lifecycle-only",
    generate_all,
});

struct Component;

impl exports::executor::plugin::lifecycle::Guest for Component {
    fn init(_settings: String) -> Result<(), String> {
        Ok(())
    }
}

export!(Component);
