//! The store's records besides jobs: registered repositories, the executors heard from, and the queue's own secrets.

use rusqlite::{OptionalExtension, Row, params};

use super::{Store, StoreError, random_hex, rfc3339};
use crate::embedded::model::{ExecutorView, Repository};

impl Store {
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

    /// Unregisters a repository: what was registered, if anything.
    pub fn remove_repository(&self, name: &str) -> Result<Option<Repository>, StoreError> {
        self.write(|tx| {
            Ok(tx
                .query_row(
                    "DELETE FROM repositories WHERE name = ?1 RETURNING name, url",
                    [name],
                    repository_row,
                )
                .optional()?)
        })
    }

    /// A registered repository.
    pub fn repository(&self, name: &str) -> Result<Option<Repository>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_row(
                    "SELECT name, url FROM repositories WHERE name = ?1",
                    [name],
                    repository_row,
                )
                .optional()?)
        })
    }

    /// Every registered repository, by name.
    pub fn repositories(&self) -> Result<Vec<Repository>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT name, url FROM repositories ORDER BY name")?;
            let rows = stmt.query_map([], repository_row)?;
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

fn repository_row(r: &Row<'_>) -> rusqlite::Result<Repository> {
    Ok(Repository {
        name: r.get(0)?,
        url: r.get(1)?,
    })
}
