//! One job end to end, as stages with typed values between them: prepare (build and admit), launch (subscribe and create), follow (watch the pod, stream its containers' logs), finish (stop, drain, fold in the log's result); the log pipeline beside them. Talks to the cluster only through `k8s`.

pub mod finish;
pub mod follow;
pub mod launch;
pub mod log;
pub mod prepare;
pub mod redact;
pub mod trail;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::{Config, KubernetesConfig};
use crate::k8s::names;
use crate::k8s::outcome::{Limits, Outcome};
use crate::k8s::spec::{self, Inputs, LABEL_EXECUTOR, NAME_PREFIX};
use crate::k8s::teardown::{Teardown, TeardownError};
use crate::k8s::watch::PodWatcher;
use crate::payload::JobPayload;
use crate::plugins::Current;

use finish::{Ending, Finished};
use follow::{Cluster, Entries, Follow};
use log::LogEvent;
use redact::Redactor;

/// What a runner needs of the configuration, and nothing else.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How Jobs are built and where they run.
    pub kubernetes: KubernetesConfig,
    /// The queue's shared secret: the credential of jobs that bring no
    /// token, and never to be seen in a log.
    pub frontend_password: Option<String>,
    /// `EXECUTOR_MAXIMUM_RUNTIME_PER_JOB`.
    pub maximum_runtime: Duration,
    /// What survives the executor's restarts (`Instance::claim`).
    pub instance: String,
    /// Where jobs clone and download from (the frontend, or the embedded
    /// queue).
    pub routes: Option<Url>,
}

impl Settings {
    /// The runner's part of `config`, with `routes` for the jobs.
    pub fn new(config: &Config, routes: Option<Url>) -> Settings {
        Settings {
            kubernetes: config.kubernetes.clone(),
            frontend_password: config.queue.frontend_password.clone(),
            maximum_runtime: config.queue.maximum_runtime_per_job,
            instance: config.instance(),
            routes,
        }
    }

    /// The same, for the instance this process claimed (`Instance::claim`).
    pub fn for_instance(mut self, instance: &crate::instance::Instance) -> Settings {
        self.instance = instance.name.clone();
        self
    }
}

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
    pub teardown: Result<(), TeardownError>,
    /// When the create request went out (none when the job was refused),
    /// for measuring the executor's own overhead per job.
    pub created: Option<Instant>,
    /// When the executor saw the pod end (none when it never ran): the
    /// start of the executor's own part of finishing the job.
    pub ended: Option<Instant>,
}

/// A Job whose deletion [`Runner::run_deferred`] left to its caller.
#[derive(Debug)]
#[must_use = "the Job stays until teardown (or the next start's sweep) deletes it"]
pub struct Deferred {
    job: String,
}

/// What every job of one executor shares: the client, the settings, the
/// plugins and the one pod watch.
pub struct Runner {
    cluster: Cluster,
    settings: Settings,
    plugins: Current,
    executor_name: String,
    watcher: PodWatcher,
    teardown: Teardown,
}

/// The span all of one job's log lines are written in, with its id and
/// queue as fields. Their names are dotted so that they never clash with an
/// event's own fields (`queue`, `job`) when JSON logs flatten both.
pub fn span(queue: &str, id: i64) -> tracing::Span {
    tracing::info_span!("job", job.id = id, job.queue = %queue)
}

/// The span around an executor's work (its jobs' spans inside it), with its
/// name as a field.
pub fn executor_span(name: &str) -> tracing::Span {
    tracing::info_span!("executor", executor.name = %name)
}

impl Runner {
    /// Starts the pod watch for `executor_name`'s jobs.
    pub fn new(
        client: Client,
        settings: Settings,
        plugins: impl Into<Current>,
        executor_name: String,
    ) -> Runner {
        let ns = settings.kubernetes.namespace.clone();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let selector = format!("{LABEL_EXECUTOR}={}", spec::label_value(&executor_name));
        let watcher = PodWatcher::start(pods, &selector);
        Runner {
            teardown: Teardown::new(&client, &ns),
            cluster: Cluster {
                jobs: Api::namespaced(client.clone(), &ns),
                client,
                namespace: ns,
            },
            settings,
            plugins: plugins.into(),
            executor_name,
            watcher,
        }
    }

    /// This executor's name, as its Jobs' labels carry it.
    pub fn executor_name(&self) -> &str {
        &self.executor_name
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.cluster.client
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
        let report = |outcome, teardown, created| Report {
            outcome,
            job: name.clone(),
            teardown,
            created,
            ended: None,
        };
        // Built first: a job whose secrets cannot be redacted must not run.
        let redactor = match Redactor::for_job(payload, self.settings.frontend_password.as_deref())
        {
            Ok(redactor) => redactor,
            Err(e) => return (report(Outcome::Refused(e.to_string()), Ok(()), None), None),
        };
        let inputs = self.inputs(queue);
        let built = match prepare::build(&inputs, payload) {
            Ok(built) => built,
            Err(e) => return (report(Outcome::Refused(e.to_string()), Ok(()), None), None),
        };
        let ctx = spec::plugin_context(&inputs, payload);
        // One set for the whole job, whatever a reload does meanwhile.
        let plugins = self.plugins.get();
        let admission = prepare::admit(plugins.clone(), ctx.clone(), built).await;
        let (input, pipeline) = log::spawn(redactor, plugins.log_session(ctx), events);
        for step in trail::inputs(&admission.trail, admission.result.is_ok()) {
            // A closed pipeline only means nobody reads the log.
            let _ = input.send(step).await;
        }
        let objects = match admission.result {
            Ok(objects) => objects,
            Err(e) => {
                drop(input);
                let _ = pipeline.await;
                let message = prepare::name_steps(&e.to_string(), payload);
                return (report(Outcome::Refused(message), Ok(()), None), None);
            }
        };
        let launched = match launch::launch(
            &name,
            &objects,
            &self.cluster,
            &self.watcher,
            &self.teardown,
        )
        .await
        {
            Ok(launched) => launched,
            Err(e) => {
                let outcome = Outcome::Infrastructure(e.error.to_string());
                return (report(outcome, e.teardown, Some(e.created)), None);
            }
        };
        let mut pod = launched.pod;
        let entries = Entries::of(&objects, payload);
        let follow = Follow::new(&name, &self.cluster, self.limits(), &entries, input);
        let (outcome, followers) = follow.run(&mut pod.changes, &cancel).await;
        let ended = Instant::now();
        let ending = Ending {
            outcome,
            followers,
            pipeline,
        };
        let keep_jobs = self.settings.kubernetes.keep_jobs;
        let Finished { outcome, deleted } =
            finish::finish(&name, ending, &entries, &self.teardown, keep_jobs).await;
        drop(pod);
        let deferred = (deleted.is_none() && !keep_jobs).then(|| Deferred { job: name.clone() });
        tracing::info!(job = %name, outcome = %outcome.message(), "done");
        let teardown = deleted.unwrap_or(Ok(()));
        let report = Report {
            ended: Some(ended),
            ..report(outcome, teardown, Some(launched.created))
        };
        (report, deferred)
    }

    /// Deletes the Job that [`Runner::run_deferred`] left (per
    /// `KUBERNETES_KEEP_JOBS`), with the usual retries and accounting.
    pub async fn teardown(&self, deferred: Deferred) -> Result<(), TeardownError> {
        self.teardown.job(&deferred.job).await
    }

    fn inputs<'a>(&'a self, queue: &'a str) -> Inputs<'a> {
        Inputs {
            config: &self.settings.kubernetes,
            queue,
            executor_name: &self.executor_name,
            instance: &self.settings.instance,
            routes: self.settings.routes.as_ref(),
        }
    }

    fn limits(&self) -> Limits {
        let k = &self.settings.kubernetes;
        Limits {
            pending_timeout: k.pending_timeout,
            pull_grace: k.image_pull_grace,
            max_runtime: self.settings.maximum_runtime,
        }
    }
}
