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
        if path.is_file() {
            // SAFETY: the file was written by `Component::serialize` of an
            // engine with the same compatibility hash (it is in the name) into
            // a directory only this user can write; wasmtime re-checks the
            // header and refuses artifacts of another configuration.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok((component, true)),
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "ignoring unusable cached plugin")
                }
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
