//! One pod watch for the whole executor, selected by its executor label, fanned out to the jobs it runs; kube's watcher re-lists after errors and `410 Gone`, and a re-list reports the pods that vanished meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the watch last said about a job's pod.
#[derive(Debug, Clone, Default)]
pub enum PodState {
    /// No pod seen yet.
    #[default]
    Absent,
    /// The pod as last reported.
    Present(Arc<Pod>),
    /// The pod is gone; its last known state.
    Deleted(Arc<Pod>),
}

impl PodState {
    /// The pod, present or last seen before it went.
    pub fn pod(&self) -> Option<&Pod> {
        match self {
            PodState::Absent => None,
            PodState::Present(p) | PodState::Deleted(p) => Some(p),
        }
    }
}

type Subscribers = Arc<Mutex<HashMap<String, watch::Sender<PodState>>>>;

/// The executor's pod watch. Dropping it stops the watch.
pub struct PodWatcher {
    subscribers: Subscribers,
    task: JoinHandle<()>,
}

/// A job's view of its pod; unsubscribes when dropped.
pub struct Subscription {
    job: String,
    subscribers: Subscribers,
    /// Changes of the pod's state.
    pub changes: watch::Receiver<PodState>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        lock(&self.subscribers).remove(&self.job);
    }
}

impl Drop for PodWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(s: &Subscribers) -> MutexGuard<'_, HashMap<String, watch::Sender<PodState>>> {
    // A panic while holding the lock leaves a map that is still whole.
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Job a pod belongs to, from the label the Job controller sets.
fn job_of(pod: &Pod) -> Option<&str> {
    let labels = pod.metadata.labels.as_ref()?;
    labels
        .get("batch.kubernetes.io/job-name")
        .or_else(|| labels.get("job-name"))
        .map(String::as_str)
}

impl PodWatcher {
    /// Starts watching the pods of `pods` that match `selector` (the
    /// executor's label), for as long as the watcher lives.
    pub fn start(pods: Api<Pod>, selector: &str) -> PodWatcher {
        let subscribers: Subscribers = Arc::default();
        let config = watcher::Config::default().labels(selector);
        let shared = subscribers.clone();
        let task = tokio::spawn(async move {
            let stream = watcher(pods, config).default_backoff();
            futures::pin_mut!(stream);
            // Pods listed since the last `Init`: after a re-list, a subscribed
            // job whose pod is not among them lost it while the watch was down.
            let mut listed: Option<HashSet<String>> = None;
            while let Some(event) = stream.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(e) => {
                        metrics::counter!(crate::ops::metrics::POD_WATCH_ERRORS).increment(1);
                        tracing::warn!(error = %e, "pod watch failed; it restarts with backoff");
                        continue;
                    }
                };
                match event {
                    watcher::Event::Init => listed = Some(HashSet::new()),
                    watcher::Event::InitApply(pod) => {
                        if let (Some(set), Some(job)) = (listed.as_mut(), job_of(&pod)) {
                            set.insert(job.to_owned());
                        }
                        publish(&shared, pod, false);
                    }
                    watcher::Event::Apply(pod) => publish(&shared, pod, false),
                    watcher::Event::Delete(pod) => publish(&shared, pod, true),
                    watcher::Event::InitDone => {
                        let seen = listed.take().unwrap_or_default();
                        for (job, tx) in lock(&shared).iter() {
                            if seen.contains(job) {
                                continue;
                            }
                            tx.send_if_modified(|state| match state {
                                PodState::Present(p) => {
                                    *state = PodState::Deleted(p.clone());
                                    true
                                }
                                _ => false,
                            });
                        }
                    }
                }
            }
        });
        PodWatcher { subscribers, task }
    }

    /// Follows the pod of the Job named `job`. Subscribe before creating the
    /// Job: events for jobs nobody follows are dropped.
    pub fn subscribe(&self, job: &str) -> Subscription {
        let (tx, changes) = watch::channel(PodState::Absent);
        lock(&self.subscribers).insert(job.to_owned(), tx);
        Subscription {
            job: job.to_owned(),
            subscribers: self.subscribers.clone(),
            changes,
        }
    }
}

fn publish(subscribers: &Subscribers, pod: Pod, deleted: bool) {
    let Some(job) = job_of(&pod) else {
        return;
    };
    let map = lock(subscribers);
    let Some(tx) = map.get(job) else {
        return;
    };
    let pod = Arc::new(pod);
    tx.send_replace(if deleted {
        PodState::Deleted(pod)
    } else {
        PodState::Present(pod)
    });
}
