//! `executor plugin bench`: times a plugin's hooks on a given Job or log (per call, per fresh instance, log throughput) and prints the figures; it never judges them.

use std::io::BufRead;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use super::{ContextArgs, Output, Target, context, load, read_job};
use crate::plugins::{JobContext, LogRecord, PluginError, Plugins, Stream};

/// The log entry the benchmarked lines belong to, as `filter` names it by
/// default; a plugin that treats entries differently is timed on a step's output.
const ENTRY: &str = "step.kubernetes.step.0.run";

/// What each figure includes: printed under the table and put in the JSON
/// document, so that nobody reads a figure as less than it is.
const INSTANCE: &str = "a fresh instance of the plugin: instantiate, run init with its settings, drop it; admission pays this for every plugin on every call, a log session once per job";
const ADMIT: &str = "one plugin's turn in the chain, as its trail times it: a fresh instance, init, the admit call and the host's checks of the result; admission never reuses an instance, so there is no warm admit call to time";
const CHAIN: &str = "the whole admission chain on the Job: every admission plugin in turn, plus serializing the Job once";
const FIRST_BATCH: &str = "the first batch of a fresh log session, as each job starts one: a fresh instance and init of every log plugin, then the filter calls";
const WARM_BATCH: &str = "a later batch of the same session: the filter calls alone, on instances the session holds, through every log plugin in order";
const THROUGHPUT: &str = "the log's bytes (MB = 10^6 bytes) and lines over the time of every measured batch, first batches included";

#[derive(Debug, Args)]
pub(in crate::cli) struct BenchArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    input: Input,
    /// Measured runs: admission chains with --job (default 1000), passes over the whole log with --log (default 10), each pass in a fresh log session.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    iterations: Option<u32>,
    /// Runs before measuring, not counted (default 100 with --job, 1 with --log).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    warmup: Option<u32>,
    /// Lines per call into the log plugins (default 1000).
    #[arg(long, requires = "log", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_lines: Option<u32>,
    #[command(flatten)]
    context: ContextArgs,
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub(super) output: Output,
}

/// The input decides the hook: exactly one of the two.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Input {
    /// A batch/v1 Job (JSON or YAML): time the admission hook(s) on it.
    #[arg(long)]
    job: Option<PathBuf>,
    /// A log file: time the log hook(s) on it.
    #[arg(long)]
    log: Option<PathBuf>,
}

pub(super) fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let plugins = load(&args.target)?;
    // What plugins log goes to stderr at debug, once per call: thousands of
    // lines, and terminal writes inside the timings. Discarded while
    // measuring; the calls still make it, only the host's writing is spared.
    let quiet = tracing::subscriber::NoSubscriber::default();
    let report = tracing::subscriber::with_default(quiet, || {
        match (&args.input.job, &args.input.log) {
            (Some(job), _) => admission(&args, &plugins, job).map(Report::Admission),
            (None, Some(log)) => logs(&args, &plugins, log).map(Report::Logs),
            // clap's group requires one.
            (None, None) => Err(Failed::Input(anyhow::anyhow!("give --job or --log"))),
        }
    });
    let report = match report {
        Ok(report) => report,
        Err(Failed::Input(err)) => return Err(err),
        Err(Failed::Plugin(err)) => {
            // As `filter` does: the plugin's failure is the result, not bad input.
            eprintln!("error: {err}; nothing to measure");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut out = std::io::stdout().lock();
    super::written(match args.output {
        Output::Json => serde_json::to_string_pretty(&report)
            .map_err(anyhow::Error::from)
            .and_then(|text| Ok(writeln!(out, "{text}")?)),
        Output::Text => write!(out, "{}", report.text(&args.target.target)).map_err(Into::into),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Why no figures came out.
enum Failed {
    /// The input or the target is not fit to measure (exit 2).
    Input(anyhow::Error),
    /// A plugin failed while being measured (exit 1).
    Plugin(PluginError),
}

impl From<anyhow::Error> for Failed {
    fn from(err: anyhow::Error) -> Failed {
        Failed::Input(err)
    }
}

/// Latency of one kind of call, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    count: usize,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    max_us: f64,
    mean_us: f64,
}

impl Stats {
    /// Figures of `samples`; `None` when there are none. Percentiles are
    /// nearest-rank on the sorted samples: a CLI sorts a few thousand at once.
    fn of(mut samples: Vec<Duration>) -> Option<Stats> {
        samples.sort_unstable();
        let max = *samples.last()?;
        let n = samples.len();
        let rank = |p: f64| {
            let index = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            micros(samples[index])
        };
        let total: Duration = samples.iter().sum();
        Some(Stats {
            count: n,
            p50_us: rank(0.50),
            p90_us: rank(0.90),
            p99_us: rank(0.99),
            max_us: micros(max),
            mean_us: micros(total) / n as f64,
        })
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// What was measured, as printed.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Report {
    Admission(AdmissionReport),
    Logs(LogReport),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionReport {
    hook: &'static str,
    job: PathBuf,
    job_bytes: usize,
    iterations: u32,
    warmup: u32,
    /// `allowed`, or why the chain refused the Job (the plugins after a
    /// refusal did not run, and have no figures).
    decision: String,
    plugins: Vec<AdmissionPlugin>,
    chain: Option<Stats>,
    notes: AdmissionNotes,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionPlugin {
    name: String,
    instance: Option<Stats>,
    admit: Option<Stats>,
}

#[derive(Debug, Serialize)]
struct AdmissionNotes {
    instance: &'static str,
    admit: &'static str,
    chain: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LogReport {
    hook: &'static str,
    log: PathBuf,
    log_bytes: usize,
    lines: usize,
    batch_lines: u32,
    batches: usize,
    iterations: u32,
    warmup: u32,
    plugins: Vec<LogPlugin>,
    first_batch: Option<Stats>,
    /// `None` when the log fits in one batch.
    warm_batch: Option<Stats>,
    throughput: Throughput,
    /// Failures of plugins whose policy let the batch pass on unfiltered:
    /// their figures are of the failure, not of the filter.
    ignored_failures: usize,
    /// The first of them.
    first_ignored_failure: Option<String>,
    notes: LogNotes,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LogPlugin {
    name: String,
    instance: Option<Stats>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Throughput {
    mb_per_second: f64,
    lines_per_second: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LogNotes {
    instance: &'static str,
    first_batch: &'static str,
    warm_batch: &'static str,
    throughput: &'static str,
}

/// The names of the plugins of `plugins` with `hook`, in order; an input
/// error when there are none, since nothing would be measured.
fn with_hook(plugins: &Plugins, hook: &str, other: &str) -> Result<Vec<String>, Failed> {
    let names: Vec<String> = plugins
        .info()
        .into_iter()
        .filter(|p| p.hooks.contains(&hook))
        .map(|p| p.name)
        .collect();
    if names.is_empty() {
        return Err(Failed::Input(anyhow::anyhow!(
            "no plugin of the target has the {hook} hook; benchmark it with {other}"
        )));
    }
    Ok(names)
}

/// Times a fresh instance of each of `names`, `runs` times after `warmup`.
fn instances(
    plugins: &Plugins,
    names: &[String],
    warmup: u32,
    runs: u32,
) -> Result<Vec<Vec<Duration>>, Failed> {
    let mut samples = vec![Vec::with_capacity(runs as usize); names.len()];
    for run in 0..warmup + runs {
        for (name, took) in plugins.instantiate_each() {
            let took = took.map_err(Failed::Plugin)?;
            let Some(i) = names.iter().position(|n| *n == name) else {
                continue;
            };
            if run >= warmup {
                samples[i].push(took);
            }
        }
    }
    Ok(samples)
}

fn admission(args: &BenchArgs, plugins: &Plugins, path: &Path) -> Result<AdmissionReport, Failed> {
    let job = read_job(path)?;
    let names = with_hook(plugins, "admission", "--log")?;
    let iterations = args.iterations.unwrap_or(1000);
    let warmup = args.warmup.unwrap_or(100);
    let ctx = context(&args.context, &job);
    let check = &crate::k8s::spec::validate;

    let mut chain = Vec::with_capacity(iterations as usize);
    let mut admit = vec![Vec::with_capacity(iterations as usize); names.len()];
    let mut decision = String::new();
    for run in 0..warmup + iterations {
        // The copy is the caller's, outside the timing: admission takes the Job by value.
        let input = job.clone();
        let started = Instant::now();
        let outcome = plugins.admit(&ctx, input, check);
        let took = started.elapsed();
        if run < warmup {
            continue;
        }
        chain.push(took);
        for entry in &outcome.trail {
            if let Some(i) = names.iter().position(|n| *n == entry.plugin) {
                admit[i].push(entry.elapsed);
            }
        }
        decision = outcome.message().unwrap_or_else(|| "allowed".into());
    }
    let instance = instances(plugins, &names, warmup, iterations)?;
    Ok(AdmissionReport {
        hook: "admission",
        job: path.to_owned(),
        job_bytes: job.to_string().len(),
        iterations,
        warmup,
        decision,
        plugins: names
            .into_iter()
            .zip(instance.into_iter().zip(admit))
            .map(|(name, (instance, admit))| AdmissionPlugin {
                name,
                instance: Stats::of(instance),
                admit: Stats::of(admit),
            })
            .collect(),
        chain: Stats::of(chain),
        notes: AdmissionNotes {
            instance: INSTANCE,
            admit: ADMIT,
            chain: CHAIN,
        },
    })
}

/// The log's records as `filter` reads them (lines split at `\n`, a final
/// `\r` dropped, invalid UTF-8 replaced) and its size in bytes, read whole
/// first so that reading the file is not timed.
fn read_log(path: &Path) -> anyhow::Result<(Vec<LogRecord>, usize)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("--log: cannot read {}", path.display()))?;
    let mut records = Vec::new();
    for line in std::io::Cursor::new(&bytes).split(b'\n') {
        let mut line = line.with_context(|| format!("--log: cannot read {}", path.display()))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        records.push(LogRecord {
            stream: Stream::Stdout,
            text: String::from_utf8_lossy(&line).into_owned(),
        });
    }
    if records.is_empty() {
        bail!("--log: {} is empty; nothing to measure", path.display());
    }
    Ok((records, bytes.len()))
}

fn logs(args: &BenchArgs, plugins: &Plugins, path: &Path) -> Result<LogReport, Failed> {
    let (records, log_bytes) = read_log(path)?;
    let names = with_hook(plugins, "logs", "--job")?;
    let iterations = args.iterations.unwrap_or(10);
    let warmup = args.warmup.unwrap_or(1);
    let batch_lines = args.batch_lines.unwrap_or(1000);
    let batches: Vec<Vec<LogRecord>> = records
        .chunks(batch_lines as usize)
        .map(<[LogRecord]>::to_vec)
        .collect();
    let ctx: JobContext = context(&args.context, &Value::Null);

    let mut first = Vec::with_capacity(iterations as usize);
    let mut warm = Vec::with_capacity(iterations as usize * batches.len().saturating_sub(1));
    let (mut ignored_failures, mut first_ignored_failure) = (0, None);
    for run in 0..warmup + iterations {
        // Copied before the timing: the session takes each batch by value.
        let pass = batches.clone();
        let mut session = plugins.log_session(ctx.clone());
        for (i, batch) in pass.into_iter().enumerate() {
            let started = Instant::now();
            let kept = session.filter(ENTRY, batch);
            let took = started.elapsed();
            kept.map_err(Failed::Plugin)?;
            if run < warmup {
                continue;
            }
            if i == 0 {
                first.push(took);
            } else {
                warm.push(took);
            }
        }
        let ignored = session.ignored_failures();
        if run >= warmup && !ignored.is_empty() {
            ignored_failures += ignored.len();
            first_ignored_failure.get_or_insert_with(|| ignored[0].to_string());
        }
    }
    let measured: Duration = first.iter().chain(&warm).sum();
    let seconds = measured.as_secs_f64().max(f64::MIN_POSITIVE);
    let instance = instances(plugins, &names, warmup, iterations)?;
    Ok(LogReport {
        hook: "logs",
        log: path.to_owned(),
        log_bytes,
        lines: records.len(),
        batch_lines,
        batches: batches.len(),
        iterations,
        warmup,
        plugins: names
            .into_iter()
            .zip(instance)
            .map(|(name, instance)| LogPlugin {
                name,
                instance: Stats::of(instance),
            })
            .collect(),
        first_batch: Stats::of(first),
        warm_batch: Stats::of(warm),
        throughput: Throughput {
            mb_per_second: log_bytes as f64 * f64::from(iterations) / 1e6 / seconds,
            lines_per_second: records.len() as f64 * f64::from(iterations) / seconds,
        },
        ignored_failures,
        first_ignored_failure,
        notes: LogNotes {
            instance: INSTANCE,
            first_batch: FIRST_BATCH,
            warm_batch: WARM_BATCH,
            throughput: THROUGHPUT,
        },
    })
}

/// A duration in microseconds, in the unit that reads best.
fn human(us: f64) -> String {
    if us < 1e3 {
        format!("{us:.1} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// A size in bytes, decimal units as the throughput's.
fn size(bytes: usize) -> String {
    let b = bytes as f64;
    if b < 1e3 {
        format!("{bytes} B")
    } else if b < 1e6 {
        format!("{:.1} KB", b / 1e3)
    } else {
        format!("{:.1} MB", b / 1e6)
    }
}

/// The rows of a table: a label in two parts (plugin, what) and its figures.
struct Table(Vec<(String, &'static str, Option<Stats>, &'static str)>);

impl Table {
    fn render(&self) -> String {
        let first = self.0.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let second = self.0.iter().map(|r| r.1.len()).max().unwrap_or(0);
        let mut out = format!(
            "{:first$}  {:second$}  {:>8}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}\n",
            "", "", "count", "p50", "p90", "p99", "max", "mean"
        );
        let mut previous = "";
        for (plugin, what, stats, missing) in &self.0 {
            // A plugin's name once, over its rows.
            let shown = if plugin == previous { "" } else { plugin };
            previous = plugin;
            match stats {
                Some(s) => out.push_str(&format!(
                    "{shown:first$}  {what:second$}  {:>8}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}\n",
                    s.count,
                    human(s.p50_us),
                    human(s.p90_us),
                    human(s.p99_us),
                    human(s.max_us),
                    human(s.mean_us)
                )),
                None => out.push_str(&format!("{shown:first$}  {what:second$}  {missing}\n")),
            }
        }
        out
    }
}

/// Columns the notes are wrapped to, as most terminals and READMEs show them.
const NOTES_WIDTH: usize = 100;

/// The notes under a table, one per figure, wrapped beside its name.
fn notes(rows: &[(&str, &str)]) -> String {
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (what, note) in rows {
        let mut line = format!("{what:width$} ");
        for word in note.split(' ') {
            if line.len() + 1 + word.len() > NOTES_WIDTH && line.trim_end().len() > width {
                out.push_str(line.trim_end());
                out.push('\n');
                line = " ".repeat(width + 1);
            }
            line.push(' ');
            line.push_str(word);
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

impl Report {
    fn text(&self, target: &Path) -> String {
        match self {
            Report::Admission(r) => {
                let mut rows = Vec::new();
                for p in &r.plugins {
                    rows.push((p.name.clone(), "instance", p.instance.clone(), ""));
                    rows.push((
                        p.name.clone(),
                        "admit",
                        p.admit.clone(),
                        "did not run: the chain stopped before it",
                    ));
                }
                rows.push(("whole chain".into(), "", r.chain.clone(), ""));
                format!(
                    "admission hook of {} ({} plugin(s)) on {} ({})\n{} runs after {} warm-up; decision: {}\n\n{}\n{}",
                    target.display(),
                    r.plugins.len(),
                    r.job.display(),
                    size(r.job_bytes),
                    r.iterations,
                    r.warmup,
                    r.decision,
                    Table(rows).render(),
                    notes(&[
                        ("instance", INSTANCE),
                        ("admit", ADMIT),
                        ("whole chain", CHAIN)
                    ]),
                )
            }
            Report::Logs(r) => {
                let mut rows: Vec<_> = r
                    .plugins
                    .iter()
                    .map(|p| (p.name.clone(), "instance", p.instance.clone(), ""))
                    .collect();
                rows.push(("first batch".into(), "", r.first_batch.clone(), ""));
                rows.push((
                    "warm batch".into(),
                    "",
                    r.warm_batch.clone(),
                    "none: the log fits in one batch",
                ));
                let mut out = format!(
                    "log hook of {} ({} plugin(s)) on {} ({}, {} lines, {} batch(es) of up to {} lines)\n{} passes after {} warm-up, each in a fresh log session\n\n{}\nthroughput  {:.1} MB/s, {:.0} lines/s\n",
                    target.display(),
                    r.plugins.len(),
                    r.log.display(),
                    size(r.log_bytes),
                    r.lines,
                    r.batches,
                    r.batch_lines,
                    r.iterations,
                    r.warmup,
                    Table(rows).render(),
                    r.throughput.mb_per_second,
                    r.throughput.lines_per_second,
                );
                if let Some(first) = &r.first_ignored_failure {
                    out.push_str(&format!(
                        "warning: {} ignored failure(s), the first: {first}; the figures include failed calls\n",
                        r.ignored_failures
                    ));
                }
                out.push('\n');
                out.push_str(&notes(&[
                    ("instance", INSTANCE),
                    ("first batch", FIRST_BATCH),
                    ("warm batch", WARM_BATCH),
                    ("throughput", THROUGHPUT),
                ]));
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_on_the_sorted_samples() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let s = Stats::of(samples).unwrap();
        assert_eq!(
            (s.count, s.p50_us, s.p90_us, s.p99_us, s.max_us),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        assert!((s.mean_us - 50.5).abs() < 1e-9, "mean {}", s.mean_us);
        let one = Stats::of(vec![Duration::from_micros(7)]).unwrap();
        assert_eq!((one.p50_us, one.p99_us, one.max_us), (7.0, 7.0, 7.0));
        assert_eq!(Stats::of(Vec::new()), None);
    }
}
