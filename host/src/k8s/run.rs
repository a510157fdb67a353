//! One job on the cluster, from payload to outcome: build and admit its objects, create them, follow its pod through the shared watcher, stream each container's log, classify the end, honour cancellation and the limits, and delete what was created.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::DeleteParams;
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::logs::{self, Ended, container_status};
use super::outcome::{self, Limits, Observation, Outcome};
use super::spec::{self, Inputs, JobObjects, LABEL_EXECUTOR, NAME_PREFIX, SETUP_CONTAINER};
use super::watch::{PodState, PodWatcher};
use super::{create, names};
use crate::config::Config;
use crate::joblog::{self, Input, LogEvent, Redactor};
use crate::plugins::{Plugins, TrailEntry};
use crate::job::payload::JobPayload;

/// How long the log of a pod that ended by itself may take to drain;
/// followers end on their own (the container ended, the pod went, the API
/// kept failing), so this bounds only a stream that hangs.
const DRAIN: Duration = Duration::from_secs(300);
/// ...and of a pod the executor stopped (its containers get SIGTERM).
const DRAIN_STOPPED: Duration = Duration::from_secs(10);
/// How long a deleted pod may go without its Job saying why.
const DELETED_GRACE: Duration = Duration::from_secs(3);
/// How often the limits are looked at when nothing else happens.
const TICK: Duration = Duration::from_millis(500);

/// How a job went.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// How it ended.
    pub outcome: Outcome,
    /// The Job's name.
    pub job: String,
    /// Whether its objects were deleted (or kept per `KUBERNETES_KEEP_JOBS`),
    /// else why not: they are then left to `ttlSecondsAfterFinished` and the
    /// next start's sweep.
    pub teardown: Result<(), String>,
    /// When the create request went out (none when the job was refused),
    /// for measuring the executor's own overhead per job.
    pub created: Option<Instant>,
}

/// A Job whose deletion [`Runner::run_deferred`] left to its caller.
#[derive(Debug)]
#[must_use = "the Job stays until teardown (or the next start's sweep) deletes it"]
pub struct Deferred {
    job: String,
}

/// What every job of one executor shares: the client, the configuration,
/// the plugins and the one pod watch.
pub struct Runner {
    client: Client,
    config: Arc<Config>,
    plugins: Arc<Plugins>,
    executor_name: String,
    instance: String,
    routes: Option<Url>,
    jobs: Api<Job>,
    watcher: PodWatcher,
}

impl Runner {
    /// Starts the pod watch for `executor_name`'s jobs. `routes` is where
    /// jobs clone and download from (the frontend, or the embedded queue).
    pub fn new(
        client: Client,
        config: Arc<Config>,
        plugins: Arc<Plugins>,
        executor_name: String,
        routes: Option<Url>,
    ) -> Runner {
        let ns = &config.kubernetes.namespace;
        let jobs = Api::namespaced(client.clone(), ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let selector = format!("{LABEL_EXECUTOR}={}", spec::label_value(&executor_name));
        let watcher = PodWatcher::start(pods.clone(), &selector);
        let instance = config.instance();
        Runner {
            client,
            config,
            plugins,
            executor_name,
            instance,
            routes,
            jobs,
            watcher,
        }
    }

    /// This executor's name, as its Jobs' labels carry it.
    pub fn executor_name(&self) -> &str {
        &self.executor_name
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs `payload` (of `queue`) to its end, teardown included. Log
    /// events go to `events` as they happen; `cancel` stops the job (the
    /// lines so far are kept).
    pub async fn run(
        &self,
        queue: &str,
        payload: &JobPayload,
        events: mpsc::Sender<LogEvent>,
        cancel: CancellationToken,
    ) -> Report {
        let (mut report, deferred) = self.run_deferred(queue, payload, events, cancel).await;
        if let Some(deferred) = deferred {
            report.teardown = self.teardown(deferred).await;
        }
        report
    }

    /// [`Runner::run`], except that the deletion of a Job that ended by
    /// itself is left to the caller ([`Runner::teardown`]), so that the
    /// queue hears the result one API round trip sooner. If the executor
    /// dies in between, the start-up sweep and `ttlSecondsAfterFinished`
    /// delete the Job.
    pub async fn run_deferred(
        &self,
        queue: &str,
        payload: &JobPayload,
        events: mpsc::Sender<LogEvent>,
        cancel: CancellationToken,
    ) -> (Report, Option<Deferred>) {
        let name = names::job_name(NAME_PREFIX, queue, payload.id);
        let report = |outcome, teardown| Report {
            outcome,
            job: name.clone(),
            teardown,
            created: None,
        };
        let k = &self.config.kubernetes;
        let inputs = Inputs {
            config: k,
            queue,
            executor_name: &self.executor_name,
            instance: &self.instance,
            routes: self.routes.as_ref(),
            frontend_password: self.config.queue.frontend_password.as_deref(),
        };
        let built = match spec::build(&inputs, payload) {
            Ok(built) => built,
            Err(e) => return (report(Outcome::Refused(e.to_string()), Ok(())), None),
        };
        let ctx = spec::plugin_context(&inputs, payload);
        let redactor = self.redactor(payload);
        let (admitted, trail) = self.admit(ctx.clone(), built).await;
        if !trail.is_empty() {
            let allowed = admitted.is_ok();
            for event in joblog::admission_entry(&trail, allowed, &redactor) {
                // A closed receiver only means nobody reads the log.
                let _ = events.send(event).await;
            }
        }
        let objects = match admitted {
            Ok(objects) => objects,
            Err(why) => return (report(Outcome::Refused(why), Ok(())), None),
        };
        let mut pod = self.watcher.subscribe(&name);
        tracing::info!(job = %name, "creating");
        let created = Some(Instant::now());
        if let Err(e) = create::create(&self.client, &k.namespace, &objects).await {
            tracing::error!(job = %name, error = %e, "cannot create the job's objects");
            let teardown = self.delete_all(&objects).await;
            let report = Report {
                created,
                ..report(Outcome::Infrastructure(e.to_string()), teardown)
            };
            return (report, None);
        }

        let entries = Entries::of(&objects, payload);
        let (input, lines) = mpsc::channel::<Input>(1024);
        let pipeline = tokio::spawn(joblog::run(
            lines,
            redactor,
            self.plugins.log_session(ctx),
            entries.keys(),
            events,
        ));
        let mut followers = JoinSet::new();
        let outcome = self
            .follow(
                &name,
                &mut pod.changes,
                &entries,
                &input,
                &mut followers,
                &cancel,
            )
            .await;
        drop(input);

        // A pod the cluster ended has told its logs; one the executor must
        // stop (cancelled, over its runtime) is deleted first, then drained.
        let stop = !matches!(outcome, Outcome::Succeeded | Outcome::StepFailed { .. });
        let mut teardown = Ok(());
        let mut deleted = false;
        if stop
            && (!k.keep_jobs
                || matches!(
                    outcome,
                    Outcome::Cancelled | Outcome::RuntimeExceeded { .. }
                ))
        {
            teardown = self.delete_job(&name).await;
            deleted = true;
        }
        let drain = if stop { DRAIN_STOPPED } else { DRAIN };
        if tokio::time::timeout(drain, async {
            while followers.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(job = %name, left = followers.len(), "logs did not drain in time; dropping their followers");
            followers.abort_all();
        }
        drop(pod);
        let mut outcome = match outcome {
            Outcome::StepFailed {
                container,
                exit_code,
            } => Outcome::StepFailed {
                container: entries.describe(&container),
                exit_code,
            },
            other => other,
        };
        match pipeline.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if !matches!(outcome, Outcome::Cancelled) => {
                outcome = Outcome::LogFilterFailed(e.to_string());
            }
            Ok(Err(_)) => {}
            Err(e) => tracing::error!(job = %name, error = %e, "log pipeline crashed"),
        }
        let deferred = (!deleted && !k.keep_jobs).then(|| Deferred { job: name.clone() });
        tracing::info!(job = %name, outcome = %outcome.message(), "done");
        let report = Report {
            created,
            ..report(outcome, teardown)
        };
        (report, deferred)
    }

    /// Deletes the Job that [`Runner::run_deferred`] left (per
    /// `KUBERNETES_KEEP_JOBS`), with the usual retries and accounting.
    pub async fn teardown(&self, deferred: Deferred) -> Result<(), String> {
        self.delete_job(&deferred.job).await
    }

    async fn admit(
        &self,
        ctx: crate::plugins::JobContext,
        built: JobObjects,
    ) -> (Result<JobObjects, String>, Vec<TrailEntry>) {
        let plugins = self.plugins.clone();
        // Plugins run synchronously (bounded by their deadlines).
        let admission =
            match tokio::task::spawn_blocking(move || spec::admit(&plugins, &ctx, built)).await {
                Ok(admission) => admission,
                Err(e) => return (Err(format!("admission crashed: {e}")), Vec::new()),
            };
        let trail = admission.outcome.trail;
        match admission.result {
            Ok(admitted) => {
                if !admitted.reverted.is_empty() {
                    tracing::warn!(reverted = ?admitted.reverted, "plugins changed what the executor owns; reverted");
                }
                (Ok(admitted.objects), trail)
            }
            Err(e) => (Err(e.to_string()), trail),
        }
    }

    /// The job's `redactedValues` and the queue's shared secret, which must
    /// never reach an uploaded log either.
    fn redactor(&self, payload: &JobPayload) -> Redactor {
        let mut values = payload.redacted_values.clone();
        if let Some(password) = self.config.queue.frontend_password.as_deref()
            && !password.is_empty()
        {
            values
                .entry(password.to_owned())
                .or_insert_with(|| "********".to_owned());
        }
        Redactor::new(&values)
    }

    /// Watches the pod until the job has an outcome, starting a log
    /// follower for each container as it starts.
    async fn follow(
        &self,
        name: &str,
        changes: &mut watch::Receiver<PodState>,
        entries: &Entries,
        input: &mpsc::Sender<Input>,
        followers: &mut JoinSet<()>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let k = &self.config.kubernetes;
        let limits = Limits {
            pending_timeout: k.pending_timeout,
            pull_grace: k.image_pull_grace,
            max_runtime: self.config.queue.maximum_runtime_per_job,
        };
        let started = Instant::now();
        let mut unschedulable_since = None;
        let mut pull_failing_since = None;
        let mut deleted_since = None;
        let mut following: HashSet<String> = HashSet::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Outcome::Cancelled,
                changed = changes.changed() => if changed.is_err() {
                    return Outcome::Infrastructure("the pod watch stopped".into());
                },
                _ = tick.tick() => {}
            }
            let state = changes.borrow_and_update().clone();
            let now = Instant::now();
            if let Some(pod) = state.pod() {
                let unschedulable = outcome::unschedulable(pod).is_some();
                let pulling = outcome::pull_failing(pod);
                since(&mut unschedulable_since, unschedulable, now);
                since(&mut pull_failing_since, pulling, now);
                if let PodState::Present(pod) = &state {
                    self.start_followers(pod, entries, &mut following, changes, input, followers);
                }
            }
            let job = match &state {
                PodState::Deleted(_) => {
                    deleted_since.get_or_insert(now);
                    self.jobs.get_opt(name).await.ok().flatten()
                }
                _ => None,
            };
            let observation = Observation {
                job: job.as_ref(),
                pod: state.pod(),
                unschedulable_for: elapsed(unschedulable_since, now),
                pull_failing_for: elapsed(pull_failing_since, now),
                running_for: now - started,
            };
            if let Some(outcome) = outcome::classify(&observation, &limits) {
                return outcome;
            }
            if let Some(at) = deleted_since
                && now - at >= DELETED_GRACE
            {
                return Outcome::PodLost {
                    reason: "Deleted".into(),
                    message: "the pod was deleted before the job ended".into(),
                };
            }
        }
    }

    fn start_followers(
        &self,
        pod: &Arc<Pod>,
        entries: &Entries,
        following: &mut HashSet<String>,
        changes: &watch::Receiver<PodState>,
        input: &mpsc::Sender<Input>,
        followers: &mut JoinSet<()>,
    ) {
        let Some(pod_name) = pod.metadata.name.clone() else {
            return;
        };
        for (index, entry) in entries.list.iter().enumerate() {
            if following.contains(&entry.container) {
                continue;
            }
            let Some(state) = container_status(pod, &entry.container).and_then(|s| s.state.clone())
            else {
                continue;
            };
            let start = match (&state.running, &state.terminated) {
                (Some(r), _) => r.started_at.as_ref().map(|t| t.0),
                (None, Some(t)) => t.started_at.as_ref().map(|t| t.0),
                (None, None) => continue,
            };
            following.insert(entry.container.clone());
            let client = self.client.clone();
            let namespace = self.config.kubernetes.namespace.clone();
            let changes = changes.clone();
            let input = input.clone();
            let entry = entry.clone();
            let pod_name = pod_name.clone();
            followers.spawn(async move {
                follow_container(
                    PodRef {
                        client,
                        namespace,
                        name: pod_name,
                    },
                    index,
                    entry,
                    start,
                    changes,
                    input,
                )
                .await;
            });
        }
    }

    /// Deletes the Job (Background: its pod, Secrets and PVC go with it),
    /// retrying beyond the client's own retries; a failure is logged and
    /// counted, and returned.
    async fn delete_job(&self, name: &str) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 1..=5u32 {
            match self.jobs.delete(name, &DeleteParams::background()).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) => {
                    last = e.to_string();
                    tracing::warn!(job = %name, attempt, error = %e, "deleting the Job failed");
                    tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
                }
            }
        }
        metrics::counter!("executor_teardown_failures_total").increment(1);
        tracing::error!(job = %name, error = %last, "the Job could not be deleted; ttlSecondsAfterFinished and the next start's sweep remain");
        Err(format!("deleting Job {name} failed: {last}"))
    }

    /// After a failed create: whatever was created goes (Secrets may not
    /// have their owner reference yet).
    async fn delete_all(&self, objects: &JobObjects) -> Result<(), String> {
        let secrets: Api<Secret> =
            Api::namespaced(self.client.clone(), &self.config.kubernetes.namespace);
        let mut problems = Vec::new();
        if let Some(name) = &objects.job.metadata.name
            && let Err(e) = self.delete_job(name).await
        {
            problems.push(e);
        }
        for secret in &objects.secrets {
            let Some(name) = &secret.metadata.name else {
                continue;
            };
            match secrets.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => problems.push(format!("deleting Secret {name} failed: {e}")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

fn since(at: &mut Option<Instant>, now_true: bool, now: Instant) {
    match (now_true, at.is_some()) {
        (true, false) => *at = Some(now),
        (false, true) => *at = None,
        _ => {}
    }
}

fn elapsed(at: Option<Instant>, now: Instant) -> Duration {
    at.map_or(Duration::ZERO, |t| now - t)
}

/// One execution log entry per container that runs something of the job's.
#[derive(Debug, Clone)]
struct Entry {
    container: String,
    key: String,
    command: Vec<String>,
}

/// The entries of a job, in the order its containers run (the `main`
/// container, and any a plugin added, have none).
struct Entries {
    list: Vec<Entry>,
}

impl Entries {
    fn of(objects: &JobObjects, payload: &JobPayload) -> Entries {
        let init = objects
            .job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref()?.init_containers.as_ref());
        let mut list = Vec::new();
        for c in init.into_iter().flatten() {
            if c.name == SETUP_CONTAINER {
                list.push(Entry {
                    container: c.name.clone(),
                    key: "setup.workspace".into(),
                    command: c.command.clone().unwrap_or_default(),
                });
            } else if let Some(i) = c
                .name
                .strip_prefix("step-")
                .and_then(|i| i.parse::<usize>().ok())
                && let Some(step) = payload.steps.get(i)
            {
                list.push(Entry {
                    container: c.name.clone(),
                    key: format!("step.kubernetes.{}", step.key),
                    command: step.commands.clone(),
                });
            }
        }
        Entries { list }
    }

    fn keys(&self) -> Vec<String> {
        self.list.iter().map(|e| e.key.clone()).collect()
    }

    /// `step-0 (step.kubernetes.build)` for messages.
    fn describe(&self, container: &str) -> String {
        match self.list.iter().find(|e| e.container == container) {
            Some(e) => format!("{container} ({})", e.key),
            None => container.to_owned(),
        }
    }
}

/// Opens the entry, streams the container's log into it, then closes it
/// with the exit code and duration from the container's status.
/// Where a container's log is read.
struct PodRef {
    client: Client,
    namespace: String,
    name: String,
}

async fn follow_container(
    target: PodRef,
    index: usize,
    entry: Entry,
    start: Option<Timestamp>,
    mut changes: watch::Receiver<PodState>,
    input: mpsc::Sender<Input>,
) {
    let start = start.unwrap_or_else(Timestamp::now);
    let open = Input::Open {
        entry: index,
        key: entry.key.clone(),
        command: entry.command.clone(),
        start,
    };
    if input.send(open).await.is_err() {
        return;
    }
    let PodRef {
        client,
        namespace,
        name: pod,
    } = target;
    let ended = logs::follow(
        &client,
        &namespace,
        &pod,
        &entry.container,
        changes.clone(),
        &input,
        |line| Input::Line(index, line),
    )
    .await;
    match &ended {
        Ok(Ended::Complete) => {}
        Ok(how) => tracing::info!(%pod, container = %entry.container, ?how, "log ended early"),
        Err(e) => tracing::warn!(%pod, container = %entry.container, error = %e, "log lost"),
    }
    // The status that says how the container ended may trail its log.
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        changes.wait_for(|s| logs::terminated(s, &entry.container)),
    )
    .await;
    let state = changes.borrow().clone();
    let terminated = state
        .pod()
        .and_then(|p| container_status(p, &entry.container))
        .and_then(|c| c.state.as_ref()?.terminated.clone());
    let (exit_code, duration) = match terminated {
        Some(t) => {
            let started = t.started_at.map(|s| s.0).unwrap_or(start);
            let finished = t.finished_at.map(|f| f.0).unwrap_or_else(Timestamp::now);
            (t.exit_code, finished.duration_since(started).unsigned_abs())
        }
        // Never seen to end (the pod went first): no exit code to report.
        None => (-1, Timestamp::now().duration_since(start).unsigned_abs()),
    };
    let _ = input
        .send(Input::Close {
            entry: index,
            exit_code,
            duration,
        })
        .await;
}
