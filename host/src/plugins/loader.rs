//! Turns a plugin spec into a ready plugin (read, verify the pins, compile, check the contract, pre-instantiate, validate the settings) and makes and calls its instances.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Instance, InstancePre};
use wasmtime::{Store, Trap};

use super::config::PluginSpec;
use super::contract::{AdmissionIndices, Contract, FilterIndices, LifecycleIndices};
use super::engine::{Runtime, TICK};
use super::error::{Hook, LoadError, PluginError};
use super::host::HostState;
use super::scope::{PathPattern, default_scope};
use super::text::printable;
use super::trust;
use crate::ops::metrics::{PLUGIN_CALL_DURATION, PLUGIN_CALLS};

/// What is known about a loaded plugin.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginInfo {
    /// Its configured name.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// The file's SHA-256.
    pub sha256: String,
    /// The file's size.
    pub size_bytes: usize,
    /// `admission` and/or `logs`.
    pub hooks: Vec<&'static str>,
    /// How long compiling (or loading the cached compilation) took.
    #[serde(rename = "compileMs", serialize_with = "millis")]
    pub compile_time: Duration,
    /// Whether the compilation came from the cache.
    pub cached: bool,
    /// The version of the contract it was built against, e.g. `0.2.0`.
    pub contract: &'static str,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// A plugin ready to be instantiated.
pub(crate) struct LoadedPlugin {
    pub(crate) spec: PluginSpec,
    pub(crate) name: Arc<str>,
    pub(crate) info: PluginInfo,
    pub(crate) allowed: Vec<PathPattern>,
    pub(crate) admission: Option<AdmissionIndices>,
    pub(crate) log_filter: Option<FilterIndices>,
    settings: String,
    pre: InstancePre<HostState>,
    lifecycle: LifecycleIndices,
}

/// A live instance and its store.
pub(crate) struct Live {
    pub(crate) store: Store<HostState>,
    pub(crate) instance: Instance,
}

impl LoadedPlugin {
    /// Loads and checks one plugin; `init` runs once with its settings so that
    /// bad settings are reported at start-up, not at the first job.
    pub(crate) fn load(runtime: &Runtime, spec: PluginSpec) -> Result<LoadedPlugin, LoadError> {
        let (wasm, sha256) = read_pinned(&spec)?;
        let (contract, exports) = contract_exports(&spec, &wasm)?;
        let compiled = compile(runtime, &spec, &wasm, &sha256, exports)?;
        let linked = link(runtime, &spec.name, contract, &compiled)?;
        let mut allowed = default_scope();
        allowed.extend(spec.allowed_paths.iter().cloned());
        let loaded = LoadedPlugin {
            name: Arc::from(spec.name.as_str()),
            info: PluginInfo {
                name: spec.name.clone(),
                path: spec.path.clone(),
                sha256,
                size_bytes: wasm.len(),
                hooks: linked.hooks,
                compile_time: compiled.compile_time,
                cached: compiled.cached,
                contract: contract.version(),
            },
            settings: spec.settings.to_string(),
            allowed,
            admission: linked.admission,
            log_filter: linked.log_filter,
            pre: linked.pre,
            lifecycle: linked.lifecycle,
            spec,
        };
        let timeout = loaded
            .spec
            .admission_timeout()
            .max(loaded.spec.log_timeout());
        loaded
            .instantiate(runtime, Hook::Init, timeout)
            .map_err(LoadError::Init)?;
        Ok(loaded)
    }

    /// Makes a fresh instance and runs `init` on it, each within `timeout`.
    pub(crate) fn instantiate(
        &self,
        runtime: &Runtime,
        hook: Hook,
        timeout: Duration,
    ) -> Result<Live, PluginError> {
        let memory = self.spec.memory_mib as usize * 1024 * 1024;
        let mut store = Store::new(&runtime.engine, HostState::new(self.name.clone(), memory));
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks(timeout));
        let instance = {
            let _guard = runtime.call_guard();
            unwound(|| self.pre.instantiate(&mut store))
        };
        let instance = match instance {
            Ok(instance) => instance,
            Err(err) => {
                let failure = self.classify(&mut store, hook, timeout, err);
                return Err(match failure {
                    PluginError::Trap {
                        plugin,
                        hook,
                        detail,
                    } => PluginError::Instantiate {
                        plugin,
                        hook,
                        detail,
                    },
                    other => other,
                });
            }
        };
        let mut live = Live { store, instance };
        let guest = self
            .lifecycle
            .load(&mut live.store, &live.instance)
            .map_err(|e| self.classify(&mut live.store, Hook::Init, timeout, e))?;
        let settings = &self.settings;
        match self.call(runtime, &mut live, Hook::Init, timeout, |store| {
            guest.call_init(store, settings)
        }) {
            Err(PluginError::Returned {
                plugin, message, ..
            }) => Err(PluginError::Settings { plugin, message }),
            other => other.map(|()| live),
        }
    }

    /// Makes a fresh instance (with `init` run) and loads the guest of one
    /// hook from it with `load`, e.g. a `GuestIndices::load`.
    pub(crate) fn instantiate_guest<G>(
        &self,
        runtime: &Runtime,
        hook: Hook,
        timeout: Duration,
        load: impl FnOnce(&mut Store<HostState>, &Instance) -> wasmtime::Result<G>,
    ) -> Result<(Live, G), PluginError> {
        let mut live = self.instantiate(runtime, hook, timeout)?;
        let guest =
            load(&mut live.store, &live.instance).map_err(|e| PluginError::Instantiate {
                plugin: self.spec.name.clone(),
                hook,
                detail: format!("{e:#}"),
            })?;
        Ok((live, guest))
    }

    /// Calls into `live` with a fresh deadline, turning every kind of failure
    /// into a [`PluginError`] and the plugin's output into tracing events.
    pub(crate) fn call<R>(
        &self,
        runtime: &Runtime,
        live: &mut Live,
        hook: Hook,
        timeout: Duration,
        f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, PluginError> {
        live.store.set_epoch_deadline(ticks(timeout));
        let started = Instant::now();
        let result = {
            let _guard = runtime.call_guard();
            unwound(|| f(&mut live.store))
        };
        let labels = [
            ("plugin", self.spec.name.clone()),
            ("hook", hook.as_str().to_owned()),
        ];
        metrics::counter!(PLUGIN_CALLS, &labels).increment(1);
        metrics::histogram!(PLUGIN_CALL_DURATION, &labels).record(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(value)) => {
                live.store.data_mut().flush_output();
                Ok(value)
            }
            Ok(Err(message)) => {
                live.store.data_mut().flush_output();
                Err(PluginError::Returned {
                    plugin: self.spec.name.clone(),
                    hook,
                    message: printable(&message),
                })
            }
            Err(err) => Err(self.classify(&mut live.store, hook, timeout, err)),
        }
    }

    fn classify(
        &self,
        store: &mut Store<HostState>,
        hook: Hook,
        timeout: Duration,
        err: wasmtime::Error,
    ) -> PluginError {
        let last_stderr = store.data_mut().flush_output();
        let plugin = self.spec.name.clone();
        if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return PluginError::Timeout {
                plugin,
                hook,
                timeout_ms: timeout.as_millis(),
            };
        }
        if store.data().limiter.exceeded {
            return PluginError::Memory {
                plugin,
                hook,
                limit_mib: self.spec.memory_mib,
            };
        }
        // The root cause is the trap itself ("wasm `unreachable` instruction
        // executed") or the host's reason; the wasm backtrace goes to debug.
        tracing::debug!(plugin, %hook, error = ?err, "plugin trap");
        let mut detail = err.root_cause().to_string();
        if let Some(line) = last_stderr {
            detail = format!("{detail} (last output: {line})");
        }
        PluginError::Trap {
            plugin,
            hook,
            detail,
        }
    }
}

/// Runs `f`, which runs plugin code, turning a panic of the host code it
/// calls (a WASI import, say) into an error: the plugin's call fails and is
/// handled by its policy, while the host carries on. The store is dropped
/// after any failure, so its state after a panic does not matter.
fn unwound<T>(f: impl FnOnce() -> wasmtime::Result<T>) -> wasmtime::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(wasmtime::format_err!(
            "the host failed while serving the plugin: {what}"
        ))
    })
}

/// Epoch ticks for `timeout`; one more than the exact count because the
/// current tick is already partly over.
fn ticks(timeout: Duration) -> u64 {
    (timeout.as_micros() / TICK.as_micros()).max(1) as u64 + 1
}

/// A plugin's component, compiled (or taken from the cache).
struct Compiled {
    component: Component,
    /// The names of the component's exports.
    exports: Vec<String>,
    compile_time: Duration,
    cached: bool,
}

/// A compiled plugin linked against the host, with the hooks it exports.
struct Linked {
    pre: InstancePre<HostState>,
    lifecycle: LifecycleIndices,
    admission: Option<AdmissionIndices>,
    log_filter: Option<FilterIndices>,
    hooks: Vec<&'static str>,
}

/// The largest plugin file accepted. Compiling costs time and memory in
/// proportion to the code (a 79 MB component took 88 s and 5.6 GB), so
/// this bounds both, while taking what other languages' tooling makes: a
/// componentize-py plugin is 18 MB (CPython comes with it), a
/// componentize-js one about 10 MB. Compiled once, then cached.
pub const MAX_PLUGIN_BYTES: u64 = 32 << 20;

/// The plugin's file and its SHA-256, checked for size before it is read,
/// then against the digest pin and the signing key it is pinned to (both
/// when both are set), and for being a component (a core module is named
/// as such, being a common mistake).
fn read_pinned(spec: &PluginSpec) -> Result<(Vec<u8>, String), LoadError> {
    let plugin = spec.name.clone();
    let path = spec.path.clone();
    let unreadable = |source| LoadError::Read {
        plugin: plugin.clone(),
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(unreadable)?;
    let bytes = file.metadata().map_err(unreadable)?.len();
    let too_large = |bytes| LoadError::TooLarge {
        plugin: plugin.clone(),
        path: path.clone(),
        bytes,
        limit: MAX_PLUGIN_BYTES,
    };
    if bytes > MAX_PLUGIN_BYTES {
        return Err(too_large(bytes));
    }
    // The file may grow between the size check and the read.
    let mut wasm = Vec::with_capacity(bytes as usize);
    file.take(MAX_PLUGIN_BYTES + 1)
        .read_to_end(&mut wasm)
        .map_err(unreadable)?;
    if wasm.len() as u64 > MAX_PLUGIN_BYTES {
        return Err(too_large(wasm.len() as u64));
    }
    let digest = Sha256::digest(&wasm);
    let sha256 = hex::encode(digest);
    if let Some(expected) = &spec.sha256
        && *expected != sha256
    {
        return Err(LoadError::Digest {
            plugin,
            path,
            expected: expected.clone(),
            actual: sha256,
        });
    }
    if let Some(pinned) = &spec.trust {
        trust::verify(spec, pinned, &digest)?;
    }
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(LoadError::CoreModule { plugin, path }),
        Some([0, b'a', b's', b'm', ..]) => Ok((wasm, sha256)),
        _ => Err(LoadError::NotWasm { plugin, path }),
    }
}

/// The names the component exports, read from its export section without
/// compiling it, and the version of the contract they are of, after checking
/// that they are those of a plugin of a supported version: compiling is the
/// expensive part of loading, and a component of another world or version
/// should not pay for it.
fn contract_exports(spec: &PluginSpec, wasm: &[u8]) -> Result<(Contract, Vec<String>), LoadError> {
    use wasmtime::wasmparser::{Parser, Payload};
    let plugin = || spec.name.clone();
    let malformed = |e: wasmtime::wasmparser::BinaryReaderError| LoadError::Malformed {
        plugin: plugin(),
        path: spec.path.clone(),
        detail: e.to_string(),
    };
    let mut exports = Vec::new();
    // Nested modules and components have exports of their own; only the
    // outermost component's are the plugin's.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(malformed)? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    exports.push(export.map_err(malformed)?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    let versions: Vec<&str> = exports
        .iter()
        .filter_map(|e| Some(e.strip_prefix("executor:plugin/")?.split_once('@')?.1))
        .collect();
    let contract = match versions.first() {
        // No interface of the contract at all: refused as not a plugin below.
        None => Contract::CURRENT,
        Some(found) => match Contract::parse(found) {
            Some(c) if versions.iter().all(|v| v == found) => c,
            Some(_) => {
                return Err(LoadError::Version {
                    plugin: plugin(),
                    found: versions.join(", "),
                });
            }
            None => {
                return Err(LoadError::Version {
                    plugin: plugin(),
                    found: (*found).to_owned(),
                });
            }
        },
    };
    let has = |name: &str| exports.iter().any(|e| *e == contract.interface(name));
    if !has("lifecycle") {
        return Err(LoadError::NotAPlugin {
            plugin: plugin(),
            exports: listed(&exports),
        });
    }
    if !has("admission") && !has("log-filter") {
        return Err(LoadError::NoHooks { plugin: plugin() });
    }
    Ok((contract, exports))
}

fn listed(exports: &[String]) -> String {
    if exports.is_empty() {
        "none".into()
    } else {
        exports.join(", ")
    }
}

/// Compiles the component (whose `exports` were checked) or takes it from
/// the cache.
fn compile(
    runtime: &Runtime,
    spec: &PluginSpec,
    wasm: &[u8],
    sha256: &str,
    exports: Vec<String>,
) -> Result<Compiled, LoadError> {
    let started = Instant::now();
    let (component, cached) = runtime
        .compile(wasm, sha256)
        .map_err(|e| LoadError::Compile {
            plugin: spec.name.clone(),
            path: spec.path.clone(),
            detail: format!("{e:#}"),
        })?;
    let compile_time = started.elapsed();
    Ok(Compiled {
        component,
        exports,
        compile_time,
        cached,
    })
}

/// Links the component and finds its hooks; a plugin needs at least one.
fn link(
    runtime: &Runtime,
    plugin: &str,
    contract: Contract,
    compiled: &Compiled,
) -> Result<Linked, LoadError> {
    let exports = &compiled.exports;
    let pre = runtime
        .linker
        .instantiate_pre(&compiled.component)
        .map_err(|e| LoadError::Link {
            plugin: plugin.to_owned(),
            detail: format!("{e:#}"),
        })?;
    let lifecycle = LifecycleIndices::new(contract, &pre).map_err(|_| LoadError::NotAPlugin {
        plugin: plugin.to_owned(),
        exports: listed(exports),
    })?;
    let exported = |name: &str| exports.iter().any(|e| *e == contract.interface(name));
    let admission = exported("admission")
        .then(|| AdmissionIndices::new(contract, &pre))
        .transpose();
    let log_filter = exported("log-filter")
        .then(|| FilterIndices::new(contract, &pre))
        .transpose();
    let (admission, log_filter) = match (admission, log_filter) {
        (Ok(a), Ok(l)) => (a, l),
        (Err(e), _) | (_, Err(e)) => {
            return Err(LoadError::Link {
                plugin: plugin.to_owned(),
                detail: format!("{e:#}"),
            });
        }
    };
    let mut hooks = Vec::new();
    if admission.is_some() {
        hooks.push("admission");
    }
    if log_filter.is_some() {
        hooks.push("logs");
    }
    if hooks.is_empty() {
        return Err(LoadError::NoHooks {
            plugin: plugin.to_owned(),
        });
    }
    Ok(Linked {
        pre,
        lifecycle,
        admission,
        log_filter,
        hooks,
    })
}
