//! Asks git about a registered repository before anything is queued: that a local one is a git repository (at registration), and which commit a revision names (at submission), so that a job never fails in its pod over what could be known here.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::git::{self, Source, shown};
use crate::plugins::text::printable;

/// The longest git may take to answer (a remote's refs over the network).
const GIT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest revision accepted: git's ref names are far shorter in practice.
const MAX_REVISION: usize = 256;

/// Why a repository or a revision cannot be used.
#[derive(Debug, thiserror::Error)]
pub(super) enum RevisionError {
    #[error("repository path {path} does not exist on the machine that serves the queue")]
    Missing { path: String },
    #[error("repository path {path} is not a git repository (git rev-parse: {reason})")]
    NotGit { path: String, reason: String },
    #[error(
        "repository path {path} is a directory inside a git repository; register the repository's top directory (`git -C {path} rev-parse --show-toplevel`)"
    )]
    Inside { path: String },
    #[error("repository URL {url} is not a valid URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "revision {revision:?} is not valid: expected a commit SHA or a ref name of at most {MAX_REVISION} characters, not starting with `-`"
    )]
    Malformed { revision: String },
    #[error(
        "revision {revision:?} names no commit of {repository}; expected a full commit SHA or a branch, tag or ref name that exists there"
    )]
    Unknown {
        revision: String,
        repository: String,
    },
    #[error(
        "revision {revision:?} of {repository} is a short SHA, which a remote repository cannot resolve; give the full 40-character SHA or a branch or tag name"
    )]
    ShortSha {
        revision: String,
        repository: String,
    },
    #[error("cannot ask git about {repository}: {reason}")]
    Git { repository: String, reason: String },
}

/// Checks a repository being registered: a local path must exist and be a
/// git repository (work tree or bare); a remote URL must parse with a host.
/// Remotes are not contacted: they may be private to the pods' network.
pub(super) async fn check(source: &Source) -> Result<(), RevisionError> {
    match source {
        Source::Local(path) => {
            let shown_path = printable(&path.display().to_string());
            if !path.exists() {
                return Err(RevisionError::Missing { path: shown_path });
            }
            // The way up to the work tree's top: none for the top itself
            // and for a bare repository, the two that the git route serves.
            let out = git(Some(path), &["rev-parse", "--show-cdup"], &shown_path).await?;
            if !out.success {
                Err(RevisionError::NotGit {
                    path: shown_path,
                    reason: out.error,
                })
            } else if !out.stdout.trim().is_empty() {
                Err(RevisionError::Inside { path: shown_path })
            } else {
                Ok(())
            }
        }
        Source::Remote(url) => match url::Url::parse(url) {
            Ok(u) if u.has_host() => Ok(()),
            Ok(_) => Err(RevisionError::BadUrl {
                url: printable(&shown(url)),
                reason: "it has no host".to_owned(),
            }),
            Err(e) => Err(RevisionError::BadUrl {
                url: printable(&shown(url)),
                reason: e.to_string(),
            }),
        },
    }
}

/// The commit `revision` names in the repository: a full SHA as it is
/// (checked to exist when the repository is local), a branch, tag or ref
/// name (`main`, `v1`, `refs/heads/main`, `HEAD`) resolved by git. The pod
/// fetches exactly that commit, so a ref's later moves do not change the job.
pub(super) async fn resolve(
    source: &Source,
    repository: &str,
    revision: &str,
) -> Result<String, RevisionError> {
    let revision = revision.trim();
    if revision.is_empty()
        || revision.len() > MAX_REVISION
        || revision.starts_with('-')
        || revision.chars().any(|c| c.is_control() || c == ' ')
    {
        return Err(RevisionError::Malformed {
            revision: printable(revision),
        });
    }
    let unknown = || RevisionError::Unknown {
        revision: revision.to_owned(),
        repository: repository.to_owned(),
    };
    match source {
        Source::Local(path) => {
            let spec = format!("{revision}^{{commit}}");
            let out = git(
                Some(path),
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "--end-of-options",
                    &spec,
                ],
                repository,
            )
            .await?;
            let sha = out.stdout.trim();
            if out.success && full_sha(sha) {
                Ok(sha.to_owned())
            } else {
                Err(unknown())
            }
        }
        Source::Remote(url) => {
            if full_sha(revision) {
                return Ok(revision.to_ascii_lowercase());
            }
            // A pattern matches a ref's tail; a tag's commit (its peeled
            // line) ends in `^{}` and needs a pattern of its own.
            let peeled = format!("{revision}^{{}}");
            let (bare, auth) = credentials_apart(url);
            let out = git_with(
                None,
                &["ls-remote", "--", &bare, revision, &peeled],
                repository,
                auth.as_deref(),
            )
            .await?;
            if !out.success {
                return Err(RevisionError::Git {
                    repository: repository.to_owned(),
                    reason: out.error,
                });
            }
            match pick(&out.stdout, revision) {
                Some(sha) => Ok(sha),
                None if revision.len() >= 4 && revision.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    Err(RevisionError::ShortSha {
                        revision: revision.to_owned(),
                        repository: repository.to_owned(),
                    })
                }
                None => Err(unknown()),
            }
        }
    }
}

/// The commit of `revision` among `git ls-remote`'s lines, as git would
/// pick it: the exact ref, a branch, a tag's commit (peeled), the tag.
fn pick(listing: &str, revision: &str) -> Option<String> {
    let refs: Vec<(&str, &str)> = listing.lines().filter_map(|l| l.split_once('\t')).collect();
    [
        revision.to_owned(),
        format!("refs/heads/{revision}"),
        format!("refs/tags/{revision}^{{}}"),
        format!("refs/tags/{revision}"),
    ]
    .iter()
    .find_map(|wanted| refs.iter().find(|(_, name)| name == wanted))
    .map(|(sha, _)| (*sha).to_owned())
    .filter(|sha| full_sha(sha))
}

/// `url` without its user and password, and those as an `Authorization`
/// header: given to git through its environment, not its arguments, which
/// every user of the machine can read in the process list.
fn credentials_apart(url: &str) -> (String, Option<String>) {
    use base64::Engine;
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_owned(), None);
    };
    let user = git::percent_decoded(parsed.username());
    let password = parsed.password().map(git::percent_decoded);
    if user.is_empty() && password.is_none() {
        return (url.to_owned(), None);
    }
    // Neither fails on a URL with a host, the only kind with credentials.
    let _ = parsed.set_password(None);
    let _ = parsed.set_username("");
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{user}:{}", password.unwrap_or_default()));
    (
        parsed.to_string(),
        Some(format!("Authorization: Basic {basic}")),
    )
}

/// A whole SHA-1 or SHA-256 object name.
fn full_sha(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What a git command said.
struct GitOutput {
    success: bool,
    stdout: String,
    /// Its first line on stderr, printable.
    error: String,
}

/// Runs git without a terminal to prompt on and without the repository's
/// hooks or fsmonitor: it only reads refs and objects.
async fn git(
    dir: Option<&Path>,
    args: &[&str],
    repository: &str,
) -> Result<GitOutput, RevisionError> {
    git_with(dir, args, repository, None).await
}

/// [`git`], with an HTTP header for every request it makes.
async fn git_with(
    dir: Option<&Path>,
    args: &[&str],
    repository: &str,
    header: Option<&str>,
) -> Result<GitOutput, RevisionError> {
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    cmd.args([
        "-c",
        "core.fsmonitor=false",
        "-c",
        "protocol.file.allow=always",
    ])
    .args(args)
    .env("GIT_TERMINAL_PROMPT", "0")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    if let Some(header) = header {
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", header);
    }
    let failed = |reason: String| RevisionError::Git {
        repository: repository.to_owned(),
        reason,
    };
    let out = tokio::time::timeout(GIT_TIMEOUT, cmd.output())
        .await
        .map_err(|_| failed(format!("git did not answer within {GIT_TIMEOUT:?}")))?
        .map_err(|e| failed(format!("cannot run git: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    Ok(GitOutput {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        error: printable(stderr.lines().next().unwrap_or("").trim()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn repository() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), &["init", "-q", "-b", "main"]);
        run(
            dir.path(),
            &["commit", "-q", "--allow-empty", "-m", "first"],
        );
        run(dir.path(), &["tag", "-a", "v1", "-m", "v1"]);
        let sha = run(dir.path(), &["rev-parse", "HEAD"]);
        (dir, sha)
    }

    #[tokio::test]
    async fn branch_tag_and_short_names_of_a_local_repository_resolve_to_the_full_commit() {
        let (dir, sha) = repository();
        let source = Source::Local(dir.path().to_path_buf());
        for revision in ["main", "HEAD", "refs/heads/main", "v1", &sha[..7], &sha] {
            assert_eq!(
                resolve(&source, "r", revision).await.unwrap(),
                sha,
                "{revision}"
            );
        }
    }

    #[tokio::test]
    async fn a_revision_that_names_no_commit_is_refused_with_its_name() {
        let (dir, _) = repository();
        let source = Source::Local(dir.path().to_path_buf());
        let err = resolve(&source, "github.com/acme/api", "nope")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"nope\" names no commit of github.com/acme/api"),
            "{err}"
        );
        let err = resolve(&source, "r", "--upload-pack=evil")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid"), "{err}");
    }

    #[tokio::test]
    async fn a_remote_repository_resolves_refs_through_ls_remote_and_refuses_short_shas() {
        let (dir, sha) = repository();
        // ls-remote speaks to a file:// URL as to any remote.
        let url = format!("file://{}", dir.path().display());
        let source = Source::Remote(url);
        assert_eq!(resolve(&source, "r", "main").await.unwrap(), sha);
        assert_eq!(
            resolve(&source, "r", "v1").await.unwrap(),
            sha,
            "a tag's commit, not the tag object"
        );
        let err = resolve(&source, "r", &sha[..7])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("short SHA"), "{err}");
    }

    #[test]
    fn a_remote_urls_credentials_go_to_a_header_not_to_gits_arguments() {
        let (url, header) = credentials_apart("https://bot:p%40ss@git.example.com/acme/api.git");
        assert_eq!(url, "https://git.example.com/acme/api.git");
        // base64("bot:p@ss")
        assert_eq!(header.as_deref(), Some("Authorization: Basic Ym90OnBAc3M="));
        let (url, header) = credentials_apart("https://git.example.com/acme/api.git");
        assert_eq!(
            (url.as_str(), header),
            ("https://git.example.com/acme/api.git", None)
        );
    }

    #[tokio::test]
    async fn only_existing_git_repositories_can_be_registered() {
        let (dir, _) = repository();
        assert!(
            check(&Source::Local(dir.path().to_path_buf()))
                .await
                .is_ok()
        );
        let err = check(&Source::Local("/does/not/exist".into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("/does/not/exist does not exist"), "{err}");
        let plain = tempfile::tempdir().unwrap();
        let err = check(&Source::Local(plain.path().to_path_buf()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a git repository"), "{err}");
        let inside = dir.path().join("sub");
        std::fs::create_dir(&inside).unwrap();
        let err = check(&Source::Local(inside)).await.unwrap_err().to_string();
        assert!(err.contains("inside a git repository"), "{err}");
        let bare = tempfile::tempdir().unwrap();
        run(bare.path(), &["init", "-q", "--bare"]);
        assert!(
            check(&Source::Local(bare.path().to_path_buf()))
                .await
                .is_ok()
        );
        let err = check(&Source::Remote("https://".into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a valid URL"), "{err}");
    }
}
