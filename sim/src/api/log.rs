//! `pods/log` as the kubelet serves it through the API server: the container is chosen, the options read, then the lines so far are answered whole or followed live, within `limitBytes` or an injected cut.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use serde_json::Value;

use super::handlers::get_object;
use super::query::Query;
use super::response::text_response;
use super::target::{Reply, Target};
use crate::cluster::Cluster;
use crate::logs::{ContainerId, Line, Log, now_nanos, parse_time, rfc3339_nanos};
use crate::status::ApiError;

/// The connection breaks a moment after the bytes that got through, so that
/// they reach the client (breaking at once could discard them unsent).
const CUT_AFTER: std::time::Duration = std::time::Duration::from_millis(20);

/// What the pod log stream sends, as one frame or an I/O error that breaks it.
type Frame = Result<Bytes, std::io::Error>;

/// `pods/log`: the container's lines so far, or followed live until it ends.
pub(super) fn pod_log(cluster: &Arc<Cluster>, t: &Target, query: &Query) -> Reply {
    let pod = get_object(cluster, t)?;
    let id = ContainerId {
        namespace: t.namespace.clone().unwrap_or_default(),
        pod: t.name.clone().unwrap_or_default(),
        container: choose_container(&pod, t.name.as_deref().unwrap_or_default(), query)?,
    };
    let log = open_log(cluster, &pod, &id)?;
    let options = LogOptions::from_query(query, cluster.faults.log_cut())?;
    let (first, seen, finished) = log.read(0);
    let initial = options.initial_text(first);
    if !options.follow || finished {
        return Ok(whole(initial, &options));
    }
    let (tx, rx) = mpsc::channel::<Frame>(64);
    let cluster = cluster.clone();
    let resource = t.resource.name;
    tokio::spawn(async move {
        let _open = cluster.stats.open("log", resource);
        follow(log, options, initial, seen, tx).await;
    });
    Ok(text_response(Body::from_stream(rx)))
}

/// The container the request names, or the pod's only container; the
/// messages are the real server's.
fn choose_container(pod: &Value, pod_name: &str, query: &Query) -> Result<String, ApiError> {
    let names = |list: &str| -> Vec<String> {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    let (init, main) = (names("initContainers"), names("containers"));
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) => c.to_owned(),
        None if main.len() == 1 => main[0].clone(),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                main.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            return Err(ApiError::bad_request(message));
        }
    };
    if !init.contains(&container) && !main.contains(&container) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {pod_name}"
        )));
    }
    Ok(container)
}

/// The container's log once it has started; before that, the real server's
/// "waiting to start" with the container's waiting reason.
fn open_log(cluster: &Cluster, pod: &Value, id: &ContainerId) -> Result<Arc<Log>, ApiError> {
    if let Some(log) = cluster.logs.get(id) {
        return Ok(log);
    }
    let state = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|l| pod["status"][*l].as_array().into_iter().flatten())
        .find(|c| c["name"].as_str() == Some(id.container.as_str()))
        .map(|c| c["state"].clone());
    let reason = state
        .as_ref()
        .and_then(|s| s["waiting"]["reason"].as_str())
        .map(|r| match r {
            "ErrImagePull" | "ImagePullBackOff" => "trying and failing to pull image",
            other => other,
        })
        .unwrap_or("ContainerCreating");
    Err(ApiError::bad_request(format!(
        "container \"{}\" in pod \"{}\" is waiting to start: {reason}",
        id.container, id.pod
    )))
}

/// The request's log options, with the byte budget an injected cut adds.
#[derive(Debug, Clone, Copy)]
struct LogOptions {
    timestamps: bool,
    follow: bool,
    /// Only lines written at or after this time (nanoseconds since the epoch).
    since: Option<i128>,
    tail: Option<usize>,
    /// The fewest bytes of `limitBytes` and an injected cut.
    budget: Option<u64>,
    /// Whether the budget ends in a broken connection (an injected cut
    /// below `limitBytes`) rather than a clean end, as the real server ends
    /// a stream at `limitBytes`.
    broken: bool,
}

impl LogOptions {
    fn from_query(query: &Query, cut: Option<u64>) -> Result<LogOptions, ApiError> {
        let since = match (query.get("sinceTime"), query.get("sinceSeconds")) {
            (Some(t), _) => Some(parse_time(t).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid sinceTime {t:?}: expected an RFC 3339 time"
                ))
            })?),
            (None, Some(s)) => {
                let secs: i128 = s.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid sinceSeconds {s:?}: expected a number"))
                })?;
                Some(now_nanos() - secs * 1_000_000_000)
            }
            _ => None,
        };
        let limit = query.get("limitBytes").and_then(|n| n.parse::<u64>().ok());
        Ok(LogOptions {
            timestamps: query.flag("timestamps"),
            follow: query.flag("follow"),
            since,
            tail: query.get("tailLines").and_then(|n| n.parse::<usize>().ok()),
            budget: [limit, cut].into_iter().flatten().min(),
            broken: cut.is_some_and(|c| limit.is_none_or(|l| c < l)),
        })
    }

    fn format(&self, line: &Line) -> String {
        if self.timestamps {
            format!("{} {}", rfc3339_nanos(line.at), line.text)
        } else {
            line.text.clone()
        }
    }

    /// The lines already written, after `sinceTime`/`sinceSeconds` and `tailLines`.
    fn initial_text(&self, lines: Vec<Line>) -> String {
        let mut start: Vec<Line> = lines
            .into_iter()
            .filter(|l| self.since.is_none_or(|s| l.at >= s))
            .collect();
        if let Some(n) = self.tail {
            let skip = start.len().saturating_sub(n);
            start.drain(..skip);
        }
        start.iter().map(|l| self.format(l)).collect()
    }
}

/// A log that is not followed (or has ended): the text within the budget.
fn whole(mut text: String, options: &LogOptions) -> axum::response::Response {
    if let Some(b) = options.budget
        && text.len() > b as usize
    {
        text.truncate(floor_char_boundary(&text, b as usize));
        if options.broken {
            let data = futures::stream::once(async move { Ok(Bytes::from(text)) });
            return text_response(Body::from_stream(data.chain(futures::stream::once(
                async {
                    tokio::time::sleep(CUT_AFTER).await;
                    Err::<Bytes, _>(log_cut())
                },
            ))));
        }
    }
    text_response(Body::from(text))
}

/// What sending one piece of a followed log led to.
enum Sent {
    /// The piece went out (or was empty); keep following.
    More,
    /// The client went away.
    Gone,
    /// The byte budget is spent.
    Spent,
}

/// A followed log's sender with what is left of its byte budget.
struct Follower {
    tx: mpsc::Sender<Frame>,
    budget: Option<u64>,
    broken: bool,
    sent: u64,
}

impl Follower {
    /// Sends `text` cut to what the budget still allows.
    async fn send(&mut self, mut text: String) -> Sent {
        if text.is_empty() {
            return Sent::More;
        }
        if let Some(b) = self.budget {
            let room = b.saturating_sub(self.sent) as usize;
            if room == 0 {
                return Sent::Spent;
            }
            text.truncate(floor_char_boundary(&text, room));
        }
        self.sent += text.len() as u64;
        if self.tx.send(Ok(Bytes::from(text))).await.is_err() {
            return Sent::Gone;
        }
        Sent::More
    }

    fn spent(&self) -> bool {
        self.budget.is_some_and(|b| self.sent >= b)
    }

    /// Ends a stream whose budget is spent: an injected cut breaks the
    /// connection, `limitBytes` ends it cleanly.
    async fn cut_off(mut self) {
        if self.broken {
            tokio::time::sleep(CUT_AFTER).await;
            let _ = self.tx.send(Err(log_cut())).await;
        }
    }
}

/// Streams `initial`, then each line as it is written, until the container
/// ends, the client goes away or the budget is spent.
async fn follow(
    log: Arc<Log>,
    options: LogOptions,
    initial: String,
    seen: usize,
    tx: mpsc::Sender<Frame>,
) {
    let mut out = Follower {
        tx,
        budget: options.budget,
        broken: options.broken,
        sent: 0,
    };
    match out.send(initial).await {
        Sent::More => {}
        Sent::Gone => return,
        Sent::Spent => return out.cut_off().await,
    }
    let mut index = seen;
    loop {
        log.wait(index).await;
        let (lines, next, finished) = log.read(index);
        index = next;
        let text: String = lines.iter().map(|l| options.format(l)).collect();
        match out.send(text).await {
            Sent::More => {}
            Sent::Gone => return,
            Sent::Spent => return out.cut_off().await,
        }
        if out.spent() {
            return out.cut_off().await;
        }
        if finished && lines.is_empty() {
            return;
        }
    }
}

fn log_cut() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "log stream cut (injected fault)",
    )
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}
