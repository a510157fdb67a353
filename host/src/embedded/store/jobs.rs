//! Jobs in the store: their life (enqueue, dequeue, heartbeat, finish, reset, cancel) and their views; the retry policy decides each move.

use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::{Policy, Store, StoreError, entries, hash, millis, random_hex, rfc3339};
use crate::embedded::model::{JobDetail, JobState, JobSummary};
use crate::queue::wire::Telemetry;

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

const SUMMARY_COLUMNS: &str = "id, queue, state, attempts, executor, message, cancel_requested, created_at, started_at, finished_at";

impl Store {
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
        self.write_held(queue, job, executor, |tx| {
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

    /// Deletes the jobs that ended (completed, failed, cancelled) before
    /// `cutoff`, with their log entries; how many.
    pub fn prune(&self, cutoff: SystemTime) -> Result<usize, StoreError> {
        let cutoff = millis(cutoff);
        self.write(|tx| {
            let ended = "SELECT id FROM jobs WHERE state IN ('completed', 'failed', 'cancelled') AND finished_at < ?1";
            tx.execute(
                &format!("DELETE FROM entries WHERE job_id IN ({ended})"),
                [cutoff],
            )?;
            let jobs = tx.execute(&format!("DELETE FROM jobs WHERE id IN ({ended})"), [cutoff])?;
            Ok(jobs)
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

    /// A job's version alone (bumped by every change of it or its entries):
    /// what a long poll checks before it reads the whole job again.
    pub fn version(&self, id: i64) -> Result<Option<i64>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_row("SELECT version FROM jobs WHERE id = ?1", [id], |r| r.get(0))
                .optional()?)
        })
    }

    /// A job with its version, payload (without token) and entries: all of
    /// them, or for `since` those written after that version of the job.
    pub fn job(&self, id: i64, since: Option<i64>) -> Result<Option<JobDetail>, StoreError> {
        self.read(|conn| {
            let Some(summary) = summary(conn, id)? else {
                return Ok(None);
            };
            let (version, payload): (i64, String) = conn.query_row(
                "SELECT version, payload FROM jobs WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let entries = entries::of_job(conn, id, since)?;
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
