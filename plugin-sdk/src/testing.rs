//! A native test harness: run a plugin's hooks with plain `cargo test`, through the same code path as in the component.

pub mod jobs;

use crate::__private::{self, Decision};
use crate::batch::Joined;
use crate::{Admission, Error, Job, JobContext, Level, LogContext, LogFilter, LogRecord, Plugin};

/// Runs a plugin natively: settings and Jobs go through JSON exactly as they
/// do between the executor and the component.
pub struct Harness<P> {
    plugin: P,
}

/// The outcome of [`Harness::admit`].
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// Whether the Job may be created.
    pub allowed: bool,
    /// The denial message, if denied.
    pub message: Option<String>,
    /// The warnings.
    pub warnings: Vec<String>,
    /// The Job as the executor would create it (unchanged when denied).
    pub job: Job,
    /// Whether the plugin changed the Job.
    pub mutated: bool,
}

impl<P: Plugin> Harness<P> {
    /// Builds the plugin from settings given as a JSON value.
    pub fn new(settings: serde_json::Value) -> Result<Self, Error> {
        Self::from_json(&settings.to_string())
    }

    /// Builds the plugin from settings given as JSON text (`"null"` for none).
    pub fn from_json(settings: &str) -> Result<Self, Error> {
        Ok(Harness {
            plugin: __private::init::<P>(settings)?,
        })
    }

    /// The plugin itself.
    pub fn plugin(&self) -> &P {
        &self.plugin
    }
}

impl<P: Admission> Harness<P> {
    /// Runs the admission hook on `job`.
    pub fn admit(&self, ctx: &JobContext, job: &Job) -> Result<Admitted, Error> {
        let text = serde_json::to_string(job)?;
        let response = __private::admit(&self.plugin, ctx, &text)?;
        let (allowed, message, out, mutated) = match response.decision {
            Decision::Allow => (true, None, job.clone(), false),
            Decision::AllowPatched(ops) => (true, None, __private::apply_patch(&text, &ops)?, true),
            Decision::AllowMutated(text) => (true, None, serde_json::from_str(&text)?, true),
            Decision::Deny(message) => (false, Some(message), job.clone(), false),
        };
        // A plugin that overrides `review` also has `admit`; what the
        // component runs and what natively written callers run must agree.
        let mut typed = job.clone();
        let verdict = self.plugin.admit(ctx, &mut typed)?;
        if verdict.denied().is_some() == allowed || (allowed && typed != out) {
            return Err(Error::new(format!(
                "`admit` and `review` disagree on this Job: `review` {}, `admit` {}",
                if allowed { "allows it" } else { "denies it" },
                match verdict.denied() {
                    Some(_) => "denies it".to_owned(),
                    None if typed != out => "allows it with other changes".to_owned(),
                    None => "allows it".to_owned(),
                }
            )));
        }
        let job = out;
        Ok(Admitted {
            allowed,
            message,
            warnings: response.warnings,
            job,
            mutated,
        })
    }
}

impl<P: LogFilter> Harness<P> {
    /// Runs the log hook on a batch of records and returns what the host
    /// would upload: the batch with the edits the component would send
    /// applied, so the edit computation is tested along with the plugin.
    pub fn filter(
        &mut self,
        ctx: &LogContext,
        records: Vec<LogRecord>,
    ) -> Result<Vec<LogRecord>, Error> {
        let joined = Joined::new(&records).map_err(|i| {
            Error::new(format!(
                "record {i} holds a line break (\"\\n\"); the executor splits its logs into lines, so a filter never sees one"
            ))
        })?;
        let edits = __private::filter(&mut self.plugin, ctx, &joined.batch())?;
        Ok(__private::apply(&records, edits))
    }

    /// Runs the log hook on stdout lines and returns the text of the kept records.
    pub fn filter_lines(&mut self, lines: &[&str]) -> Result<Vec<String>, Error> {
        let records = lines.iter().map(|l| LogRecord::stdout(*l)).collect();
        let kept = self.filter(&log_context(), records)?;
        Ok(kept.into_iter().map(|r| r.text).collect())
    }
}

/// Takes the messages the plugin logged on this thread so far.
pub fn take_logs() -> Vec<(Level, String)> {
    crate::log::take_captured()
}

/// A typical context: job 42 of queue `batches` on `github.com/acme/api`.
pub fn context() -> JobContext {
    JobContext {
        job_id: "42".into(),
        queue: "batches".into(),
        repository: Some("github.com/acme/api".into()),
        commit: Some("3f5c9a1e2b7d4c8e9f0a1b2c3d4e5f60718293a4".into()),
        step_images: vec!["alpine:3".into()],
        executor_name: "executor-7d9f-0c4b".into(),
    }
}

/// The log context of [`context`]'s first step.
pub fn log_context() -> LogContext {
    LogContext {
        job: context(),
        entry: "step.kubernetes.step.0.run".into(),
    }
}

/// The Job the executor renders for [`context`]'s job: a repository clone
/// and one step, at the executor's default configuration ([`jobs::clone`];
/// [`jobs`] has the other shapes a real Job takes).
pub fn job() -> Job {
    jobs::clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoSettings;

    /// Shouts every line that mentions an error.
    struct Shout;

    impl Plugin for Shout {
        type Settings = NoSettings;
        fn init(_: NoSettings) -> Result<Self, Error> {
            Ok(Shout)
        }
    }

    impl LogFilter for Shout {
        fn filter(
            &mut self,
            _ctx: &LogContext,
            records: Vec<LogRecord>,
        ) -> Result<Vec<LogRecord>, Error> {
            Ok(records
                .into_iter()
                .map(|mut r| {
                    if r.text.contains("error") {
                        r.text = r.text.to_uppercase();
                    }
                    r
                })
                .collect())
        }
    }

    #[test]
    fn the_harness_sends_a_batch_as_the_host_does_and_applies_the_edits() {
        let mut h = Harness::<Shout>::new(serde_json::Value::Null).unwrap();
        let out = h
            .filter(
                &log_context(),
                vec![
                    LogRecord::stdout("ok"),
                    LogRecord::stderr("an error"),
                    LogRecord::stdout(""),
                ],
            )
            .unwrap();
        assert_eq!(
            out,
            [
                LogRecord::stdout("ok"),
                LogRecord::stderr("AN ERROR"),
                LogRecord::stdout("")
            ]
        );
    }

    #[test]
    fn the_harness_refuses_a_record_the_host_would_never_send() {
        let mut h = Harness::<Shout>::new(serde_json::Value::Null).unwrap();
        let err = h.filter_lines(&["ok", "two\nlines"]).unwrap_err();
        assert_eq!(
            err.message(),
            "record 1 holds a line break (\"\\n\"); the executor splits its logs into lines, so a filter never sees one"
        );
    }
}
