//! The plugin configuration file (YAML): parsing and validation, reporting every problem at once; no wasm here.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::scope::PathPattern;

/// What a plugin's verdicts do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Verdicts and changes are applied.
    Enforce,
    /// Verdicts and would-be changes are logged and counted, never applied;
    /// failures never fail a job.
    Monitor,
}

/// What a plugin failure (trap, timeout, memory, bad output, out-of-scope change) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// The job fails with a message naming the plugin.
    Fail,
    /// The plugin is skipped for that call; a warning is logged and counted.
    Ignore,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        })
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailurePolicy::Fail => "fail",
            FailurePolicy::Ignore => "ignore",
        })
    }
}

/// Default deadline of one admission call.
pub const DEFAULT_ADMISSION_TIMEOUT: Duration = Duration::from_millis(250);
/// Default deadline of one log batch.
pub const DEFAULT_LOG_TIMEOUT: Duration = Duration::from_secs(1);
/// Default memory cap of one instance.
pub const DEFAULT_MEMORY_MIB: u32 = 64;
/// The largest memory cap a plugin may ask for (the pool's slot size).
pub const MAX_MEMORY_MIB: u32 = 1024;
/// The longest deadline a plugin may ask for.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// One plugin, validated.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The plugin's name in logs, errors and metrics.
    pub name: String,
    /// Where its `.wasm` file is (relative paths are resolved against the configuration file).
    pub path: PathBuf,
    /// The SHA-256 the file must have, as 64 lowercase hex digits.
    pub sha256: Option<String>,
    /// The key whose signature the file must carry, when the plugin is pinned to one.
    pub trust: Option<Trust>,
    /// The settings passed to `init`, as JSON (`null` when none).
    pub settings: Value,
    /// Enforce or monitor.
    pub mode: Mode,
    /// Fail or ignore.
    pub failure_policy: FailurePolicy,
    /// Overrides both hooks' default deadlines when set.
    pub timeout: Option<Duration>,
    /// Memory cap of one instance, in MiB.
    pub memory_mib: u32,
    /// Extra JSON pointers the plugin may change, beyond the default scope.
    pub allowed_paths: Vec<PathPattern>,
}

impl PluginSpec {
    /// A spec with every default: enforce, fail, default deadlines and memory.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        PluginSpec {
            name: name.into(),
            path: path.into(),
            sha256: None,
            trust: None,
            settings: Value::Null,
            mode: Mode::Enforce,
            failure_policy: FailurePolicy::Fail,
            timeout: None,
            memory_mib: DEFAULT_MEMORY_MIB,
            allowed_paths: Vec::new(),
        }
    }

    /// The deadline of one admission call.
    pub fn admission_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_ADMISSION_TIMEOUT)
    }

    /// The deadline of one log batch.
    pub fn log_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_LOG_TIMEOUT)
    }

    /// Whether a failure of this plugin lets the job go on: policy `ignore`,
    /// or monitor mode, which never affects jobs.
    pub fn ignores_failures(&self) -> bool {
        self.mode == Mode::Monitor || self.failure_policy == FailurePolicy::Ignore
    }
}

/// A plugin pinned to a signing key: its file must carry a signature by that
/// key, as `cosign sign-blob --key` makes (paths resolved like `path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// The PEM public key (`publicKey`).
    pub public_key: PathBuf,
    /// The signature file (`signature`; by default the plugin's path plus `.sig`).
    pub signature: PathBuf,
}

impl Trust {
    /// Pins `plugin` to `public_key`, with the signature beside the plugin
    /// (`<plugin>.sig`, where `cosign sign-blob --output-signature` is usually pointed).
    pub fn beside(plugin: &Path, public_key: impl Into<PathBuf>) -> Self {
        let mut signature = plugin.as_os_str().to_owned();
        signature.push(".sig");
        Trust {
            public_key: public_key.into(),
            signature: signature.into(),
        }
    }
}

/// The whole configuration: the plugins in the order they run.
#[derive(Debug, Clone, Default)]
pub struct PluginsConfig {
    /// The plugins, in order.
    pub plugins: Vec<PluginSpec>,
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read plugin configuration {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("plugin configuration {path} is not valid YAML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the position.
        message: String,
    },
    /// The file parsed but has problems; every one is listed.
    #[error("plugin configuration {path} has {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// One line per problem, each naming the plugin and the key.
        problems: Vec<String>,
    },
}

const KEYS: &[&str] = &[
    "name",
    "path",
    "sha256",
    "publicKey",
    "signature",
    "settings",
    "mode",
    "failurePolicy",
    "timeoutMs",
    "memoryMiB",
    "allowedPaths",
];

impl PluginsConfig {
    /// Reads and validates a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let (config, problems) = Self::from_file_in_part(path)?;
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// Reads a configuration file as far as it goes: the entries that can
    /// be loaded (a valid name, an existing file and well-formed pins, even
    /// when other keys are wrong) and every problem found. Loading those
    /// entries too finds their refused pins and settings, so that an author
    /// sees every problem in one round. Only an unreadable file or a YAML
    /// syntax error is an error here.
    pub fn from_file_in_part(path: &Path) -> Result<(Self, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_yaml_in_part(&text, base).map_err(|message| ConfigError::Syntax {
            path: path.to_owned(),
            message,
        })
    }

    #[cfg(test)]
    fn from_yaml(text: &str, base: &Path) -> Result<Self, Problems> {
        let (config, problems) = Self::from_yaml_in_part(text, base).map_err(Problems::Syntax)?;
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(Problems::Invalid(problems))
        }
    }

    /// The loadable entries and every problem; `Err` is a syntax error.
    fn from_yaml_in_part(text: &str, base: &Path) -> Result<(Self, Vec<String>), String> {
        let doc: Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        let Value::Object(top) = doc else {
            return Ok((
                PluginsConfig::default(),
                vec![format!(
                    "the document is {}; expected a mapping with a `plugins` list",
                    kind(&doc)
                )],
            ));
        };
        for key in top.keys().filter(|k| k.as_str() != "plugins") {
            problems.push(format!(
                "unknown top-level key `{key}`; expected only `plugins`"
            ));
        }
        let entries = match top.get("plugins") {
            Some(Value::Array(entries)) => entries.as_slice(),
            Some(Value::Null) | None => &[],
            Some(other) => {
                problems.push(format!("`plugins` is {}; expected a list", kind(other)));
                &[]
            }
        };
        let mut plugins = Vec::new();
        let mut names = HashSet::new();
        for (i, entry) in entries.iter().enumerate() {
            if let Some(spec) = parse_entry(i, entry, base, &mut names, &mut problems) {
                plugins.push(spec);
            }
        }
        Ok((PluginsConfig { plugins }, problems))
    }
}

#[cfg(test)]
enum Problems {
    Syntax(String),
    Invalid(Vec<String>),
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Reads `key` as one of `choices` (`default` when absent), recording a
/// problem that lists them when it is anything else.
fn choice<T: Copy>(
    map: &serde_json::Map<String, Value>,
    key: &str,
    noun: &str,
    choices: &[(&str, T)],
    default: T,
    problem: &mut impl FnMut(&str, String),
) -> T {
    let Some(value) = map.get(key) else {
        return default;
    };
    if let Some((_, v)) = choices
        .iter()
        .find(|(name, _)| value.as_str() == Some(*name))
    {
        return *v;
    }
    let names: Vec<String> = choices.iter().map(|(n, _)| format!("`{n}`")).collect();
    problem(
        key,
        format!("{value} is not {noun}; expected {}", names.join(" or ")),
    );
    default
}

fn parse_entry(
    i: usize,
    entry: &Value,
    base: &Path,
    names: &mut HashSet<String>,
    problems: &mut Vec<String>,
) -> Option<PluginSpec> {
    let Value::Object(map) = entry else {
        problems.push(format!(
            "plugins[{i}] is {}; expected a mapping",
            kind(entry)
        ));
        return None;
    };
    let label = match map.get("name").and_then(Value::as_str) {
        Some(name) => format!("plugins[{i}] ({name})"),
        None => format!("plugins[{i}]"),
    };
    // The keys with a problem: an entry whose file or pins are wrong is not
    // loaded, one with any other problem still is (to find the rest).
    let mut bad: HashSet<String> = HashSet::new();
    let mut problem = |key: &str, msg: String| {
        bad.insert(key.to_owned());
        problems.push(format!("{label}: {key}: {msg}"));
    };

    for key in map.keys().filter(|k| !KEYS.contains(&k.as_str())) {
        problem(
            key,
            format!("unknown key; expected one of {}", KEYS.join(", ")),
        );
    }
    let name = entry_name(map, names, &mut problem);
    let path = entry_path(map, base, &mut problem);
    let sha256 = entry_sha256(map, &mut problem);
    let trust = entry_trust(map, base, &path, &mut problem);
    let mode = choice(
        map,
        "mode",
        "a mode",
        &[("enforce", Mode::Enforce), ("monitor", Mode::Monitor)],
        Mode::Enforce,
        &mut problem,
    );
    let failure_policy = choice(
        map,
        "failurePolicy",
        "a failure policy",
        &[
            ("fail", FailurePolicy::Fail),
            ("ignore", FailurePolicy::Ignore),
        ],
        FailurePolicy::Fail,
        &mut problem,
    );
    let (timeout, memory_mib) = entry_limits(map, &mut problem);
    let allowed_paths = entry_allowed_paths(map, &mut problem);
    let settings = map.get("settings").cloned().unwrap_or(Value::Null);
    if ["name", "path", "sha256", "publicKey", "signature"]
        .iter()
        .any(|k| bad.contains(*k))
    {
        return None;
    }
    Some(PluginSpec {
        name,
        path,
        sha256,
        trust,
        settings,
        mode,
        failure_policy,
        timeout,
        memory_mib,
        allowed_paths,
    })
}

/// The entry's `name`, unique among the entries read so far (`names`).
fn entry_name(
    map: &serde_json::Map<String, Value>,
    names: &mut HashSet<String>,
    problem: &mut impl FnMut(&str, String),
) -> String {
    match map.get("name") {
        // A DNS label, so names fit metrics labels and Kubernetes annotations.
        Some(Value::String(name)) if k8s_rules::names::dns1123_label(name).is_ok() => {
            if !names.insert(name.clone()) {
                problem(
                    "name",
                    format!("{name:?} is used by an earlier plugin; names must be unique"),
                );
            }
            name.clone()
        }
        Some(Value::String(name)) => {
            problem(
                "name",
                format!(
                    "{name:?} is not a valid name; expected lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit"
                ),
            );
            String::new()
        }
        Some(other) => {
            problem("name", format!("is {}; expected a string", kind(other)));
            String::new()
        }
        None => {
            problem("name", "missing; every plugin needs a name".into());
            String::new()
        }
    }
}

/// The entry's `path`, relative to the configuration file's folder (`base`).
fn entry_path(
    map: &serde_json::Map<String, Value>,
    base: &Path,
    problem: &mut impl FnMut(&str, String),
) -> PathBuf {
    match map.get("path") {
        Some(Value::String(p)) if !p.is_empty() => {
            let path = base.join(p);
            if !path.is_file() {
                problem(
                    "path",
                    format!("{} does not exist or is not a file", path.display()),
                );
            }
            path
        }
        Some(other) => {
            problem(
                "path",
                format!("is {}; expected the path of a .wasm file", kind(other)),
            );
            PathBuf::new()
        }
        None => {
            problem("path", "missing; expected the path of a .wasm file".into());
            PathBuf::new()
        }
    }
}

/// The entry's pinned digest, as lowercase hex without the `sha256:` prefix.
fn entry_sha256(
    map: &serde_json::Map<String, Value>,
    problem: &mut impl FnMut(&str, String),
) -> Option<String> {
    match map.get("sha256") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let hex = s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase();
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                Some(hex)
            } else {
                problem(
                    "sha256",
                    format!("{s:?} is not a SHA-256 digest; expected 64 hex digits"),
                );
                None
            }
        }
        Some(other) => {
            problem(
                "sha256",
                format!("is {}; expected 64 hex digits", kind(other)),
            );
            None
        }
    }
}

/// The entry's `publicKey` and `signature`, relative to the configuration
/// file's folder (`base`); the signature defaults to the plugin's `path`
/// plus `.sig`. Whether the files exist and hold what they should is checked
/// when the plugin loads, so that a missing signature follows the plugin's
/// failure policy like any other refusal.
fn entry_trust(
    map: &serde_json::Map<String, Value>,
    base: &Path,
    path: &Path,
    problem: &mut impl FnMut(&str, String),
) -> Option<Trust> {
    // `Err` when the key is set but is not a path (a problem is recorded).
    let mut file = |key: &str, what: &str| match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(p)) if !p.is_empty() => Ok(Some(base.join(p))),
        Some(Value::String(_)) => {
            problem(key, format!("is empty; expected the path of {what}"));
            Err(())
        }
        Some(other) => {
            problem(
                key,
                format!("is {}; expected the path of {what}", kind(other)),
            );
            Err(())
        }
    };
    let public_key = file("publicKey", "a PEM public key");
    let signature = file("signature", "a signature file");
    match (public_key, signature) {
        (Ok(Some(public_key)), Ok(Some(signature))) => Some(Trust {
            public_key,
            signature,
        }),
        (Ok(Some(public_key)), Ok(None)) => Some(Trust::beside(path, public_key)),
        // A signature that nothing checks would look like protection.
        (Ok(None), Ok(Some(_))) => {
            problem(
                "signature",
                "is set without `publicKey`; a signature is checked only against a public key"
                    .into(),
            );
            None
        }
        _ => None,
    }
}

/// The entry's `timeoutMs` (absent: the hook's default) and `memoryMiB`.
fn entry_limits(
    map: &serde_json::Map<String, Value>,
    problem: &mut impl FnMut(&str, String),
) -> (Option<Duration>, u32) {
    let timeout = match map.get("timeoutMs") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(ms @ 1..=MAX_TIMEOUT_MS) => Some(Duration::from_millis(ms)),
            _ => {
                problem(
                    "timeoutMs",
                    format!(
                        "{v} is out of range; expected a whole number of milliseconds from 1 to {MAX_TIMEOUT_MS}"
                    ),
                );
                None
            }
        },
    };
    let memory_mib = match map.get("memoryMiB") {
        None => DEFAULT_MEMORY_MIB,
        Some(v) => match v.as_u64() {
            Some(m @ 1..) if m <= u64::from(MAX_MEMORY_MIB) => m as u32,
            _ => {
                problem(
                    "memoryMiB",
                    format!(
                        "{v} is out of range; expected a whole number of MiB from 1 to {MAX_MEMORY_MIB}"
                    ),
                );
                DEFAULT_MEMORY_MIB
            }
        },
    };
    (timeout, memory_mib)
}

/// The entry's `allowedPaths`, each a JSON pointer pattern.
fn entry_allowed_paths(
    map: &serde_json::Map<String, Value>,
    problem: &mut impl FnMut(&str, String),
) -> Vec<PathPattern> {
    let mut allowed_paths = Vec::new();
    match map.get("allowedPaths") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (j, item) in items.iter().enumerate() {
                match item.as_str().map(PathPattern::parse) {
                    Some(Ok(p)) => allowed_paths.push(p),
                    Some(Err(e)) => problem(&format!("allowedPaths[{j}]"), e.to_string()),
                    None => problem(
                        &format!("allowedPaths[{j}]"),
                        format!(
                            "is {}; expected a JSON pointer such as \"/spec/template/spec/containers/*/env\"",
                            kind(item)
                        ),
                    ),
                }
            }
        }
        Some(other) => problem(
            "allowedPaths",
            format!("is {}; expected a list of JSON pointers", kind(other)),
        ),
    }
    allowed_paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        match PluginsConfig::from_yaml(yaml, Path::new("/nonexistent")) {
            Err(Problems::Invalid(p)) => p,
            Err(Problems::Syntax(s)) => vec![format!("syntax: {s}")],
            Ok(_) => vec![],
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_naming_the_plugin() {
        let p = problems(
            r#"
plugins:
  - name: annotate
    path: a.wasm
    timeoutMs: 0
    failurPolicy: fail
  - name: Bad_Name
    path: b.wasm
    mode: audit
    memoryMiB: 4096
    sha256: abc
    allowedPaths: ["spec/x"]
  - name: annotate
    path: c.wasm
"#,
        );
        let all = p.join("\n");
        for needle in [
            "plugins[0] (annotate): timeoutMs: 0 is out of range",
            "plugins[0] (annotate): failurPolicy: unknown key",
            "plugins[0] (annotate): path: /nonexistent/a.wasm does not exist",
            "plugins[1] (Bad_Name): name: \"Bad_Name\" is not a valid name",
            "plugins[1] (Bad_Name): mode: \"audit\" is not a mode",
            "plugins[1] (Bad_Name): memoryMiB: 4096 is out of range",
            "plugins[1] (Bad_Name): sha256: \"abc\" is not a SHA-256 digest",
            "plugins[1] (Bad_Name): allowedPaths[0]:",
            "plugins[2] (annotate): name: \"annotate\" is used by an earlier plugin",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn entries_with_sound_files_and_pins_are_kept_to_load_beside_the_problems() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wasm"), b"").unwrap();
        let yaml = "plugins:\n  - name: typo\n    path: a.wasm\n    mode: strict\n  - name: bad-pin\n    path: a.wasm\n    sha256: abc\n  - name: gone\n    path: b.wasm\n  - name: fine\n    path: a.wasm\n";
        let (config, problems) = PluginsConfig::from_yaml_in_part(yaml, dir.path()).unwrap();
        let names: Vec<&str> = config.plugins.iter().map(|p| p.name.as_str()).collect();
        // Loading these finds their refused settings and pins in the same
        // round; a wrong pin or a missing file is never loaded.
        assert_eq!(names, ["typo", "fine"]);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn unknown_top_level_keys_and_wrong_shapes_are_errors() {
        assert!(
            problems("plugin: []")
                .join("\n")
                .contains("unknown top-level key `plugin`")
        );
        assert!(
            problems("plugins: 3")
                .join("\n")
                .contains("`plugins` is a number; expected a list")
        );
        assert!(problems("- a").join("\n").contains("expected a mapping"));
        assert!(problems("plugins: [").join("\n").starts_with("syntax:"));
    }

    #[test]
    fn a_public_key_that_is_not_a_path_or_a_signature_without_one_is_a_problem() {
        let p = problems(
            r#"
plugins:
  - name: a
    path: a.wasm
    publicKey: [cosign.pub]
  - name: b
    path: b.wasm
    signature: b.wasm.sig
  - name: c
    path: c.wasm
    publicKey: ""
    signature: 3
"#,
        );
        let all = p.join("\n");
        for needle in [
            "plugins[0] (a): publicKey: is a list; expected the path of a PEM public key",
            "plugins[1] (b): signature: is set without `publicKey`; a signature is checked only against a public key",
            "plugins[2] (c): publicKey: is empty; expected the path of a PEM public key",
            "plugins[2] (c): signature: is a number; expected the path of a signature file",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn a_public_key_pins_the_plugin_with_its_signature_beside_it_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        std::fs::write(dir.path().join("plugins/a.wasm"), b"").unwrap();
        let yaml = "plugins:\n  - name: a\n    path: plugins/a.wasm\n    publicKey: keys/cosign.pub\n  - name: b\n    path: plugins/a.wasm\n    publicKey: keys/cosign.pub\n    signature: sigs/b.sig\n  - name: c\n    path: plugins/a.wasm\n";
        let cfg = PluginsConfig::from_yaml(yaml, dir.path()).ok().unwrap();
        let trust: Vec<_> = cfg.plugins.iter().map(|p| p.trust.clone()).collect();
        assert_eq!(
            trust,
            [
                Some(Trust {
                    public_key: dir.path().join("keys/cosign.pub"),
                    signature: dir.path().join("plugins/a.wasm.sig"),
                }),
                Some(Trust {
                    public_key: dir.path().join("keys/cosign.pub"),
                    signature: dir.path().join("sigs/b.sig"),
                }),
                None,
            ]
        );
    }

    #[test]
    fn a_valid_file_gives_specs_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wasm"), b"").unwrap();
        let yaml = "plugins:\n  - name: a\n    path: a.wasm\n    settings: {x: 1}\n    timeoutMs: 40\n    mode: monitor\n    failurePolicy: ignore\n    sha256: \"sha256:ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB\"\n";
        let cfg = PluginsConfig::from_yaml(yaml, dir.path()).ok().unwrap();
        let p = &cfg.plugins[0];
        assert_eq!(p.path, dir.path().join("a.wasm"));
        assert_eq!(p.settings, serde_json::json!({"x": 1}));
        assert_eq!(
            (p.mode, p.failure_policy, p.memory_mib),
            (Mode::Monitor, FailurePolicy::Ignore, 64)
        );
        assert_eq!(p.admission_timeout(), Duration::from_millis(40));
        assert_eq!(
            p.sha256.as_deref(),
            Some("abababababababababababababababababababababababababababababababab")
        );
    }
}
