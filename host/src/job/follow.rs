//! The third stage: watch the job's pod until the job has an outcome, and follow each of its containers' logs into the pipeline from the moment it starts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::log::Input;
use super::trail;
use crate::k8s::logs::{self, Ended, Line, container_status};
use crate::k8s::outcome::{self, Limits, Observation, Outcome};
use crate::k8s::spec::{JobObjects, SETUP_CONTAINER};
use crate::k8s::watch::PodState;
use crate::ops::metrics::POD_PENDING;
use crate::payload::JobPayload;

/// How long a deleted pod may go without its Job saying why.
const DELETED_GRACE: Duration = Duration::from_secs(3);
/// How often the limits are looked at when nothing else happens.
const TICK: Duration = Duration::from_millis(500);
/// How long the status that says how a container ended may trail its log.
const STATUS_GRACE: Duration = Duration::from_secs(5);

/// One execution log entry per container that runs something of the job's.
#[derive(Debug, Clone)]
struct Entry {
    /// The entry's index in the job's log.
    index: usize,
    container: String,
    key: String,
    command: Vec<String>,
}

/// The entries of a job, in the order its containers run, after the
/// admission trail's (the `main` container, and any a plugin added, have
/// none).
pub struct Entries {
    list: Vec<Entry>,
}

impl Entries {
    /// The entries of the containers of `objects`.
    pub fn of(objects: &JobObjects, payload: &JobPayload) -> Entries {
        let init = objects
            .job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref()?.init_containers.as_ref());
        let mut list = Vec::new();
        for c in init.into_iter().flatten() {
            let (key, command) = if c.name == SETUP_CONTAINER {
                (
                    "setup.workspace".to_owned(),
                    c.command.clone().unwrap_or_default(),
                )
            } else if let Some(i) = c
                .name
                .strip_prefix("step-")
                .and_then(|i| i.parse::<usize>().ok())
                && let Some(step) = payload.steps.get(i)
            {
                (
                    format!("step.kubernetes.{}", step.key),
                    step.commands.clone(),
                )
            } else {
                continue;
            };
            list.push(Entry {
                index: trail::ENTRY + 1 + list.len(),
                container: c.name.clone(),
                key,
                command,
            });
        }
        Entries { list }
    }

    /// `step-0 (step.kubernetes.build)` for messages.
    pub fn describe(&self, container: &str) -> String {
        match self.list.iter().find(|e| e.container == container) {
            Some(e) => format!("{container} ({})", e.key),
            None => container.to_owned(),
        }
    }
}

/// Where the job's pod and Job are read.
#[derive(Clone)]
pub struct Cluster {
    /// The client.
    pub client: Client,
    /// The namespace of the job's objects.
    pub namespace: String,
    /// Its Jobs.
    pub jobs: Api<Job>,
}

/// Following one job's pod: what it needs, and the state it keeps between
/// the pod's changes.
pub struct Follow<'a> {
    job: &'a str,
    cluster: &'a Cluster,
    limits: Limits,
    entries: &'a Entries,
    input: mpsc::Sender<Input>,
    /// Just after the Job's creation: pod pending time counts from here.
    started: Instant,
    unschedulable_since: Option<Instant>,
    pull_failing_since: Option<Instant>,
    deleted_since: Option<Instant>,
    following: HashSet<String>,
    followers: JoinSet<()>,
}

impl<'a> Follow<'a> {
    /// Follows the pod of Job `job`; its containers' lines go to `input`.
    pub fn new(
        job: &'a str,
        cluster: &'a Cluster,
        limits: Limits,
        entries: &'a Entries,
        input: mpsc::Sender<Input>,
    ) -> Follow<'a> {
        Follow {
            job,
            cluster,
            limits,
            entries,
            input,
            started: Instant::now(),
            unschedulable_since: None,
            pull_failing_since: None,
            deleted_since: None,
            following: HashSet::new(),
            followers: JoinSet::new(),
        }
    }

    /// Watches the pod until the job has an outcome; returns it with the
    /// log followers, which may still be reading.
    pub async fn run(
        mut self,
        changes: &mut watch::Receiver<PodState>,
        cancel: &CancellationToken,
    ) -> (Outcome, JoinSet<()>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return (Outcome::Cancelled, self.followers),
                changed = changes.changed() => if changed.is_err() {
                    let outcome = Outcome::Infrastructure("the pod watch stopped".into());
                    return (outcome, self.followers);
                },
                _ = tick.tick() => {}
            }
            let state = changes.borrow_and_update().clone();
            if let Some(outcome) = self.step(&state, changes).await {
                return (outcome, self.followers);
            }
        }
    }

    /// Looks at the pod as it is now: starts followers for containers that
    /// started, and classifies the job's end, if it has one.
    async fn step(
        &mut self,
        state: &PodState,
        changes: &watch::Receiver<PodState>,
    ) -> Option<Outcome> {
        let now = Instant::now();
        if let Some(pod) = state.pod() {
            since(
                &mut self.unschedulable_since,
                outcome::unschedulable(pod).is_some(),
                now,
            );
            since(
                &mut self.pull_failing_since,
                outcome::pull_failing(pod),
                now,
            );
            if let PodState::Present(pod) = state {
                self.start_followers(pod, changes);
            }
        }
        let job = match state {
            PodState::Deleted(_) => {
                self.deleted_since.get_or_insert(now);
                self.cluster.jobs.get_opt(self.job).await.ok().flatten()
            }
            _ => None,
        };
        let observation = Observation {
            job: job.as_ref(),
            pod: state.pod(),
            unschedulable_for: elapsed(self.unschedulable_since, now),
            pull_failing_for: elapsed(self.pull_failing_since, now),
            running_for: now - self.started,
        };
        if let Some(outcome) = outcome::classify(&observation, &self.limits) {
            return Some(outcome);
        }
        match self.deleted_since {
            Some(at) if now - at >= DELETED_GRACE => Some(Outcome::PodLost {
                reason: "Deleted".into(),
                message: "the pod was deleted before the job ended".into(),
            }),
            _ => None,
        }
    }

    fn start_followers(&mut self, pod: &Arc<Pod>, changes: &watch::Receiver<PodState>) {
        let Some(pod_name) = pod.metadata.name.as_ref() else {
            return;
        };
        for entry in &self.entries.list {
            if self.following.contains(&entry.container) {
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
            if self.following.is_empty() {
                metrics::histogram!(POD_PENDING).record(self.started.elapsed().as_secs_f64());
            }
            self.following.insert(entry.container.clone());
            let container = Container {
                cluster: self.cluster.clone(),
                pod: pod_name.clone(),
                entry: entry.clone(),
            };
            let changes = changes.clone();
            let input = self.input.clone();
            self.followers.spawn(
                async move { container.follow(start, changes, input).await }.in_current_span(),
            );
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

/// One container of the pod, and the entry its log goes into.
struct Container {
    cluster: Cluster,
    pod: String,
    entry: Entry,
}

impl Container {
    /// Opens the entry, streams the container's log into it, then closes it
    /// with the exit code and duration from the container's status.
    async fn follow(
        self,
        start: Option<Timestamp>,
        mut changes: watch::Receiver<PodState>,
        input: mpsc::Sender<Input>,
    ) {
        let Container {
            cluster,
            pod,
            entry,
        } = self;
        let start = start.unwrap_or_else(Timestamp::now);
        let index = entry.index;
        let open = Input::Open {
            entry: index,
            key: entry.key.clone(),
            command: entry.command.clone(),
            start,
        };
        if input.send(open).await.is_err() {
            return;
        }
        let ended = logs::follow(
            &cluster.client,
            &cluster.namespace,
            &pod,
            &entry.container,
            changes.clone(),
            &input,
            |line| Input::Line(index, line),
        )
        .await;
        // A pod that went away early (deleted by a cancellation, a deadline,
        // a lost node) is the outcome's to explain.
        let lost = match &ended {
            Ok(Ended::Complete) => None,
            Ok(how) => {
                tracing::info!(%pod, container = %entry.container, ?how, "log ended early");
                None
            }
            Err(e) => {
                tracing::warn!(%pod, container = %entry.container, error = %e, "log lost");
                Some(format!("the API server did not give the rest of it ({e})"))
            }
        };
        if let Some(why) = lost {
            // A truncated log must say so where its reader looks.
            let note = Line {
                at: Timestamp::now(),
                text: format!("[executor: this step's log may be incomplete: {why}]"),
            };
            let _ = input.send(Input::Line(index, note)).await;
        }
        let _ = tokio::time::timeout(
            STATUS_GRACE,
            changes.wait_for(|s| logs::terminated(s, &entry.container)),
        )
        .await;
        let (exit_code, duration) = ending(&changes.borrow(), &entry.container, start);
        let _ = input
            .send(Input::Close {
                entry: index,
                exit_code,
                duration,
            })
            .await;
    }
}

/// The exit code and run time of `container`, per its status.
fn ending(state: &PodState, container: &str, start: Timestamp) -> (i32, Duration) {
    let terminated = state
        .pod()
        .and_then(|p| container_status(p, container))
        .and_then(|c| c.state.as_ref()?.terminated.clone());
    match terminated {
        Some(t) => {
            let started = t.started_at.map(|s| s.0).unwrap_or(start);
            let finished = t.finished_at.map(|f| f.0).unwrap_or_else(Timestamp::now);
            (t.exit_code, finished.duration_since(started).unsigned_abs())
        }
        // Never seen to end (the pod went first): no exit code to report.
        None => (-1, Timestamp::now().duration_since(start).unsigned_abs()),
    }
}
