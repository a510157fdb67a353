//! Embeds the WIT contract into the `export_plugin!` macro.
//!
//! The bindings must be generated inside the plugin's own crate (one world per
//! plugin: a world's type section that is linked in makes its exports
//! mandatory), and `wit_bindgen::generate!` only takes a literal, so the
//! contract is pasted into a macro as a string literal here.

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let wit = manifest.join("../wit/plugin.wit");
    println!("cargo::rerun-if-changed={}", wit.display());
    let text = match fs::read_to_string(&wit) {
        Ok(text) => text,
        Err(err) => {
            println!(
                "cargo::error=cannot read the WIT contract at {}: {err}",
                wit.display()
            );
            return;
        }
    };
    let generated = format!(
        r#"/// Generates the guest bindings of one world of the contract (internal to `export_plugin!`).
#[doc(hidden)]
#[macro_export]
macro_rules! __generate_world {{
    ($world:tt) => {{
        ::plugin_sdk::__private::wit_bindgen::generate!({{
            inline: {text:?},
            world: $world,
            runtime_path: "::plugin_sdk::__private::wit_bindgen::rt",
        }});
    }};
}}
"#
    );
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("generate_world.rs");
    if let Err(err) = fs::write(&out, generated) {
        println!("cargo::error=cannot write {}: {err}", out.display());
    }
}
