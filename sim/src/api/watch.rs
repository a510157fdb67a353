//! Watch: the backlog from a resource version, then live events filtered by namespace and selectors, with bookmarks, timeouts and the `410 Expired` of a watcher that fell behind.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

use super::handlers::selectors;
use super::query::Query;
use super::response::stream_response;
use super::target::{Reply, Target};
use crate::cluster::Cluster;
use crate::status::ApiError;
use crate::store::Event;

pub(super) fn watch(cluster: &Arc<Cluster>, t: &Target, query: &Query) -> Reply {
    let (labels, fields) = selectors(t, query)?;
    let from = match query.get("resourceVersion").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid resource version {v:?}: expected a number"))
        })?),
    };
    let bookmarks = query.flag("allowWatchBookmarks");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let resource = t.resource;
    let ns_filter = t.namespace.clone();
    let (tx, rx) = futures::channel::mpsc::channel::<Bytes>(64);
    let sub = match cluster.store.watch(resource, t.namespace.as_deref(), from) {
        Ok(s) => s,
        Err(e) => {
            // The real server answers an expired watch with a 200 stream
            // holding one ERROR event.
            let body = watch_line("ERROR", &e.to_status());
            return Ok(stream_response(futures::stream::iter([body]).boxed()));
        }
    };
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let _open = cluster.stats.open("watch", resource.name);
        let mut tx = tx;
        let mut live = sub.live;
        let mut last_rv = sub.rv;
        // Events hold their object as text: parse it only to test selectors.
        let everything = labels.is_everything() && fields.is_everything();
        let matches = |e: &Event| {
            everything || {
                let o = e.object();
                labels.matches_object(&o) && fields.matches(&o)
            }
        };
        for event in sub.backlog {
            if matches(&event) && tx.send(event_line(&event)).await.is_err() {
                return;
            }
        }
        let now = tokio::time::Instant::now();
        let end = [timeout, cluster.faults.watch_cut()]
            .into_iter()
            .flatten()
            .min()
            .map(|d| now + d);
        let mut tick = tokio::time::interval(cluster.options.bookmark_interval);
        tick.tick().await;
        loop {
            let until_end = async {
                match end {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                _ = until_end => return,
                _ = tick.tick(), if bookmarks => {
                    let mark = json!({
                        "kind": resource.kind,
                        "apiVersion": resource.api_version(),
                        "metadata": {"resourceVersion": last_rv.to_string()},
                    });
                    if tx.send(watch_line("BOOKMARK", &mark)).await.is_err() {
                        return;
                    }
                }
                event = live.recv() => match event {
                    Ok(e) => {
                        last_rv = e.rv;
                        if e.key.resource != resource.name
                            || ns_filter.as_ref().is_some_and(|ns| &e.key.namespace != ns)
                            || !matches(&e)
                        {
                            continue;
                        }
                        if tx.send(event_line(&e)).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow to keep up: end with 410 so the client
                        // re-lists, as the real server does.
                        let status = ApiError::expired("the watch fell behind; please re-list").to_status();
                        let _ = tx.send(watch_line("ERROR", &status)).await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        }
    });
    Ok(stream_response(rx.boxed()))
}

/// A store event as a watch line, its object's text as it is.
fn event_line(event: &Event) -> Bytes {
    let json = event.json();
    let kind = event.kind.as_str();
    let mut text = String::with_capacity(json.len() + 32);
    text.push_str("{\"type\":\"");
    text.push_str(kind);
    text.push_str("\",\"object\":");
    text.push_str(json);
    text.push_str("}\n");
    Bytes::from(text)
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}
