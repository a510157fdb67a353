//! Host-side bindings of every supported version of the WIT contract (`wit/plugin.wit` and the versions before it in `wit/`), generated here and nowhere else, and the list of those versions.
#![allow(missing_docs)]

use std::fmt;

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

/// The second version, whose `admit` answers with a whole document. Its
/// `host` interface is the current one, as for 0.1.0.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/0.2.0",
        world: "plugin",
        with: {
            "executor:plugin/host": super::executor::plugin::host,
        },
    });
}

/// The third version, whose `filter` receives a record per string. Its
/// `host` interface is the current one, as for 0.1.0.
pub mod v0_3 {
    wasmtime::component::bindgen!({
        path: "../wit/0.3.0",
        world: "plugin",
        with: {
            "executor:plugin/host": super::executor::plugin::host,
        },
    });
}

/// A version of `package executor:plugin` that the host loads plugins of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// The first version: `filter` returns every record to keep.
    V0_1,
    /// `filter` returns edits.
    V0_2,
    /// `admit` may answer with a patch.
    V0_3,
    /// `filter` receives its batch as one text.
    V0_4,
}

impl Contract {
    /// Every version the host loads, oldest first.
    pub const SUPPORTED: [Contract; 4] = [
        Contract::V0_1,
        Contract::V0_2,
        Contract::V0_3,
        Contract::V0_4,
    ];

    /// The version `wit/plugin.wit` defines, which the SDK builds against.
    pub const CURRENT: Contract = Contract::V0_4;

    /// The package version, e.g. `0.4.0`.
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
            Contract::V0_3 => "0.3.0",
            Contract::V0_4 => "0.4.0",
        }
    }

    /// The supported version `version` names, if any.
    pub fn parse(version: &str) -> Option<Contract> {
        Contract::SUPPORTED
            .into_iter()
            .find(|c| c.version() == version)
    }

    /// The full name of one of its interfaces, e.g. `executor:plugin/lifecycle@0.4.0`.
    pub fn interface(self, name: &str) -> String {
        format!("executor:plugin/{name}@{}", self.version())
    }

    /// The supported versions as text, e.g. `0.1.0, 0.2.0 and 0.3.0`, for messages.
    pub fn supported() -> String {
        let all: Vec<&str> = Contract::SUPPORTED.iter().map(|c| c.version()).collect();
        match all.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.version())
    }
}
