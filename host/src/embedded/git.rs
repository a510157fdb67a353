//! The git route: fetches of registered repositories for the job that is bound to them, through `git http-backend` for local ones and a proxy for remote ones, so that a job token never leaves for another host.

use std::path::PathBuf;
use std::process::Stdio;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdout, Command};

use super::Embedded;
use super::auth::Caller;
use super::reply::{HttpError, blocking};

/// The most CGI header bytes read before giving up on `git http-backend`.
const MAX_CGI_HEADER: usize = 64 << 10;

pub(super) fn routes() -> Router<Embedded> {
    // A wildcard must end the path, so the git suffix is split off by hand.
    Router::new().route("/.executors/git/{*path}", get(fetch).post(fetch))
}

/// `github.com//acme/api/` and `github.com/acme/api` are one repository.
pub(super) fn normalize(name: &str) -> String {
    name.trim()
        .split('/')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// Where a registered repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// A repository on this machine.
    Local(PathBuf),
    /// A repository served elsewhere (its URL without a trailing `/`).
    Remote(String),
}

/// `url` fit for a log or an error message: without the user and password a
/// remote repository's URL may carry, nor its query.
pub(super) fn shown(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(mut parsed) if parsed.has_host() => {
            if !parsed.username().is_empty() || parsed.password().is_some() {
                // Neither fails on a URL with a host.
                let _ = parsed.set_password(None);
                let _ = parsed.set_username("***");
            }
            if parsed.query().is_some() {
                parsed.set_query(Some("***"));
            }
            parsed.to_string()
        }
        _ if url.trim_start().starts_with('/') => url.to_owned(),
        _ => match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_owned(),
        },
    }
}

impl Source {
    pub(super) fn of(url: &str) -> Result<Source, String> {
        let url = url.trim();
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(Source::Remote(url.trim_end_matches('/').to_owned()));
        }
        if url.starts_with("file://") {
            return url::Url::parse(url)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .map(Source::Local)
                .ok_or_else(|| format!("{:?} is not a local file URL", shown(url)));
        }
        if url.starts_with('/') {
            return Ok(Source::Local(PathBuf::from(url)));
        }
        Err(format!(
            "repository URL {:?} is not supported; expected an absolute path, file://, http:// or https://",
            shown(url)
        ))
    }
}

/// The part of git's smart HTTP protocol this route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `GET info/refs?service=git-upload-pack`
    Refs,
    /// `POST git-upload-pack`
    UploadPack,
}

impl Call {
    fn path_info(self) -> &'static str {
        match self {
            Call::Refs => "/info/refs",
            Call::UploadPack => "/git-upload-pack",
        }
    }
}

fn split(path: &str, method: &Method) -> Option<(String, Call)> {
    if let (Some(repo), &Method::GET) = (path.strip_suffix("/info/refs"), method) {
        return Some((normalize(repo), Call::Refs));
    }
    if let (Some(repo), &Method::POST) = (path.strip_suffix("/git-upload-pack"), method) {
        return Some((normalize(repo), Call::UploadPack));
    }
    None
}

async fn fetch(
    State(e): State<Embedded>,
    caller: Caller,
    method: Method,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let query = query.unwrap_or_default();
    let (repo, call) = split(&path, &method).ok_or_else(|| {
        HttpError::new(
            StatusCode::NOT_FOUND,
            format!("{method} {path}: only git-upload-pack (fetch and clone) is served"),
        )
    })?;
    if call == Call::Refs && !query.split('&').any(|p| p == "service=git-upload-pack") {
        return Err(HttpError::forbidden(
            "only `service=git-upload-pack` (fetch and clone) is served",
        ));
    }
    if let Caller::Job { id } = caller {
        let bound = blocking(&e, move |s| s.processing_repository(id)).await?;
        if bound.as_deref().map(normalize).as_deref() != Some(repo.as_str()) {
            return Err(HttpError::forbidden(format!(
                "the token of job {id} does not grant repository {repo}"
            )));
        }
    }
    let name = repo.clone();
    let registered = blocking(&e, move |s| s.repository(&name))
        .await?
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::NOT_FOUND,
                format!("repository {repo} is not registered"),
            )
        })?;
    match Source::of(&registered.url)
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?
    {
        // Not a redirect: git would take the job's headers (its token
        // included, in clear text for http://) to the other host.
        Source::Remote(url) => proxy(&e, &url, call, &method, &headers, body).await,
        Source::Local(dir) => backend(&dir, call, &method, &query, &headers, body).await,
    }
}

/// The request headers of git's smart protocol that the remote needs; never
/// `Authorization` (the job's token) nor the `X-Sourcegraph-*` headers.
const FORWARDED: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::ACCEPT,
    header::USER_AGENT,
];

/// The response headers of the remote that git needs.
const RETURNED: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CACHE_CONTROL,
    header::EXPIRES,
];

/// Forwards one request of git's smart protocol to a remote repository, with
/// the credentials of its registered URL (if any) and none of the job's.
async fn proxy(
    e: &Embedded,
    url: &str,
    call: Call,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let failed = |what: String| {
        tracing::warn!(repository = %shown(url), error = %what, "remote repository");
        HttpError::new(StatusCode::BAD_GATEWAY, what)
    };
    let mut target = url::Url::parse(url)
        .map_err(|err| failed(format!("{:?} is not a URL: {err}", shown(url))))?;
    let user = target.username().to_owned();
    let password = target.password().map(str::to_owned);
    // Given to the client as basic auth, not in the URL, so that no error
    // of the client quotes them.
    let _ = target.set_password(None);
    let _ = target.set_username("");
    let target = match call {
        Call::Refs => format!("{target}/info/refs?service=git-upload-pack"),
        Call::UploadPack => format!("{target}/git-upload-pack"),
    };
    let mut request = e
        .remote_http()
        .request(method.clone(), &target)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    for name in FORWARDED
        .iter()
        .chain(std::iter::once(&HeaderName::from_static("git-protocol")))
    {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    if !user.is_empty() || password.is_some() {
        let user = percent_decoded(&user);
        let password = password.as_deref().map(percent_decoded);
        request = request.basic_auth(user, password);
    }
    let reply = request.send().await.map_err(|err| {
        failed(format!(
            "cannot reach {}: {}",
            shown(url),
            err.without_url()
        ))
    })?;
    let status = reply.status();
    if !status.is_success() {
        return Err(failed(format!(
            "{} answered {status} to {}",
            shown(url),
            call.path_info()
        )));
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    for name in RETURNED {
        if let Some(value) = reply.headers().get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    *response.body_mut() = Body::from_stream(reply.bytes_stream());
    Ok(response)
}

/// A URL's user or password as the remote expects it.
pub(super) fn percent_decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Runs `git http-backend` as a CGI program for one request.
async fn backend(
    dir: &std::path::Path,
    call: Call,
    method: &Method,
    query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let value_of = |name: HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let failed = |what: String| {
        tracing::error!(repository = %dir.display(), error = %what, "git http-backend");
        HttpError::new(StatusCode::BAD_GATEWAY, what)
    };
    let mut child = Command::new("git")
        .arg("http-backend")
        // The CGI sees only what it needs: no secrets of this process.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", dir)
        .env("PATH_INFO", call.path_info())
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", value_of(header::CONTENT_TYPE))
        // git gzips large negotiation requests; http-backend inflates them.
        .env("HTTP_CONTENT_ENCODING", value_of(header::CONTENT_ENCODING))
        .env(
            "GIT_PROTOCOL",
            value_of(HeaderName::from_static("git-protocol")),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot run `git http-backend`: {e}")))?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(failed("`git http-backend` has no pipes".into()));
    };
    // Fed while its output is read, so neither side can fill a pipe and stall.
    tokio::spawn(async move {
        let mut chunks = body.into_data_stream();
        while let Some(Ok(chunk)) = chunks.next().await {
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let repository = dir.display().to_string();
    tokio::spawn(async move {
        let mut errors = String::new();
        let _ = stderr.read_to_string(&mut errors).await;
        let status = child.wait().await;
        if !errors.trim().is_empty() || !status.as_ref().is_ok_and(|s| s.success()) {
            tracing::warn!(repository = %repository, status = ?status, stderr = %errors.trim(), "git http-backend");
        }
    });
    let (head, rest) = read_head(&mut stdout).await.map_err(failed)?;
    let mut response = Response::new(Body::from_stream(
        futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(rest)) })
            .chain(chunks(stdout)),
    ));
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("Status") {
            let code = value.split(' ').next().and_then(|c| c.parse::<u16>().ok());
            *response.status_mut() = code
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| failed(format!("bad CGI status {value:?}")))?;
        } else if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    Ok(response)
}

/// Reads the CGI header block; returns it and the body bytes read past it.
async fn read_head(out: &mut (impl AsyncRead + Unpin)) -> Result<(String, Vec<u8>), String> {
    let mut buf = Vec::new();
    loop {
        if let Some((end, skip)) = find_blank_line(&buf) {
            let rest = buf.split_off(end + skip);
            buf.truncate(end);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > MAX_CGI_HEADER {
            return Err("`git http-backend` sent no end of its headers".into());
        }
        let mut chunk = [0u8; 8192];
        match out.read(&mut chunk).await {
            Ok(0) => return Err("`git http-backend` ended before its headers".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading `git http-backend`: {e}")),
        }
    }
}

/// Where the headers end: the offset of the blank line and its length.
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn chunks(stdout: ChildStdout) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold(Some(stdout), |out| async move {
        let mut out = out?;
        let mut buf = vec![0u8; 32 << 10];
        match out.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(out)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_are_local_or_remote() {
        assert_eq!(
            Source::of("file:///srv/git/api").unwrap(),
            Source::Local(PathBuf::from("/srv/git/api"))
        );
        assert_eq!(
            Source::of("/srv/git/api").unwrap(),
            Source::Local(PathBuf::from("/srv/git/api"))
        );
        assert_eq!(
            Source::of("https://github.com/acme/api.git/").unwrap(),
            Source::Remote("https://github.com/acme/api.git".into())
        );
        assert!(
            Source::of("git@github.com:acme/api")
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn credentials_in_repository_urls_are_never_shown() {
        assert_eq!(
            shown("https://x-access-token:ghs_Secret99@github.com/acme/api.git?token=abc"),
            "https://***@github.com/acme/api.git?***"
        );
        assert_eq!(
            shown("https://github.com/acme/api.git"),
            "https://github.com/acme/api.git"
        );
        assert_eq!(shown("user:ghs_Secret99@host:x"), "***@host:x");
        let err = Source::of("ftp://bot:ghs_Secret99@example.com/x").unwrap_err();
        assert!(!err.contains("ghs_Secret99"), "{err}");
        assert_eq!(percent_decoded("p%40ss+w"), "p@ss+w");
    }

    #[test]
    fn routes_split_into_repository_and_call() {
        assert_eq!(
            split("github.com/acme/api/info/refs", &Method::GET),
            Some(("github.com/acme/api".into(), Call::Refs))
        );
        assert_eq!(
            split("github.com//acme/api/git-upload-pack", &Method::POST),
            Some(("github.com/acme/api".into(), Call::UploadPack))
        );
        assert_eq!(
            split("github.com/acme/api/git-upload-pack", &Method::GET),
            None
        );
        assert_eq!(
            split("github.com/acme/api/git-receive-pack", &Method::POST),
            None
        );
    }

    #[tokio::test]
    async fn cgi_headers_end_at_the_first_blank_line() {
        let mut out: &[u8] =
            b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nbody\n\nmore";
        let (head, rest) = read_head(&mut out).await.unwrap();
        assert_eq!(head, "Status: 404 Not Found\r\nContent-Type: text/plain");
        assert_eq!(rest, b"body\n\nmore");
        let mut out: &[u8] = b"Content-Type: x\n\n";
        assert_eq!(
            read_head(&mut out).await.unwrap(),
            ("Content-Type: x".into(), vec![])
        );
        let mut out: &[u8] = b"Content-Type: x\n";
        assert!(
            read_head(&mut out)
                .await
                .unwrap_err()
                .contains("ended before")
        );
    }
}
