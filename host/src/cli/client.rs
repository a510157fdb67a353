//! The user commands on the embedded queue (`submit`, `jobs`, `show`, `logs`, `cancel`, `repos`): HTTP calls to a serving executor, found through its address file.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::table::{self, Align};
use super::{EXIT_BAD_INPUT, Output};
use crate::embedded::model::{
    EntryView, JobDetail, JobList, JobState, JobSummary, Repository, RepositoryList, Submitted,
};
use crate::plugins::text::printable;

/// Where a serving executor says it listens, for the commands on the same machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressFile {
    /// The embedded queue's base URL.
    pub url: String,
    /// The user API token.
    pub token: String,
}

impl AddressFile {
    /// Its name in the data directory.
    pub const NAME: &'static str = "serve.json";

    /// Writes it to `dir`, readable by its owner only (it holds the token).
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let path = dir.join(Self::NAME);
        let text = serde_json::to_string_pretty(self)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        // `mode` only applies to a new file.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private", path.display()))?;
        file.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    fn read(dir: &Path) -> anyhow::Result<AddressFile> {
        let path = dir.join(Self::NAME);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no serving executor found: cannot read {} (start one with `scripts/serve` or `executor serve`, or pass --server and --token)",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not an address file", path.display()))
    }
}

/// How to reach the serving executor.
#[derive(Debug, Args)]
pub(super) struct Connection {
    /// The serving executor's URL (default: from the address file `executor serve` writes).
    #[arg(long, env = "EXECUTOR_SERVER", global = true)]
    server: Option<String>,
    /// The user API token (default: from the address file).
    #[arg(
        long,
        env = "EXECUTOR_API_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// The data directory of the serving executor (its address file).
    #[arg(long, env = "EXECUTOR_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(super) struct SubmitArgs {
    /// A full job payload (JSON as the queue protocol's dequeue returns it), or `-` for stdin. Without it: the short form below.
    file: Option<String>,
    /// The queue.
    #[arg(long, default_value = "default")]
    queue: String,
    /// Short form: the step's image.
    #[arg(long)]
    image: Option<String>,
    /// Short form: an environment variable of the step (NAME=value; repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Short form: a secret environment variable, redacted from the log (NAME=value; repeatable).
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    secrets: Vec<String>,
    /// Short form: a registered repository to clone into the workspace.
    #[arg(long, requires = "commit")]
    repository: Option<String>,
    /// Short form: the revision to check out: a full commit SHA, or a branch, tag or other ref name (`main`, `v1.2`, `HEAD`), which the queue resolves to a commit when the job is submitted.
    #[arg(long, requires = "repository")]
    commit: Option<String>,
    /// Short form: the step's commands, run in order by `sh` (after `--`).
    #[arg(last = true)]
    commands: Vec<String>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub(super) struct JobsArgs {
    /// Only this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only this state (queued, processing, completed, errored, failed, cancelled).
    #[arg(long)]
    state: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub(super) struct ShowArgs {
    /// The job id.
    id: i64,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub(super) struct LogsArgs {
    /// The job id.
    id: i64,
    /// Follow the log until the job ends; the exit status then says whether it succeeded.
    #[arg(short, long)]
    follow: bool,
    /// Follow the log only until a line contains TEXT, then exit 0 (1 if the job ends first): for scripts that wait for a job to reach a point.
    #[arg(long, value_name = "TEXT")]
    until: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub(super) struct CancelArgs {
    /// The job id.
    id: i64,
    /// Wait until the job has ended, and print how; exit 0 when it ended cancelled.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Subcommand)]
pub(super) enum ReposCommand {
    /// Register (or change) a repository jobs may clone: a name and a clone URL the pods can reach (`file://` for local use).
    Add {
        /// The name jobs use (`repositoryName`).
        name: String,
        /// The clone URL.
        url: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the registered repositories.
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Unregister a repository: jobs submitted later cannot clone it (running ones already have).
    Remove {
        /// The name it was registered under.
        name: String,
        #[command(flatten)]
        connection: Connection,
    },
}

/// A blocking HTTP client for the user API; these commands do one thing
/// each, so they need no async runtime of their own beyond reqwest's.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    runtime: tokio::runtime::Runtime,
}

impl Api {
    fn connect(c: &Connection) -> anyhow::Result<Api> {
        let (base, token) = match (&c.server, &c.token) {
            (Some(server), Some(token)) => (server.clone(), token.clone()),
            (server, token) => {
                let dir = match &c.data_dir {
                    Some(d) => d.clone(),
                    None => crate::config::default_data_dir()
                        .map_err(|e| anyhow::anyhow!("EXECUTOR_DATA_DIR: {e}"))?,
                };
                let file = AddressFile::read(&dir)?;
                (
                    server.clone().unwrap_or(file.url),
                    token.clone().unwrap_or(file.token),
                )
            }
        };
        Ok(Api {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
            token,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.token);
            if let Some(body) = body {
                req = req.json(body);
            }
            let resp = match req.send().await {
                Ok(resp) => resp,
                // The chain of client errors says nothing a user can act on.
                Err(e) if e.is_connect() => bail!(
                    "no executor is serving at {}; start it with `scripts/serve` (or `executor serve`), or give its address with --server",
                    self.base
                ),
                Err(e) => return Err(e).with_context(|| format!("cannot reach the executor at {url}")),
            };
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                    .unwrap_or(text);
                bail!("{method} {path}: {status}: {message}");
            }
            serde_json::from_str(&text)
                .with_context(|| format!("{method} {path}: unexpected reply {text:?}"))
        })
    }

    fn job(&self, id: i64, since: Option<i64>) -> anyhow::Result<JobDetail> {
        let path = match since {
            // The follower merges entries by id: only the changed ones.
            Some(v) => format!("/api/v1/jobs/{id}?since={v}&wait=30&entries=changed"),
            None => format!("/api/v1/jobs/{id}"),
        };
        self.call(reqwest::Method::GET, &path, None)
    }
}

fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(EXIT_BAD_INPUT)
    })
}

pub(super) fn submit(args: SubmitArgs) -> ExitCode {
    exit((|| {
        let body = match &args.file {
            Some(file) => {
                if args.image.is_some() || !args.commands.is_empty() {
                    bail!(
                        "give either a payload file or the short form (--image and commands), not both"
                    );
                }
                let text = if file == "-" {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s
                } else {
                    std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?
                };
                let payload: serde_json::Value =
                    serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))?;
                json!({"queue": args.queue, "payload": payload})
            }
            None => {
                let Some(image) = &args.image else {
                    bail!("give a payload file, or --image and the commands after `--`");
                };
                if args.commands.is_empty() {
                    bail!("no commands: give them after `--`, e.g. -- 'echo hello'");
                }
                let mut body = json!({
                    "queue": args.queue,
                    "image": image,
                    "commands": args.commands,
                    "env": pairs("--env", &args.env)?,
                    "secrets": pairs("--secret", &args.secrets)?,
                });
                if let (Some(r), Some(c)) = (&args.repository, &args.commit) {
                    body["repository"] = json!(r);
                    body["commit"] = json!(c);
                }
                body
            }
        };
        let api = Api::connect(&args.connection)?;
        let submitted: Submitted = api.call(reqwest::Method::POST, "/api/v1/jobs", Some(&body))?;
        println!("{}", submitted.id);
        Ok(ExitCode::SUCCESS)
    })())
}

fn pairs(flag: &str, items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
            _ => bail!("{flag} {item:?}: expected NAME=value"),
        })
        .collect()
}

pub(super) fn jobs(args: JobsArgs) -> ExitCode {
    exit((|| {
        let api = Api::connect(&args.connection)?;
        let mut query = Vec::new();
        if let Some(q) = &args.queue {
            query.push(format!("queue={q}"));
        }
        if let Some(s) = &args.state {
            query.push(format!("state={s}"));
        }
        let path = if query.is_empty() {
            "/api/v1/jobs".to_owned()
        } else {
            format!("/api/v1/jobs?{}", query.join("&"))
        };
        let list: JobList = api.call(reqwest::Method::GET, &path, None)?;
        let mut out = std::io::stdout().lock();
        match args.output {
            Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?,
            Output::Text => {
                let rows: Vec<Vec<String>> = list
                    .jobs
                    .iter()
                    .map(|j| {
                        vec![
                            j.id.to_string(),
                            printable(&j.queue),
                            state(j),
                            j.runs().to_string(),
                            j.created_at.clone(),
                            j.message.as_deref().map(printable).unwrap_or_default(),
                        ]
                    })
                    .collect();
                write!(
                    out,
                    "{}",
                    table::render(
                        &[
                            ("ID", Align::Right),
                            ("QUEUE", Align::Left),
                            ("STATE", Align::Left),
                            ("ATTEMPTS", Align::Right),
                            ("CREATED", Align::Left),
                            ("MESSAGE", Align::Left),
                        ],
                        &rows,
                    )
                )?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })())
}

pub(super) fn show(args: ShowArgs) -> ExitCode {
    exit((|| {
        let api = Api::connect(&args.connection)?;
        let job = api.job(args.id, None)?;
        let s = &job.summary;
        let mut out = std::io::stdout().lock();
        match args.output {
            Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&job)?)?,
            Output::Text => {
                writeln!(out, "job {} ({})", s.id, printable(&s.queue))?;
                writeln!(out, "  state:    {}", state(s))?;
                writeln!(out, "  attempts: {}", s.runs())?;
                if let Some(m) = &s.message {
                    writeln!(out, "  message:  {}", printable(m))?;
                }
                if let Some(e) = &s.executor {
                    writeln!(out, "  executor: {}", printable(e))?;
                }
                writeln!(out, "  created:  {}", s.created_at)?;
                for EntryView { entry: e, .. } in &job.entries {
                    let ended = match (e.exit_code, e.duration_ms) {
                        (Some(code), Some(ms)) => format!("exit {code}, {ms} ms"),
                        (Some(code), None) => format!("exit {code}"),
                        _ => "running".to_owned(),
                    };
                    writeln!(out, "\n==> {} ({ended})", e.key)?;
                    for line in e.out.as_deref().unwrap_or("").lines() {
                        writeln!(out, "{}", strip(line))?;
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })())
}

/// The job's state, and a pending cancellation, which the state alone
/// does not show: the job stays `processing` until its executor stops it.
fn state(s: &JobSummary) -> String {
    if s.cancel_requested && !s.state.terminal() {
        format!("{} (cancel requested)", s.state)
    } else {
        s.state.to_string()
    }
}

fn strip(line: &str) -> &str {
    line.strip_prefix("stdout: ")
        .or_else(|| line.strip_prefix("stderr: "))
        .unwrap_or(line)
}

pub(super) fn logs(args: LogsArgs) -> ExitCode {
    exit((|| {
        let api = Api::connect(&args.connection)?;
        let mut printed: BTreeMap<i64, usize> = BTreeMap::new();
        let mut since = None;
        loop {
            let job = api.job(args.id, since)?;
            let mut out = std::io::stdout().lock();
            let mut reached = false;
            for EntryView { id, entry: e } in &job.entries {
                let text = e.out.as_deref().unwrap_or("");
                let done = printed.entry(*id).or_insert_with(|| usize::MAX);
                if *done == usize::MAX {
                    writeln!(out, "==> {}", e.key)?;
                    *done = 0;
                }
                // `out` only grows; print whole lines as they complete.
                let upto = text.rfind('\n').map_or(0, |i| i + 1);
                if upto > *done {
                    for line in text.get(*done..upto).unwrap_or("").lines() {
                        writeln!(out, "{}", strip(line))?;
                        reached |= args.until.as_deref().is_some_and(|t| line.contains(t));
                    }
                    *done = upto;
                }
            }
            out.flush()?;
            drop(out);
            let s = &job.summary;
            if reached || (!args.follow && args.until.is_none()) {
                return Ok(ExitCode::SUCCESS);
            }
            if s.state.terminal() {
                eprintln!(
                    "job {} {}{}",
                    s.id,
                    s.state,
                    s.message
                        .as_deref()
                        .map(|m| format!(": {}", printable(m)))
                        .unwrap_or_default()
                );
                if let Some(text) = &args.until {
                    eprintln!(
                        "no line contained {:?} before the job ended",
                        printable(text)
                    );
                    return Ok(ExitCode::FAILURE);
                }
                return Ok(if s.state == JobState::Completed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            since = Some(job.version);
        }
    })())
}

pub(super) fn cancel(args: CancelArgs) -> ExitCode {
    exit((|| {
        let api = Api::connect(&args.connection)?;
        let job: JobSummary = api.call(
            reqwest::Method::POST,
            &format!("/api/v1/jobs/{}/cancel", args.id),
            None,
        )?;
        if job.state.terminal() {
            eprintln!("job {}: {}", job.id, job.state);
        } else if args.wait {
            eprintln!(
                "job {}: cancel requested; waiting for its executor to stop it",
                job.id
            );
        } else {
            eprintln!(
                "job {}: cancel requested; its executor stops it within seconds, keeping its log so far (`executor cancel --wait {}` waits for that)",
                job.id, job.id
            );
            return Ok(ExitCode::SUCCESS);
        }
        let mut detail = api.job(args.id, None)?;
        while !detail.summary.state.terminal() {
            detail = api.job(args.id, Some(detail.version))?;
        }
        let s = &detail.summary;
        if !job.state.terminal() {
            eprintln!(
                "job {}: {}{}",
                s.id,
                s.state,
                s.message
                    .as_deref()
                    .map(|m| format!(": {}", printable(m)))
                    .unwrap_or_default()
            );
        }
        Ok(if s.state == JobState::Cancelled {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })())
}

pub(super) fn repos(cmd: ReposCommand) -> ExitCode {
    exit((|| {
        match cmd {
            ReposCommand::Add {
                name,
                url,
                connection,
            } => {
                let url = absolute(url);
                let api = Api::connect(&connection)?;
                let repo: Repository = api.call(
                    reqwest::Method::POST,
                    "/api/v1/repositories",
                    Some(&json!({"name": name, "url": url})),
                )?;
                eprintln!("registered {} -> {}", repo.name, repo.url);
            }
            ReposCommand::List { connection } => {
                let api = Api::connect(&connection)?;
                let list: RepositoryList =
                    api.call(reqwest::Method::GET, "/api/v1/repositories", None)?;
                let rows: Vec<Vec<String>> = list
                    .repositories
                    .iter()
                    .map(|r| vec![printable(&r.name), printable(&r.url)])
                    .collect();
                print!(
                    "{}",
                    table::render(&[("NAME", Align::Left), ("URL", Align::Left)], &rows)
                );
            }
            ReposCommand::Remove { name, connection } => {
                let api = Api::connect(&connection)?;
                let removed: Repository =
                    api.call(reqwest::Method::DELETE, &repository_path(&name), None)?;
                eprintln!("removed {} ({})", removed.name, removed.url);
            }
        }
        Ok(ExitCode::SUCCESS)
    })())
}

/// A relative path to a local repository made absolute: the serving
/// executor resolves paths from its own directory, not the caller's.
fn absolute(url: String) -> String {
    if url.contains("://") || url.starts_with('/') {
        return url;
    }
    match std::fs::canonicalize(&url) {
        Ok(path) => path.display().to_string(),
        // The queue says what is wrong with it.
        Err(_) => url,
    }
}

/// `/api/v1/repositories/<name>`, each part of the name percent-encoded.
fn repository_path(name: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let parts: Vec<String> = name
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| utf8_percent_encode(p, NON_ALPHANUMERIC).to_string())
        .collect();
    format!("/api/v1/repositories/{}", parts.join("/"))
}
