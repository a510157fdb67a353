//! Following one container's log live (`follow`, `timestamps`), resuming after a cut with `sinceTime` and dropping the lines already seen, each line bounded in length.

use std::time::Duration;

use futures::AsyncBufReadExt;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::LogParams;
use kube::{Client, Resource};
use tokio::sync::{mpsc, watch};

use super::watch::PodState;

/// One line of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// When the container wrote it (the kubelet's timestamp).
    pub at: Timestamp,
    /// The text, without its newline (invalid UTF-8 replaced).
    pub text: String,
}

/// How a container's log ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The container terminated and every line was read.
    Complete,
    /// The pod went away before the log could be read to its end.
    PodGone,
    /// The reader of the lines hung up.
    Abandoned,
}

/// Why a log could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The API kept failing.
    #[error("cannot read the log of container {container}: {}", brief(source))]
    Api {
        /// The container.
        container: String,
        /// The last error.
        source: kube::Error,
    },
}

/// An API error as a reader of a job's log wants it: the status code and
/// message, without the whole `Status` object kube's own text carries.
fn brief(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} {}", status.code, status.message),
        other => other.to_string(),
    }
}

/// Which lines were delivered, so that a resumed stream (which starts at
/// the second of the last line, as `sinceTime` has whole seconds) repeats
/// none. Lines with equal timestamps are told apart by their order.
#[derive(Debug, Default)]
struct Cursor {
    last: Option<Timestamp>,
    /// Lines delivered with timestamp `last`.
    at_last: usize,
    /// Lines seen with timestamp `last` in the current pass.
    seen_at_last: usize,
}

impl Cursor {
    fn new_pass(&mut self) {
        self.seen_at_last = 0;
    }

    fn accept(&mut self, at: Timestamp) -> bool {
        match self.last {
            Some(last) if at < last => false,
            Some(last) if at == last => {
                self.seen_at_last += 1;
                if self.seen_at_last > self.at_last {
                    self.at_last += 1;
                    true
                } else {
                    false
                }
            }
            _ => {
                self.last = Some(at);
                self.at_last = 1;
                self.seen_at_last = 1;
                true
            }
        }
    }

    /// Where a resumed stream starts: the time of the last line, to the
    /// nanosecond. (kube's `LogParams` rounds `sinceTime` to the nearest
    /// second: rounding up skips lines, and a second's worth of lines
    /// longer than what a cut stream carries would never be got past.)
    fn since(&self) -> Option<Timestamp> {
        self.last
    }
}

/// Opens `pods/log` with `follow` and `timestamps`, from `since` (exact).
async fn open(
    client: &Client,
    namespace: &str,
    pod: &str,
    container: &str,
    since: Option<Timestamp>,
) -> Result<impl futures::AsyncBufRead + use<>, kube::Error> {
    let params = LogParams {
        container: Some(container.to_owned()),
        follow: true,
        timestamps: true,
        ..LogParams::default()
    };
    let mut request = kube::core::Request::new(Pod::url_path(&(), Some(namespace)))
        .logs(pod, &params)
        .map_err(kube::Error::BuildRequest)?;
    if let Some(since) = since {
        let since: String =
            url::form_urlencoded::byte_serialize(since.to_string().as_bytes()).collect();
        let uri = format!("{}&sinceTime={since}", request.uri());
        *request.uri_mut() = uri.parse().map_err(|e| {
            kube::Error::BuildRequest(kube::core::request::Error::Validation(format!(
                "log URI {uri}: {e}"
            )))
        })?;
    }
    client.request_stream(request).await
}

/// The most of one line that is kept (the kubelet's timestamp included);
/// the rest is read and dropped, and the line says so. One job printing a
/// 4 GB line must not hold 4 GB here.
pub const MAX_LINE: usize = 64 * 1024;

/// What [`read_line`] found.
struct LineRead {
    /// Bytes of the line on the wire, newline included.
    total: usize,
    /// Whether it ended with a newline (else the stream ended first).
    complete: bool,
}

/// Reads one line into `buf`, keeping at most `max` bytes of it and
/// consuming the rest up to its newline.
async fn read_line<R: futures::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    let mut total = 0;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(LineRead {
                total,
                complete: false,
            });
        }
        let (take, complete) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        total += take;
        futures::AsyncBufReadExt::consume_unpin(r, take);
        if complete {
            return Ok(LineRead { total, complete });
        }
    }
}

/// Splits `<RFC 3339 time> <text>`.
fn parse(raw: &[u8]) -> Option<Line> {
    let text = String::from_utf8_lossy(raw);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let (at, rest) = text.split_once(' ').unwrap_or((text, ""));
    Some(Line {
        at: at.parse().ok()?,
        text: rest.to_owned(),
    })
}

/// The status of `container` in `pod`.
pub fn container_status<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    super::outcome::container_statuses(pod).find(|c| c.name == container)
}

/// Whether `container` has terminated, by the pod's status.
pub fn terminated(state: &PodState, container: &str) -> bool {
    state
        .pod()
        .and_then(|p| container_status(p, container))
        .and_then(|c| c.state.as_ref()?.terminated.as_ref())
        .is_some()
}

/// How long reads may go on failing once the container has ended (each
/// failure already spent the client's retries, about 6 s).
const AFTER_THE_END: Duration = Duration::from_secs(15);

/// Sends every line of `container` of `pod` to `out`, live, once each, and
/// returns when the container has terminated and its log is read, or the
/// pod is gone. A cut stream (an error, or an end before the container
/// terminated) is resumed from the last line.
pub async fn follow<T>(
    client: &Client,
    namespace: &str,
    pod: &str,
    container: &str,
    mut state: watch::Receiver<PodState>,
    out: &mpsc::Sender<T>,
    wrap: impl Fn(Line) -> T,
) -> Result<Ended, LogError> {
    let mut cursor = Cursor::default();
    let mut failures = 0u32;
    let mut failing_after_the_end: Option<tokio::time::Instant> = None;
    loop {
        let stream = match open(client, namespace, pod, container, cursor.since()).await {
            Ok(stream) => stream,
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(Ended::PodGone),
            Err(e) => {
                // The throttle layer has retried already; this is a longer
                // outage, or the container is not ready to be read yet. While
                // the container runs its log can still be read: keep trying.
                // Once it ended, or its pod is gone, for AFTER_THE_END more.
                failures += 1;
                let over = {
                    let current = state.borrow();
                    terminated(&current, container) || matches!(*current, PodState::Deleted(_))
                };
                let since = over
                    .then(|| *failing_after_the_end.get_or_insert_with(tokio::time::Instant::now));
                if since.is_some_and(|since| since.elapsed() >= AFTER_THE_END) {
                    return Err(LogError::Api {
                        container: container.to_owned(),
                        source: e,
                    });
                }
                tracing::debug!(%pod, %container, error = %e, failures, "log request failed; trying again");
                let pause = (Duration::from_millis(200) * failures).min(Duration::from_secs(5));
                let _ = tokio::time::timeout(pause, state.changed()).await;
                continue;
            }
        };
        futures::pin_mut!(stream);
        cursor.new_pass();
        let mut buf = Vec::new();
        let mut progressed = false;
        let clean = loop {
            buf.clear();
            match read_line(&mut stream, &mut buf, MAX_LINE).await {
                Ok(LineRead { total: 0, .. }) => break true,
                // A last line without its newline was cut; it comes again.
                Ok(LineRead {
                    complete: false, ..
                }) => break false,
                Ok(LineRead { total, .. }) => {
                    if total > buf.len() {
                        // Cut: what was kept, and a note of what was not.
                        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                            buf.pop();
                        }
                        let kept = String::from_utf8_lossy(&buf).into_owned();
                        buf = format!(
                            "{kept} [executor: line cut, {total} bytes long; at most {MAX_LINE} of a line are kept]\n"
                        )
                        .into_bytes();
                        metrics::counter!(crate::ops::metrics::LOG_LINES_CUT).increment(1);
                    }
                    let Some(line) = parse(&buf) else {
                        tracing::warn!(%pod, %container, "log line without a timestamp; kept as is");
                        let text = String::from_utf8_lossy(&buf).trim_end().to_owned();
                        if out
                            .send(wrap(Line {
                                at: Timestamp::now(),
                                text,
                            }))
                            .await
                            .is_err()
                        {
                            return Ok(Ended::Abandoned);
                        }
                        continue;
                    };
                    if cursor.accept(line.at) {
                        progressed = true;
                        if out.send(wrap(line)).await.is_err() {
                            return Ok(Ended::Abandoned);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(%pod, %container, error = %e, "log stream cut; resuming");
                    metrics::counter!(crate::ops::metrics::LOG_RESUMES).increment(1);
                    break false;
                }
            }
        };
        if progressed {
            failures = 0;
        }
        if clean {
            // The kubelet ends a followed log when the container exits; the
            // status saying so may trail the stream's end a little.
            let closed = matches!(
                tokio::time::timeout(
                    Duration::from_secs(2),
                    state.wait_for(|s| {
                        terminated(s, container) || matches!(s, PodState::Deleted(_))
                    }),
                )
                .await,
                Ok(Err(_))
            );
            let current = state.borrow().clone();
            if terminated(&current, container) {
                return Ok(Ended::Complete);
            }
            if closed || matches!(current, PodState::Deleted(_)) {
                return Ok(Ended::PodGone);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_resumed_pass_delivers_only_the_lines_after_the_last_one_seen() {
        let mut c = Cursor::default();
        c.new_pass();
        for t in [
            "2026-01-01T00:00:01.1Z",
            "2026-01-01T00:00:01.5Z",
            "2026-01-01T00:00:01.5Z",
        ] {
            assert!(c.accept(at(t)));
        }
        assert_eq!(
            c.since(),
            Some(at("2026-01-01T00:00:01.5Z")),
            "exact, not rounded"
        );
        // A server that cuts `sinceTime` to the second repeats more; the
        // cursor drops all that was seen (two lines at .5 were).
        c.new_pass();
        let again = [
            ("2026-01-01T00:00:01.1Z", false),
            ("2026-01-01T00:00:01.5Z", false),
            ("2026-01-01T00:00:01.5Z", false),
            ("2026-01-01T00:00:01.5Z", true),
            ("2026-01-01T00:00:02Z", true),
        ];
        for (t, fresh) in again {
            assert_eq!(c.accept(at(t)), fresh, "{t}");
        }
    }

    #[test]
    fn lines_are_split_at_their_timestamp() {
        let line = parse(b"2026-01-01T00:00:01.123456789Z hello world\n").unwrap();
        assert_eq!(line.text, "hello world");
        assert_eq!(line.at, at("2026-01-01T00:00:01.123456789Z"));
        assert_eq!(parse(b"2026-01-01T00:00:01Z \n").unwrap().text, "");
        assert_eq!(parse(b"no timestamp\n"), None);
    }
}
