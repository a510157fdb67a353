//! A job's execution log entries in the store: written only by the executor holding the job, read back for the job's view.

use rusqlite::{Connection, ToSql, Transaction};

use super::{Store, StoreError};
use crate::embedded::model::EntryView;
use crate::queue::wire::ExecutionLogEntry;

impl Store {
    /// Adds a log entry to a job processing in `queue` for `executor`; `None` if it is not.
    pub fn add_entry(
        &self,
        queue: &str,
        job: i64,
        executor: &str,
        entry: &ExecutionLogEntry,
    ) -> Result<Option<i64>, StoreError> {
        self.write_held(queue, job, executor, |tx| {
            let version = bump(tx, job)?;
            bind_entry(
                tx,
                "INSERT INTO entries (job_id, key, command, start_time, exit_code, out, duration_ms, version)
                 VALUES (:job, :key, :command, :start_time, :exit_code, :out, :duration_ms, :version)",
                entry,
                &[(":job", &job), (":version", &version)],
            )?;
            Ok(Some(tx.last_insert_rowid()))
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
        let updated = self.write_held(queue, job, executor, |tx| {
            // The entry carries the version the job is about to get, so a
            // poll `since` the version before sees it.
            let updated = bind_entry(
                tx,
                "UPDATE entries SET key = :key, command = :command, start_time = :start_time,
                     exit_code = :exit_code, out = :out, duration_ms = :duration_ms,
                     version = (SELECT version + 1 FROM jobs WHERE id = :job)
                 WHERE id = :entry AND job_id = :job",
                entry,
                &[(":entry", &entry_id), (":job", &job)],
            )?;
            if updated == 0 {
                return Ok(None);
            }
            bump(tx, job)?;
            Ok(Some(()))
        })?;
        Ok(updated.is_some())
    }
}

/// Runs `sql` with the entry's columns bound by name (`:key`, `:command`,
/// `:start_time`, `:exit_code`, `:out`, `:duration_ms`) beside `more`;
/// how many rows it changed.
fn bind_entry(
    tx: &Transaction<'_>,
    sql: &str,
    entry: &ExecutionLogEntry,
    more: &[(&str, &dyn ToSql)],
) -> Result<usize, StoreError> {
    let command = serde_json::to_string(&entry.command).unwrap_or_default();
    let mut params: Vec<(&str, &dyn ToSql)> = vec![
        (":key", &entry.key),
        (":command", &command),
        (":start_time", &entry.start_time),
        (":exit_code", &entry.exit_code),
        (":out", &entry.out),
        (":duration_ms", &entry.duration_ms),
    ];
    params.extend_from_slice(more);
    Ok(tx.execute(sql, params.as_slice())?)
}

/// Bumps the job's version; the new one.
fn bump(conn: &Connection, job: i64) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "UPDATE jobs SET version = version + 1 WHERE id = ?1 RETURNING version",
        [job],
        |r| r.get(0),
    )?)
}

/// The entries of job `id` written after its version `since` (all of them
/// for `None`), oldest first.
pub(super) fn of_job(
    conn: &Connection,
    id: i64,
    since: Option<i64>,
) -> Result<Vec<EntryView>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, key, command, start_time, exit_code, out, duration_ms
         FROM entries WHERE job_id = ?1 AND version > ?2 ORDER BY id",
    )?;
    let entries = stmt
        .query_map([id, since.unwrap_or(i64::MIN)], |r| {
            Ok(EntryView {
                id: r.get(0)?,
                entry: ExecutionLogEntry {
                    key: r.get(1)?,
                    command: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
                    start_time: r.get(3)?,
                    exit_code: r.get(4)?,
                    out: r.get(5)?,
                    duration_ms: r.get(6)?,
                },
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(entries)
}
