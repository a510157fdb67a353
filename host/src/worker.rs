//! The worker: takes jobs from the queue up to the concurrency limit, runs each on the cluster with its log uploaded live, heartbeats, and drains on shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::QueueConfig;
use crate::job::Runner;
use crate::k8s::outcome::Outcome;
use crate::ops::metrics::{JOB_DURATION, JOB_OVERHEAD, JOBS_FINISHED, JOBS_RUNNING};
use crate::payload::JobPayload;
use crate::queue::client::{Dequeued, JobRef, QueueClient};
use crate::queue::upload::{self, UploadPolicy};

/// Sourcegraph's heartbeat period; its queue resets a job after 25 s without one.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// How the worker paces itself.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Jobs at once (`EXECUTOR_MAXIMUM_NUM_JOBS`).
    pub max_jobs: usize,
    /// Wait between empty dequeues (`EXECUTOR_QUEUE_POLL_INTERVAL`).
    pub poll_interval: Duration,
    /// Between heartbeats.
    pub heartbeat_interval: Duration,
    /// Jobs to take before exiting (`EXECUTOR_NUM_TOTAL_JOBS`).
    pub num_total_jobs: Option<u64>,
    /// Time to take jobs for before exiting (`EXECUTOR_MAX_ACTIVE_TIME`).
    pub max_active_time: Option<Duration>,
    /// How long running jobs may finish after a stop (`EXECUTOR_DRAIN_TIMEOUT`).
    pub drain_timeout: Duration,
    /// When log entries are sent.
    pub upload: UploadPolicy,
    /// Receives every job's timings (benchmarks; also in the
    /// `executor_job_overhead_seconds` histogram).
    pub observer: Option<mpsc::UnboundedSender<JobTimings>>,
}

/// When one job passed the executor's own steps.
#[derive(Debug, Clone)]
pub struct JobTimings {
    /// The job.
    pub job: JobRef,
    /// The dequeue answered.
    pub dequeued: std::time::Instant,
    /// The create request went out (none when the job was refused).
    pub created: Option<std::time::Instant>,
    /// The last log event reached the uploader.
    pub last_event: Option<std::time::Instant>,
    /// The runner saw the pod end.
    pub ended: Option<std::time::Instant>,
    /// The runner returned (the pod ended, its logs drained).
    pub ran: std::time::Instant,
    /// The uploader returned (every entry's last state sent).
    pub uploaded: std::time::Instant,
    /// The result's request went out.
    pub reporting: std::time::Instant,
}

impl WorkerOptions {
    /// The options the configuration asks for.
    pub fn from_config(q: &QueueConfig) -> WorkerOptions {
        WorkerOptions {
            max_jobs: q.maximum_num_jobs.max(1) as usize,
            poll_interval: q.poll_interval,
            heartbeat_interval: HEARTBEAT_INTERVAL,
            num_total_jobs: q.num_total_jobs,
            max_active_time: q.max_active_time,
            drain_timeout: q.drain_timeout,
            upload: UploadPolicy::default(),
            observer: None,
        }
    }
}

/// How the worker's jobs ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Dequeued.
    pub taken: u64,
    /// Marked complete.
    pub completed: u64,
    /// Marked failed (a step failed, denied, malformed).
    pub failed: u64,
    /// Cancelled through the queue (reported to it as failed, as the
    /// protocol has no other word for it).
    pub cancelled: u64,
    /// Marked errored (retryable, including those handed back at shutdown).
    pub errored: u64,
    /// No longer the queue's to report (not in `knownIds`), or not reported
    /// because the queue could not be reached.
    pub unreported: u64,
}

/// Why the worker stopped a job before it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The queue asked (`cancelIds`).
    Cancelled,
    /// The queue no longer knows the job as this executor's.
    Lost,
    /// The executor is shutting down and the drain period ran out.
    Shutdown,
}

/// A running attempt's handles, shared with the heartbeat.
#[derive(Clone)]
struct Running {
    /// Which attempt at its job this is, in this process: the queue can
    /// reset a job and hand it back to this executor while the earlier
    /// attempt still runs here.
    attempt: u64,
    cancel: CancellationToken,
    gone: CancellationToken,
    why: Arc<Mutex<Option<Stop>>>,
    /// Cancelled once the attempt's task is over, its objects torn down.
    ended: CancellationToken,
}

impl Running {
    fn stop(&self, why: Stop) {
        let mut slot = self.why.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(why);
        }
        drop(slot);
        if why == Stop::Lost {
            self.gone.cancel();
        }
        self.cancel.cancel();
    }

    fn why(&self) -> Option<Stop> {
        *self.why.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type Jobs = Arc<Mutex<HashMap<JobRef, Running>>>;

/// How one job was reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported {
    Completed,
    Failed,
    Cancelled,
    Errored,
    Unreported,
}

impl Reported {
    /// The `outcome` label of the job metrics.
    fn label(self) -> &'static str {
        match self {
            Reported::Completed => "succeeded",
            // What the queue was told: markFailed.
            Reported::Failed | Reported::Cancelled => "failed",
            Reported::Errored => "errored",
            Reported::Unreported => "unreported",
        }
    }
}

/// Counts a job in [`JOBS_RUNNING`] while it lives, even if its task panics.
struct RunningGauge;

impl RunningGauge {
    fn new() -> RunningGauge {
        metrics::gauge!(JOBS_RUNNING).increment(1.0);
        RunningGauge
    }
}

impl Drop for RunningGauge {
    fn drop(&mut self) {
        metrics::gauge!(JOBS_RUNNING).decrement(1.0);
    }
}

/// Takes jobs from one queue client and runs them with one runner.
pub struct Worker {
    queue: QueueClient,
    runner: Arc<Runner>,
    options: WorkerOptions,
    hurry: CancellationToken,
}

impl Worker {
    /// A worker; nothing happens until [`Worker::run`].
    pub fn new(queue: QueueClient, runner: Arc<Runner>, options: WorkerOptions) -> Worker {
        Worker {
            queue,
            runner,
            options,
            hurry: CancellationToken::new(),
        }
    }

    /// Ends the drain early when `hurry` is cancelled (a second Ctrl-C):
    /// the running jobs are cancelled (their Jobs deleted, so nothing keeps
    /// running) and handed back to the queue, as at the end of the drain period.
    pub fn hurried_by(mut self, hurry: CancellationToken) -> Worker {
        self.hurry = hurry;
        self
    }

    /// Works until `stop` is cancelled (then drains), or until the total
    /// job count or active time is reached (then lets running jobs finish).
    pub async fn run(self, stop: CancellationToken) -> Summary {
        let jobs: Jobs = Arc::default();
        let mut summary = Summary::default();
        if !self.ping(&stop).await {
            return summary;
        }
        let beats = CancellationToken::new();
        let heart = tokio::spawn(heartbeat(
            self.queue.clone(),
            jobs.clone(),
            self.options.heartbeat_interval,
            beats.clone(),
        ));

        let started = Instant::now();
        let active_until = self.options.max_active_time.map(|d| started + d);
        let mut tasks: JoinSet<Reported> = JoinSet::new();
        let mut next_poll = Instant::now();
        loop {
            let exhausted = self
                .options
                .num_total_jobs
                .is_some_and(|n| summary.taken >= n)
                || active_until.is_some_and(|t| Instant::now() >= t);
            if exhausted {
                tracing::info!(
                    taken = summary.taken,
                    "job or time limit reached; finishing the running jobs"
                );
                break;
            }
            let room = tasks.len() < self.options.max_jobs;
            tokio::select! {
                () = stop.cancelled() => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => count(&mut summary, done),
                () = tokio::time::sleep_until(active_until.map_or(next_poll, |t| t.min(next_poll))), if room => {
                    if active_until.is_some_and(|t| Instant::now() >= t) {
                        continue;
                    }
                    match self.queue.dequeue().await {
                        Ok(Some(job)) => {
                            summary.taken += 1;
                            // There may be more: ask again at once.
                            next_poll = Instant::now();
                            self.start(&mut tasks, &jobs, job);
                        }
                        Ok(None) => next_poll = Instant::now() + self.options.poll_interval,
                        Err(e) => {
                            tracing::warn!(error = %e, "dequeue failed");
                            next_poll = Instant::now() + self.options.poll_interval;
                        }
                    }
                }
            }
        }

        if stop.is_cancelled() && !tasks.is_empty() {
            tracing::info!(
                running = tasks.len(),
                drain = ?self.options.drain_timeout,
                "stopping: no more dequeues; running jobs may finish"
            );
            let deadline = Instant::now() + self.options.drain_timeout;
            loop {
                tokio::select! {
                    done = tasks.join_next() => match done {
                        Some(done) => count(&mut summary, done),
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => {
                        let running: Vec<Running> = lock(&jobs).values().cloned().collect();
                        tracing::warn!(left = running.len(), "drain period over: cancelling the rest and handing them back to the queue");
                        for r in running {
                            r.stop(Stop::Shutdown);
                        }
                        break;
                    }
                    () = self.hurry.cancelled() => {
                        let running: Vec<Running> = lock(&jobs).values().cloned().collect();
                        tracing::warn!(left = running.len(), "drain cut short: cancelling the running jobs and handing them back to the queue");
                        for r in running {
                            r.stop(Stop::Shutdown);
                        }
                        break;
                    }
                }
            }
        }
        while let Some(done) = tasks.join_next().await {
            count(&mut summary, done);
        }
        beats.cancel();
        let _ = heart.await;
        tracing::info!(?summary, "worker stopped");
        summary
    }

    /// At start the executor heartbeats until the queue answers, so that a
    /// wrong address or secret shows at once and not as silent empty polls.
    async fn ping(&self, stop: &CancellationToken) -> bool {
        let mut wait = Duration::from_millis(250);
        loop {
            match self.queue.heartbeat(&[]).await {
                Ok(_) => return true,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?wait, "the queue does not answer yet")
                }
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }

    fn start(&self, tasks: &mut JoinSet<Reported>, jobs: &Jobs, job: Dequeued) {
        let dequeued = std::time::Instant::now();
        let running = Running {
            attempt: ATTEMPTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            cancel: CancellationToken::new(),
            gone: CancellationToken::new(),
            why: Arc::default(),
            ended: CancellationToken::new(),
        };
        let stale = claim(jobs, &job.job, running.clone());
        let queue = self.queue.clone();
        let runner = self.runner.clone();
        let policy = self.options.upload.clone();
        let observer = self.options.observer.clone();
        let jobs = jobs.clone();
        // Everything the job logs, here and in the runner, names it.
        let span = crate::job::span(&job.job.queue, job.job.id);
        let task = async move {
            let _gauge = RunningGauge::new();
            let key = job.job.clone();
            // Released however the task ends, a panic included, so that a
            // later attempt waiting on this one never waits forever.
            let _release = Release {
                jobs: jobs.clone(),
                job: key.clone(),
                running: running.clone(),
            };
            if let Some(stale) = stale {
                // Its teardown deletes the Job by name: let it finish before
                // this attempt makes its own.
                stale.ended.cancelled().await;
            }
            let (reported, timings) = run_job(&queue, &runner, &policy, job, &running).await;
            metrics::counter!(JOBS_FINISHED, "outcome" => reported.label()).increment(1);
            metrics::histogram!(JOB_DURATION, "outcome" => reported.label())
                .record(dequeued.elapsed().as_secs_f64());
            if let Some(mut t) = timings {
                t.dequeued = dequeued;
                observe(&t);
                if let Some(observer) = observer {
                    let _ = observer.send(t);
                }
            }
            reported
        };
        tasks.spawn(task.instrument(span));
    }
}

/// Numbers attempts within this process.
static ATTEMPTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Makes `running` the attempt of `job` that heartbeats and cancellations
/// reach; an earlier attempt still running here is stopped as no longer
/// the queue's (it reports nothing) and returned, to be waited for.
fn claim(jobs: &Jobs, job: &JobRef, running: Running) -> Option<Running> {
    let stale = lock(jobs).insert(job.clone(), running);
    if let Some(stale) = &stale {
        tracing::warn!(queue = %job.queue, id = job.id, "the queue handed back a job whose earlier attempt still runs here: stopping that one first");
        stale.stop(Stop::Lost);
    }
    stale
}

/// Calls [`release`] when dropped.
struct Release {
    jobs: Jobs,
    job: JobRef,
    running: Running,
}

impl Drop for Release {
    fn drop(&mut self) {
        release(&self.jobs, &self.job, &self.running);
    }
}

/// Forgets `running` once its task is over, unless a later attempt took
/// its place, and lets a later attempt go on.
fn release(jobs: &Jobs, job: &JobRef, running: &Running) {
    let mut jobs = lock(jobs);
    if jobs.get(job).is_some_and(|r| r.attempt == running.attempt) {
        jobs.remove(job);
    }
    drop(jobs);
    running.ended.cancel();
}

fn lock(jobs: &Jobs) -> std::sync::MutexGuard<'_, HashMap<JobRef, Running>> {
    jobs.lock().unwrap_or_else(PoisonError::into_inner)
}

fn count(summary: &mut Summary, done: Result<Reported, tokio::task::JoinError>) {
    match done {
        Ok(Reported::Completed) => summary.completed += 1,
        Ok(Reported::Failed) => summary.failed += 1,
        Ok(Reported::Cancelled) => summary.cancelled += 1,
        Ok(Reported::Errored) => summary.errored += 1,
        Ok(Reported::Unreported) => summary.unreported += 1,
        Err(e) => {
            tracing::error!(error = %e, "a job's task crashed");
            metrics::counter!(JOBS_FINISHED, "outcome" => Reported::Unreported.label())
                .increment(1);
            summary.unreported += 1;
        }
    }
}

fn observe(t: &JobTimings) {
    if let Some(created) = t.created {
        metrics::histogram!(JOB_OVERHEAD, "phase" => "start")
            .record(created.saturating_duration_since(t.dequeued).as_secs_f64());
    }
    if let Some(from) = t.cluster_done() {
        metrics::histogram!(JOB_OVERHEAD, "phase" => "finish")
            .record(t.reporting.saturating_duration_since(from).as_secs_f64());
    }
}

impl JobTimings {
    /// When the cluster had said all it would about the job: its last log
    /// event reached the uploader and its pod's end reached the runner. The
    /// executor's own finish overhead runs from here to the report; before
    /// it, the pod's `main` container (which only marks success) still runs
    /// after the last step's log has ended.
    pub fn cluster_done(&self) -> Option<std::time::Instant> {
        match (self.last_event, self.ended) {
            (Some(l), Some(e)) => Some(l.max(e)),
            (l, e) => l.or(e),
        }
    }
}

/// Runs one dequeued job to its end and reports it; with its timings when
/// it ran (its `dequeued` is the caller's to fill in).
async fn run_job(
    queue: &QueueClient,
    runner: &Runner,
    policy: &UploadPolicy,
    job: Dequeued,
    running: &Running,
) -> (Reported, Option<JobTimings>) {
    let id = job.job.clone();
    let client = queue.job(job.job, job.token, running.gone.clone());
    let payload = match JobPayload::parse(&job.body) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(queue = %id.queue, id = id.id, error = %e, "malformed job payload");
            let reported = report(
                client.mark_failed(&e.to_string()).await,
                Reported::Failed,
                &id,
            );
            return (reported, None);
        }
    };
    let (events, received) = mpsc::channel(256);
    let ((report_, deferred, ran), (uploaded, upload_done)) = tokio::join!(
        async {
            let (report, deferred) = runner
                .run_deferred(&id.queue, &payload, events, running.cancel.clone())
                .await;
            (report, deferred, std::time::Instant::now())
        },
        async {
            let uploaded = upload::upload(received, &client, policy).await;
            (uploaded, std::time::Instant::now())
        },
    );
    for e in &uploaded.errors {
        tracing::warn!(queue = %id.queue, id = id.id, error = %e, "log upload");
    }
    let outcome = report_.outcome;
    let timings = JobTimings {
        job: id.clone(),
        dequeued: std::time::Instant::now(),
        created: report_.created,
        last_event: uploaded.last_event,
        ended: report_.ended,
        ran,
        uploaded: upload_done,
        reporting: std::time::Instant::now(),
    };
    let reported = match running.why() {
        Some(Stop::Lost) => {
            tracing::warn!(queue = %id.queue, id = id.id, "the queue no longer knows this job as ours: stopped it, reporting nothing");
            Reported::Unreported
        }
        Some(Stop::Cancelled) if outcome == Outcome::Cancelled => report(
            client
                .mark_failed("the job was cancelled through the queue")
                .await,
            Reported::Cancelled,
            &id,
        ),
        Some(Stop::Shutdown) if outcome == Outcome::Cancelled => report(
            client
                .mark_errored(
                    "the executor shut down before the job finished; the queue may run it again",
                )
                .await,
            Reported::Errored,
            &id,
        ),
        _ => match outcome {
            Outcome::Succeeded => report(client.mark_complete().await, Reported::Completed, &id),
            o if o.permanent() => report(
                client.mark_failed(&o.message()).await,
                Reported::Failed,
                &id,
            ),
            o => report(
                client.mark_errored(&o.message()).await,
                Reported::Errored,
                &id,
            ),
        },
    };
    // The queue has the result; the Job's deletion no longer delays it.
    let teardown = match deferred {
        Some(d) => runner.teardown(d).await,
        None => report_.teardown,
    };
    if let Err(e) = teardown {
        tracing::warn!(queue = %id.queue, id = id.id, error = %e, "the job's objects were not deleted; the next start's sweep or their TTL will");
    }
    (reported, Some(timings))
}

fn report<E: std::fmt::Display>(result: Result<(), E>, as_: Reported, id: &JobRef) -> Reported {
    match result {
        Ok(()) => {
            tracing::info!(queue = %id.queue, id = id.id, reported = ?as_, "job reported");
            as_
        }
        Err(e) => {
            tracing::error!(queue = %id.queue, id = id.id, error = %e, "cannot report the job's result");
            Reported::Unreported
        }
    }
}

/// Every `interval`: tells the queue which jobs run here, cancels those it
/// asks to cancel, and stops those it no longer knows as this executor's.
async fn heartbeat(queue: QueueClient, jobs: Jobs, interval: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ids: Vec<JobRef> = lock(&jobs).keys().cloned().collect();
        let beat = match queue.heartbeat(&ids).await {
            Ok(beat) => beat,
            Err(e) => {
                // Jobs go on: an outage must not cost work. The queue decides
                // (after 25 s) whether it still considers them ours.
                tracing::warn!(error = %e, running = ids.len(), "heartbeat failed");
                continue;
            }
        };
        let jobs = lock(&jobs);
        for id in &beat.cancel {
            if let Some(r) = jobs.get(id) {
                tracing::info!(queue = %id.queue, id = id.id, "cancelled by the queue");
                r.stop(Stop::Cancelled);
            }
        }
        for id in ids.iter().filter(|id| !beat.known.contains(id)) {
            if let Some(r) = jobs.get(id) {
                r.stop(Stop::Lost);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(attempt: u64) -> Running {
        Running {
            attempt,
            cancel: CancellationToken::new(),
            gone: CancellationToken::new(),
            why: Arc::default(),
            ended: CancellationToken::new(),
        }
    }

    #[test]
    fn a_job_handed_back_while_its_earlier_attempt_runs_stops_that_one_and_keeps_the_new() {
        let jobs: Jobs = Arc::default();
        let job = JobRef {
            queue: "batches".into(),
            id: 7,
        };
        let first = running(1);
        assert!(claim(&jobs, &job, first.clone()).is_none());
        let second = running(2);
        let stale = claim(&jobs, &job, second.clone()).unwrap();
        assert_eq!(stale.attempt, 1);
        assert!(first.cancel.is_cancelled() && first.gone.is_cancelled());
        assert_eq!(
            first.why(),
            Some(Stop::Lost),
            "the stale attempt reports nothing"
        );
        assert!(!second.cancel.is_cancelled());

        // The stale attempt ends: the new one stays the one heartbeats and
        // cancellations reach.
        release(&jobs, &job, &first);
        assert!(first.ended.is_cancelled());
        assert_eq!(lock(&jobs).get(&job).map(|r| r.attempt), Some(2));
        release(&jobs, &job, &second);
        assert!(lock(&jobs).is_empty());
    }
}
