//! Host-side bindings of the WIT contract (`wit/plugin.wit`), generated here and nowhere else.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    additional_derives: [PartialEq, Eq],
});

/// The contract's package version; components built against another one are refused.
pub const CONTRACT_VERSION: &str = "0.1.0";
/// The interface names a component must (lifecycle) or may (hooks) export.
pub const LIFECYCLE: &str = "executor:plugin/lifecycle@0.1.0";
pub const ADMISSION: &str = "executor:plugin/admission@0.1.0";
pub const LOG_FILTER: &str = "executor:plugin/log-filter@0.1.0";
