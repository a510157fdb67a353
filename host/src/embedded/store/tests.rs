//! The store's tests: each runs on a fresh database file.

#![allow(clippy::unwrap_used)]

use serde_json::Value;

use super::*;
use crate::embedded::model::{JobDetail, JobState};
use crate::queue::wire::{ExecutionLogEntry, Telemetry};

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
    let detail = store.job(id, None).unwrap().unwrap();
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
    let version = |s: &Store| s.job(id, None).unwrap().unwrap().version;
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
fn a_read_since_a_version_has_only_the_entries_written_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = SystemTime::now();
    let id = store.insert_raw("q", "{}").unwrap();
    store.dequeue(&queues(&["q"]), "e", now).unwrap().unwrap();
    let first = store.add_entry("q", id, "e", &entry("a")).unwrap().unwrap();
    let second = store.add_entry("q", id, "e", &entry("b")).unwrap().unwrap();
    let seen = store.job(id, None).unwrap().unwrap();
    let ids = |d: &JobDetail| d.entries.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(&seen), [first, second]);
    assert!(
        store
            .job(id, Some(seen.version))
            .unwrap()
            .unwrap()
            .entries
            .is_empty(),
        "nothing written since"
    );

    store
        .update_entry("q", id, "e", second, &entry("bc"))
        .unwrap();
    let after = store.job(id, Some(seen.version)).unwrap().unwrap();
    assert_eq!(ids(&after), [second]);
    assert_eq!(after.entries[0].entry.out.as_deref(), Some("bc"));
    assert!(after.version > seen.version);

    // An update naming another job's entry changes nothing, version included.
    let other = store.insert_raw("q", "{}").unwrap();
    store.dequeue(&queues(&["q"]), "e", now).unwrap().unwrap();
    assert!(
        !store
            .update_entry("q", other, "e", first, &entry("x"))
            .unwrap()
    );
    assert_eq!(store.job(id, None).unwrap().unwrap().version, after.version);
    assert_eq!(store.job(other, None).unwrap().unwrap().entries.len(), 0);
}

#[test]
fn reads_see_the_last_commit_and_do_not_wait_for_a_write_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = SystemTime::now();
    let id = store.insert_raw("q", "{}").unwrap();
    store.dequeue(&queues(&["q"]), "e", now).unwrap().unwrap();
    store.add_entry("q", id, "e", &entry("a")).unwrap().unwrap();
    let committed = store.job(id, None).unwrap().unwrap();

    // A write transaction held open, as a heartbeat or a dequeue holds one.
    let mut writer = store.lock();
    let tx = writer
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    tx.execute(
        "UPDATE jobs SET version = version + 100 WHERE id = ?1",
        [id],
    )
    .unwrap();
    let (done, read) = std::sync::mpsc::channel();
    let reader = store.clone();
    std::thread::spawn(move || {
        let _ = done.send((reader.version(id), reader.job(id, None)));
    });
    // The bound only turns a hang into a failure: the read answers at once.
    let (version, job) = read.recv_timeout(TIMEOUT).expect("the reads waited");
    assert_eq!(version.unwrap(), Some(committed.version));
    assert_eq!(job.unwrap().unwrap(), committed);
    drop(tx);
    drop(writer);
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

#[test]
fn jobs_that_ended_before_the_retention_go_with_their_log_and_the_rest_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let day = Duration::from_secs(86_400);
    let long_ago = SystemTime::now() - 40 * day;
    let old = store.enqueue("q", "{}", long_ago).unwrap();
    store.dequeue(&queues(&["q"]), "e", long_ago).unwrap();
    store.add_entry("q", old, "e", &entry("old log")).unwrap();
    store
        .finish("q", old, "e", Finish::Complete, long_ago)
        .unwrap();
    // Queued as long ago, still waiting: never pruned.
    let waiting = store.enqueue("q", "{}", long_ago).unwrap();
    let now = SystemTime::now();
    let recent = store.enqueue("r", "{}", now).unwrap();
    store.dequeue(&queues(&["r"]), "e", now).unwrap();
    store
        .finish("r", recent, "e", Finish::Complete, now)
        .unwrap();

    assert_eq!(store.prune(now - 30 * day).unwrap(), 1);
    assert!(
        store.job(old, None).unwrap().is_none(),
        "the old job and its log are gone"
    );
    assert!(store.job(waiting, None).unwrap().is_some());
    assert!(store.job(recent, None).unwrap().is_some());
    assert_eq!(store.prune(now - 30 * day).unwrap(), 0);
}

#[test]
fn the_database_and_its_companions_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.db");
    // As an older executor left them: readable by everyone.
    for name in ["queue.db", "queue.db-wal"] {
        std::fs::write(dir.path().join(name), "").unwrap();
        std::fs::set_permissions(
            dir.path().join(name),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    let store = open(&dir);
    store
        .enqueue("a", r#"{"token": "secret"}"#, SystemTime::now())
        .unwrap();
    for name in ["queue.db", "queue.db-wal", "queue.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{name} (secrets and payloads) is readable by others: {mode:o}"
        );
    }
    drop(store);
    assert!(db.exists());
}
