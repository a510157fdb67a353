//! The one wasmtime `Engine` of the process: its configuration, the epoch ticker that enforces deadlines, and the on-disk cache of compiled plugins.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

use super::config::MAX_MEMORY_MIB;
use super::host::HostState;

/// One epoch tick. Deadlines are counted in ticks, so this is their resolution.
pub const TICK: Duration = Duration::from_millis(1);

/// Bytes of each memory slot kept resident between instances: enough for a
/// Rust plugin's stack (1 MiB) and a typical heap.
const KEEP_RESIDENT: usize = 4 * 1024 * 1024;

/// Sizes of the instance pool.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// How many plugin instances may be alive at once (admission calls in
    /// flight plus one per running job and log plugin).
    pub max_instances: u32,
    /// Where compiled plugins are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            max_instances: 1000,
            cache_dir: default_cache_dir(),
        }
    }
}

/// `$XDG_CACHE_HOME/executor/plugins`, else `~/.cache/executor/plugins`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("executor").join("plugins"))
}

/// Why the engine could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration or the linker set-up.
    #[error("cannot set up the WebAssembly engine: {0:#}")]
    Setup(wasmtime::Error),
}

/// The engine, the linker with everything plugins may import, and the ticker.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) cache_dir: Option<PathBuf>,
    ticker: Ticker,
}

impl Runtime {
    /// Builds the engine: pooling allocator, epoch interruption, the contract's
    /// `host` import and a WASI that grants nothing.
    pub fn new(options: &RuntimeOptions) -> Result<Arc<Runtime>, EngineError> {
        let mut pool = PoolingAllocationConfig::default();
        // A Rust component holds a handful of core instances (the program,
        // the WASI adapter, shims), hence the factors.
        pool.total_component_instances(options.max_instances)
            .total_core_instances(options.max_instances.saturating_mul(8))
            .total_memories(options.max_instances.saturating_mul(2))
            .total_tables(options.max_instances.saturating_mul(4))
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_core_instances_per_component(16)
            .max_memory_size(MAX_MEMORY_MIB as usize * 1024 * 1024)
            // A fresh instance per admission call makes slot reuse the hot
            // path. Keeping the pages an instance touched resident, and
            // resetting only the dirty ones (PAGEMAP_SCAN, Linux >= 6.7; a
            // plain memset elsewhere), saves the madvise and the page faults
            // that otherwise dominate an admission call.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 * 1024)
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(EngineError::Setup)?;
        let linker = super::host::linker(&engine).map_err(EngineError::Setup)?;
        let ticker = Ticker::start(engine.clone());
        Ok(Arc::new(Runtime {
            engine,
            linker,
            cache_dir: options.cache_dir.clone(),
            ticker,
        }))
    }

    /// Marks a call in flight, so that the ticker runs; drop the guard after.
    pub(crate) fn call_guard(&self) -> CallGuard<'_> {
        self.ticker.shared.active.fetch_add(1, Ordering::SeqCst);
        if let Some(t) = &self.ticker.thread {
            t.thread().unpark();
        }
        CallGuard(&self.ticker.shared)
    }

    /// Compiles `wasm` (whose SHA-256 is `digest`), or loads the result of an
    /// earlier compilation from the cache. Returns the component and whether
    /// it came from the cache.
    pub(crate) fn compile(&self, wasm: &[u8], digest: &str) -> wasmtime::Result<(Component, bool)> {
        let Some(dir) = &self.cache_dir else {
            return Ok((Component::new(&self.engine, wasm)?, false));
        };
        let path = dir.join(format!("{digest}-{:016x}.cwasm", self.compatibility()));
        match trusted_artifact(dir, &path) {
            Ok(bytes) => {
                // SAFETY: deserializing runs the file's native code, so it must
                // be what `Component::serialize` of an engine with the same
                // compatibility hash (in the name) wrote for this digest:
                // `trusted_artifact` read it from a file that only this user
                // can have written, in directories only this user can change.
                // wasmtime re-checks the header and refuses artifacts of
                // another configuration.
                #[allow(unsafe_code)]
                match unsafe { Component::deserialize(&self.engine, &bytes) } {
                    Ok(component) => return Ok((component, true)),
                    Err(err) => {
                        tracing::warn!(path = %path.display(), error = %err, "ignoring unusable cached plugin")
                    }
                }
            }
            Err(Untrusted::Missing) => {}
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "ignoring a cached plugin that others could have written; compiling it again")
            }
        }
        let component = Component::new(&self.engine, wasm)?;
        if let Err(err) = store_in_cache(dir, &path, &component) {
            tracing::warn!(path = %path.display(), error = %err, "cannot cache compiled plugin");
        }
        Ok((component, false))
    }

    fn compatibility(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        hasher.finish()
    }
}

/// Why a cached artifact is not loaded.
#[derive(Debug, thiserror::Error)]
enum Untrusted {
    /// There is none yet.
    #[error("not cached")]
    Missing,
    /// It, or a directory it is in, belongs to another user.
    #[error("{path} belongs to uid {owner}, not to this process's uid {uid}")]
    Owner {
        /// The file or directory.
        path: String,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        uid: u32,
    },
    /// It, or a directory it is in, may be written by group or others.
    #[error("{path} has mode {mode:o}; expected no write permission for group and others")]
    Writable {
        /// The file or directory.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// It is not a regular file.
    #[error("{0} is not a regular file")]
    NotAFile(String),
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Whether only this user can have written what `meta` describes.
fn owned_and_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), Untrusted> {
    use std::os::unix::fs::MetadataExt;
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(Untrusted::Owner {
            path: path.display().to_string(),
            owner: meta.uid(),
            uid,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Untrusted::Writable {
            path: path.display().to_string(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// The bytes of the cached artifact at `path` inside `dir`, if only this
/// user can have written it: the directories from `dir` down to the file
/// first (so that no one else can replace the file meanwhile), then the
/// file as opened, which is what is read.
fn trusted_artifact(dir: &Path, path: &Path) -> Result<Vec<u8>, Untrusted> {
    use std::io::Read;
    let read = |source| Untrusted::Read {
        path: path.display().to_string(),
        source,
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Untrusted::Missing),
        Err(e) => return Err(read(e)),
    };
    let mut chain: Vec<&Path> = path
        .ancestors()
        .skip(1)
        .take_while(|d| d.starts_with(dir))
        .collect();
    chain.reverse();
    for d in chain {
        let meta = std::fs::metadata(d).map_err(|source| Untrusted::Read {
            path: d.display().to_string(),
            source,
        })?;
        owned_and_private(d, &meta)?;
    }
    let meta = file.metadata().map_err(read)?;
    if !meta.is_file() {
        return Err(Untrusted::NotAFile(path.display().to_string()));
    }
    owned_and_private(path, &meta)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(read)?;
    Ok(bytes)
}

fn store_in_cache(dir: &Path, path: &Path, component: &Component) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

pub(crate) struct CallGuard<'a>(&'a TickerShared);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct TickerShared {
    active: AtomicUsize,
    stop: AtomicBool,
}

/// Advances the engine's epoch by one per elapsed millisecond while any call
/// is in flight, and sleeps otherwise: an idle executor pays no wake-ups.
struct Ticker {
    shared: Arc<TickerShared>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> Ticker {
        let shared = Arc::new(TickerShared::default());
        let state = shared.clone();
        let thread = thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                let mut last = Instant::now();
                while !state.stop.load(Ordering::SeqCst) {
                    if state.active.load(Ordering::SeqCst) == 0 {
                        thread::park();
                        last = Instant::now();
                        continue;
                    }
                    thread::sleep(TICK);
                    // Count real elapsed ticks so a starved ticker does not
                    // stretch deadlines.
                    let elapsed = last.elapsed();
                    let ticks = elapsed.as_micros() / TICK.as_micros();
                    for _ in 0..ticks {
                        engine.increment_epoch();
                    }
                    last += TICK * ticks as u32;
                }
            })
            .map_err(|err| tracing::error!(error = %err, "cannot start the plugin epoch ticker; deadlines will not fire"))
            .ok();
        Ticker { shared, thread }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The smallest component: its preamble and nothing else.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_cached_plugin_others_could_have_written_is_compiled_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("plugins");
        let runtime = Runtime::new(&RuntimeOptions {
            max_instances: 4,
            cache_dir: Some(dir.clone()),
        })
        .unwrap();
        let digest = "0".repeat(64);
        let cached = || runtime.compile(EMPTY_COMPONENT, &digest).unwrap().1;
        assert!(!cached(), "compiled the first time");
        assert!(cached(), "then taken from the cache");
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();

        // A directory the group may write: anyone in it could have put
        // native code in place of the compiled plugin.
        chmod(&dir, 0o770);
        assert!(
            !cached(),
            "an artifact in a group-writable directory was loaded"
        );
        chmod(&dir, 0o700);
        assert!(cached());

        chmod(&file, 0o666);
        assert!(!cached(), "a world-writable artifact was loaded");
        assert!(cached(), "the recompiled artifact replaced it");

        // Another user's file (only root can make one here).
        if rustix::process::geteuid().is_root() {
            let file = std::fs::read_dir(&dir)
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path();
            std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
            assert!(!cached(), "another user's artifact was loaded");
        }
    }
}
