//! The queue section: where jobs come from and how many run (`EXECUTOR_FRONTEND_URL`, the queue names, pacing, drain); it checks these variables only.

use std::time::Duration;

use clap::Args;

use super::check::Checker;
use super::parse::{self, DAY, HOUR, MILLIS_10, SECOND, WEEK, YEAR};

const FRONTEND_URL: &str = "EXECUTOR_FRONTEND_URL";
const FRONTEND_PASSWORD: &str = "EXECUTOR_FRONTEND_PASSWORD";
const QUEUE_NAME: &str = "EXECUTOR_QUEUE_NAME";
const QUEUE_NAMES: &str = "EXECUTOR_QUEUE_NAMES";
const QUEUE_POLL_INTERVAL: &str = "EXECUTOR_QUEUE_POLL_INTERVAL";
const MAXIMUM_NUM_JOBS: &str = "EXECUTOR_MAXIMUM_NUM_JOBS";
const MAXIMUM_RUNTIME_PER_JOB: &str = "EXECUTOR_MAXIMUM_RUNTIME_PER_JOB";
const NUM_TOTAL_JOBS: &str = "EXECUTOR_NUM_TOTAL_JOBS";
const MAX_ACTIVE_TIME: &str = "EXECUTOR_MAX_ACTIVE_TIME";
const DRAIN_TIMEOUT: &str = "EXECUTOR_DRAIN_TIMEOUT";

/// The queue settings as text, from a flag or else its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct RawQueue {
    /// URL of the Sourcegraph instance; absent: serve the embedded queue.
    #[arg(long, env = FRONTEND_URL)]
    pub frontend_url: Option<String>,
    /// Shared secret for the queue (token-executor authentication).
    #[arg(long, env = FRONTEND_PASSWORD, hide_env_values = true)]
    pub frontend_password: Option<String>,
    /// The queue to take jobs from (single-queue mode).
    #[arg(long, env = QUEUE_NAME)]
    pub queue_name: Option<String>,
    /// The queues to take jobs from: comma-separated (multi-queue mode).
    #[arg(long, env = QUEUE_NAMES)]
    pub queue_names: Option<String>,
    /// How often to ask the queue for a job when there was none.
    #[arg(long, env = QUEUE_POLL_INTERVAL, default_value = "1s")]
    pub queue_poll_interval: String,
    /// Jobs run at once.
    #[arg(long, env = MAXIMUM_NUM_JOBS, default_value = "1")]
    pub maximum_num_jobs: String,
    /// Longest a job may run before it is stopped.
    #[arg(long, env = MAXIMUM_RUNTIME_PER_JOB, default_value = "30m")]
    pub maximum_runtime_per_job: String,
    /// Stop after this many jobs (0: never).
    #[arg(long, env = NUM_TOTAL_JOBS, default_value = "0")]
    pub num_total_jobs: String,
    /// Stop taking jobs after running this long (0: never).
    #[arg(long, env = MAX_ACTIVE_TIME, default_value = "0s")]
    pub max_active_time: String,
    /// How long running jobs may finish after SIGTERM/SIGINT before they are cancelled and handed back to the queue.
    #[arg(long, env = DRAIN_TIMEOUT, default_value = "5m")]
    pub drain_timeout: String,
}

/// Where jobs come from and how many run.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// The Sourcegraph instance; `None`: the embedded queue.
    pub frontend_url: Option<url::Url>,
    /// The shared queue secret.
    pub frontend_password: Option<String>,
    /// The queues (one: single-queue mode).
    pub queue_names: Vec<String>,
    /// Whether the names came from `EXECUTOR_QUEUE_NAMES` (multi-queue protocol).
    pub multi_queue: bool,
    /// Poll interval.
    pub poll_interval: Duration,
    /// Concurrent jobs.
    pub maximum_num_jobs: u32,
    /// Runtime limit per job.
    pub maximum_runtime_per_job: Duration,
    /// Total jobs before exiting (`None`: no limit).
    pub num_total_jobs: Option<u64>,
    /// Active time before exiting (`None`: no limit).
    pub max_active_time: Option<Duration>,
    /// How long running jobs may finish after a stop signal.
    pub drain_timeout: Duration,
}

impl QueueConfig {
    /// The variable that sets [`QueueConfig::drain_timeout`], for messages
    /// that tell an operator what to change.
    pub const DRAIN_TIMEOUT: &'static str = DRAIN_TIMEOUT;
}

impl RawQueue {
    /// Checks every queue setting; `None` when any is invalid (each recorded in `c`).
    pub(super) fn check(&self, c: &mut Checker) -> Option<QueueConfig> {
        let frontend_url = c.optional(
            FRONTEND_URL,
            &self.frontend_url,
            |v| match url::Url::parse(v) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
                _ => Err(format!(
                    "{v:?} is not an http(s) URL; expected e.g. https://sourcegraph.example.com"
                )),
            },
        );
        let (queue_names, multi_queue) = self.queue_names(c);
        if frontend_url.is_some() && queue_names.is_empty() {
            c.problem(
                QUEUE_NAME,
                format!("missing; a Sourcegraph queue ({FRONTEND_URL}) needs {QUEUE_NAME} or {QUEUE_NAMES}"),
            );
        }
        let poll_interval = c.check(
            QUEUE_POLL_INTERVAL,
            parse::duration_in(&self.queue_poll_interval, MILLIS_10..=HOUR),
        );
        let maximum_num_jobs = c.check(
            MAXIMUM_NUM_JOBS,
            parse::integer(&self.maximum_num_jobs, 1..=10_000),
        );
        let maximum_runtime = c.check(
            MAXIMUM_RUNTIME_PER_JOB,
            parse::duration_in(&self.maximum_runtime_per_job, SECOND..=WEEK),
        );
        let num_total_jobs = c.check(
            NUM_TOTAL_JOBS,
            parse::integer(&self.num_total_jobs, 0..=i64::MAX),
        );
        let max_active_time = c.check(
            MAX_ACTIVE_TIME,
            parse::duration_in(&self.max_active_time, Duration::ZERO..=YEAR),
        );
        let drain_timeout = c.check(
            DRAIN_TIMEOUT,
            parse::duration_in(&self.drain_timeout, Duration::ZERO..=DAY),
        );
        Some(QueueConfig {
            frontend_url,
            frontend_password: self.frontend_password.clone(),
            queue_names,
            multi_queue,
            poll_interval: poll_interval?,
            maximum_num_jobs: maximum_num_jobs? as u32,
            maximum_runtime_per_job: maximum_runtime?,
            num_total_jobs: num_total_jobs.filter(|n| *n > 0).map(|n| n as u64),
            max_active_time: max_active_time.filter(|d| !d.is_zero()),
            drain_timeout: drain_timeout?,
        })
    }

    /// The queue names and whether they came from the multi-queue variable.
    fn queue_names(&self, c: &mut Checker) -> (Vec<String>, bool) {
        let (queue_names, multi_queue) = match (
            self.queue_name.as_deref().filter(|s| !s.trim().is_empty()),
            self.queue_names.as_deref().filter(|s| !s.trim().is_empty()),
        ) {
            (Some(_), Some(_)) => {
                c.problem(
                    QUEUE_NAMES,
                    format!("set together with {QUEUE_NAME}; expected one or the other"),
                );
                (vec![], false)
            }
            (Some(one), None) => (vec![one.trim().to_owned()], false),
            (None, Some(many)) => (parse::list(many), true),
            (None, None) => (vec![], false),
        };
        if let Some(bad) = queue_names.iter().find(|q| !queue_name(q)) {
            let variable = if multi_queue { QUEUE_NAMES } else { QUEUE_NAME };
            c.problem(
                variable,
                format!("{bad:?} is not a queue name; expected 1 to 63 of [a-z0-9-]"),
            );
        }
        (queue_names, multi_queue)
    }
}

fn queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
