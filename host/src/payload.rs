//! The job payload of the queue protocol (`dequeue` response), parsed and validated into a job the executor can run; rejects what cannot run on Kubernetes.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

/// The payload exactly as the queue sends it (see `queue-protocol.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    version: Option<u32>,
    id: Option<serde_json::Value>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    repository_name: Option<String>,
    #[serde(default)]
    repository_directory: Option<String>,
    #[serde(default)]
    commit: Option<String>,
    #[serde(default)]
    fetch_tags: bool,
    #[serde(default)]
    shallow_clone: bool,
    #[serde(default)]
    sparse_checkout: Option<Vec<String>>,
    #[serde(default)]
    files: Option<BTreeMap<String, WireFile>>,
    #[serde(default)]
    docker_steps: Option<Vec<WireStep>>,
    #[serde(default)]
    cli_steps: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    redacted_values: Option<BTreeMap<String, String>>,
    #[serde(default)]
    docker_auth_config: Option<DockerAuthConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireFile {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    modified_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireStep {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    commands: Vec<String>,
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    env: Option<Vec<String>>,
}

/// Registry credentials for one job (`{"auths": {"<registry>": {"auth": "<base64>"}}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct DockerAuthConfig {
    /// Credentials by registry.
    #[serde(default)]
    pub auths: BTreeMap<String, DockerAuth>,
}

/// Credentials for one registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct DockerAuth {
    /// base64 of `user:password`.
    #[serde(default)]
    pub auth: String,
}

/// Where a workspace file's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// Given inline (decoded from base64 for payload version 2).
    Content(Vec<u8>),
    /// To be fetched from the files route.
    Stored {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
}

/// A file to write into the workspace before the steps run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceFile {
    /// Path relative to the workspace root; checked to stay inside it.
    pub path: String,
    /// Its content.
    pub source: FileSource,
    /// Modification time to set, when given.
    pub modified_at: Option<Timestamp>,
}

/// One environment variable of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// One docker step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Its key (`step.<index>` when the payload gives none); log entries are
    /// `step.kubernetes.<key>`.
    pub key: String,
    /// The image it runs in.
    pub image: String,
    /// Shell commands, run in order by `sh`.
    pub commands: Vec<String>,
    /// Working directory relative to the workspace root.
    pub dir: String,
    /// Environment.
    pub env: Vec<EnvVar>,
}

/// The repository to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// e.g. `github.com/acme/api`.
    pub name: String,
    /// The revision to check out.
    pub commit: String,
    /// Sub-directory of the workspace to clone into ("" = the root).
    pub directory: String,
    /// Fetch tags too.
    pub fetch_tags: bool,
    /// Fetch only the commit (`--depth=1`).
    pub shallow_clone: bool,
    /// Non-cone sparse-checkout patterns.
    pub sparse_checkout: Vec<String>,
}

/// A job the executor can run: validated, with file contents decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPayload {
    /// Id within its queue.
    pub id: i64,
    /// The queue, when the payload names one (multi-queue mode).
    pub queue: Option<String>,
    /// The per-job token, if any.
    pub token: Option<String>,
    /// The repository, if the job clones one.
    pub repository: Option<Repository>,
    /// Workspace files, by path.
    pub files: Vec<WorkspaceFile>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Secret → replacement, applied to everything uploaded.
    pub redacted_values: BTreeMap<String, String>,
    /// Registry credentials for this job.
    pub docker_auth_config: Option<DockerAuthConfig>,
}

/// Why a payload cannot be run; lists every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON of the payload's shape at all.
    #[error("the job payload is not valid JSON: {0}")]
    Syntax(String),
    /// Parsed, but with problems.
    #[error("the job payload cannot run: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl fmt::Display for FileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileSource::Content(c) => write!(f, "{} bytes", c.len()),
            FileSource::Stored { bucket, key } => write!(f, "{bucket}/{key}"),
        }
    }
}

/// Whether `path` (relative, `/`-separated) stays inside the directory it is relative to.
fn stays_inside(path: &str) -> bool {
    !path.starts_with('/') && !path.contains('\0') && walk(path).is_some()
}

/// Whether `rev` is safe to hand to git as a revision.
fn revision(rev: &str) -> bool {
    !rev.starts_with('-')
        && rev
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
}

/// How deep below its directory `path` ends (0: the directory itself).
fn depth(path: &str) -> usize {
    walk(path).unwrap_or(0)
}

/// The depth `path` ends at, or `None` if it climbs above its start on the way.
fn walk(path: &str) -> Option<usize> {
    let mut depth = 0usize;
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => depth = depth.checked_sub(1)?,
            _ => depth += 1,
        }
    }
    Some(depth)
}

fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("is not valid base64 ({e})"))
}

impl JobPayload {
    /// Parses and validates a payload; every problem is reported together.
    pub fn parse(text: &str) -> Result<JobPayload, PayloadError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let wire: Wire = serde_path_to_error::deserialize(&mut de).map_err(without_values)?;
        de.end()
            .map_err(|e| PayloadError::Syntax(describe(&e, None)))?;
        let mut problems = Vec::new();
        let id = id(wire.id.as_ref(), &mut problems);
        let version = wire.version.unwrap_or(1);
        if !(1..=2).contains(&version) {
            problems.push(format!(
                "`version` {version} is not supported; expected 1 or 2"
            ));
        }
        if let Some(cli) = wire.cli_steps.as_ref().filter(|s| !s.is_empty()) {
            problems.push(format!("the job has {} src-cli step(s) (`cliSteps`), which do not run on Kubernetes; use docker steps", cli.len()));
        }
        let repository = repository(&wire, &mut problems);
        let files = files(&wire, version, &mut problems);
        let steps = steps(&wire, &mut problems);
        if !problems.is_empty() {
            return Err(PayloadError::Invalid(problems));
        }
        Ok(JobPayload {
            id,
            queue: wire.queue.filter(|q| !q.is_empty()),
            token: wire.token.filter(|t| !t.is_empty()),
            repository,
            files,
            steps,
            redacted_values: wire.redacted_values.unwrap_or_default(),
            docker_auth_config: wire.docker_auth_config.filter(|d| !d.auths.is_empty()),
        })
    }
}

/// The parser's complaint without the value it complains about: serde
/// quotes a string of the wrong type (`invalid type: string "TOKEN=hunter2"`),
/// and the message goes to the queue (`markFailed`) and the executor's log.
fn without_values(e: serde_path_to_error::Error<serde_json::Error>) -> PayloadError {
    let path = e.path().to_string();
    PayloadError::Syntax(describe(e.inner(), Some(&path)))
}

/// `e` told by its position (and the field's path, when known); for data
/// errors, only serde's fixed words: the kind of problem and what was
/// expected, never the offending value.
fn describe(e: &serde_json::Error, path: Option<&str>) -> String {
    use serde_json::error::Category;
    let at = format!("line {} column {}", e.line(), e.column());
    if !matches!(e.classify(), Category::Data) {
        // Syntax errors name characters and positions, never values.
        return e.to_string();
    }
    let message = e.to_string();
    let message = message
        .strip_suffix(&format!(" at {at}"))
        .unwrap_or(&message);
    let kind = ["invalid type", "invalid value", "invalid length"]
        .into_iter()
        .find(|k| message.starts_with(k))
        .unwrap_or("invalid data");
    // What serde expected comes last and is written by the type, not the
    // input; one with a quote in it is not serde's own words.
    let expected = message
        .rsplit_once(", expected ")
        .map(|(_, expected)| expected)
        .filter(|expected| !expected.contains('"'))
        .map(|expected| format!("; expected {expected}"))
        .unwrap_or_default();
    match path.filter(|p| *p != ".") {
        Some(path) => format!("{kind} at `{path}` ({at}){expected}"),
        None => format!("{kind} at {at}{expected}"),
    }
}

/// The job's id, given as a number or a string of one.
fn id(id: Option<&serde_json::Value>, problems: &mut Vec<String>) -> i64 {
    match id {
        Some(serde_json::Value::Number(n)) if n.as_i64().is_some_and(|i| i >= 0) => {
            n.as_i64().unwrap_or_default()
        }
        Some(serde_json::Value::String(s)) if s.parse::<i64>().is_ok_and(|i| i >= 0) => {
            s.parse().unwrap_or_default()
        }
        Some(other) => {
            problems.push(format!("`id` is {other}; expected a non-negative integer"));
            0
        }
        None => {
            problems.push("`id` is missing; expected the job's integer id".into());
            0
        }
    }
}

/// The repository to clone, if the job names one.
fn repository(wire: &Wire, problems: &mut Vec<String>) -> Option<Repository> {
    let name = wire
        .repository_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())?;
    let commit = wire.commit.clone().unwrap_or_default().trim().to_owned();
    if commit.is_empty() {
        problems.push(format!(
            "`commit` is missing; a job on repository {name} needs the revision to check out"
        ));
    } else if !revision(&commit) {
        // It reaches git's command line: a leading '-' would be read as an option.
        problems.push(format!("`commit` {commit:?} is not a revision; expected a commit SHA or ref name of [A-Za-z0-9._/-] not starting with '-'"));
    }
    if let Some(bad) = wire
        .sparse_checkout
        .iter()
        .flatten()
        .find(|p| p.trim().is_empty() || p.contains('\n'))
    {
        problems.push(format!("`sparseCheckout` pattern {bad:?} is empty or spans lines; expected one pattern per entry"));
    }
    let directory = wire.repository_directory.clone().unwrap_or_default();
    if !stays_inside(&directory) {
        problems.push(format!(
            "`repositoryDirectory` {directory:?} leaves the workspace"
        ));
    }
    Some(Repository {
        name: name.to_owned(),
        commit,
        directory,
        fetch_tags: wire.fetch_tags,
        shallow_clone: wire.shallow_clone,
        sparse_checkout: wire.sparse_checkout.clone().unwrap_or_default(),
    })
}

/// The workspace files; version 2 payloads carry their content in base64.
fn files(wire: &Wire, version: u32, problems: &mut Vec<String>) -> Vec<WorkspaceFile> {
    let mut files = Vec::new();
    for (path, file) in wire.files.clone().unwrap_or_default() {
        if !stays_inside(&path) || depth(&path) == 0 {
            problems.push(format!(
                "workspace file {path:?} leaves the workspace; expected a relative path inside it"
            ));
            continue;
        }
        let source = match (&file.content, &file.bucket, &file.key) {
            (Some(content), _, _) if version >= 2 => match decode_base64(content) {
                Ok(bytes) => FileSource::Content(bytes),
                Err(e) => {
                    problems.push(format!("content of workspace file {path:?} {e}"));
                    continue;
                }
            },
            (Some(content), _, _) => FileSource::Content(content.clone().into_bytes()),
            (None, Some(bucket), Some(key)) if !bucket.is_empty() && !key.is_empty() => {
                FileSource::Stored {
                    bucket: bucket.clone(),
                    key: key.clone(),
                }
            }
            _ => {
                problems.push(format!(
                    "workspace file {path:?} has neither `content` nor `bucket` and `key`"
                ));
                continue;
            }
        };
        let modified_at = match file.modified_at.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => match text.parse::<Timestamp>() {
                Ok(t) => Some(t),
                Err(_) => {
                    problems.push(format!("`modifiedAt` {text:?} of workspace file {path:?} is not an RFC 3339 time; expected e.g. 2024-05-01T12:00:00Z"));
                    continue;
                }
            },
        };
        files.push(WorkspaceFile {
            path,
            source,
            modified_at,
        });
    }
    files
}

/// The docker steps, in order; a step without a key is `step.<i>`.
fn steps(wire: &Wire, problems: &mut Vec<String>) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, step) in wire.docker_steps.iter().flatten().enumerate() {
        let key = step
            .key
            .clone()
            .filter(|k| !k.trim().is_empty())
            .unwrap_or_else(|| format!("step.{i}"));
        let Some(image) = step.image.clone().filter(|i| !i.trim().is_empty()) else {
            problems.push(format!("docker step {i} ({key}) has no image"));
            continue;
        };
        let dir = step.dir.clone().unwrap_or_default();
        if !stays_inside(&dir) {
            problems.push(format!(
                "docker step {i} ({key}): `dir` {dir:?} leaves the workspace"
            ));
        }
        let mut env = Vec::new();
        for entry in step.env.iter().flatten() {
            match entry.split_once('=') {
                Some((name, value)) if !name.is_empty() => env.push(EnvVar {
                    name: name.to_owned(),
                    value: value.to_owned(),
                }),
                _ => problems.push(format!(
                    "docker step {i} ({key}): env entry {entry:?} is not NAME=value"
                )),
            }
        }
        steps.push(Step {
            key,
            image,
            commands: step.commands.clone(),
            dir,
            env,
        });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"version":2,"id":1234,"queue":"batches","token":"9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c1b3d5f70",
 "repositoryName":"github.com/acme/api","repositoryDirectory":"repository",
 "commit":"3f5c9a1e2b7d4c8e9f0a1b2c3d4e5f60718293a4","fetchTags":false,"shallowClone":true,
 "sparseCheckout":null,
 "files":{"input.json":{"content":"eyJhIjoxfQ==","modifiedAt":"0001-01-01T00:00:00Z"}},
 "dockerSteps":[{"key":"step.0.run","image":"alpine:3","dir":"repository","env":["GITHUB_TOKEN=ghp_secret"],
                 "commands":["set -e","sed -i s/foo/bar/g README.md"]}],
 "cliSteps":null,"redactedValues":{"ghp_secret":"${{ secrets.GITHUB_TOKEN }}"},"dockerAuthConfig":{}}"#;

    #[test]
    fn the_protocols_example_parses_with_contents_decoded() {
        let job = JobPayload::parse(EXAMPLE).unwrap();
        assert_eq!((job.id, job.queue.as_deref()), (1234, Some("batches")));
        let repo = job.repository.unwrap();
        assert_eq!(
            (repo.directory.as_str(), repo.shallow_clone),
            ("repository", true)
        );
        assert_eq!(
            job.files[0].source,
            FileSource::Content(br#"{"a":1}"#.to_vec())
        );
        assert_eq!(
            job.steps[0].env,
            [EnvVar {
                name: "GITHUB_TOKEN".into(),
                value: "ghp_secret".into()
            }]
        );
        assert_eq!(
            job.redacted_values["ghp_secret"],
            "${{ secrets.GITHUB_TOKEN }}"
        );
        assert_eq!(
            job.docker_auth_config, None,
            "an empty auth config is no auth config"
        );
    }

    #[test]
    fn version_1_contents_are_plain_text_and_ids_may_be_strings() {
        let job = JobPayload::parse(r#"{"id": "7", "files": {"a/b.txt": {"content": "hi"}, "c": {"bucket": "b", "key": "k"}}, "dockerSteps": [{"image": "x", "commands": ["true"]}]}"#).unwrap();
        assert_eq!(job.id, 7);
        assert_eq!(job.files[0].source, FileSource::Content(b"hi".to_vec()));
        assert_eq!(
            job.files[1].source,
            FileSource::Stored {
                bucket: "b".into(),
                key: "k".into()
            }
        );
        assert_eq!(job.steps[0].key, "step.0");
        assert!(
            job.repository.is_none(),
            "no repositoryName: files but no clone"
        );
    }

    #[test]
    fn everything_that_cannot_run_is_listed() {
        let err = JobPayload::parse(r#"{"version": 2, "id": 1, "repositoryName": "github.com/a/b",
            "files": {"../../etc/passwd": {"content": "eA=="}, "/abs": {"content": ""}, "ok": {"content": "%%%"}, "empty": {}},
            "dockerSteps": [{"key": "build", "commands": ["make"]}, {"image": "x", "dir": "../up", "env": ["NOVALUE"]}],
            "cliSteps": [{"command": ["src", "batch"]}]}"#).unwrap_err();
        let text = err.to_string();
        for needle in [
            "src-cli step(s) (`cliSteps`)",
            "`commit` is missing",
            "workspace file \"../../etc/passwd\" leaves the workspace",
            "workspace file \"/abs\" leaves the workspace",
            "content of workspace file \"ok\" is not valid base64",
            "workspace file \"empty\" has neither `content` nor `bucket` and `key`",
            "docker step 0 (build) has no image",
            "docker step 1 (step.1): `dir` \"../up\" leaves the workspace",
            "env entry \"NOVALUE\" is not NAME=value",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
    }

    #[test]
    fn malformed_payloads_say_where() {
        assert!(
            JobPayload::parse("{")
                .unwrap_err()
                .to_string()
                .starts_with("the job payload is not valid JSON: EOF")
        );
        assert!(
            JobPayload::parse(r#"{"dockerSteps": 3}"#)
                .unwrap_err()
                .to_string()
                .contains("invalid type")
        );
        assert!(
            JobPayload::parse("{}")
                .unwrap_err()
                .to_string()
                .contains("`id` is missing")
        );
        assert!(
            JobPayload::parse(r#"{"id": -1}"#)
                .unwrap_err()
                .to_string()
                .contains("`id` is -1")
        );
    }

    #[test]
    fn a_malformed_payload_is_refused_without_quoting_its_values() {
        let err = JobPayload::parse(
            r#"{"id": 1, "dockerSteps": [{"image": "x", "env": "TOKEN=hunter2"}], "redactedValues": {"hunter2": "x"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            !err.contains("hunter2"),
            "the secret reaches markFailed and the log: {err}"
        );
        assert_eq!(
            err,
            "the job payload is not valid JSON: invalid type at `dockerSteps[0].env` (line 1 column 63); expected a sequence"
        );
        let err = JobPayload::parse(r#"{"id": 1, "token": ["hunter2"]}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("invalid type at `token`"), "{err}");
    }

    #[test]
    fn revisions_times_and_file_paths_that_would_misbehave_are_refused() {
        let err = JobPayload::parse(r#"{"id": 1, "repositoryName": "github.com/a/b", "commit": "--upload-pack=touch /tmp/x",
            "sparseCheckout": ["src/", ""],
            "files": {"a/..": {"content": "x"}, "t": {"content": "x", "modifiedAt": "yesterday"}}}"#).unwrap_err();
        let text = err.to_string();
        for needle in [
            "`commit` \"--upload-pack=touch /tmp/x\" is not a revision",
            "`sparseCheckout` pattern \"\" is empty",
            "workspace file \"a/..\" leaves the workspace",
            "`modifiedAt` \"yesterday\" of workspace file \"t\" is not an RFC 3339 time",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
        let ok = JobPayload::parse(
            r#"{"id": 1, "files": {"t": {"content": "x", "modifiedAt": "2024-05-01T12:00:00Z"}}}"#,
        )
        .unwrap();
        assert_eq!(
            ok.files[0].modified_at.map(|t| t.as_second()),
            Some(1_714_564_800)
        );
    }

    #[test]
    fn paths_inside_the_workspace_are_told_apart_from_escapes() {
        for ok in ["a", "a/b", "./a", "a/../b", ""] {
            assert!(stays_inside(ok), "{ok}");
        }
        for bad in ["/a", "..", "a/../../b", "../a"] {
            assert!(!stays_inside(bad), "{bad}");
        }
    }
}
