//! The embedded queue's SQLite store: jobs and their life, log entries, executors, repositories and secrets; every write is one transaction that wakes the long polls.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use super::api::{EntryView, ExecutorView, JobDetail, JobState, JobSummary, Repository};
use crate::queue::wire::{ExecutionLogEntry, Telemetry};

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

/// A dequeued job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dequeued {
    /// The job.
    pub id: i64,
    /// Its queue.
    pub queue: String,
    /// Its new token (only its hash is stored).
    pub token: String,
    /// The payload with `id`, `queue` and `token` set, as the dequeue reply's body.
    pub body: String,
}

/// What a heartbeat learnt: `(id, queue)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Beat {
    /// Jobs still processing for this executor.
    pub known: Vec<(i64, String)>,
    /// Those of them a user cancelled.
    pub cancel: Vec<(i64, String)>,
}

/// How an executor ends a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish<'a> {
    /// `markComplete`.
    Complete,
    /// `markErrored`: retryable.
    Errored(&'a str),
    /// `markFailed`: permanent.
    Failed(&'a str),
}

/// What a job token proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// It is the token of the job it was presented for.
    Valid,
    /// It is the token of another job.
    OtherJob,
    /// It is nobody's token (any more).
    Unknown,
}

/// What a cancellation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was queued and is now cancelled.
    Cancelled(JobSummary),
    /// The job is processing; its executor is told by its next heartbeat.
    Requested(JobSummary),
    /// The job had already ended.
    Terminal(JobSummary),
}

/// A processing job the reaper found silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// The job.
    pub id: i64,
    /// Its queue.
    pub queue: String,
    /// The executor that stopped heartbeating.
    pub executor: String,
    /// Where the job went: queued, failed or cancelled.
    pub state: JobState,
}

/// The queue's database; cheap to clone. Calls block: async code runs them
/// with `tokio::task::spawn_blocking`.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    conn: Mutex<Connection>,
    changes: watch::Sender<u64>,
    policy: Policy,
}

/// Each entry takes the schema from its index to its index + 1 (`PRAGMA user_version`).
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    executor TEXT,
    token_hash BLOB,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    last_heartbeat INTEGER,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX jobs_by_state ON jobs (state, queue, id);
CREATE UNIQUE INDEX jobs_by_token ON jobs (token_hash) WHERE token_hash IS NOT NULL;
CREATE TABLE entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    key TEXT NOT NULL,
    command TEXT NOT NULL,
    start_time TEXT NOT NULL,
    exit_code INTEGER,
    out TEXT,
    duration_ms INTEGER
);
CREATE INDEX entries_by_job ON entries (job_id, id);
CREATE TABLE executors (name TEXT PRIMARY KEY, last_seen INTEGER NOT NULL, telemetry TEXT NOT NULL);
CREATE TABLE repositories (name TEXT PRIMARY KEY, url TEXT NOT NULL);
"#];

const SUMMARY_COLUMNS: &str = "id, queue, state, attempts, executor, message, cancel_requested, created_at, started_at, finished_at";

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path, policy: Policy) -> Result<Store, StoreError> {
        let opened = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(path).map_err(opened)?;
        // WAL lets the CLI read while the server writes; the busy timeout
        // covers another process's write transaction.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(opened)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(opened)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(opened)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(opened)?;
        migrate(&mut conn)?;
        let (changes, _) = watch::channel(0);
        Ok(Store {
            shared: Arc::new(Shared {
                conn: Mutex::new(conn),
                changes,
                policy,
            }),
        })
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

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&self.lock())
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

    /// The secret stored under `name`, generated (32 random bytes, hex) and
    /// stored on first use; `true` when it was generated now.
    pub fn secret_or_generate(&self, name: &str) -> Result<(String, bool), StoreError> {
        self.write(|tx| {
            let stored: Option<String> = tx
                .query_row("SELECT value FROM meta WHERE key = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(value) = stored {
                return Ok((value, false));
            }
            let value = random_hex::<32>()?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![name, value],
            )?;
            Ok((value, true))
        })
    }

    /// Enqueues a payload as given, WITHOUT validation (tests of malformed
    /// payloads use it; the user API validates before calling [`Store::enqueue`]).
    pub fn insert_raw(&self, queue: &str, payload_json: &str) -> Result<i64, StoreError> {
        self.enqueue(queue, payload_json, SystemTime::now())
    }

    /// Enqueues a payload (its `id`, `queue` and `token` are set at dequeue).
    pub fn enqueue(
        &self,
        queue: &str,
        payload_json: &str,
        now: SystemTime,
    ) -> Result<i64, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO jobs (queue, payload, state, created_at) VALUES (?1, ?2, 'queued', ?3)",
                params![queue, payload_json, millis(now)],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Hands the oldest queued job of `queues` to `executor`, with a fresh token.
    pub fn dequeue(
        &self,
        queues: &[String],
        executor: &str,
        now: SystemTime,
    ) -> Result<Option<Dequeued>, StoreError> {
        let token = random_hex::<20>()?;
        let queues = serde_json::to_string(queues).unwrap_or_default();
        self.write(|tx| {
            let next: Option<(i64, String, String)> = tx
                .query_row(
                    "SELECT id, queue, payload FROM jobs
                     WHERE state = 'queued' AND queue IN (SELECT value FROM json_each(?1))
                     ORDER BY id LIMIT 1",
                    [&queues],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((id, queue, payload)) = next else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE jobs SET state = 'processing', executor = ?2, token_hash = ?3,
                     last_heartbeat = ?4, started_at = ?4, cancel_requested = 0, version = version + 1
                 WHERE id = ?1",
                params![id, executor, hash(&token), millis(now)],
            )?;
            let body = with_identity(&payload, id, &queue, Some(&token))
                .map_or(payload, |p| p.to_string());
            Ok(Some(Dequeued {
                id,
                queue,
                token,
                body,
            }))
        })
    }

    /// Records a heartbeat: refreshes the listed `(id, queue)` jobs that are
    /// processing for `executor`, and remembers the executor.
    pub fn heartbeat(
        &self,
        executor: &str,
        jobs: &[(i64, String)],
        telemetry: &Telemetry,
        now: SystemTime,
    ) -> Result<Beat, StoreError> {
        let telemetry = serde_json::to_string(telemetry).unwrap_or_default();
        self.write(|tx| {
            let mut beat = Beat::default();
            for (id, queue) in jobs {
                let cancel: Option<bool> = tx
                    .query_row(
                        "UPDATE jobs SET last_heartbeat = ?4
                         WHERE id = ?1 AND queue = ?2 AND state = 'processing' AND executor = ?3
                         RETURNING cancel_requested",
                        params![id, queue, executor, millis(now)],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(cancel) = cancel {
                    beat.known.push((*id, queue.clone()));
                    if cancel {
                        beat.cancel.push((*id, queue.clone()));
                    }
                }
            }
            tx.execute(
                "INSERT INTO executors (name, last_seen, telemetry) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen, telemetry = excluded.telemetry",
                params![executor, millis(now), telemetry],
            )?;
            Ok(beat)
        })
    }

    /// Whether `token` is the token of `job`, of another job, or of none;
    /// the job's own token is compared in constant time.
    pub fn check_token(&self, job: i64, token: &str) -> Result<TokenCheck, StoreError> {
        let presented = hash(token);
        self.read(|conn| {
            let own: Option<Vec<u8>> = conn
                .query_row(
                    "SELECT token_hash FROM jobs WHERE id = ?1 AND token_hash IS NOT NULL",
                    [job],
                    |r| r.get(0),
                )
                .optional()?;
            if own.is_some_and(|own| bool::from(own.as_slice().ct_eq(&presented))) {
                return Ok(TokenCheck::Valid);
            }
            let other: Option<i64> = conn
                .query_row(
                    "SELECT id FROM jobs WHERE token_hash = ?1",
                    [&presented],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(match other {
                Some(_) => TokenCheck::OtherJob,
                None => TokenCheck::Unknown,
            })
        })
    }

    /// Adds a log entry to a job processing in `queue` for `executor`; `None` if it is not.
    pub fn add_entry(
        &self,
        queue: &str,
        job: i64,
        executor: &str,
        entry: &ExecutionLogEntry,
    ) -> Result<Option<i64>, StoreError> {
        self.write(|tx| {
            if !owned(tx, queue, job, executor)? {
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO entries (job_id, key, command, start_time, exit_code, out, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    job,
                    entry.key,
                    serde_json::to_string(&entry.command).unwrap_or_default(),
                    entry.start_time,
                    entry.exit_code,
                    entry.out,
                    entry.duration_ms
                ],
            )?;
            let id = tx.last_insert_rowid();
            bump(tx, job)?;
            Ok(Some(id))
        })
    }

    /// Replaces a log entry of a job processing in `queue` for `executor`;
    /// `false` if the job is not, or the entry is not the job's.
    pub fn update_entry(
        &self,
        queue: &str,
        job: i64,
        executor: &str,
        entry_id: i64,
        entry: &ExecutionLogEntry,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            if !owned(tx, queue, job, executor)? {
                return Ok(false);
            }
            let updated = tx.execute(
                "UPDATE entries SET key = ?3, command = ?4, start_time = ?5, exit_code = ?6, out = ?7, duration_ms = ?8
                 WHERE id = ?1 AND job_id = ?2",
                params![
                    entry_id,
                    job,
                    entry.key,
                    serde_json::to_string(&entry.command).unwrap_or_default(),
                    entry.start_time,
                    entry.exit_code,
                    entry.out,
                    entry.duration_ms
                ],
            )?;
            if updated == 0 {
                return Ok(false);
            }
            bump(tx, job)?;
            Ok(true)
        })
    }

    /// Ends the attempt of a job processing in `queue` for `executor`; the
    /// state it went to, or `None` if it is not processing there for that executor.
    pub fn finish(
        &self,
        queue: &str,
        job: i64,
        executor: &str,
        how: Finish<'_>,
        now: SystemTime,
    ) -> Result<Option<JobState>, StoreError> {
        let max_attempts = self.shared.policy.max_attempts;
        self.write(|tx| {
            if !owned(tx, queue, job, executor)? {
                return Ok(None);
            }
            let (attempts, cancel): (u32, bool) = tx.query_row(
                "SELECT attempts, cancel_requested FROM jobs WHERE id = ?1",
                [job],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (state, message) = match how {
                Finish::Complete => (JobState::Completed, None),
                Finish::Errored(message) | Finish::Failed(message) if cancel => {
                    (JobState::Cancelled, Some(message))
                }
                Finish::Errored(message) if attempts < max_attempts => {
                    (JobState::Queued, Some(message))
                }
                Finish::Errored(message) | Finish::Failed(message) => {
                    (JobState::Failed, Some(message))
                }
            };
            settle(tx, job, state, message, now)?;
            Ok(Some(state))
        })
    }

    /// Gives every processing job a fresh heartbeat window: while this
    /// queue was down its executors could not beat, and a restart must not
    /// take their jobs away before they had a chance to. Returns how many.
    pub fn grant_grace(&self, now: SystemTime) -> Result<usize, StoreError> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE jobs SET last_heartbeat = ?1 WHERE state = 'processing' AND last_heartbeat < ?1",
                [millis(now)],
            )?)
        })
    }

    /// Resets the processing jobs whose last heartbeat is older than the
    /// policy's timeout at `now`: requeued while they have attempts left,
    /// else failed (cancelled if a user asked for it).
    pub fn reset_stale(&self, now: SystemTime) -> Result<Vec<Reset>, StoreError> {
        let Policy {
            heartbeat_timeout,
            max_attempts,
        } = self.shared.policy;
        let cutoff = millis(now)
            .saturating_sub(i64::try_from(heartbeat_timeout.as_millis()).unwrap_or(i64::MAX));
        self.write(|tx| {
            let stale = {
                let mut stmt = tx.prepare(
                    "SELECT id, queue, COALESCE(executor, ''), attempts, cancel_requested FROM jobs
                     WHERE state = 'processing' AND last_heartbeat < ?1 ORDER BY id",
                )?;
                let rows = stmt.query_map([cutoff], |r| {
                    let job = (r.get::<_, i64>(0)?, r.get::<_, String>(1)?);
                    Ok((job, r.get::<_, String>(2)?, r.get::<_, u32>(3)?, r.get(4)?))
                })?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            let silence = humantime::format_duration(heartbeat_timeout);
            let mut resets = Vec::new();
            for ((id, queue), executor, attempts, cancel) in stale {
                let gone = format!("executor {executor} stopped heartbeating for {silence}");
                let (state, message) = if cancel {
                    let message = format!("cancelled; {gone} before it stopped the job");
                    (JobState::Cancelled, message)
                } else if attempts < max_attempts {
                    let retry = attempts + 1;
                    let message = format!("{gone}; requeued (retry {retry} of {max_attempts})");
                    (JobState::Queued, message)
                } else {
                    let message =
                        format!("{gone}, and the job was already requeued {attempts} time(s)");
                    (JobState::Failed, message)
                };
                settle(tx, id, state, Some(&message), now)?;
                resets.push(Reset {
                    id,
                    queue,
                    executor,
                    state,
                });
            }
            Ok(resets)
        })
    }

    /// Cancels a job: at once if queued, through its executor if processing;
    /// `None` if it does not exist.
    pub fn cancel(&self, id: i64, now: SystemTime) -> Result<Option<CancelOutcome>, StoreError> {
        self.write(|tx| {
            let Some(before) = summary(tx, id)? else {
                return Ok(None);
            };
            let outcome = match before.state {
                JobState::Queued => {
                    settle(
                        tx,
                        id,
                        JobState::Cancelled,
                        Some("cancelled before it started"),
                        now,
                    )?;
                    CancelOutcome::Cancelled
                }
                JobState::Processing => {
                    tx.execute(
                        "UPDATE jobs SET cancel_requested = 1, version = version + 1
                         WHERE id = ?1 AND cancel_requested = 0",
                        [id],
                    )?;
                    CancelOutcome::Requested
                }
                _ => return Ok(Some(CancelOutcome::Terminal(before))),
            };
            let after = summary(tx, id)?.unwrap_or(before);
            Ok(Some(outcome(after)))
        })
    }

    /// A job's summary.
    pub fn summary(&self, id: i64) -> Result<Option<JobSummary>, StoreError> {
        self.read(|conn| summary(conn, id))
    }

    /// A job with its version, entries and payload (without token).
    pub fn job(&self, id: i64) -> Result<Option<JobDetail>, StoreError> {
        self.read(|conn| {
            let Some(summary) = summary(conn, id)? else {
                return Ok(None);
            };
            let (version, payload): (i64, String) = conn.query_row(
                "SELECT version, payload FROM jobs WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let mut stmt = conn.prepare(
                "SELECT id, key, command, start_time, exit_code, out, duration_ms
                 FROM entries WHERE job_id = ?1 ORDER BY id",
            )?;
            let entries = stmt
                .query_map([id], |r| {
                    Ok(EntryView {
                        id: r.get(0)?,
                        entry: ExecutionLogEntry {
                            key: r.get(1)?,
                            command: serde_json::from_str(&r.get::<_, String>(2)?)
                                .unwrap_or_default(),
                            start_time: r.get(3)?,
                            exit_code: r.get(4)?,
                            out: r.get(5)?,
                            duration_ms: r.get(6)?,
                        },
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let payload = with_identity(&payload, id, &summary.queue, None).unwrap_or_else(|| {
                serde_json::from_str(&payload).unwrap_or(Value::String(payload))
            });
            Ok(Some(JobDetail {
                summary,
                version,
                entries,
                payload,
            }))
        })
    }

    /// Jobs, newest first, optionally of one queue and state.
    pub fn jobs(
        &self,
        queue: Option<&str>,
        state: Option<JobState>,
        limit: u32,
    ) -> Result<Vec<JobSummary>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM jobs
                 WHERE (?1 IS NULL OR queue = ?1) AND (?2 IS NULL OR state = ?2)
                 ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![queue, state.map(|s| s.as_str()), limit],
                summary_row,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The `repositoryName` of a processing job's payload.
    pub fn processing_repository(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            let payload: Option<String> = conn
                .query_row(
                    "SELECT payload FROM jobs WHERE id = ?1 AND state = 'processing'",
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(payload
                .and_then(|p| serde_json::from_str::<Value>(&p).ok())
                .and_then(|p| p.get("repositoryName")?.as_str().map(str::to_owned)))
        })
    }

    /// Registers (or re-points) a repository.
    pub fn put_repository(&self, repo: &Repository) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO repositories (name, url) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET url = excluded.url",
                params![repo.name, repo.url],
            )?;
            Ok(())
        })
    }

    /// A registered repository.
    pub fn repository(&self, name: &str) -> Result<Option<Repository>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_row(
                    "SELECT name, url FROM repositories WHERE name = ?1",
                    [name],
                    |r| {
                        Ok(Repository {
                            name: r.get(0)?,
                            url: r.get(1)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    /// Every registered repository, by name.
    pub fn repositories(&self) -> Result<Vec<Repository>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT name, url FROM repositories ORDER BY name")?;
            let rows = stmt.query_map([], |r| {
                Ok(Repository {
                    name: r.get(0)?,
                    url: r.get(1)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Every executor that heartbeated, by name.
    pub fn executors(&self) -> Result<Vec<ExecutorView>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare("SELECT name, last_seen, telemetry FROM executors ORDER BY name")?;
            let rows = stmt.query_map([], |r| {
                Ok(ExecutorView {
                    name: r.get(0)?,
                    last_seen: rfc3339(r.get(1)?),
                    telemetry: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::Schema { found, known });
    }
    for (version, sql) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
    }
    tx.commit()?;
    Ok(())
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

fn bump(conn: &Connection, job: i64) -> Result<(), StoreError> {
    conn.execute("UPDATE jobs SET version = version + 1 WHERE id = ?1", [job])?;
    Ok(())
}

/// Moves a job out of processing (or queued): back to queued with one more
/// attempt, or to a terminal state. Either way its token dies.
fn settle(
    conn: &Connection,
    job: i64,
    state: JobState,
    message: Option<&str>,
    now: SystemTime,
) -> Result<(), StoreError> {
    if state == JobState::Queued {
        conn.execute(
            "UPDATE jobs SET state = 'queued', attempts = attempts + 1, message = ?2, token_hash = NULL,
                 last_heartbeat = NULL, version = version + 1
             WHERE id = ?1",
            params![job, message],
        )?;
    } else {
        conn.execute(
            "UPDATE jobs SET state = ?2, message = ?3, token_hash = NULL, last_heartbeat = NULL,
                 finished_at = ?4, version = version + 1
             WHERE id = ?1",
            params![job, state.as_str(), message, millis(now)],
        )?;
    }
    Ok(())
}

fn summary(conn: &Connection, id: i64) -> Result<Option<JobSummary>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {SUMMARY_COLUMNS} FROM jobs WHERE id = ?1"),
            [id],
            summary_row,
        )
        .optional()?)
}

fn summary_row(r: &Row<'_>) -> rusqlite::Result<JobSummary> {
    let state: String = r.get(2)?;
    let state = state.parse::<JobState>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(JobSummary {
        id: r.get(0)?,
        queue: r.get(1)?,
        state,
        attempts: r.get(3)?,
        executor: r.get(4)?,
        message: r.get(5)?,
        cancel_requested: r.get(6)?,
        created_at: rfc3339(r.get(7)?),
        started_at: r.get::<_, Option<i64>>(8)?.map(rfc3339),
        finished_at: r.get::<_, Option<i64>>(9)?.map(rfc3339),
    })
}

/// The stored payload with the queue's fields set; `None` for a payload that
/// is not a JSON object (only `insert_raw` stores one), which is then given
/// as it is, for the executor to refuse.
fn with_identity(payload: &str, id: i64, queue: &str, token: Option<&str>) -> Option<Value> {
    let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(payload) else {
        return None;
    };
    fields.insert("id".into(), id.into());
    fields.insert("queue".into(), queue.into());
    if let Some(token) = token {
        fields.insert("token".into(), token.into());
    }
    Some(Value::Object(fields))
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
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(25);

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(
            &dir.path().join("queue.db"),
            Policy {
                heartbeat_timeout: TIMEOUT,
                max_attempts: 3,
            },
        )
        .unwrap()
    }

    fn queues(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn entry(out: &str) -> ExecutionLogEntry {
        ExecutionLogEntry {
            key: "setup.workspace".into(),
            command: vec!["git".into(), "fetch".into()],
            start_time: "2026-01-01T00:00:00Z".into(),
            out: Some(out.into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_oldest_job_of_the_asked_queues_goes_out_once_with_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let now = SystemTime::now();
        let a = store.enqueue("a", r#"{"dockerSteps": []}"#, now).unwrap();
        let b = store.enqueue("b", "{}", now).unwrap();
        let a2 = store.enqueue("a", "{}", now).unwrap();
        assert!(store.dequeue(&queues(&["c"]), "e", now).unwrap().is_none());
        let first = store
            .dequeue(&queues(&["b", "a"]), "e", now)
            .unwrap()
            .unwrap();
        assert_eq!((first.id, first.queue.as_str()), (a, "a"));
        let body: Value = serde_json::from_str(&first.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"dockerSteps": [], "id": a, "queue": "a", "token": first.token})
        );
        assert_eq!(first.token.len(), 40);
        assert_eq!(
            store
                .dequeue(&queues(&["b", "a"]), "e", now)
                .unwrap()
                .unwrap()
                .id,
            b
        );
        assert_eq!(
            store
                .dequeue(&queues(&["a"]), "e", now)
                .unwrap()
                .unwrap()
                .id,
            a2
        );
        assert!(
            store
                .dequeue(&queues(&["a", "b"]), "e", now)
                .unwrap()
                .is_none()
        );
        let job = store.summary(a).unwrap().unwrap();
        assert_eq!(
            (job.state, job.executor.as_deref()),
            (JobState::Processing, Some("e"))
        );
    }

    #[test]
    fn a_raw_payload_that_is_not_an_object_is_served_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store.insert_raw("a", "not json {").unwrap();
        let job = store
            .dequeue(&queues(&["a"]), "e", SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!(job.body, "not json {");
    }

    #[test]
    fn a_token_proves_its_own_job_until_the_job_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let now = SystemTime::now();
        let (a, b) = (
            store.insert_raw("q", "{}").unwrap(),
            store.insert_raw("q", "{}").unwrap(),
        );
        let ta = store
            .dequeue(&queues(&["q"]), "e", now)
            .unwrap()
            .unwrap()
            .token;
        let tb = store
            .dequeue(&queues(&["q"]), "e", now)
            .unwrap()
            .unwrap()
            .token;
        assert_eq!(store.check_token(a, &ta).unwrap(), TokenCheck::Valid);
        assert_eq!(store.check_token(a, &tb).unwrap(), TokenCheck::OtherJob);
        assert_eq!(store.check_token(a, "nope").unwrap(), TokenCheck::Unknown);
        assert_eq!(
            store.finish("q", b, "e", Finish::Complete, now).unwrap(),
            Some(JobState::Completed)
        );
        assert_eq!(store.check_token(b, &tb).unwrap(), TokenCheck::Unknown);
        assert_eq!(store.check_token(a, &tb).unwrap(), TokenCheck::Unknown);
    }

    #[test]
    fn writes_need_the_job_processing_in_that_queue_for_that_executor() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let now = SystemTime::now();
        let id = store.insert_raw("q", "{}").unwrap();
        assert_eq!(
            store.add_entry("q", id, "e", &entry("")).unwrap(),
            None,
            "queued"
        );
        store.dequeue(&queues(&["q"]), "e", now).unwrap().unwrap();
        assert_eq!(store.add_entry("q", id, "other", &entry("")).unwrap(), None);
        assert_eq!(store.add_entry("p", id, "e", &entry("")).unwrap(), None);
        let entry_id = store
            .add_entry("q", id, "e", &entry("stdout: a"))
            .unwrap()
            .unwrap();
        assert!(
            !store
                .update_entry("q", id, "other", entry_id, &entry("x"))
                .unwrap()
        );
        assert!(
            !store
                .update_entry("q", id, "e", entry_id + 1, &entry("x"))
                .unwrap()
        );
        assert!(
            store
                .update_entry("q", id, "e", entry_id, &entry("stdout: a\nstdout: b"))
                .unwrap()
        );
        assert_eq!(
            store
                .finish("q", id, "other", Finish::Complete, now)
                .unwrap(),
            None
        );
        assert_eq!(
            store.finish("p", id, "e", Finish::Complete, now).unwrap(),
            None
        );
        let detail = store.job(id).unwrap().unwrap();
        assert_eq!(detail.entries.len(), 1);
        assert_eq!(
            detail.entries[0].entry.out.as_deref(),
            Some("stdout: a\nstdout: b")
        );
        assert_eq!(detail.entries[0].entry.command, ["git", "fetch"]);
        assert_eq!(
            store.finish("q", id, "e", Finish::Complete, now).unwrap(),
            Some(JobState::Completed)
        );
        assert_eq!(
            store.finish("q", id, "e", Finish::Complete, now).unwrap(),
            None,
            "once"
        );
        assert_eq!(
            store.add_entry("q", id, "e", &entry("")).unwrap(),
            None,
            "ended"
        );
    }

    #[test]
    fn a_silent_executor_costs_the_job_an_attempt_three_times_then_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let start = SystemTime::now();
        let id = store.insert_raw("q", "{}").unwrap();
        for reset in 1..=4u32 {
            let at = start + TIMEOUT * 2 * reset;
            let token = store
                .dequeue(&queues(&["q"]), "e", at)
                .unwrap()
                .unwrap()
                .token;
            assert!(
                store.reset_stale(at + TIMEOUT).unwrap().is_empty(),
                "not older than the timeout"
            );
            let resets = store
                .reset_stale(at + TIMEOUT + Duration::from_millis(1))
                .unwrap();
            assert_eq!(resets.len(), 1);
            assert_eq!(store.check_token(id, &token).unwrap(), TokenCheck::Unknown);
            let job = store.summary(id).unwrap().unwrap();
            if reset <= 3 {
                assert_eq!(
                    (resets[0].state, job.state, job.attempts),
                    (JobState::Queued, JobState::Queued, reset)
                );
            } else {
                assert_eq!((job.state, job.attempts), (JobState::Failed, 3));
                let message = job.message.unwrap();
                assert!(
                    message.contains("executor e stopped heartbeating"),
                    "{message}"
                );
                assert!(job.finished_at.is_some());
            }
        }
    }

    #[test]
    fn heartbeats_keep_a_job_and_name_the_cancelled_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let now = SystemTime::now();
        let (a, b) = (
            store.insert_raw("q", "{}").unwrap(),
            store.insert_raw("q", "{}").unwrap(),
        );
        store.dequeue(&queues(&["q"]), "e", now).unwrap().unwrap();
        store.dequeue(&queues(&["q"]), "e", now).unwrap().unwrap();
        assert!(
            matches!(store.cancel(b, now).unwrap(), Some(CancelOutcome::Requested(s)) if s.cancel_requested)
        );
        let later = now + TIMEOUT;
        let jobs = [
            (a, "q".to_owned()),
            (b, "q".to_owned()),
            (99, "q".to_owned()),
            (a, "p".to_owned()),
        ];
        let beat = store
            .heartbeat("e", &jobs, &Telemetry::current(), later)
            .unwrap();
        assert_eq!(beat.known, [(a, "q".to_owned()), (b, "q".to_owned())]);
        assert_eq!(beat.cancel, [(b, "q".to_owned())]);
        assert!(
            store
                .heartbeat("other", &jobs, &Telemetry::default(), later)
                .unwrap()
                .known
                .is_empty()
        );
        assert!(
            store.reset_stale(later + TIMEOUT).unwrap().is_empty(),
            "the heartbeat counts"
        );
        let executors = store.executors().unwrap();
        assert_eq!(
            executors
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["e", "other"]
        );
        assert_eq!(executors[0].telemetry.os, std::env::consts::OS);
    }

    #[test]
    fn errors_requeue_until_the_attempts_are_spent() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let now = SystemTime::now();
        let id = store.insert_raw("q", "{}").unwrap();
        for attempt in 1..=4u32 {
            store.dequeue(&queues(&["q"]), "e", now).unwrap().unwrap();
            let state = store
                .finish("q", id, "e", Finish::Errored("pod evicted"), now)
                .unwrap();
            let expected = if attempt <= 3 {
                JobState::Queued
            } else {
                JobState::Failed
            };
            assert_eq!(state, Some(expected));
        }
        let job = store.summary(id).unwrap().unwrap();
        assert_eq!(
            (job.attempts, job.message.as_deref()),
            (3, Some("pod evicted"))
        );
        assert!(store.dequeue(&queues(&["q"]), "e", now).unwrap().is_none());
    }

    #[test]
    fn cancelling_ends_a_queued_job_at_once_and_a_running_one_through_its_executor() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let now = SystemTime::now();
        let queued = store.insert_raw("q", "{}").unwrap();
        assert!(
            matches!(store.cancel(queued, now).unwrap(), Some(CancelOutcome::Cancelled(s)) if s.state == JobState::Cancelled)
        );
        assert!(matches!(
            store.cancel(queued, now).unwrap(),
            Some(CancelOutcome::Terminal(_))
        ));
        assert!(store.dequeue(&queues(&["q"]), "e", now).unwrap().is_none());
        assert_eq!(store.cancel(12345, now).unwrap(), None);
        for (how, message) in [
            (
                Finish::Failed("cancelled by the user"),
                "cancelled by the user",
            ),
            (Finish::Errored("stopped"), "stopped"),
        ] {
            let running = store.insert_raw("q", "{}").unwrap();
            store.dequeue(&queues(&["q"]), "e", now).unwrap().unwrap();
            store.cancel(running, now).unwrap();
            assert_eq!(
                store.finish("q", running, "e", how, now).unwrap(),
                Some(JobState::Cancelled)
            );
            assert_eq!(
                store.summary(running).unwrap().unwrap().message.as_deref(),
                Some(message)
            );
        }
    }

    #[test]
    fn every_visible_change_bumps_the_version_and_wakes_the_watchers() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let now = SystemTime::now();
        let id = store.insert_raw("q", "{}").unwrap();
        let version = |s: &Store| s.job(id).unwrap().unwrap().version;
        let mut rx = store.subscribe();
        let v0 = version(&store);
        assert!(
            store
                .dequeue(&queues(&["other"]), "e", now)
                .unwrap()
                .is_none()
        );
        assert!(!rx.has_changed().unwrap(), "nothing changed");
        store.dequeue(&queues(&["q"]), "e", now).unwrap().unwrap();
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        let v1 = version(&store);
        let entry_id = store.add_entry("q", id, "e", &entry("a")).unwrap().unwrap();
        let v2 = version(&store);
        store
            .update_entry("q", id, "e", entry_id, &entry("ab"))
            .unwrap();
        let v3 = version(&store);
        store.finish("q", id, "e", Finish::Complete, now).unwrap();
        assert!(v0 < v1 && v1 < v2 && v2 < v3 && v3 < version(&store));
        assert!(rx.has_changed().unwrap());
    }

    #[test]
    fn reopening_keeps_everything_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, id) = {
            let store = open(&dir);
            let (secret, generated) = store.secret_or_generate("s").unwrap();
            assert!(generated && secret.len() == 64);
            (secret, store.insert_raw("q", "{}").unwrap())
        };
        let store = open(&dir);
        assert_eq!(store.secret_or_generate("s").unwrap(), (secret, false));
        assert_eq!(store.summary(id).unwrap().unwrap().state, JobState::Queued);
        assert!(store.insert_raw("q", "{}").unwrap() > id);
        store
            .lock()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        drop(store);
        let err = Store::open(
            &dir.path().join("queue.db"),
            Policy {
                heartbeat_timeout: TIMEOUT,
                max_attempts: 3,
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}
