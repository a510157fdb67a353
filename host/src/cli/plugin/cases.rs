//! `executor plugin test`: declarative test cases for a plugin or a chain (`*.test.yaml`), run as `opa test` runs policy tests, with a per-case verdict and a readable diff.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ContextArgs, Output, check_job, context, is_config, name_from_path, runtime};
use crate::plugins::{
    AdmissionOutcome, Decision, LogRecord, PluginSpec, Plugins, PluginsConfig, Stream,
};

/// What test files are called.
const SUFFIX: &str = ".test.yaml";

#[derive(Debug, Args)]
pub(in crate::cli) struct TestArgs {
    /// Test files (`*.test.yaml`), or directories searched for them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Look for each file's `.wasm` plugin by its file name in this
    /// directory (e.g. a CI build's output) instead of where `plugin` says.
    #[arg(long)]
    wasm_dir: Option<PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: Output,
}

impl TestArgs {
    pub(super) fn output(&self) -> Output {
        self.output
    }
}

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Suite {
    /// A component (`.wasm`) or a plugin configuration (`.yaml`) to run as a
    /// chain; relative to the test file.
    plugin: PathBuf,
    /// Settings for a single component's `init`; a case may replace them.
    #[serde(default)]
    settings: Value,
    /// The context plugins are given; a case may replace any of it.
    #[serde(default)]
    context: CaseContext,
    cases: Vec<Case>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CaseContext {
    queue: Option<String>,
    job_id: Option<String>,
    repository: Option<String>,
    commit: Option<String>,
}

impl CaseContext {
    fn or(&self, base: &CaseContext) -> ContextArgs {
        ContextArgs {
            queue: self
                .queue
                .clone()
                .or_else(|| base.queue.clone())
                .unwrap_or_else(|| "batches".into()),
            job_id: self
                .job_id
                .clone()
                .or_else(|| base.job_id.clone())
                .unwrap_or_else(|| "1".into()),
            repository: self.repository.clone().or_else(|| base.repository.clone()),
            commit: self.commit.clone().or_else(|| base.commit.clone()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Case {
    name: String,
    settings: Option<Value>,
    #[serde(default)]
    context: CaseContext,
    /// A batch/v1 Job: inline, or a path to one (JSON or YAML).
    job: Option<Value>,
    /// Log lines (stdout), for the log hook.
    log: Option<Vec<String>>,
    /// The entry the lines belong to.
    entry: Option<String>,
    expect: Expect,
}

/// What a case expects; only what is given is checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Expect {
    /// `allowed`, `denied` or `failed` (a plugin failure under `fail`).
    decision: Option<String>,
    /// Text the refusal's message contains.
    message: Option<String>,
    /// The chain's JSON Patch operations, in order, exactly.
    patch: Option<Vec<Value>>,
    /// Fields the admitted Job has (a subset: what is not named is not checked).
    job: Option<Value>,
    /// The warnings, exactly, each as `<plugin>: <text>`.
    warnings: Option<Vec<String>>,
    /// The log lines kept, exactly.
    output: Option<Vec<String>>,
    /// Text the error contains: `init` refusing the settings, or the log
    /// hook failing.
    error: Option<String>,
}

/// One case's result.
struct Verdict {
    name: String,
    failures: Vec<String>,
}

pub(super) fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    for path in &args.paths {
        find(path, &mut files)?;
    }
    if files.is_empty() {
        bail!(
            "no test files (*{SUFFIX}) in {}",
            args.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut results = Vec::new();
    for file in &files {
        results.push((file, run_suite(file, args.wasm_dir.as_deref())?));
    }
    let cases: usize = results.iter().map(|(_, v)| v.len()).sum();
    let failed: usize = results
        .iter()
        .flat_map(|(_, v)| v)
        .filter(|v| !v.failures.is_empty())
        .count();
    let mut out = std::io::stdout().lock();
    super::written((|| -> anyhow::Result<()> {
        match args.output {
            Output::Json => {
                let files: Vec<Value> = results
                    .iter()
                    .map(|(file, verdicts)| {
                        json!({
                            "file": file.display().to_string(),
                            "cases": verdicts.iter().map(|v| json!({
                                "name": v.name,
                                "passed": v.failures.is_empty(),
                                "failures": v.failures,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                let doc = json!({"files": files, "passed": cases - failed, "failed": failed});
                writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
            }
            Output::Text => {
                for (file, verdicts) in &results {
                    writeln!(out, "{}", file.display())?;
                    for v in verdicts {
                        if v.failures.is_empty() {
                            writeln!(out, "  ok    {}", v.name)?;
                        } else {
                            writeln!(out, "  FAIL  {}", v.name)?;
                            for f in &v.failures {
                                for line in f.lines() {
                                    writeln!(out, "          {line}")?;
                                }
                            }
                        }
                    }
                }
                writeln!(
                    out,
                    "{cases} case(s) in {} file(s): {} passed, {failed} failed",
                    results.len(),
                    cases - failed
                )?;
            }
        }
        Ok(())
    })())?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The test files at `path`: itself, or those under it, by name.
fn find(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if !meta.is_dir() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Build outputs and dependencies hold no test files of ours.
        if entry.is_dir() && !name.starts_with('.') && name != "target" && name != "node_modules" {
            find(&entry, out)?;
        } else if name.ends_with(SUFFIX) {
            out.push(entry);
        }
    }
    Ok(())
}

fn run_suite(file: &Path, wasm_dir: Option<&Path>) -> anyhow::Result<Vec<Verdict>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let suite: Suite = serde_norway::from_str(&text)
        .with_context(|| format!("{} is not a valid test file", file.display()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut plugin = base.join(&suite.plugin);
    if let (Some(dir), false) = (wasm_dir, is_config(&plugin))
        && let Some(name) = plugin.file_name()
    {
        plugin = dir.join(name);
    }
    let mut loaded: HashMap<String, Result<Plugins, String>> = HashMap::new();
    let mut verdicts = Vec::new();
    for case in &suite.cases {
        let at = || format!("{}: case {:?}", file.display(), case.name);
        let settings = case.settings.as_ref().unwrap_or(&suite.settings);
        let plugins = match loaded.entry(settings.to_string()) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(load(&plugin, settings).with_context(at)?),
        };
        let ctx = case.context.or(&suite.context);
        let failures = match (&case.job, &case.log) {
            (Some(job), None) => {
                let job = read_job(base, job).with_context(at)?;
                match plugins {
                    Ok(plugins) => {
                        let outcome =
                            plugins.admit(&context(&ctx, &job), job, &crate::k8s::spec::ApiServer);
                        judge_admission(&case.expect, &outcome)
                    }
                    Err(error) => judge_error(&case.expect, error),
                }
            }
            (None, Some(lines)) => match plugins {
                Ok(plugins) => judge_log(
                    &case.expect,
                    plugins,
                    &context(&ctx, &Value::Null),
                    case.entry.as_deref(),
                    lines,
                ),
                Err(error) => judge_error(&case.expect, error),
            },
            _ => bail!("{}: give the case either `job` or `log`", at()),
        };
        verdicts.push(Verdict {
            name: case.name.clone(),
            failures,
        });
    }
    Ok(verdicts)
}

/// The plugin or chain at `path`; a plugin that does not load (its `init`
/// refusing the settings, say) is the case's to judge, not an error.
fn load(path: &Path, settings: &Value) -> anyhow::Result<Result<Plugins, String>> {
    let config = if is_config(path) {
        if !settings.is_null() {
            bail!(
                "`settings` applies to a single .wasm plugin; put them in {}",
                path.display()
            );
        }
        PluginsConfig::from_file(path)?
    } else {
        if !path.is_file() {
            bail!(
                "plugin {} does not exist (build it first, or point --wasm-dir at it)",
                path.display()
            );
        }
        let mut spec = PluginSpec::new(name_from_path(path), path);
        spec.settings = settings.clone();
        PluginsConfig {
            plugins: vec![spec],
        }
    };
    Ok(Plugins::load(runtime(true)?, &config).map_err(|e| e.to_string()))
}

fn read_job(base: &Path, job: &Value) -> anyhow::Result<Value> {
    match job {
        Value::String(path) => super::read_job(&base.join(path)),
        Value::Object(_) => {
            check_job(job, "the case's `job`")?;
            Ok(job.clone())
        }
        _ => bail!("`job` is neither a path nor a Job object"),
    }
}

fn judge_admission(expect: &Expect, outcome: &AdmissionOutcome) -> Vec<String> {
    let mut failures = Vec::new();
    let decision = match &outcome.decision {
        Decision::Allowed => "allowed",
        Decision::Denied { .. } => "denied",
        Decision::Failed(_) => "failed",
    };
    let message = outcome.message().unwrap_or_default();
    if let Some(want) = &expect.decision
        && want != decision
    {
        let why = if message.is_empty() {
            String::new()
        } else {
            format!(" ({message})")
        };
        failures.push(format!("decision: expected {want}, got {decision}{why}"));
    }
    if let Some(want) = &expect.message
        && !message.contains(want.as_str())
    {
        failures.push(format!(
            "message: expected it to contain {want:?}, got {message:?}"
        ));
    }
    if let Some(text) = &expect.error {
        failures.push(format!(
            "error: expected one containing {text:?}, but the plugin loaded"
        ));
    }
    if let Some(want) = &expect.patch {
        let got: Vec<Value> = outcome
            .trail
            .iter()
            .flat_map(|t| t.patch.0.iter())
            .map(|op| serde_json::to_value(op).unwrap_or(Value::Null))
            .collect();
        if *want != got {
            failures.push(format!(
                "patch differs (- expected, + got):\n{}",
                diff(&Value::from(want.clone()), &Value::from(got))
            ));
        }
    }
    if let Some(want) = &expect.job
        && let Some(at) = mismatch(want, &outcome.job, String::new())
    {
        failures.push(format!(
            "job differs at {at} (- expected, + got, the fields named only):\n{}",
            diff(want, &pick(want, &outcome.job))
        ));
    }
    if let Some(want) = &expect.warnings
        && *want != outcome.warnings
    {
        failures.push(format!(
            "warnings differ (- expected, + got):\n{}",
            diff(&json!(want), &json!(outcome.warnings))
        ));
    }
    if expect.output.is_some() {
        failures.push("output: a `job` case has no log output; use `log`".into());
    }
    failures
}

fn judge_log(
    expect: &Expect,
    plugins: &Plugins,
    ctx: &crate::plugins::JobContext,
    entry: Option<&str>,
    lines: &[String],
) -> Vec<String> {
    let mut session = plugins.log_session(ctx.clone());
    let records = lines
        .iter()
        .map(|text| LogRecord {
            stream: Stream::Stdout,
            text: text.clone(),
        })
        .collect();
    let mut failures = Vec::new();
    match session.filter(entry.unwrap_or("step.kubernetes.step.0.run"), records) {
        Ok(kept) => {
            let got: Vec<String> = kept.into_iter().map(|r| r.text).collect();
            if let Some(text) = &expect.error {
                failures.push(format!(
                    "error: expected one containing {text:?}, got the output {got:?}"
                ));
            }
            if let Some(want) = &expect.output
                && *want != got
            {
                failures.push(format!(
                    "output differs (- expected, + got):\n{}",
                    diff(&json!(want), &json!(got))
                ));
            }
        }
        Err(error) => failures.extend(judge_error(expect, &error.to_string())),
    }
    if expect.decision.is_some() || expect.patch.is_some() || expect.job.is_some() {
        failures.push("decision, patch, job: a `log` case has no admission; use `job`".into());
    }
    failures
}

fn judge_error(expect: &Expect, error: &str) -> Vec<String> {
    match &expect.error {
        Some(want) if error.contains(want.as_str()) => Vec::new(),
        Some(want) => vec![format!(
            "error: expected it to contain {want:?}, got {error:?}"
        )],
        None => vec![format!("unexpected error: {error}")],
    }
}

/// Where `got` first fails to have what `want` names (`None` when it has all
/// of it): objects need the named keys, arrays every element, in order.
fn mismatch(want: &Value, got: &Value, at: String) -> Option<String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w.iter().find_map(|(k, wv)| match g.get(k) {
            Some(gv) => mismatch(wv, gv, format!("{at}/{k}")),
            None => Some(format!("{at}/{k}")),
        }),
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .enumerate()
            .find_map(|(i, (wv, gv))| mismatch(wv, gv, format!("{at}/{i}"))),
        _ if want == got => None,
        _ => Some(if at.is_empty() { "/".into() } else { at }),
    }
}

/// What of `got` `want` names, so the diff shows only those fields.
fn pick(want: &Value, got: &Value) -> Value {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => Value::Object(
            w.iter()
                .filter_map(|(k, wv)| Some((k.clone(), pick(wv, g.get(k)?))))
                .collect(),
        ),
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            Value::Array(w.iter().zip(g).map(|(wv, gv)| pick(wv, gv)).collect())
        }
        _ => got.clone(),
    }
}

/// A line diff of the two values as YAML.
fn diff(want: &Value, got: &Value) -> String {
    let want = serde_norway::to_string(want).unwrap_or_default();
    let got = serde_norway::to_string(got).unwrap_or_default();
    let mut out = String::new();
    for change in similar::TextDiff::from_lines(&want, &got).iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        let _ = write!(out, "{sign} {}", change.value());
        if !change.value().ends_with('\n') {
            out.push('\n');
        }
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subset_names_the_first_field_that_differs() {
        let got = json!({"metadata": {"name": "a", "annotations": {"x": "1", "y": "2"}}, "spec": {"list": [1, 2]}});
        assert_eq!(
            mismatch(
                &json!({"metadata": {"annotations": {"x": "1"}}}),
                &got,
                String::new()
            ),
            None
        );
        assert_eq!(
            mismatch(
                &json!({"metadata": {"annotations": {"x": "2"}}}),
                &got,
                String::new()
            ),
            Some("/metadata/annotations/x".into())
        );
        assert_eq!(
            mismatch(&json!({"metadata": {"labels": {}}}), &got, String::new()),
            Some("/metadata/labels".into())
        );
        assert_eq!(
            mismatch(&json!({"spec": {"list": [1]}}), &got, String::new()),
            Some("/spec/list".into())
        );
        assert_eq!(
            pick(&json!({"metadata": {"annotations": {"x": 0}}}), &got),
            json!({"metadata": {"annotations": {"x": "1"}}})
        );
    }

    #[test]
    fn a_diff_marks_what_was_expected_and_what_came() {
        let d = diff(&json!(["a", "b"]), &json!(["a", "c"]));
        assert_eq!(d, "  - a\n- - b\n+ - c");
    }
}
