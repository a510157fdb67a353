//! Host-side bindings of every supported version of the WIT contract (`wit/plugin.wit`, `wit/0.1.0/`), generated here and nowhere else.
#![allow(missing_docs)]

// The current version: its types are the ones the host works with.
wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    additional_derives: [PartialEq, Eq],
});

/// The first version, whose `filter` returns every record to keep. Its
/// `host` interface is the same as the current one's, so its types are
/// taken from there and a 0.1.0 plugin's records are the host's own.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "plugin",
        with: {
            "executor:plugin/host": super::executor::plugin::host,
        },
    });
}
