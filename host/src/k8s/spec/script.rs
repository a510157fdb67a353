//! The POSIX shell scripts the pod runs: the workspace setup (clone, files) and each step's commands.

use std::fmt::Write as _;

use k8s_openapi::jiff::{Timestamp, tz::TimeZone};
use url::Url;

use crate::payload::Repository;

/// Where the setup container finds the workspace files of the job's Secret.
pub const FILES_DIR: &str = "/executor/files";

/// The environment variable holding the `Authorization` credential of the
/// git and files routes; its value comes from the job's Secret.
pub const TOKEN_ENV: &str = "EXECUTOR_JOB_TOKEN";

/// Quotes `s` for a POSIX shell: single quotes keep everything literal, and a
/// single quote itself is closed, escaped and reopened.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:@,+%".contains(c))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// How the setup container authenticates to the git and files routes.
pub struct Routes<'a> {
    /// The base URL of the routes (the frontend, or the embedded queue).
    pub base: &'a Url,
    /// The job id header.
    pub job_id: i64,
    /// The executor name header.
    pub executor_name: &'a str,
}

impl Routes<'_> {
    /// `<base>/.executors/<route>/<segments...>`, each segment percent-encoded.
    fn url<'s>(&self, route: &str, segments: impl IntoIterator<Item = &'s str>) -> String {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push(".executors").push(route);
            for s in segments {
                path.push(s);
            }
        }
        url.to_string()
    }

    /// The clone URL of a repository.
    pub fn git(&self, repository: &str) -> String {
        self.url("git", repository.split('/').filter(|s| !s.is_empty()))
    }

    /// The URL of a stored workspace file.
    pub fn file(&self, bucket: &str, key: &str) -> String {
        self.url(
            "files",
            std::iter::once(bucket).chain(key.split('/').filter(|s| !s.is_empty())),
        )
    }

    /// The headers every route call carries; the credential is expanded by the
    /// shell from the environment so that it never appears in the Job.
    fn headers(&self) -> [String; 3] {
        [
            format!("\"Authorization: Bearer ${TOKEN_ENV}\""),
            quote(&format!("X-Sourcegraph-Job-ID: {}", self.job_id)),
            quote(&format!(
                "X-Sourcegraph-Executor-Name: {}",
                self.executor_name
            )),
        ]
    }
}

/// A file for the setup script to place in the workspace.
pub enum SetupFile<'a> {
    /// Copied from the Secret's volume, where it is `key`.
    FromSecret {
        /// Key in the Secret (and file name under [`FILES_DIR`]).
        key: String,
        /// Path relative to the workspace.
        path: &'a str,
        /// Modification time to set.
        modified_at: Option<Timestamp>,
    },
    /// Downloaded from the files route.
    Stored {
        /// Bucket of the file.
        bucket: &'a str,
        /// Key of the file.
        key: &'a str,
        /// Path relative to the workspace.
        path: &'a str,
        /// Modification time to set.
        modified_at: Option<Timestamp>,
    },
}

/// The setup script: clones the repository (if any) and writes the files,
/// all relative to the working directory, which is the workspace root.
pub fn setup(
    repository: Option<&Repository>,
    files: &[SetupFile<'_>],
    routes: Option<&Routes<'_>>,
) -> String {
    let mut s = String::from("set -eu\n");
    if let (Some(repo), Some(routes)) = (repository, routes) {
        clone(&mut s, repo, routes);
    }
    let needs_fetch = files.iter().any(|f| matches!(f, SetupFile::Stored { .. }));
    if let (true, Some(routes)) = (needs_fetch, routes) {
        // The step image promises `sh` and `git`, not a downloader: use what is there.
        let [auth, id, name] = routes.headers();
        let _ = writeln!(
            s,
            "fetch() {{\n  if command -v curl >/dev/null 2>&1; then\n    curl --fail --silent --show-error --location --header {auth} --header {id} --header {name} --output \"$2\" \"$1\"\n  else\n    wget -q --header={auth} --header={id} --header={name} -O \"$2\" \"$1\"\n  fi\n}}"
        );
    }
    for file in files {
        let (path, modified_at) = match file {
            SetupFile::FromSecret {
                key,
                path,
                modified_at,
            } => {
                make_parent(&mut s, path);
                let _ = writeln!(
                    s,
                    "cp {} {}",
                    quote(&format!("{FILES_DIR}/{key}")),
                    quote(path)
                );
                (path, modified_at)
            }
            SetupFile::Stored {
                bucket,
                key,
                path,
                modified_at,
            } => {
                make_parent(&mut s, path);
                let url = routes.map(|r| r.file(bucket, key)).unwrap_or_default();
                let _ = writeln!(s, "fetch {} {}", quote(&url), quote(path));
                (path, modified_at)
            }
        };
        if let Some(stamp) = modified_at.and_then(touch_stamp) {
            let _ = writeln!(s, "TZ=UTC0 touch -t {stamp} {}", quote(path));
        }
    }
    s
}

fn clone(s: &mut String, repo: &Repository, routes: &Routes<'_>) {
    let [auth, id, name] = routes.headers();
    let tags = if repo.fetch_tags {
        "--tags"
    } else {
        "--no-tags"
    };
    let depth = if repo.shallow_clone { " --depth=1" } else { "" };
    let mut lines = vec![
        "git init --quiet".to_owned(),
        format!(
            "git -c protocol.version=2 -c http.extraHeader={auth} -c http.extraHeader={id} -c http.extraHeader={name} fetch --quiet {tags}{depth} {} {}",
            quote(&routes.git(&repo.name)),
            quote(&repo.commit)
        ),
    ];
    if !repo.sparse_checkout.is_empty() {
        let patterns: Vec<String> = repo.sparse_checkout.iter().map(|p| quote(p)).collect();
        lines.push(format!(
            "printf '%s\\n' {} | git sparse-checkout set --no-cone --stdin",
            patterns.join(" ")
        ));
    }
    lines.push(format!(
        "git checkout --quiet --force {}",
        quote(&repo.commit)
    ));
    let dir = repo.directory.trim_matches('/');
    if dir.is_empty() || dir == "." {
        for line in lines {
            let _ = writeln!(s, "{line}");
        }
    } else {
        // A subshell, so the files below are written relative to the workspace root again.
        let _ = writeln!(s, "mkdir -p {}\n(\n  cd {}", quote(dir), quote(dir));
        for line in lines {
            let _ = writeln!(s, "  {line}");
        }
        let _ = writeln!(s, ")");
    }
}

fn make_parent(s: &mut String, path: &str) {
    if let Some((parent, _)) = path.rsplit_once('/')
        && !parent.is_empty()
    {
        let _ = writeln!(s, "mkdir -p {}", quote(parent));
    }
}

/// `touch -t` form (`CCYYMMDDhhmm.SS`, UTC) of a time `touch` can set. Go's
/// zero time (year 1), which Sourcegraph sends for "unknown", and anything
/// before the Unix epoch are left alone: file systems and `touch` differ there.
fn touch_stamp(t: Timestamp) -> Option<String> {
    let at = t.to_zoned(TimeZone::UTC);
    (at.year() >= 1970).then(|| at.strftime("%Y%m%d%H%M.%S").to_string())
}

/// Escapes `s` against the kubelet's expansion of `command`, `args` and env
/// `value`s, where `$(NAME)` becomes the variable's value and `$$` becomes
/// `$`: a shell script with `$(date)` or `$$` must reach the shell unchanged.
/// Only a `$` followed by `$` or `(` is doubled, so most scripts read as written.
/// `sim::expansion::expand` is the kubelet's side, used to test the round trip.
pub fn escape_expansion(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '$' && matches!(chars.peek(), Some('$' | '(')) {
            out.push('$');
        }
    }
    out
}

/// A step's script: its commands, one per line, as `sh -c` runs them.
pub fn step(commands: &[String]) -> String {
    commands.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn quoting_keeps_every_string_literal_in_a_real_shell() {
        for s in [
            "plain",
            "",
            "it's",
            "$(touch /tmp/pwned) `id` $HOME",
            "a\nb",
            "\\'\"",
            "-n",
        ] {
            assert_eq!(sh(&format!("printf '%s' {}", quote(s))), s);
        }
    }

    #[test]
    fn route_urls_encode_what_a_path_segment_cannot_hold() {
        let base = Url::parse("https://sg.example.com/prefix/").unwrap();
        let routes = Routes {
            base: &base,
            job_id: 1,
            executor_name: "e",
        };
        assert_eq!(
            routes.git("github.com/acme/api"),
            "https://sg.example.com/prefix/.executors/git/github.com/acme/api"
        );
        assert_eq!(
            routes.file("batch changes", "a/b c.txt"),
            "https://sg.example.com/prefix/.executors/files/batch%20changes/a/b%20c.txt"
        );
    }

    #[test]
    fn escaped_text_survives_the_kubelets_expansion() {
        let env = |name: &str| (name == "HOME").then(|| "/job".to_owned());
        for s in [
            "echo $(date) $$ $HOME $(HOME) $$(HOME) $",
            "plain",
            "$((1 + 2))",
            "a$",
            "$(unterminated",
            "$$$(",
        ] {
            assert_eq!(
                sim::expansion::expand(&escape_expansion(s), env),
                s,
                "{s:?}"
            );
        }
        // What the escape protects against:
        assert_eq!(
            sim::expansion::expand("echo $(HOME) $$", env),
            "echo /job $"
        );
        assert_eq!(escape_expansion("echo $HOME"), "echo $HOME", "left alone");
    }

    #[test]
    fn times_before_the_epoch_are_not_touched() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(
            touch_stamp(t("2024-05-01T12:34:56+02:00")).as_deref(),
            Some("202405011034.56")
        );
        assert_eq!(touch_stamp(t("0001-01-01T00:00:00Z")), None);
    }

    #[test]
    fn the_setup_script_writes_files_with_their_times_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("secret");
        std::fs::create_dir(&files).unwrap();
        std::fs::write(files.join("file-0"), "hello").unwrap();
        let script = setup(
            None,
            &[SetupFile::FromSecret {
                key: "file-0".into(),
                path: "deep/er/greeting.txt",
                modified_at: Some("2001-02-03T04:05:06Z".parse().unwrap()),
            }],
            None,
        )
        .replace(FILES_DIR, &files.display().to_string());
        let work = dir.path().join("job");
        std::fs::create_dir(&work).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}\n{out:?}");
        let written = work.join("deep/er/greeting.txt");
        assert_eq!(std::fs::read_to_string(&written).unwrap(), "hello");
        let mtime = std::fs::metadata(&written).unwrap().modified().unwrap();
        assert_eq!(
            mtime
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            981_173_106
        );
    }
}
