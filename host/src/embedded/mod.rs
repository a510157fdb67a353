//! The embedded queue: the queue protocol, the user API and the git route, served from a SQLite store; this module only opens it, wires the routes and runs the reaper.

mod api;
mod auth;
mod git;
pub mod listen;
pub mod model;
mod reply;
mod revision;
mod server;
pub mod store;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio_util::sync::CancellationToken;

pub use self::store::{Store, StoreError};

/// How long the git route waits to connect to a remote repository's host
/// (a fetch itself may take as long as it needs).
const REMOTE_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request body: log entries carry a step's whole output so far.
const BODY_LIMIT: usize = 64 << 20;

/// How the embedded queue is set up.
#[derive(Clone, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// The SQLite file (created if missing).
    pub db_path: PathBuf,
    /// The executors' shared secret; `None`: generated once, kept in the database.
    pub executor_password: Option<String>,
    /// The user API's bearer token; `None`: generated once, kept in the database.
    pub api_token: Option<String>,
    /// A processing job without a heartbeat for this long is reset.
    pub heartbeat_timeout: Duration,
    /// How many times a job is requeued (resets and errors) before it fails.
    pub max_attempts: u32,
    /// How often silent jobs are looked for.
    pub reaper_interval: Duration,
    /// How long a job that ended is kept, with its log (`None`: for ever).
    pub retention: Option<Duration>,
    /// Connections at once and the time a request's headers may take.
    pub limits: listen::Limits,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            db_path: PathBuf::from("queue.db"),
            executor_password: None,
            api_token: None,
            heartbeat_timeout: Duration::from_secs(25),
            max_attempts: 3,
            reaper_interval: Duration::from_secs(5),
            retention: None,
            limits: listen::Limits::default(),
        }
    }
}

// By hand, so that logging the options never prints the secrets.
impl fmt::Debug for EmbeddedOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let given = |secret: &Option<String>| secret.as_ref().map(|_| "<given>");
        f.debug_struct("EmbeddedOptions")
            .field("db_path", &self.db_path)
            .field("executor_password", &given(&self.executor_password))
            .field("api_token", &given(&self.api_token))
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("reaper_interval", &self.reaper_interval)
            .field("retention", &self.retention)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Why the embedded queue cannot start or serve.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An option cannot work.
    #[error("embedded queue: {0}")]
    Options(String),
    /// The data directory could not be created or read.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The listener failed.
    #[error("embedded queue: serving failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Creates the data directory (and its parents) readable by its owner only,
/// or makes an existing one so: it holds the queue's database, the user API
/// token and the simulator's kubeconfig. A directory this user may not
/// change (a volume's root owned by another user) stays as it is, with a
/// warning: the files inside are private anyway.
pub fn private_dir(dir: &Path) -> Result<(), EmbeddedError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let failed = |source| EmbeddedError::DataDir {
        path: dir.display().to_string(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(failed)?;
    let mode = std::fs::metadata(dir).map_err(failed)?.permissions().mode();
    if mode & 0o077 != 0
        && let Err(error) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    {
        tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777), %error, "the data directory stays open to others; its files are private (0600)");
    }
    Ok(())
}

/// The embedded queue; cheap to clone.
#[derive(Clone)]
pub struct Embedded {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    executor_password: String,
    api_token: String,
    generated: bool,
    reaper_interval: Duration,
    retention: Option<Duration>,
    limits: listen::Limits,
    /// The git route's client to remote repositories.
    remote_http: reqwest::Client,
    /// Cancelled when `serve` shuts down, so long polls answer instead of holding it up.
    stop: CancellationToken,
}

impl Embedded {
    /// Opens the store (creating or migrating its schema) and settles the secrets.
    pub fn open(opts: EmbeddedOptions) -> Result<Embedded, EmbeddedError> {
        if opts.reaper_interval.is_zero() {
            return Err(EmbeddedError::Options(
                "the reaper interval must be longer than zero".into(),
            ));
        }
        let store = Store::open(
            &opts.db_path,
            store::Policy {
                heartbeat_timeout: opts.heartbeat_timeout,
                max_attempts: opts.max_attempts,
            },
        )?;
        let (executor_password, new_password) =
            secret(&store, "executor_password", opts.executor_password)?;
        let (api_token, new_token) = secret(&store, "api_token", opts.api_token)?;
        let remote_http = reqwest::Client::builder()
            .connect_timeout(REMOTE_CONNECT_TIMEOUT)
            .build()
            .map_err(|e| {
                EmbeddedError::Options(format!(
                    "cannot set up the client for remote repositories: {e}"
                ))
            })?;
        Ok(Embedded {
            inner: Arc::new(Inner {
                store,
                executor_password,
                api_token,
                generated: new_password || new_token,
                reaper_interval: opts.reaper_interval,
                retention: opts.retention,
                limits: opts.limits,
                remote_http,
                stop: CancellationToken::new(),
            }),
        })
    }

    /// The executors' shared secret (`Authorization: token-executor <it>`).
    pub fn executor_password(&self) -> &str {
        &self.inner.executor_password
    }

    /// The user API's token (`Authorization: Bearer <it>`).
    pub fn api_token(&self) -> &str {
        &self.inner.api_token
    }

    /// Whether this `open` generated a secret (the first start): the caller shows it.
    pub fn generated(&self) -> bool {
        self.inner.generated
    }

    /// The git route's client to remote repositories.
    fn remote_http(&self) -> &reqwest::Client {
        &self.inner.remote_http
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Every route: the protocol under `/.executors/`, the user API under `/api/v1/`.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(server::routes())
            .merge(git::routes())
            .merge(api::routes())
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(self.clone())
    }

    /// Serves the router on `listener` and resets silent jobs every reaper
    /// interval, until `shutdown`.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), EmbeddedError> {
        match self.store().grant_grace(SystemTime::now()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                jobs = n,
                "processing jobs get a fresh heartbeat window after the queue's start"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the heartbeat window of processing jobs")
            }
        }
        let done = shutdown.child_token();
        let reaper = tokio::spawn(reap(
            self.store().clone(),
            self.inner.reaper_interval,
            self.inner.retention,
            done.clone(),
        ));
        let stop = self.inner.stop.clone();
        let stopping = shutdown.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            // Long polls answer now rather than hold the shutdown up.
            stop.cancel();
        });
        let served = listen::serve(listener, self.router(), self.inner.limits, shutdown).await;
        done.cancel();
        if let Err(e) = reaper.await {
            tracing::error!(error = %e, "the embedded queue's reaper panicked");
        }
        served.map_err(EmbeddedError::Serve)
    }

    async fn stopping(&self) {
        self.inner.stop.cancelled().await;
    }
}

fn secret(
    store: &Store,
    name: &str,
    given: Option<String>,
) -> Result<(String, bool), EmbeddedError> {
    match given {
        Some(value) if value.trim().is_empty() => Err(EmbeddedError::Options(format!(
            "the {name} is empty; give a secret or none (then one is generated)"
        ))),
        Some(value) => Ok((value, false)),
        None => Ok(store.secret_or_generate(name)?),
    }
}

/// How often ended jobs past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

async fn reap(store: Store, every: Duration, retention: Option<Duration>, done: CancellationToken) {
    let mut pruned_at: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = done.cancelled() => return,
            _ = tick.tick() => {}
        }
        let resetting = store.clone();
        match tokio::task::spawn_blocking(move || resetting.reset_stale(SystemTime::now())).await {
            Ok(Ok(resets)) => {
                for reset in resets {
                    tracing::warn!(job = reset.id, queue = %reset.queue, executor = %reset.executor,
                        state = %reset.state, "executor stopped heartbeating; job reset");
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "the reaper could not reset silent jobs"),
            Err(e) => tracing::error!(error = %e, "the reaper's store task failed"),
        }
        let due = pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
        if let Some(keep) = retention
            && due
        {
            pruned_at = Some(tokio::time::Instant::now());
            let store = store.clone();
            let cutoff = SystemTime::now()
                .checked_sub(keep)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            match tokio::task::spawn_blocking(move || store.prune(cutoff)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    tracing::info!(jobs = n, retention = ?keep, "deleted jobs that ended longer ago than their retention")
                }
                Ok(Err(e)) => tracing::error!(error = %e, "the reaper could not delete old jobs"),
                Err(e) => tracing::error!(error = %e, "the reaper's store task failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_data_directory_is_readable_by_its_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("state/executor");
        let old = root.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        for dir in [&fresh, &old] {
            private_dir(dir).unwrap();
            let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(
                mode,
                0o700,
                "{} (the queue's secrets) is open to others",
                dir.display()
            );
        }
    }
}
