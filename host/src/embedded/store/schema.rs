//! The store's SQL schema and its migrations (`PRAGMA user_version`); nothing here reads or writes rows.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Each entry takes the schema from its index to its index + 1 (`PRAGMA user_version`).
const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    r#"
ALTER TABLE entries ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX entries_by_version ON entries (job_id, version);
"#,
];

/// Brings the schema of `conn` up to [`MIGRATIONS`], in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
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
