//! Whether the executor is ready to take jobs: what its parts last said (plugins loaded, the queue and the API server answered, draining), judged against a window; it asks nobody itself.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many of the slower of the poll and heartbeat intervals may pass
/// without an answer before the executor is not ready: one lost request is
/// noise, three in a row an outage.
const MISSED_BEATS: u32 = 3;

/// The window for a worker that polls every `poll` and heartbeats every `heartbeat`.
pub fn window(poll: Duration, heartbeat: Duration) -> Duration {
    poll.max(heartbeat) * MISSED_BEATS
}

/// When a dependency last answered; cheap to clone and to mark from any
/// task (one atomic store).
#[derive(Clone, Debug)]
pub struct LastAnswer {
    epoch: Instant,
    /// Nanoseconds after `epoch`, plus one; 0 for never.
    at: Arc<AtomicU64>,
}

impl Default for LastAnswer {
    fn default() -> Self {
        LastAnswer {
            epoch: Instant::now(),
            at: Arc::default(),
        }
    }
}

impl LastAnswer {
    /// It answered now.
    pub fn mark(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.at.store(nanos + 1, Ordering::Relaxed);
    }

    /// How long ago it last answered as of `now`; `None` if it never did.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        match self.at.load(Ordering::Relaxed) {
            0 => None,
            n => Some(now.saturating_duration_since(self.epoch + Duration::from_nanos(n - 1))),
        }
    }
}

/// Where the plugins are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginsState {
    /// Being compiled or loaded.
    Loading,
    /// Loaded; `skipped` are those left out per their failure policy, with why.
    Loaded {
        /// The loaded plugins' names, in order.
        names: Vec<String>,
        /// Why each skipped plugin was skipped.
        skipped: Vec<String>,
    },
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// `config`, `plugins`, `kubernetes`, `queue`, `draining`.
    pub name: &'static str,
    /// Passed.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// Every check, in a fixed order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// All checks passed.
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// In the style of the API server's `/readyz?verbose`: `[+]name ok: ...`
    /// or `[-]name failed: ...` per check, then the verdict.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let (mark, word) = if c.ok { ('+', "ok") } else { ('-', "failed") };
            let _ = writeln!(out, "[{mark}]{} {word}: {}", c.name, c.detail);
        }
        out.push_str(if self.ready() {
            "readyz check passed\n"
        } else {
            "readyz check failed\n"
        });
        out
    }
}

/// What readiness is judged on; cheap to clone, shared by the parts that feed it.
#[derive(Clone, Debug)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    window: Duration,
    queue: LastAnswer,
    api: LastAnswer,
    plugins: Mutex<PluginsState>,
    /// Why the last reload was refused, until one succeeds. Not a failed
    /// check: the set in force still runs, and restarting would not help.
    refused_reload: Mutex<Option<String>>,
    draining: AtomicBool,
}

impl Readiness {
    /// Ready once the plugins are loaded and the queue and the API server
    /// have each answered within `window`.
    pub fn new(window: Duration) -> Readiness {
        Readiness {
            inner: Arc::new(Inner {
                window,
                queue: LastAnswer::default(),
                api: LastAnswer::default(),
                plugins: Mutex::new(PluginsState::Loading),
                refused_reload: Mutex::new(None),
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// How recent an answer must be.
    pub fn window(&self) -> Duration {
        self.inner.window
    }

    /// For the queue client to mark.
    pub fn queue(&self) -> LastAnswer {
        self.inner.queue.clone()
    }

    /// For the Kubernetes client to mark.
    pub fn api(&self) -> LastAnswer {
        self.inner.api.clone()
    }

    /// The plugins are now in `state`.
    pub fn plugins(&self, state: PluginsState) {
        *self
            .inner
            .plugins
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = state;
    }

    /// The last reload of the plugins was refused for `why`, or (`None`)
    /// the last one succeeded.
    pub fn reload(&self, why: Option<String>) {
        *self
            .inner
            .refused_reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = why;
    }

    /// The executor stopped taking jobs (SIGTERM): not ready from now on.
    pub fn draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// The checks as of `now`.
    pub fn report(&self, now: Instant) -> Report {
        let inner = &self.inner;
        let plugins = inner
            .plugins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let plugins = match plugins {
            PluginsState::Loading => check("plugins", false, "loading".to_owned()),
            PluginsState::Loaded { names, skipped } => {
                let mut detail = if names.is_empty() {
                    "none configured".to_owned()
                } else {
                    format!("loaded {}", names.join(", "))
                };
                if !skipped.is_empty() {
                    let _ = write!(detail, "; skipped per policy: {}", skipped.join("; "));
                }
                let refused = inner
                    .refused_reload
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                if let Some(why) = refused {
                    let _ = write!(
                        detail,
                        "; the last reload was refused and these run on: {why}"
                    );
                }
                check("plugins", true, detail)
            }
        };
        let draining = inner.draining.load(Ordering::Relaxed);
        vec![
            check("config", true, "valid".to_owned()),
            plugins,
            self.answered("kubernetes", &inner.api, now),
            self.answered("queue", &inner.queue, now),
            check(
                "draining",
                !draining,
                if draining {
                    "stopping: no more jobs are taken".to_owned()
                } else {
                    "no".to_owned()
                },
            ),
        ]
        .into()
    }

    fn answered(&self, name: &'static str, last: &LastAnswer, now: Instant) -> Check {
        let window = self.inner.window;
        match last.age(now) {
            None => check(name, false, "no answer yet".to_owned()),
            Some(age) if age <= window => check(name, true, format!("answered {} ago", secs(age))),
            Some(age) => check(
                name,
                false,
                format!("no answer for {} (more than {})", secs(age), secs(window)),
            ),
        }
    }
}

impl From<Vec<Check>> for Report {
    fn from(checks: Vec<Check>) -> Report {
        Report { checks }
    }
}

fn check(name: &'static str, ok: bool, detail: String) -> Check {
    Check { name, ok, detail }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(r: &Report) -> Vec<&str> {
        r.checks.iter().filter(|c| !c.ok).map(|c| c.name).collect()
    }

    #[test]
    fn not_ready_until_plugins_load_and_both_dependencies_answer() {
        let r = Readiness::new(Duration::from_secs(15));
        let report = r.report(Instant::now());
        assert_eq!(failing(&report), ["plugins", "kubernetes", "queue"]);
        assert!(
            report.text().contains("[-]queue failed: no answer yet\n"),
            "{}",
            report.text()
        );
        r.plugins(PluginsState::Loaded {
            names: vec!["redact".into()],
            skipped: vec!["annotate: file not found".into()],
        });
        r.api().mark();
        r.queue().mark();
        let report = r.report(Instant::now());
        assert!(report.ready(), "{}", report.text());
        assert!(report.text().ends_with("readyz check passed\n"));
        assert!(
            report.text().contains(
                "[+]plugins ok: loaded redact; skipped per policy: annotate: file not found"
            ),
            "{}",
            report.text()
        );
    }

    #[test]
    fn an_answer_older_than_the_window_makes_it_unready_with_the_age() {
        let r = Readiness::new(Duration::from_secs(15));
        r.plugins(PluginsState::Loaded {
            names: vec![],
            skipped: vec![],
        });
        r.api().mark();
        r.queue().mark();
        assert!(r.report(Instant::now()).ready());
        let report = r.report(Instant::now() + Duration::from_secs(20));
        assert_eq!(failing(&report), ["kubernetes", "queue"]);
        let text = report.text();
        assert!(
            text.contains("[-]queue failed: no answer for 20.0s (more than 15.0s)"),
            "{text}"
        );
    }

    #[test]
    fn draining_is_unready() {
        let r = Readiness::new(Duration::from_secs(15));
        r.plugins(PluginsState::Loaded {
            names: vec![],
            skipped: vec![],
        });
        r.api().mark();
        r.queue().mark();
        r.draining();
        assert_eq!(failing(&r.report(Instant::now())), ["draining"]);
    }
}
