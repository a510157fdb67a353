//! `executor plugin new`: writes a plugin project (Rust with the SDK, Python with componentize-py, JavaScript with jco) that builds and passes its own tests as written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

/// The contract, copied into Python and JavaScript projects (their tooling
/// reads the WIT file; the Rust SDK carries its own).
const WIT: &str = include_str!("../../../../wit/plugin.wit");
/// Where the SDK is when this binary was built from a checkout.
const SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk");
/// Versions known to work with the host at its default limits:
/// componentize-js 0.22 leaked memory on every call. JavaScript is built
/// through componentize-js's own API: jco 1.35's `componentize` command
/// failed here before building anything ("failed to get path metadata").
const COMPONENTIZE_PY: &str = "0.25.1";
const COMPONENTIZE_JS: &str = "0.23.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(in crate::cli) enum Hook {
    /// The admission hook only.
    Admission,
    /// The log hook only.
    Logs,
    /// Both hooks.
    Both,
}

impl Hook {
    fn admission(self) -> bool {
        self != Hook::Logs
    }

    fn logs(self) -> bool {
        self != Hook::Admission
    }

    /// The WIT world a component with these hooks targets.
    fn world(self) -> &'static str {
        match self {
            Hook::Admission => "admission-plugin",
            Hook::Logs => "log-plugin",
            Hook::Both => "plugin",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(in crate::cli) enum Lang {
    /// Rust with the plugin SDK.
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with jco (componentize-js).
    Js,
}

#[derive(Debug, Args)]
pub(in crate::cli) struct NewArgs {
    /// The plugin's name: lowercase letters, digits and '-' (as in a plugin configuration).
    name: String,
    /// The hooks it implements.
    #[arg(long, value_enum)]
    hook: Hook,
    /// The language.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// The directory to create (default: the name, in the current directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The plugin SDK's directory, for a Rust project (default: the checkout this executor was built from).
    #[arg(long)]
    sdk: Option<PathBuf>,
}

pub(super) fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    if let Err(why) = k8s_rules::names::dns1123_label(&args.name) {
        bail!(
            "{:?} cannot name a plugin: {why}; expected lowercase letters, digits and '-', e.g. team-label",
            args.name
        );
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() {
        bail!(
            "{} exists already; give a new directory with --dir",
            dir.display()
        );
    }
    let files = match args.lang {
        Lang::Rust => rust(&args)?,
        Lang::Python => python(&args),
        Lang::Js => js(&args),
    };
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    #[cfg(unix)]
    for (path, _) in files.iter().filter(|(p, _)| p.ends_with(".sh")) {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(path);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", path.display()))?;
    }
    println!(
        "wrote {} ({:?}, {:?}):",
        dir.display(),
        args.lang,
        args.hook
    );
    for (path, _) in &files {
        println!("  {path}");
    }
    println!("\nnext: cd {} and see README.md", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// The crate or module form of a plugin name: `team-label` → `team_label`.
fn snake(name: &str) -> String {
    name.replace('-', "_")
}

/// `team-label` → `TeamLabel`.
fn camel(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The test file `executor plugin test` runs, with cases for the hooks;
/// `refused` is what the language's error for bad settings says.
fn test_file(name: &str, wasm: &str, hook: Hook, refused: &str) -> String {
    let mut cases = format!(
        "# executor plugin test {name}.test.yaml (after building {wasm})\n\
         plugin: {wasm}\n\
         settings: {{deniedRegistries: [docker.io/evil], words: [hunter2]}}\n\
         context: {{queue: batches, jobId: \"1\", repository: github.com/acme/api}}\n\
         cases:\n"
    );
    if hook.admission() {
        cases.push_str(&format!(
            "  - name: annotates the Job with its queue\n\
            \x20   job: {{apiVersion: batch/v1, kind: Job, metadata: {{name: j}}, spec: {{template: {{spec: {{restartPolicy: Never, containers: [{{name: main, image: alpine:3}}]}}}}}}}}\n\
            \x20   expect:\n\
            \x20     decision: allowed\n\
            \x20     job: {{metadata: {{annotations: {{{name}.example.com/queue: batches}}}}}}\n\
            \x20 - name: denies an image from a denied registry\n\
            \x20   job: {{apiVersion: batch/v1, kind: Job, metadata: {{name: j}}, spec: {{template: {{spec: {{restartPolicy: Never, containers: [{{name: main, image: docker.io/evil/miner:1}}]}}}}}}}}\n\
            \x20   expect:\n\
            \x20     decision: denied\n\
            \x20     message: \"docker.io/evil/miner:1 comes from a denied registry\"\n"
        ));
    }
    if hook.logs() {
        cases.push_str(
            "  - name: masks the configured words\n\
            \x20   log: [\"login with hunter2\", \"done\"]\n\
            \x20   expect:\n\
            \x20     output: [\"login with ***\", \"done\"]\n",
        );
    }
    cases.push_str(
        "  - name: settings of the wrong shape are refused\n\
        \x20   settings: {deniedRegistries: not-a-list}\n",
    );
    cases.push_str(if hook.admission() {
        "    job: {apiVersion: batch/v1, kind: Job, metadata: {name: j}, spec: {template: {spec: {restartPolicy: Never, containers: [{name: main, image: alpine:3}]}}}}\n"
    } else {
        "    log: [x]\n"
    });
    cases.push_str(&format!("    expect:\n      error: \"{refused}\"\n"));
    cases
}

fn rust(args: &NewArgs) -> anyhow::Result<Vec<(String, String)>> {
    let name = &args.name;
    let krate = snake(name);
    let ty = camel(name);
    let hook = args.hook;
    let sdk = match &args.sdk {
        Some(path) => path.clone(),
        None => Path::new(SDK).canonicalize().with_context(|| {
            format!("this executor was not built from a checkout with the SDK at {SDK}; give --sdk <path to plugin-sdk>")
        })?,
    };
    let sdk = sdk
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
# cdylib: the component; rlib: the native tests.
crate-type = ["cdylib", "rlib"]

[dependencies]
plugin-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}

# The executor workspace's release profile: no debug info in the component, and
# one codegen unit where serde's and k8s-openapi's generic code is inlined.
[profile.release]
debug = false
strip = "debuginfo"
[profile.release.package.{name}]
codegen-units = 1
[profile.release.package.k8s-openapi]
codegen-units = 1
[profile.release.package.serde_json]
codegen-units = 1

# A project of its own, wherever it is created.
[workspace]
"#
    );
    let mut uses = vec!["Error", "Plugin"];
    let mut hooks = Vec::new();
    if hook.admission() {
        uses.extend([
            "Admission",
            "Job",
            "JobContext",
            "Verdict",
            "annotations_mut",
            "containers",
            "quantity",
        ]);
        hooks.push("admission");
    }
    if hook.logs() {
        uses.extend(["LogContext", "LogFilter", "LogRecord"]);
        hooks.push("logs");
    }
    uses.sort_unstable();
    let (memory_setting, memory_field, memory_init) = if hook.admission() {
        (
            "\n    /// The most memory a container may request (`8Gi`, `512Mi`); none when absent.\n    \
             /// Every container counts, the executor's own too: they request\n    \
             /// EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY (12Gi by default) like the steps.\n    \
             #[serde(default)]\n    max_memory: Option<String>,",
            "\n    max_memory: Option<quantity::ParsedQuantity>,",
            "\n        let max_memory = settings\n            \
             .max_memory\n            \
             .map(|m| quantity::parse(&m).map_err(|e| Error::new(format!(\"maxMemory: {e}\"))))\n            \
             .transpose()?;",
        )
    } else {
        ("", "", "")
    };
    let mut lib = format!(
        r#"//! The `{name}` plugin{what}.

use plugin_sdk::{{{uses}}};
use serde::Deserialize;

/// Settings, from the `settings` of the plugin's entry in the executor's configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {{
    /// Registries (or registry paths) whose images are denied.
    #[serde(default)]
    denied_registries: Vec<String>,
    /// Words masked in the job's log.
    #[serde(default)]
    words: Vec<String>,{memory_setting}
}}

pub struct {ty} {{
    denied_registries: Vec<String>,
    words: Vec<String>,{memory_field}
}}

impl Plugin for {ty} {{
    type Settings = Settings;

    // Once per instance: check the settings here, so that bad ones stop the
    // executor at start instead of failing jobs. An `Err` is the contract's
    // `error`: the settings are refused, with this text.
    fn init(settings: Settings) -> Result<Self, Error> {{
        if let Some(empty) = settings.words.iter().position(String::is_empty) {{
            return Err(Error::new(format!("words[{{empty}}]: empty; expected a word to mask")));
        }}{memory_init}
        Ok({ty} {{
            denied_registries: settings.denied_registries,
            words: settings.words,{memory_use}
        }})
    }}
}}
"#,
        what = match hook {
            Hook::Admission => ": denies images from denied registries, annotates the rest",
            Hook::Logs => ": masks configured words in the job's log",
            Hook::Both =>
                ": denies images from denied registries, annotates the rest, and masks configured words in the log",
        },
        uses = uses.join(", "),
        memory_use = if hook.admission() {
            "\n            max_memory,"
        } else {
            ""
        },
    );
    if hook.admission() {
        lib.push_str(&format!(
            r#"
impl Admission for {ty} {{
    fn admit(&self, ctx: &JobContext, job: &mut Job) -> Result<Verdict, Error> {{
        // Every container: the job's steps (init containers `step-<i>`) and
        // the executor's own (`setup-workspace`, `main`).
        for c in containers::all(job) {{
            let image = c.container.image.as_deref().unwrap_or_default();
            if self.denied_registries.iter().any(|r| image.starts_with(&format!("{{r}}/"))) {{
                return Ok(Verdict::deny(format!("{{image}} comes from a denied registry")));
            }}
            if let Some(max) = &self.max_memory
                && let Some(asked) = quantity::request(c.container, "memory")?
                && asked > *max
            {{
                let whose = if c.role.is_step() {{ "step" }} else {{ "the executor's container" }};
                return Ok(Verdict::deny(format!(
                    "{{whose}} {{}} requests {{asked}} of memory; at most {{max}} is allowed",
                    c.container.name
                )));
            }}
        }}
        annotations_mut(job).insert("{name}.example.com/queue".into(), ctx.queue.clone());
        Ok(Verdict::allow())
    }}
}}
"#
        ));
    }
    if hook.logs() {
        lib.push_str(&format!(
            r#"
impl LogFilter for {ty} {{
    fn filter(&mut self, _ctx: &LogContext, records: Vec<LogRecord>) -> Result<Vec<LogRecord>, Error> {{
        Ok(records
            .into_iter()
            .map(|mut r| {{
                for word in &self.words {{
                    r.text = r.text.replace(word.as_str(), "***");
                }}
                r
            }})
            .collect())
    }}
}}
"#
        ));
    }
    lib.push_str(&format!(
        r#"
plugin_sdk::export_plugin!({ty}: {hooks});

#[cfg(test)]
mod tests {{
    use super::*;
    use plugin_sdk::testing::{{Harness{admission_helpers}}};
    use plugin_sdk::serde_json::json;

    fn harness() -> Harness<{ty}> {{
        Harness::new(json!({{"deniedRegistries": ["docker.io/evil"], "words": ["hunter2"]}})).unwrap()
    }}

    #[test]
    fn settings_of_the_wrong_shape_are_refused() {{
        assert!(Harness::<{ty}>::new(json!({{"words": [""]}})).is_err());
        assert!(Harness::<{ty}>::new(json!({{"deniedRegistries": "x"}})).is_err());
    }}
"#,
        hooks = hooks.join(", "),
        admission_helpers = if hook.admission() { ", context, job, jobs" } else { "" },
    ));
    if hook.admission() {
        lib.push_str(&format!(
            r#"
    #[test]
    fn annotates_the_job_and_denies_denied_registries() {{
        let out = harness().admit(&context(), &job()).unwrap();
        assert!(out.allowed && out.mutated);
        assert_eq!(out.job.metadata.annotations.unwrap()["{name}.example.com/queue"], context().queue);

        // A sample Job as the executor renders it, with three steps.
        let h = Harness::<{ty}>::new(json!({{"deniedRegistries": ["ghcr.io/acme"]}})).unwrap();
        let out = h.admit(&context(), &jobs::steps()).unwrap();
        assert!(!out.allowed);
        assert_eq!(out.message.as_deref(), Some("ghcr.io/acme/tools:1.4 comes from a denied registry"));
    }}

    #[test]
    fn a_memory_cap_counts_the_executors_own_containers() {{
        // Real Jobs ask 12Gi for every container by default, `setup-workspace` first.
        let small = Harness::<{ty}>::new(json!({{"maxMemory": "8Gi"}})).unwrap();
        let out = small.admit(&context(), &jobs::basic()).unwrap();
        assert_eq!(
            out.message.as_deref(),
            Some("the executor's container setup-workspace requests 12Gi of memory; at most 8Gi is allowed")
        );
        let roomy = Harness::<{ty}>::new(json!({{"maxMemory": "16Gi"}})).unwrap();
        assert!(roomy.admit(&context(), &jobs::basic()).unwrap().allowed);
        let err = Harness::<{ty}>::new(json!({{"maxMemory": "8GB"}})).err().unwrap();
        assert!(err.message().contains("maxMemory: \"8GB\" is not a Kubernetes quantity"), "{{err}}");
    }}
"#
        ));
    }
    if hook.logs() {
        lib.push_str(
            r#"
    #[test]
    fn masks_the_configured_words() {
        let kept = harness().filter_lines(&["login with hunter2", "done"]).unwrap();
        assert_eq!(kept, ["login with ***", "done"]);
    }
"#,
        );
    }
    lib.push_str("}\n");
    let wasm = format!("target/wasm32-wasip2/release/{krate}.wasm");
    let readme = format!(
        "# {name}\n\nAn executor plugin ({hooks}), in Rust with the plugin SDK.\n\n\
         ```sh\n\
         rustup target add wasm32-wasip2             # once\n\
         cargo test                                  # native unit tests, no wasm involved\n\
         cargo build --release --target wasm32-wasip2\n\
         executor plugin test {name}.test.yaml        # the cases, on the component\n\
         executor plugin check {wasm}\n\
         ```\n\n\
         Returning `Err(Error::new(..))` from `init` or a hook is the contract's `error`: a failure,\n\
         handled by the operator's `failurePolicy`. Deny a Job with `Verdict::deny(..)` instead.\n",
        hooks = hooks.join(" and "),
    );
    Ok(vec![
        ("Cargo.toml".into(), cargo),
        ("src/lib.rs".into(), lib),
        (
            format!("{name}.test.yaml"),
            // serde's words for a string where a list belongs.
            test_file(name, &wasm, hook, "expected a sequence"),
        ),
        ("README.md".into(), readme),
        (".gitignore".into(), "/target\n".into()),
    ])
}

fn python(args: &NewArgs) -> Vec<(String, String)> {
    let name = &args.name;
    let hook = args.hook;
    let world = hook.world();
    let mut policy = String::from(
        r#""""The plugin's logic, apart from the component bindings, so that plain `python3 -m unittest` tests it."""


class SettingsError(ValueError):
    """Settings the plugin refuses; app.py turns it into the contract's `error`."""


def parse_settings(settings):
    """Checks the settings (JSON, None when none were given) and returns them."""
    settings = settings or {}
    if not isinstance(settings, dict):
        raise SettingsError("settings: expected a map")
    unknown = set(settings) - {"deniedRegistries", "words"}
    if unknown:
        raise SettingsError(f"settings: unknown key(s) {sorted(unknown)}; expected deniedRegistries, words")
    for key in ("deniedRegistries", "words"):
        value = settings.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise SettingsError(f"{key}: expected a list of non-empty strings")
    return settings
"#,
    );
    if hook.admission() {
        policy.push_str(&format!(
            r#"

def admit(settings, queue, step_images, job):
    """Returns (the changes as RFC 6902 operations, None) to allow the Job, or (None, why) to deny it."""
    for image in step_images:
        if any(image.startswith(r + "/") for r in settings.get("deniedRegistries", [])):
            return None, f"{{image}} comes from a denied registry"
    key = "{name}.example.com/queue"
    if "annotations" not in job.get("metadata", {{}}):
        return [{{"op": "add", "path": "/metadata/annotations", "value": {{key: queue}}}}], None
    # In a JSON pointer, "/" in a key is written "~1" (and "~" as "~0").
    path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
    return [{{"op": "add", "path": path, "value": queue}}], None
"#
        ));
    }
    if hook.logs() {
        policy.push_str(
            r#"

def mask(settings, text):
    """The line with every configured word masked."""
    for word in settings.get("words", []):
        text = text.replace(word, "***")
    return text
"#,
        );
    }
    let mut app = String::from(
        r#""""The component's exports: the bindings componentize-py generates, around policy.py.

Returning the contract's `error` is raising `componentize_py_types.Err(text)`; any other
exception traps the call, and the executor quotes the exception's last line.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host

import policy

# One instance per admission call (and one per job's log): settings live here.
SETTINGS = {}


class Lifecycle(exports.Lifecycle):
    def init(self, settings: str) -> None:
        global SETTINGS
        try:
            SETTINGS = policy.parse_settings(json.loads(settings))
        except policy.SettingsError as e:
            raise Err(str(e))
"#,
    );
    if hook.admission() {
        app.push_str(
            r#"

from wit_world.exports import admission


class Admission(exports.Admission):
    # Answers with a patch: only what changed crosses back, and the executor
    # applies it. `admission.Decision_AllowMutated(json.dumps(job))` answers
    # with the whole changed Job instead.
    def admit(self, ctx: host.JobContext, job: str) -> admission.Response:
        changes, why = policy.admit(SETTINGS, ctx.queue, ctx.step_images, json.loads(job))
        if why is not None:
            return admission.Response(decision=admission.Decision_Deny(why), warnings=[])
        return admission.Response(decision=admission.Decision_AllowPatched(json.dumps(changes)), warnings=[])
"#,
        );
    }
    if hook.logs() {
        app.push_str(
            r#"

from wit_world.exports import log_filter


class LogFilter(exports.LogFilter):
    # The batch is one text, a line per record (no record holds a "\n"), and
    # a stream per record. Returns edits, not records: every record no edit
    # names is kept, so lines that do not change are never sent back.
    def filter(self, ctx: host.LogContext, batch: log_filter.LogBatch) -> list[host.LogEdit]:
        lines = batch.text.split("\n") if batch.streams else []
        edits = []
        for i, (line, stream) in enumerate(zip(lines, batch.streams)):
            text = policy.mask(SETTINGS, line)
            if text != line:
                edits.append(host.LogEdit_Replace((i, host.LogRecord(stream=stream, text=text))))
        return edits
"#,
        );
    }
    let mut tests = String::from(
        r#"import unittest

import policy


class PolicyTest(unittest.TestCase):
    def test_settings_of_the_wrong_shape_are_refused(self):
        with self.assertRaises(policy.SettingsError):
            policy.parse_settings({"deniedRegistries": "x"})
        with self.assertRaises(policy.SettingsError):
            policy.parse_settings({"wrods": []})
"#,
    );
    if hook.admission() {
        tests.push_str(&format!(
            r#"
    def test_annotates_the_job_and_denies_denied_registries(self):
        settings = policy.parse_settings({{"deniedRegistries": ["docker.io/evil"]}})
        changes, why = policy.admit(settings, "batches", ["alpine:3"], {{"metadata": {{}}}})
        self.assertIsNone(why)
        self.assertEqual(changes, [{{"op": "add", "path": "/metadata/annotations",
                                    "value": {{"{name}.example.com/queue": "batches"}}}}])
        changes, _ = policy.admit(settings, "batches", ["alpine:3"], {{"metadata": {{"annotations": {{}}}}}})
        self.assertEqual(changes[0]["path"], "/metadata/annotations/{name}.example.com~1queue")
        changes, why = policy.admit(settings, "batches", ["docker.io/evil/miner:1"], {{}})
        self.assertEqual(why, "docker.io/evil/miner:1 comes from a denied registry")
"#
        ));
    }
    if hook.logs() {
        tests.push_str(
            r#"
    def test_masks_the_configured_words(self):
        settings = policy.parse_settings({"words": ["hunter2"]})
        self.assertEqual(policy.mask(settings, "login with hunter2"), "login with ***")
"#,
        );
    }
    tests.push_str("\n\nif __name__ == \"__main__\":\n    unittest.main()\n");
    let build = format!(
        "#!/bin/sh\n\
         # Builds {name}.wasm with componentize-py {COMPONENTIZE_PY} (pip install componentize-py=={COMPONENTIZE_PY}).\n\
         set -eu\n\
         cd \"$(dirname \"$0\")\"\n\
         componentize-py -d wit -w {world} componentize app -o {name}.wasm\n"
    );
    let readme = format!(
        "# {name}\n\nAn executor plugin in Python, built with componentize-py.\n\n\
         ```sh\n\
         python3 -m venv .venv && .venv/bin/pip install componentize-py=={COMPONENTIZE_PY}\n\
         python3 -m unittest                     # the logic (policy.py), natively\n\
         PATH=.venv/bin:$PATH ./build.sh         # {name}.wasm (about 18 MB: CPython comes with it)\n\
         executor plugin test {name}.test.yaml    # the cases, on the component\n\
         ```\n\n\
         `app.py` adapts the contract (`wit/plugin.wit`, world `{world}`) to `policy.py`. Raising\n\
         `componentize_py_types.Err(text)` returns the contract's `error` (a plugin failure, handled\n\
         by the operator's `failurePolicy`); any other exception traps the call, and the executor\n\
         quotes the exception's last line. The executor offers no files, network or clock.\n"
    );
    guest(
        name,
        hook,
        vec![
            ("policy.py".into(), policy),
            ("app.py".into(), app),
            ("test_policy.py".into(), tests),
            ("build.sh".into(), build),
        ],
        readme,
        "/.venv\n__pycache__/\n",
    )
}

/// A Python or JavaScript project: its own `files`, and what both have:
/// the contract, the test file, the README and what git ignores.
fn guest(
    name: &str,
    hook: Hook,
    files: Vec<(String, String)>,
    readme: String,
    ignored: &str,
) -> Vec<(String, String)> {
    let mut all = vec![("wit/plugin.wit".into(), WIT.into())];
    all.extend(files);
    all.extend([
        (
            format!("{name}.test.yaml"),
            // Both scaffolds check settings by key, with these words.
            test_file(
                name,
                &format!("{name}.wasm"),
                hook,
                "deniedRegistries: expected a list",
            ),
        ),
        ("README.md".into(), readme),
        (".gitignore".into(), format!("/{name}.wasm\n{ignored}")),
    ]);
    all
}

fn js(args: &NewArgs) -> Vec<(String, String)> {
    let name = &args.name;
    let hook = args.hook;
    let world = hook.world();
    let mut policy = String::from(
        r#"// The plugin's logic, apart from the component's exports, so that `node --test` tests it.

export class SettingsError extends Error {}

// Checks the settings (JSON, null when none were given) and returns them.
export function parseSettings(settings) {
  settings = settings ?? {};
  if (typeof settings !== "object" || Array.isArray(settings)) {
    throw new SettingsError("settings: expected a map");
  }
  for (const key of Object.keys(settings)) {
    if (!["deniedRegistries", "words"].includes(key)) {
      throw new SettingsError(`settings: unknown key ${key}; expected deniedRegistries, words`);
    }
  }
  for (const key of ["deniedRegistries", "words"]) {
    const value = settings[key] ?? [];
    if (!Array.isArray(value) || !value.every((v) => typeof v === "string" && v !== "")) {
      throw new SettingsError(`${key}: expected a list of non-empty strings`);
    }
  }
  return settings;
}
"#,
    );
    if hook.admission() {
        policy.push_str(&format!(
            r#"
// Returns {{changes}} (RFC 6902 operations) to allow the Job, or {{deny: why}}.
export function admit(settings, queue, stepImages, job) {{
  for (const image of stepImages) {{
    if ((settings.deniedRegistries ?? []).some((r) => image.startsWith(`${{r}}/`))) {{
      return {{ deny: `${{image}} comes from a denied registry` }};
    }}
  }}
  const key = "{name}.example.com/queue";
  if (job.metadata?.annotations === undefined) {{
    return {{ changes: [{{ op: "add", path: "/metadata/annotations", value: {{ [key]: queue }} }}] }};
  }}
  // In a JSON pointer, "/" in a key is written "~1" (and "~" as "~0").
  const path = `/metadata/annotations/${{key.replaceAll("~", "~0").replaceAll("/", "~1")}}`;
  return {{ changes: [{{ op: "add", path, value: queue }}] }};
}}
"#
        ));
    }
    if hook.logs() {
        policy.push_str(
            r#"
// The line with every configured word masked.
export function mask(settings, text) {
  for (const word of settings.words ?? []) {
    text = text.split(word).join("***");
  }
  return text;
}
"#,
        );
    }
    let mut app = String::from(
        r#"// The component's exports, around policy.js. jco maps a WIT `result`: returning is `ok`,
// throwing a string (or an Error, whose message is used) is the contract's `error`.
import * as policy from "./policy.js";

let settings = {};

export const lifecycle = {
  init(text) {
    try {
      settings = policy.parseSettings(JSON.parse(text));
    } catch (e) {
      throw e instanceof Error ? e.message : String(e);
    }
  },
};
"#,
    );
    if hook.admission() {
        app.push_str(
            r#"
export const admission = {
  admit(ctx, job) {
    const out = policy.admit(settings, ctx.queue, ctx.stepImages, JSON.parse(job));
    if (out.deny !== undefined) {
      return { decision: { tag: "deny", val: out.deny }, warnings: [] };
    }
    // A patch: only what changed crosses back. { tag: "allow-mutated",
    // val: JSON.stringify(job) } answers with the whole changed Job instead.
    return { decision: { tag: "allow-patched", val: JSON.stringify(out.changes) }, warnings: [] };
  },
};
"#,
        );
    }
    if hook.logs() {
        app.push_str(
            r#"
// The batch is one text, a line per record (no record holds a "\n"), and a
// stream per record. Returns edits, not records: every record no edit names
// is kept, so lines that do not change are never sent back. Other edits:
// { tag: "drop", val: i } and { tag: "insert", val: [i, record] } (before
// record i).
export const logFilter = {
  filter(ctx, batch) {
    const lines = batch.streams.length > 0 ? batch.text.split("\n") : [];
    const edits = [];
    batch.streams.forEach((stream, i) => {
      const text = policy.mask(settings, lines[i]);
      if (text !== lines[i]) {
        edits.push({ tag: "replace", val: [i, { stream, text }] });
      }
    });
    return edits;
  },
};
"#,
        );
    }
    let mut tests = String::from(
        r#"import { test } from "node:test";
import assert from "node:assert/strict";
import * as policy from "./policy.js";

test("settings of the wrong shape are refused", () => {
  assert.throws(() => policy.parseSettings({ deniedRegistries: "x" }), policy.SettingsError);
  assert.throws(() => policy.parseSettings({ wrods: [] }), policy.SettingsError);
});
"#,
    );
    if hook.admission() {
        tests.push_str(&format!(
            r#"
test("annotates the Job and denies denied registries", () => {{
  const settings = policy.parseSettings({{ deniedRegistries: ["docker.io/evil"] }});
  const {{ changes }} = policy.admit(settings, "batches", ["alpine:3"], {{}});
  assert.deepEqual(changes, [
    {{ op: "add", path: "/metadata/annotations", value: {{ "{name}.example.com/queue": "batches" }} }},
  ]);
  const more = policy.admit(settings, "batches", ["alpine:3"], {{ metadata: {{ annotations: {{}} }} }});
  assert.equal(more.changes[0].path, "/metadata/annotations/{name}.example.com~1queue");
  const out = policy.admit(settings, "batches", ["docker.io/evil/miner:1"], {{}});
  assert.equal(out.deny, "docker.io/evil/miner:1 comes from a denied registry");
}});
"#
        ));
    }
    if hook.logs() {
        tests.push_str(
            r#"
test("masks the configured words", () => {
  const settings = policy.parseSettings({ words: ["hunter2"] });
  assert.equal(policy.mask(settings, "login with hunter2"), "login with ***");
});
"#,
        );
    }
    let package = format!(
        r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "scripts": {{
    "test": "node --test",
    "build": "node build.mjs"
  }},
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "{COMPONENTIZE_JS}"
  }}
}}
"#
    );
    let build = format!(
        r#"// Builds {name}.wasm with componentize-js (StarlingMonkey), without wasi:http and the fetch
// event: the executor does not offer them, and a component that imports them is refused.
import {{ componentize }} from "@bytecodealliance/componentize-js";
import {{ writeFile }} from "node:fs/promises";

const {{ component }} = await componentize({{
  sourcePath: "app.js",
  witPath: "wit/plugin.wit",
  worldName: "{world}",
  disableFeatures: ["http", "fetch-event"],
}});
await writeFile("{name}.wasm", component);
"#
    );
    let readme = format!(
        "# {name}\n\nAn executor plugin in JavaScript, built with componentize-js.\n\n\
         ```sh\n\
         npm test                                # the logic (policy.js), natively\n\
         npm install && npm run build            # {name}.wasm (about 12 MB; ~30 s, ~800 MB of memory)\n\
         executor plugin test {name}.test.yaml    # the cases, on the component\n\
         ```\n\n\
         `app.js` adapts the contract (`wit/plugin.wit`, world `{world}`) to `policy.js`. Throwing a\n\
         string returns the contract's `error` (a plugin failure, handled by the operator's\n\
         `failurePolicy`); any other uncaught error traps the call. `build.mjs` leaves out\n\
         `wasi:http` and the fetch event: the executor does not offer them. Use componentize-js\n\
         {COMPONENTIZE_JS} or later; 0.22 leaked memory on every call.\n"
    );
    guest(
        name,
        hook,
        vec![
            ("policy.js".into(), policy),
            ("app.js".into(), app),
            ("policy.test.js".into(), tests),
            ("package.json".into(), package),
            ("build.mjs".into(), build),
        ],
        readme,
        "/node_modules\n",
    )
}
