//! Every metric's name, unit, description and buckets, written once here, and the process's Prometheus recorder that renders them; it records nothing itself.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Jobs running now (gauge).
pub const JOBS_RUNNING: &str = "executor_jobs_running";
/// Jobs finished, by `outcome`: what the queue was told (`succeeded`,
/// `failed`, `errored`) or `unreported`.
pub const JOBS_FINISHED: &str = "executor_jobs_finished_total";
/// From dequeue to the result's report, by `outcome`.
pub const JOB_DURATION: &str = "executor_job_duration_seconds";
/// The executor's own time around a job, by `phase` (`start`: dequeue to
/// create; `finish`: the pod ended and its last log line was read, to report).
pub const JOB_OVERHEAD: &str = "executor_job_overhead_seconds";
/// From a Job's creation to its pod's first container starting.
pub const POD_PENDING: &str = "executor_pod_pending_seconds";
/// Jobs an admission plugin denied, by `plugin`.
pub const JOBS_DENIED: &str = "executor_jobs_denied_total";
/// Queue requests, by `call` (`dequeue`, `heartbeat`, `markComplete`, ...)
/// and `code` (the HTTP status, `none` without a reply).
pub const QUEUE_REQUESTS: &str = "executor_queue_requests_total";
/// Queue requests without a successful reply (no reply or not 2xx), by `call`.
pub const QUEUE_REQUEST_ERRORS: &str = "executor_queue_request_errors_total";
/// Queue request latency, by `call`.
pub const QUEUE_REQUEST_DURATION: &str = "executor_queue_request_duration_seconds";
/// Per-job queue writes retried after a failure, by `call`.
pub const QUEUE_RETRIES: &str = "executor_queue_retries_total";
/// Kubernetes API requests, by `verb` (the HTTP method) and `code` (the
/// HTTP status, `none` without a reply).
pub const KUBE_REQUESTS: &str = "executor_kube_requests_total";
/// Kubernetes API latency to the response's headers, by `verb`.
pub const KUBE_REQUEST_DURATION: &str = "executor_kube_request_duration_seconds";
/// Kubernetes API requests retried, by `verb`.
pub const KUBE_RETRIES: &str = "executor_kube_retries_total";
/// A job's pod watch failed and was restarted.
pub const POD_WATCH_ERRORS: &str = "executor_pod_watch_errors_total";
/// A job's objects could not be deleted.
pub const TEARDOWN_FAILURES: &str = "executor_teardown_failures_total";
/// Plugin calls, by `plugin` and `hook` (`admit`, `filter`).
pub const PLUGIN_CALLS: &str = "executor_plugin_calls_total";
/// Plugin call latency, by `plugin` and `hook`.
pub const PLUGIN_CALL_DURATION: &str = "executor_plugin_call_duration_seconds";
/// Plugin failures, by `plugin`, `hook` (`load`, `admit`, `filter`) and `kind`.
pub const PLUGIN_FAILURES: &str = "executor_plugin_failures_total";
/// Admission results, by `plugin` and `result` (`allowed`, `mutated`, `denied`, ...).
pub const PLUGIN_ADMISSIONS: &str = "executor_plugin_admissions_total";
/// Reloads of the plugin set, by `trigger` (`file`, `signal`, `http`) and
/// `result` (`swapped`, `unchanged`, `refused`).
pub const PLUGIN_RELOADS: &str = "executor_plugin_reloads_total";
/// Plugins in the set in force.
pub const PLUGINS_LOADED: &str = "executor_plugins_loaded";
/// Log lines given to the uploader.
pub const LOG_LINES: &str = "executor_log_lines_total";
/// Bytes of log entries sent to the queue (resends included).
pub const LOG_UPLOADED_BYTES: &str = "executor_log_uploaded_bytes_total";
/// Upload lag: from a line's writing to the queue acknowledging it.
pub const LOG_UPLOAD_LAG: &str = "executor_log_upload_delay_seconds";
/// Log entry sends that failed.
pub const LOG_UPLOAD_FAILURES: &str = "executor_log_upload_failures_total";
/// A container's log stream broke and was resumed.
pub const LOG_RESUMES: &str = "executor_log_resumes_total";
/// Log lines dropped from the middle of an entry over its size limit.
pub const LOG_LINES_DROPPED: &str = "executor_log_lines_dropped_total";
/// A log line longer than the most that is kept was cut.
pub const LOG_LINES_CUT: &str = "executor_log_lines_cut_total";

/// Requests to the queue and the API server: milliseconds to a minute.
const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Plugin calls run on deadlines of milliseconds (admission: 1 s by default).
const PLUGIN_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Jobs run from seconds to the default 30 min limit and beyond.
const JOB_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
];
/// A pod starts in a second when its image is cached, minutes when it is
/// pulled or waits for a node (the pending timeout is 5 min).
const PENDING_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// The uploader sends at most once a second, slower for large logs.
const LAG_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The largest metrics text a heartbeat carries: Sourcegraph stores it per
/// executor, and a heartbeat every 5 s must stay small beside the logs.
pub const HEARTBEAT_LIMIT: usize = 1024 * 1024;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder,
/// once; later calls do nothing. `false` when another recorder was
/// installed first (the metrics then go there, and [`render`] has nothing).
pub fn install() -> bool {
    HANDLE.get_or_init(build).is_some()
}

fn build() -> Option<PrometheusHandle> {
    let buckets = [
        (QUEUE_REQUEST_DURATION, REQUEST_BUCKETS),
        (KUBE_REQUEST_DURATION, REQUEST_BUCKETS),
        (JOB_OVERHEAD, REQUEST_BUCKETS),
        (PLUGIN_CALL_DURATION, PLUGIN_BUCKETS),
        (JOB_DURATION, JOB_BUCKETS),
        (POD_PENDING, PENDING_BUCKETS),
        (LOG_UPLOAD_LAG, LAG_BUCKETS),
    ];
    let mut builder = PrometheusBuilder::new();
    for (name, values) in buckets {
        // Fails only for an empty list of buckets, which none of these is.
        builder = match builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), values) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(metric = name, error = %e, "bad histogram buckets");
                return None;
            }
        };
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if let Err(e) = metrics::set_global_recorder(recorder) {
        tracing::warn!(error = %e, "another metrics recorder is installed; /metrics and heartbeats carry no metrics");
        return None;
    }
    describe();
    Some(handle)
}

/// Every metric's help text and unit, so that `# HELP` says what it counts.
fn describe() {
    use Unit::{Bytes, Count, Seconds};
    describe_gauge!(JOBS_RUNNING, Count, "Jobs running now.");
    describe_counter!(
        JOBS_FINISHED,
        Count,
        "Jobs finished, by what the queue was told (outcome: succeeded, failed, errored, unreported)."
    );
    describe_histogram!(
        JOB_DURATION,
        Seconds,
        "From dequeue to the result's report, by outcome."
    );
    describe_histogram!(
        JOB_OVERHEAD,
        Seconds,
        "The executor's own time around a job (phase start: dequeue to create; finish: pod ended and last log line read, to report)."
    );
    describe_histogram!(
        POD_PENDING,
        Seconds,
        "From a Job's creation to its pod's first container starting."
    );
    describe_counter!(
        JOBS_DENIED,
        Count,
        "Jobs denied by an admission plugin, by plugin."
    );
    describe_counter!(
        QUEUE_REQUESTS,
        Count,
        "Queue requests, by call and HTTP status code (none: no reply)."
    );
    describe_counter!(
        QUEUE_REQUEST_ERRORS,
        Count,
        "Queue requests with no reply or a reply other than 2xx, by call."
    );
    describe_histogram!(
        QUEUE_REQUEST_DURATION,
        Seconds,
        "Queue request latency, by call."
    );
    describe_counter!(
        QUEUE_RETRIES,
        Count,
        "Per-job queue writes retried after a failure, by call."
    );
    describe_counter!(
        KUBE_REQUESTS,
        Count,
        "Kubernetes API requests, by verb (HTTP method) and status code (none: no reply)."
    );
    describe_histogram!(
        KUBE_REQUEST_DURATION,
        Seconds,
        "Kubernetes API latency to the response headers, by verb."
    );
    describe_counter!(
        KUBE_RETRIES,
        Count,
        "Kubernetes API requests retried, by verb."
    );
    describe_counter!(
        POD_WATCH_ERRORS,
        Count,
        "Pod watches that failed and were restarted."
    );
    describe_counter!(
        TEARDOWN_FAILURES,
        Count,
        "Jobs whose objects could not be deleted."
    );
    describe_counter!(PLUGIN_CALLS, Count, "Plugin calls, by plugin and hook.");
    describe_histogram!(
        PLUGIN_CALL_DURATION,
        Seconds,
        "Plugin call latency, by plugin and hook."
    );
    describe_counter!(
        PLUGIN_FAILURES,
        Count,
        "Plugin failures, by plugin, hook (load, admit, filter) and kind."
    );
    describe_counter!(
        PLUGIN_ADMISSIONS,
        Count,
        "Admission results, by plugin and result."
    );
    describe_counter!(
        PLUGIN_RELOADS,
        Count,
        "Reloads of the plugin set, by trigger (file, signal, http) and result (swapped, unchanged, refused)."
    );
    describe_gauge!(PLUGINS_LOADED, Count, "Plugins in the set in force.");
    describe_counter!(LOG_LINES, Count, "Log lines given to the uploader.");
    describe_counter!(
        LOG_UPLOADED_BYTES,
        Bytes,
        "Bytes of log entries sent to the queue, resends included."
    );
    describe_histogram!(
        LOG_UPLOAD_LAG,
        Seconds,
        "Upload lag: from a log line's writing to the queue acknowledging it."
    );
    describe_counter!(LOG_UPLOAD_FAILURES, Count, "Log entry sends that failed.");
    describe_counter!(
        LOG_LINES_DROPPED,
        Count,
        "Log lines dropped from the middle of an entry over 32 MiB (the entry says so)."
    );
    describe_counter!(
        LOG_LINES_CUT,
        Count,
        "Log lines cut to the longest kept (64 KiB), the rest dropped."
    );
    describe_counter!(
        LOG_RESUMES,
        Count,
        "Container log streams that broke and were resumed."
    );
}

/// The metrics in the Prometheus text format; `None` when [`install`] was
/// not called or another recorder was installed first.
pub fn render() -> Option<String> {
    HANDLE.get()?.as_ref().map(PrometheusHandle::render)
}

/// What a heartbeat carries: the text, cut to [`HEARTBEAT_LIMIT`] at a
/// metric family's start so that what remains still parses; empty without
/// a recorder.
pub fn for_heartbeat() -> String {
    let text = render().unwrap_or_default();
    cut(text, HEARTBEAT_LIMIT)
}

fn cut(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    // A family starts at its `# HELP`, or at its `# TYPE` when it has no help.
    let (mut end, mut at, mut after_help) = (0, 0, false);
    for line in text.split_inclusive('\n') {
        if at > limit {
            break;
        }
        let help = line.starts_with("# HELP ");
        if help || (line.starts_with("# TYPE ") && !after_help) {
            end = at;
        }
        after_help = help;
        at += line.len();
    }
    tracing::warn!(
        bytes = text.len(),
        limit,
        "the metrics text is over the heartbeat's limit; the heartbeat carries the first families only"
    );
    text.truncate(end);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_over_the_limit_is_cut_before_the_family_that_does_not_fit() {
        let family = |n: usize| {
            format!("# HELP m{n} x\n# TYPE m{n} counter\nm{n}{{a=\"1\"}} 1\nm{n}{{a=\"2\"}} 2\n")
        };
        let text: String = (0..3).map(family).collect();
        let one = family(0).len();
        assert_eq!(cut(text.clone(), text.len()), text);
        assert_eq!(cut(text.clone(), 2 * one + 5), family(0) + &family(1));
        assert_eq!(cut(text.clone(), one - 1), "");
    }
}
