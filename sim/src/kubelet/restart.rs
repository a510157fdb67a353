//! A container's life across restarts, as the kubelet's sync loop runs it: the run, its probes, the preStop hook before a stop, `restartPolicy` (`Always`, `OnFailure`, `Never`), and the crash-loop back-off (doubling from a base to 30× it, 10 s to 5 min on a real kubelet).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};

use super::container::ContainerRun;
use super::probe::{Target, watch_container};
use super::status::{INIT, PodStatus, StatusSink, waiting};

/// Whether a container that ended with `code` runs again under `policy`.
fn restarts(policy: &str, code: i32) -> bool {
    match policy {
        "Always" => true,
        "OnFailure" => code != 0,
        _ => false,
    }
}

/// The wait before restart number `n` (0: the first): none, then `base`,
/// doubling, at most 30 × `base` (the real kubelet: 0, 10 s, 20 s, ... 5 min).
pub(super) fn back_off(base: Duration, n: u32) -> Duration {
    if n == 0 {
        return Duration::ZERO;
    }
    let doubled = base.saturating_mul(1u32 << (n - 1).min(16));
    doubled.min(base.saturating_mul(30))
}

/// Runs the container until it ends for good (its last exit code) or the
/// pod stops (`None`, after the preStop hook and the signals). `probes`
/// is the shared status the probes report to (the pod's containers; init
/// containers have none).
pub(super) async fn run_restarting(
    run: &ContainerRun<'_>,
    sink: &mut StatusSink<'_>,
    pod_stopped: &watch::Receiver<bool>,
    probes: Option<&Arc<Mutex<PodStatus>>>,
) -> Option<i32> {
    let policy = match run.pod["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or("Always")
    {
        // An init container that succeeded is done, whatever the policy.
        "Always" if run.slot.list == INIT => "OnFailure",
        other => other,
    };
    let base = run.cluster.options.restart_backoff;
    let target = Target {
        cluster: run.cluster.clone(),
        pod: run.pod.clone(),
        container: run.container.clone(),
        volumes: run.volumes.clone(),
        slot: run.slot,
    };
    let mut crashes = 0u32;
    loop {
        let (kill, mut killed) = watch::channel(false);
        let stopper = tokio::spawn(stop_on_pod_stop(
            target.clone(),
            pod_stopped.clone(),
            kill.clone(),
        ));
        let prober = probes.map(|status| {
            tokio::spawn(watch_container(
                target.clone(),
                status.clone(),
                kill.clone(),
            ))
        });
        let began = Instant::now();
        let ended = run.run(sink, &mut killed).await;
        if let Some(p) = prober {
            p.abort();
        }
        if *pod_stopped.borrow() {
            let _ = stopper.await;
            return None;
        }
        stopper.abort();
        // Stopped by a probe: the exit code is in the status.
        let code = match ended {
            Some(code) => code,
            None => {
                let mut state = Value::Null;
                sink.with(|s| state = s.state(run.slot)).await;
                match state["terminated"]["exitCode"].as_i64() {
                    Some(code) => code as i32,
                    // Stopped before it ran (image, config): nothing to restart.
                    None => return None,
                }
            }
        };
        if !restarts(policy, code) {
            return Some(code);
        }
        // A container that ran longer than twice the longest back-off starts afresh.
        if began.elapsed() > back_off(base, 16) * 2 {
            crashes = 0;
        }
        let delay = back_off(base, crashes);
        crashes += 1;
        if !wait_to_restart(&target, sink, pod_stopped, delay).await {
            return None;
        }
        sink.with(|s| s.count_restart(run.slot)).await;
    }
}

/// The back-off between two runs, shown as `CrashLoopBackOff`; `false`
/// when the pod stops meanwhile.
async fn wait_to_restart(
    target: &Target,
    sink: &mut StatusSink<'_>,
    pod_stopped: &watch::Receiver<bool>,
    delay: Duration,
) -> bool {
    let pod = &target.pod;
    let pod_ref = format!(
        "{}_{}({})",
        pod["metadata"]["name"].as_str().unwrap_or_default(),
        pod["metadata"]["namespace"].as_str().unwrap_or_default(),
        pod["metadata"]["uid"].as_str().unwrap_or_default()
    );
    let name = target.container["name"].as_str().unwrap_or_default();
    let state = if delay.is_zero() {
        json!({"waiting": {"reason": "ContainerCreating"}})
    } else {
        let message = format!(
            "back-off {} restarting failed container={name} pod={pod_ref}",
            go_duration(delay)
        );
        target.cluster.event(
            pod,
            "Warning",
            "BackOff",
            &format!("Back-off restarting failed container {name} in pod {pod_ref}"),
        );
        waiting("CrashLoopBackOff", Some(&message))
    };
    sink.with(|s| s.begin_restart(target.slot, state)).await;
    let mut stopped = pod_stopped.clone();
    if *stopped.borrow() {
        return false;
    }
    tokio::select! {
        _ = stopped.changed() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// `10s`, `2m40s`, `500ms`: a duration as Go prints it.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let frac = ms % 1000;
    let s = if frac == 0 {
        format!("{}s", secs % 60)
    } else {
        format!("{}.{:03}s", secs % 60, frac)
            .trim_end_matches('0')
            .to_owned()
    };
    match secs / 60 {
        0 => s,
        m if m < 60 => format!("{m}m{s}"),
        m => format!("{}h{}m{s}", m / 60, m % 60),
    }
}

/// When the pod stops: the preStop hook (within the grace period), then
/// `kill`, which makes the run send SIGTERM and SIGKILL after the grace period.
async fn stop_on_pod_stop(
    target: Target,
    mut pod_stopped: watch::Receiver<bool>,
    kill: watch::Sender<bool>,
) {
    if !*pod_stopped.borrow() && pod_stopped.changed().await.is_err() {
        return;
    }
    let name = target.container["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    target.cluster.event(
        &target.pod,
        "Normal",
        "Killing",
        &format!("Stopping container {name}"),
    );
    let hook = &target.container["lifecycle"]["preStop"];
    if !hook.is_null() {
        let grace = target.pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        if let Err(message) = target.act(hook, Duration::from_secs(grace.max(1))).await {
            target.cluster.event(
                &target.pod,
                "Warning",
                "FailedPreStopHook",
                &format!("PreStopHook failed: {message}"),
            );
        }
    }
    let _ = kill.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_the_base_to_thirty_times_it() {
        let base = Duration::from_secs(10);
        let waits: Vec<u64> = (0..8).map(|n| back_off(base, n).as_secs()).collect();
        assert_eq!(waits, [0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn durations_read_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
        assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
    }
}
