//! The plain Rust forms of the contract's records (`job-context`, `log-context`, `log-record`).

/// Who and what a call is about; mirrors `job-context` in the WIT contract.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobContext {
    /// The job's id within its queue, as decimal text.
    pub job_id: String,
    /// The queue the job came from.
    pub queue: String,
    /// The repository the job works on, if any (e.g. `github.com/acme/api`).
    pub repository: Option<String>,
    /// The commit the job checks out, if any.
    pub commit: Option<String>,
    /// The image of every step, in step order.
    pub step_images: Vec<String>,
    /// The name of the executor running the job.
    pub executor_name: String,
}

/// What a batch of log records belongs to; mirrors `log-context`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogContext {
    /// The job the log belongs to.
    pub job: JobContext,
    /// The execution log entry, e.g. `setup.workspace` or `step.kubernetes.step.0.run`.
    pub entry: String,
}

/// The output stream a line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One log line, without its terminator; mirrors `log-record`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The stream the line was written to.
    pub stream: Stream,
    /// The line's text.
    pub text: String,
}

impl LogRecord {
    /// A line written to standard output.
    pub fn stdout(text: impl Into<String>) -> Self {
        LogRecord {
            stream: Stream::Stdout,
            text: text.into(),
        }
    }

    /// A line written to standard error.
    pub fn stderr(text: impl Into<String>) -> Self {
        LogRecord {
            stream: Stream::Stderr,
            text: text.into(),
        }
    }
}

/// A change to one record of a batch, named by its index in the batch; the
/// records no edit names are uploaded as they are. Mirrors `log-edit`.
///
/// Edits go in order of their index; at one index, inserts come before the
/// (at most one) `Drop` or `Replace` of that record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEdit {
    /// Leave record `index` out.
    Drop(u32),
    /// Upload this record in place of record `index`.
    Replace(u32, LogRecord),
    /// Upload this record before record `index` (the batch's length: at the end).
    Insert(u32, LogRecord),
}
