//! Hot reload of the plugin set: its files watched, SIGHUP and `POST /-/reload`; the new set loads beside the old one and is put in force only when the whole of it loads.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ops::metrics::{PLUGIN_RELOADS, PLUGINS_LOADED};
use crate::ops::server::Reload;
use crate::ops::{PluginsState, Readiness};
use crate::plugins::{ConfigError, Current, LoadErrors, Plugins, PluginsConfig};

/// Quiet time after a file event before reloading: one save by an editor,
/// or one update of a ConfigMap volume by the kubelet (a new timestamped
/// directory, then the `..data` symlink renamed over), is several events.
const SETTLE: Duration = Duration::from_millis(300);

/// Why a new set was refused; the set in force runs on.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration file is not valid (every problem listed).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Plugins whose failure policy is not `ignore` did not load (each named).
    #[error(transparent)]
    Load(#[from] LoadErrors),
    /// The loading thread ended without an answer (it panicked).
    #[error("loading the new plugin set stopped: {0}")]
    Task(String),
}

/// What asked for the reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A file of the set changed.
    File,
    /// SIGHUP.
    Signal,
    /// `POST /-/reload` on the operations port.
    Http,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::File => "file",
            Trigger::Signal => "signal",
            Trigger::Http => "http",
        }
    }
}

/// A reload that was not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A new set is in force: these plugins, in order.
    Swapped {
        /// Their names.
        names: Vec<String>,
    },
    /// The configuration and every plugin file are as they were: nothing to do.
    Unchanged,
}

/// One reload, as [`Reloader::attempts`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Counts from 1.
    pub number: u64,
    /// What asked for it.
    pub trigger: Trigger,
    /// What it did, or why it was refused.
    pub result: Result<Reloaded, String>,
}

/// What a configuration file amounts to: a digest of its text and of every
/// file it names (plugins, keys, signatures), and the directories to watch
/// for a change of any.
pub struct Fingerprint {
    digest: Vec<u8>,
    dirs: BTreeSet<PathBuf>,
}

/// The fingerprint of the configuration at `path`: taken before the first
/// load, it lets the first reload see whether anything changed since.
pub fn fingerprint(path: &Path) -> Result<Fingerprint, ReloadError> {
    read(path).map(|(_, _, fingerprint)| fingerprint)
}

/// The configuration at `path`, parsed as far as it goes (its loadable
/// entries and its problems, so that a refused reload lists what loading
/// finds too), and its fingerprint. Reads every file whole (the loader
/// reads them anyway, and refuses plugins over its size limit).
fn read(path: &Path) -> Result<(PluginsConfig, Vec<String>, Fingerprint), ReloadError> {
    let (config, problems) = PluginsConfig::from_file_in_part(path)?;
    let mut hash = Sha256::new();
    let mut dirs = BTreeSet::new();
    // Every file the set is made of: a re-signed plugin or a new key is a
    // new set too.
    let files = std::iter::once(path.to_owned()).chain(config.plugins.iter().flat_map(|p| {
        let trust = p
            .trust
            .iter()
            .flat_map(|t| [t.public_key.clone(), t.signature.clone()]);
        std::iter::once(p.path.clone()).chain(trust)
    }));
    for file in files {
        let mut bytes = Vec::new();
        match std::fs::File::open(&file).and_then(|mut f| f.read_to_end(&mut bytes)) {
            // Lengths first, so that moving bytes between files changes the digest.
            Ok(len) => {
                hash.update((len as u64).to_le_bytes());
                hash.update(&bytes);
            }
            // The loader refuses the set with the better message (a missing
            // signature says how to make one); here it is only a state.
            Err(e) => hash.update(format!("unreadable: {:?}", e.kind()).as_bytes()),
        }
        // The directory as named, not resolved: a ConfigMap volume swaps
        // its `..data` symlink in the directory the configuration names.
        if let Some(dir) = file.parent() {
            dirs.insert(if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir.to_owned()
            });
        }
    }
    Ok((
        config,
        problems,
        Fingerprint {
            digest: hash.finalize().to_vec(),
            dirs,
        },
    ))
}

/// Tells readiness and the `executor_plugins_loaded` gauge that `plugins`
/// are the set in force, at start as after a reload; their names.
pub fn in_force(readiness: Option<&Readiness>, plugins: &Plugins) -> Vec<String> {
    let names: Vec<String> = plugins.info().into_iter().map(|p| p.name).collect();
    if let Some(readiness) = readiness {
        readiness.plugins(PluginsState::Loaded {
            names: names.clone(),
            skipped: plugins.skipped().to_vec(),
        });
    }
    metrics::gauge!(PLUGINS_LOADED).set(names.len() as f64);
    names
}

/// Reloads the plugin set of one configuration file into a [`Current`].
pub struct Reloader {
    current: Current,
    path: PathBuf,
    readiness: Option<Readiness>,
    /// Reloads run one at a time; this holds the fingerprint of the set in
    /// force (`None` until the first reload reads one).
    state: Mutex<Option<Fingerprint>>,
    attempts: watch::Sender<Option<Attempt>>,
}

impl Reloader {
    /// Reloads `current` from the configuration at `path` (the one it was
    /// loaded from, as `loaded` found it before loading; `None` makes the
    /// first reload load whatever it finds), reporting to `readiness`.
    pub fn new(
        current: Current,
        path: PathBuf,
        loaded: Option<Fingerprint>,
        readiness: Option<Readiness>,
    ) -> Reloader {
        Reloader {
            current,
            path,
            readiness,
            state: Mutex::new(loaded),
            attempts: watch::channel(None).0,
        }
    }

    /// The set in force.
    pub fn current(&self) -> &Current {
        &self.current
    }

    /// The last reload; a new value after each.
    pub fn attempts(&self) -> watch::Receiver<Option<Attempt>> {
        self.attempts.subscribe()
    }

    /// Reads the configuration and its plugin files; when any changed since
    /// the set in force was loaded, loads the new set (on a blocking thread,
    /// in the same runtime: compiled plugins are cached, instances pooled)
    /// and swaps it in. Jobs that started before keep the set they took.
    pub async fn reload(&self, trigger: Trigger) -> Result<Reloaded, ReloadError> {
        let mut state = self.state.lock().await;
        let started = Instant::now();
        let path = self.path.clone();
        let known = state.as_ref().map(|f| f.digest.clone());
        let runtime = self.current.get().runtime().clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let (config, problems, fingerprint) = read(&path)?;
            if problems.is_empty() && known.as_ref() == Some(&fingerprint.digest) {
                return Ok((None, fingerprint));
            }
            let plugins = Plugins::load_in_part(runtime, &path, &config, problems)?;
            Ok::<_, ReloadError>((Some(plugins), fingerprint))
        })
        .await
        .map_err(|e| ReloadError::Task(e.to_string()))
        .and_then(|r| r);
        let result = match loaded {
            Ok((None, _)) => Ok(Reloaded::Unchanged),
            Ok((Some(plugins), fingerprint)) => {
                let names = in_force(self.readiness.as_ref(), &plugins);
                self.current.swap(plugins);
                *state = Some(fingerprint);
                tracing::info!(trigger = trigger.as_str(), plugins = ?names, ms = started.elapsed().as_millis() as u64, "plugin set reloaded");
                Ok(Reloaded::Swapped { names })
            }
            Err(e) => {
                tracing::warn!(trigger = trigger.as_str(), error = %e, "new plugin set refused; the loaded one runs on");
                Err(e)
            }
        };
        if let Some(readiness) = &self.readiness {
            match &result {
                Ok(Reloaded::Swapped { .. }) => readiness.reload(None),
                Ok(Reloaded::Unchanged) => {}
                // /readyz has one line per check.
                Err(e) => readiness.reload(Some(e.to_string().replace('\n', "; "))),
            }
        }
        let outcome = match &result {
            Ok(Reloaded::Swapped { .. }) => "swapped",
            Ok(Reloaded::Unchanged) => "unchanged",
            Err(_) => "refused",
        };
        metrics::counter!(PLUGIN_RELOADS, "trigger" => trigger.as_str(), "result" => outcome)
            .increment(1);
        self.attempts.send_modify(|last| {
            let number = last.as_ref().map_or(1, |a| a.number + 1);
            *last = Some(Attempt {
                number,
                trigger,
                result: result
                    .as_ref()
                    .map(Clone::clone)
                    .map_err(ToString::to_string),
            });
        });
        result
    }

    /// The directories of the configuration and its plugin files, as the
    /// set in force names them.
    async fn dirs(&self) -> BTreeSet<PathBuf> {
        match &*self.state.lock().await {
            Some(f) => f.dirs.clone(),
            None => self.path.parent().map(Path::to_owned).into_iter().collect(),
        }
    }

    /// Reloads on a change of any file of the set, and on SIGHUP, until
    /// `stop`. Once the watch is in place it checks the files once, for a
    /// change made between the first load and the watch.
    pub fn spawn(self: Arc<Self>, stop: CancellationToken) -> JoinHandle<()> {
        // Taken over now, not when the task first runs: until then SIGHUP's
        // default action would end the executor.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        if let Err(e) = &hangup {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /-/reload");
        }
        tokio::spawn(async move { self.run(hangup.ok(), stop).await })
    }

    async fn run(
        self: Arc<Self>,
        mut hangup: Option<tokio::signal::unix::Signal>,
        stop: CancellationToken,
    ) {
        // Capacity 1: events that arrive while one waits add nothing.
        let (events, mut changed) = mpsc::channel::<()>(1);
        let watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(_) => {
                    let _ = events.try_send(());
                }
                Err(e) => tracing::warn!(error = %e, "watching the plugin files failed"),
            });
        let mut watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the plugin files; reload with SIGHUP or POST /-/reload");
                None
            }
        };
        let mut watched = BTreeSet::new();
        self.watch(&mut watcher, &mut watched).await;
        let _ = self.reload(Trigger::File).await;
        // The change, if there was one, may have moved files.
        self.watch(&mut watcher, &mut watched).await;
        loop {
            let trigger = tokio::select! {
                () = stop.cancelled() => return,
                Some(()) = changed.recv() => {
                    // Let the burst of events end.
                    while let Ok(Some(())) = tokio::time::timeout(SETTLE, changed.recv()).await {}
                    Trigger::File
                }
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => Trigger::Signal,
            };
            let _ = self.reload(trigger).await;
            self.watch(&mut watcher, &mut watched).await;
        }
    }

    /// Watches the directories of the set in force, and no others.
    async fn watch(
        &self,
        watcher: &mut Option<notify::RecommendedWatcher>,
        watched: &mut BTreeSet<PathBuf>,
    ) {
        let Some(watcher) = watcher else { return };
        let wanted = self.dirs().await;
        for gone in watched.difference(&wanted) {
            let _ = watcher.unwatch(gone);
        }
        for dir in wanted.difference(watched) {
            if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a plugin directory");
            }
        }
        *watched = wanted;
    }
}

impl Reload for Reloader {
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>> {
        Box::pin(async move {
            match Reloader::reload(self, Trigger::Http).await {
                Ok(Reloaded::Swapped { names }) => Ok(format!("reloaded: {}", names.join(", "))),
                Ok(Reloaded::Unchanged) => Ok("unchanged".to_owned()),
                Err(e) => Err(format!("refused; the loaded plugins run on: {e}")),
            }
        })
    }
}
