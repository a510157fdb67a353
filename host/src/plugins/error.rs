//! The ways a plugin can fail, at load and per call, worded for the operator and the job's user.

use std::fmt;
use std::path::PathBuf;

use super::contract::Contract;

/// Which entry point of a plugin was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `lifecycle.init`.
    Init,
    /// `admission.admit`.
    Admit,
    /// `log-filter.filter`.
    Filter,
}

impl Hook {
    /// The name used in errors and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Init => "init",
            Hook::Admit => "admit",
            Hook::Filter => "filter",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of one call into a plugin. Every variant names the plugin and the hook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The epoch deadline fired.
    #[error("plugin `{plugin}` timed out in {hook} after {timeout_ms} ms")]
    Timeout {
        /// The plugin.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// The deadline.
        timeout_ms: u128,
    },
    /// The instance tried to grow its memory past the cap.
    #[error("plugin `{plugin}` exceeded its memory limit of {limit_mib} MiB in {hook}")]
    Memory {
        /// The plugin.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// The cap.
        limit_mib: u32,
    },
    /// Any other trap (panic, unreachable, forbidden wait...).
    #[error("plugin `{plugin}` trapped in {hook}: {detail}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// The trap and, when the plugin printed one, its last stderr line.
        detail: String,
    },
    /// `init` refused the settings.
    #[error("plugin `{plugin}` refused its settings: {message}")]
    Settings {
        /// The plugin.
        plugin: String,
        /// The plugin's message.
        message: String,
    },
    /// The hook returned `error`.
    #[error("plugin `{plugin}` failed in {hook}: {message}")]
    Returned {
        /// The plugin.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// The plugin's message.
        message: String,
    },
    /// The hook returned a document that is not a JSON object.
    #[error("plugin `{plugin}` returned from {hook} a Job that is not a JSON object: {detail}")]
    BadOutput {
        /// The plugin.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// The parser's message.
        detail: String,
    },
    /// The hook returned a patch that is not one, or does not apply.
    #[error("plugin `{plugin}` returned from admit a patch that cannot be used: {detail}")]
    BadPatch {
        /// The plugin.
        plugin: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The filter returned edits that do not fit its batch.
    #[error("plugin `{plugin}` returned from filter edits that do not fit the batch: {detail}")]
    BadEdits {
        /// The plugin.
        plugin: String,
        /// What does not fit.
        detail: String,
    },
    /// The hook changed paths it is not allowed to.
    #[error(
        "plugin `{plugin}` changed the Job outside its allowed paths in {hook}: {changes}; grant them with `allowedPaths` if this is intended"
    )]
    OutOfScope {
        /// The plugin.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// The offending changes, e.g. `replace /spec/template/spec/containers/0/command/0`.
        changes: String,
    },
    /// The hook returned a Job the cluster would refuse.
    #[error("plugin `{plugin}` returned from {hook} a Job the API server would refuse: {reason}")]
    Invalid {
        /// The plugin.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// Why, as the API server would say it.
        reason: String,
    },
    /// A new instance could not be made (pool exhausted, start function trapped).
    #[error("plugin `{plugin}` could not be instantiated for {hook}: {detail}")]
    Instantiate {
        /// The plugin.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// wasmtime's message.
        detail: String,
    },
}

impl PluginError {
    /// A short name of the kind of failure, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Timeout { .. } => "timeout",
            PluginError::Memory { .. } => "memory",
            PluginError::Trap { .. } => "trap",
            PluginError::Settings { .. } => "settings",
            PluginError::Returned { .. } => "error",
            PluginError::BadOutput { .. }
            | PluginError::BadPatch { .. }
            | PluginError::BadEdits { .. } => "bad_output",
            PluginError::OutOfScope { .. } => "out_of_scope",
            PluginError::Invalid { .. } => "invalid",
            PluginError::Instantiate { .. } => "instantiate",
        }
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("plugin `{plugin}`: cannot read {}: {source}", path.display())]
    Read {
        /// The plugin.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than a plugin may be.
    #[error("plugin `{plugin}`: {} is {bytes} bytes; a plugin may be at most {limit} bytes ({} MiB)", path.display(), limit >> 20)]
    TooLarge {
        /// The plugin.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The file's digest is not the pinned one.
    #[error("plugin `{plugin}`: {} has SHA-256 {actual}, but the configuration pins {expected}; refusing it", path.display())]
    Digest {
        /// The plugin.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// The pin.
        expected: String,
        /// What the file has.
        actual: String,
    },
    /// The public key the plugin is pinned to cannot be read.
    #[error("plugin `{plugin}`: cannot read public key {}: {source}", path.display())]
    KeyRead {
        /// The plugin.
        plugin: String,
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The public key file does not hold a public key this executor can use.
    #[error("plugin `{plugin}`: public key {} {problem}", path.display())]
    Key {
        /// The plugin.
        plugin: String,
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        problem: KeyProblem,
    },
    /// The plugin is pinned to a key but its signature file is not there.
    #[error(
        "plugin `{plugin}`: no signature at {}, which its `publicKey` requires; sign the plugin with `cosign sign-blob --key cosign.key --output-signature {} {}` (cosign 3: add `--new-bundle-format=false`)",
        signature.display(), signature.display(), path.display()
    )]
    SignatureMissing {
        /// The plugin.
        plugin: String,
        /// The plugin's file.
        path: PathBuf,
        /// Where the signature was expected.
        signature: PathBuf,
    },
    /// The signature file exists but cannot be read.
    #[error("plugin `{plugin}`: cannot read signature {}: {source}", path.display())]
    SignatureRead {
        /// The plugin.
        plugin: String,
        /// The signature file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The signature file does not hold a signature.
    #[error("plugin `{plugin}`: signature {} {problem}", path.display())]
    Signature {
        /// The plugin.
        plugin: String,
        /// The signature file.
        path: PathBuf,
        /// What is wrong with it.
        problem: SignatureProblem,
    },
    /// The signature is not the key's signature of these bytes.
    #[error(
        "plugin `{plugin}`: {} does not match signature {} by public key {}: the file changed after it was signed, or another key signed it; refusing it",
        path.display(), signature.display(), public_key.display()
    )]
    SignatureMismatch {
        /// The plugin.
        plugin: String,
        /// The plugin's file.
        path: PathBuf,
        /// The signature file.
        signature: PathBuf,
        /// The key file.
        public_key: PathBuf,
    },
    /// Not WebAssembly at all.
    #[error("plugin `{plugin}`: {} is not a WebAssembly file (it does not start with \"\\0asm\")", path.display())]
    NotWasm {
        /// The plugin.
        plugin: String,
        /// The file.
        path: PathBuf,
    },
    /// A core module rather than a component.
    #[error("plugin `{plugin}`: {} is a core WebAssembly module, not a component; build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)", path.display())]
    CoreModule {
        /// The plugin.
        plugin: String,
        /// The file.
        path: PathBuf,
    },
    /// Its structure cannot be read.
    #[error("plugin `{plugin}`: {} is not a valid WebAssembly component: {detail}", path.display())]
    Malformed {
        /// The plugin.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// The parser's message.
        detail: String,
    },
    /// wasmtime could not compile it.
    #[error("plugin `{plugin}`: {} does not compile: {detail}", path.display())]
    Compile {
        /// The plugin.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// wasmtime's message.
        detail: String,
    },
    /// Built against another version of the contract.
    #[error(
        "plugin `{plugin}` was built against executor:plugin@{found}, but this executor loads plugins of executor:plugin versions {} only; rebuild it with a plugin-sdk that targets one of them",
        Contract::supported()
    )]
    Version {
        /// The plugin.
        plugin: String,
        /// The version it exports (every version, when its exports mix them).
        found: String,
    },
    /// Imports something the host does not provide.
    #[error(
        "plugin `{plugin}` imports something the executor does not provide (plugins may import only executor:plugin/host and WASI): {detail}"
    )]
    Link {
        /// The plugin.
        plugin: String,
        /// wasmtime's message, naming the import.
        detail: String,
    },
    /// Does not export the lifecycle interface: a component of another world.
    #[error(
        "plugin `{plugin}` is not an executor plugin: it does not export `{}` (its exports: {exports}); build it against wit/plugin.wit", Contract::CURRENT.interface("lifecycle")
    )]
    NotAPlugin {
        /// The plugin.
        plugin: String,
        /// What it does export.
        exports: String,
    },
    /// Exports neither hook.
    #[error(
        "plugin `{plugin}` implements neither hook: it exports neither `{}` nor `{}`", Contract::CURRENT.interface("admission"), Contract::CURRENT.interface("log-filter")
    )]
    NoHooks {
        /// The plugin.
        plugin: String,
    },
    /// `init` failed with the configured settings.
    #[error(transparent)]
    Init(PluginError),
}

/// Why a public key file was refused. Worded from what was recognised, never
/// from the file's text, which is not the executor's to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// Larger than any public key.
    #[error("is over {limit_kib} KiB; a PEM public key is a few hundred bytes")]
    TooLarge {
        /// The limit.
        limit_kib: u64,
    },
    /// No PEM block.
    #[error(
        "is not PEM; expected a `-----BEGIN PUBLIC KEY-----` block, such as the cosign.pub that `cosign generate-key-pair` writes"
    )]
    NotPem,
    /// A private key, which the executor must not hold.
    #[error(
        "holds a private key; configure the public key (cosign.pub, or `openssl ec -in key.pem -pubout`) and keep the private key off this host"
    )]
    PrivateKey,
    /// A certificate rather than a bare key.
    #[error(
        "holds a certificate, not a public key; extract the key with `openssl x509 -pubkey -noout -in <certificate>`"
    )]
    Certificate,
    /// Some other kind of PEM block.
    #[error("holds a PEM block that is not a `PUBLIC KEY`")]
    OtherBlock,
    /// A `PUBLIC KEY` block whose content cannot be read.
    #[error("holds a `PUBLIC KEY` block that is not a DER SubjectPublicKeyInfo")]
    NotSpki,
    /// A key of a type the executor does not verify.
    #[error("is {found}; only ECDSA P-256 keys (cosign's default) are supported")]
    Unsupported {
        /// The type found, e.g. "an RSA key" or "an ECDSA P-384 key".
        found: String,
    },
    /// A P-256 key that is not a point of the curve.
    #[error("is an ECDSA P-256 key whose point is not on the curve")]
    BadPoint,
}

/// Why a signature file was refused, without echoing its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureProblem {
    /// Larger than any signature.
    #[error("is over {limit_kib} KiB; a signature is about 100 bytes")]
    TooLarge {
        /// The limit.
        limit_kib: u64,
    },
    /// Not base64 text.
    #[error(
        "is not base64; expected the base64 text that `cosign sign-blob --output-signature` writes"
    )]
    NotBase64,
    /// Base64, but not of an ECDSA signature.
    #[error("is base64 but not of an ASN.1 DER ECDSA signature")]
    NotDer,
}

/// Every plugin that could not be loaded, listed together.
#[derive(Debug, thiserror::Error)]
#[error("{} plugin(s) could not be loaded:\n  - {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  - "))]
pub struct LoadErrors(pub Vec<LoadError>);
