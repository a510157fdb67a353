//! The embedded queue's SQLite store: opening it, the one write path (a transaction that wakes the long polls) and the readers beside it; it returns `model` types and never knows HTTP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

pub use self::jobs::{Beat, CancelOutcome, Dequeued, Finish, Reset, TokenCheck};

mod entries;
mod jobs;
mod registry;
mod schema;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or set up.
    #[error("cannot open the queue database {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database file could not be made readable by its owner only.
    #[error("cannot make the queue database {path} private (mode 0600): {source}")]
    Private {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A statement failed.
    #[error("queue database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The schema was made by a newer executor.
    #[error("the queue database has schema version {found}; this executor knows up to {known}")]
    Schema {
        /// The file's version.
        found: i64,
        /// This build's version.
        known: i64,
    },
    /// The OS gave no randomness for a token.
    #[error("no randomness for a secret: {0}")]
    Random(String),
}

/// How jobs are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A processing job without a heartbeat for this long is reset.
    pub heartbeat_timeout: Duration,
    /// How many times a job is requeued (resets and errors) before it fails.
    pub max_attempts: u32,
}

/// The queue's database; cheap to clone. Calls block: async code runs them
/// with `tokio::task::spawn_blocking`.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    /// The one writer: SQLite takes one write transaction at a time anyway.
    conn: Mutex<Connection>,
    /// Idle read connections. In WAL mode a reader sees the last commit and
    /// never waits for the writer, so long polls and job views (up to 32 MiB
    /// an entry) do not hold up heartbeats and dequeues.
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    changes: watch::Sender<u64>,
    policy: Policy,
}

/// Idle readers kept open; a busier moment opens more and closes them after.
const IDLE_READERS: usize = 8;

/// The files SQLite keeps beside the database, by suffix.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Makes the database (created if missing) and the companions that exist
/// readable and writable by their owner only, whatever the umask: they hold
/// the queue's secrets and the jobs' payloads in plain text. SQLite gives the
/// companions it creates later the database's mode.
fn private_files(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let private = || std::fs::Permissions::from_mode(0o600);
    let failed = |path: &Path| {
        let path = path.display().to_string();
        move |source| StoreError::Private { path, source }
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .and_then(|file| file.set_permissions(private()))
        .map_err(failed(path))?;
    for suffix in COMPANIONS {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        let companion = Path::new(&companion);
        match std::fs::set_permissions(companion, private()) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other.map_err(failed(companion))?,
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path, policy: Policy) -> Result<Store, StoreError> {
        let opened = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        private_files(path)?;
        let mut conn = Connection::open(path).map_err(opened)?;
        // WAL lets readers (ours and the CLI's) read while the server writes;
        // the busy timeout covers another process's write transaction.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(opened)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(opened)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(opened)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(opened)?;
        schema::migrate(&mut conn)?;
        let (changes, _) = watch::channel(0);
        Ok(Store {
            shared: Arc::new(Shared {
                conn: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
                path: path.to_owned(),
                changes,
                policy,
            }),
        })
    }

    fn open_reader(&self) -> Result<Connection, StoreError> {
        let path = &self.shared.path;
        let opened = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(opened)?;
        conn.pragma_update(None, "query_only", "ON")
            .map_err(opened)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(opened)?;
        Ok(conn)
    }

    /// The retry policy.
    pub fn policy(&self) -> Policy {
        self.shared.policy
    }

    /// A receiver that sees a new value after every write.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-transaction rolled it back when the transaction dropped:
        // the connection itself is still sound.
        self.shared
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn idle_readers(&self) -> MutexGuard<'_, Vec<Connection>> {
        // Held only to push or pop: a panic cannot leave the list unsound.
        self.shared
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in one read transaction on a reader connection, never on
    /// the writer's: it sees one consistent commit and waits for no write.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.idle_readers().pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.open_reader()?,
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&tx);
        // Read-only: ending it either way releases the snapshot.
        drop(tx);
        let mut idle = self.idle_readers();
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        out
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let before = conn.total_changes();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        let changed = conn.total_changes() != before;
        drop(conn);
        if changed {
            self.shared.changes.send_modify(|v| *v = v.wrapping_add(1));
        }
        Ok(out)
    }

    /// A write on behalf of the executor holding `job` in `queue`: `None`,
    /// and nothing written, when it does not hold it (any more).
    fn write_held<T>(
        &self,
        queue: &str,
        job: i64,
        executor: &str,
        f: impl FnOnce(&Transaction<'_>) -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.write(|tx| {
            if owned(tx, queue, job, executor)? {
                f(tx)
            } else {
                Ok(None)
            }
        })
    }
}

/// Whether `job` is processing in `queue` for `executor`: every executor write depends on it.
fn owned(conn: &Connection, queue: &str, job: i64, executor: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM jobs WHERE id = ?1 AND queue = ?2 AND state = 'processing' AND executor = ?3",
            params![job, queue, executor],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn random_hex<const N: usize>() -> Result<String, StoreError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn rfc3339(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
