//! The client's pure parts: reading a payload's head, URLs, options and the backoff's bounds.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;

fn opts(queues: Vec<&str>, multi: bool, base: &str) -> ClientOptions {
    ClientOptions {
        base: Url::parse(base).unwrap(),
        password: "p".into(),
        executor_name: "e".into(),
        queues: queues.into_iter().map(String::from).collect(),
        multi_queue: multi,
        outage_limit: DEFAULT_OUTAGE_LIMIT,
    }
}

#[test]
fn the_head_of_a_payload_is_read_leniently() {
    let h = Head::read(r#"{"id":"12","queue":"batches","token":"t","dockerSteps":5}"#).unwrap();
    assert_eq!(
        (h.id, h.queue.as_deref(), h.token.as_deref()),
        (12, Some("batches"), Some("t"))
    );
    let h = Head::read(r#"{"id":3,"queue":7,"token":null}"#).unwrap();
    assert_eq!((h.id, h.queue, h.token), (3, None, None));
    for (text, want) in [
        ("", "empty"),
        ("[1]", "not a JSON object"),
        ("{\"id\":1", "not a JSON object"),
        ("{}", "no `id`"),
        (r#"{"id":null}"#, "no `id`"),
        (r#"{"id":"x"}"#, r#"`id` "x" is not an integer"#),
        (r#"{"id":1.5}"#, "`id` 1.5 is not an integer"),
        (r#"{"id":true}"#, "`id` true is not an integer"),
    ] {
        let e = Head::read(text).err().unwrap();
        assert!(e.contains(want), "{text}: {e}");
    }
}

#[test]
fn urls_keep_the_base_path_and_encode_segments() {
    let c = QueueClient::new(opts(vec!["a b"], false, "https://sg.example.com/prefix/")).unwrap();
    assert_eq!(
        c.inner
            .url(&[".executors", "queue", "a b", "dequeue"])
            .as_str(),
        "https://sg.example.com/prefix/.executors/queue/a%20b/dequeue"
    );
}

#[test]
fn options_are_checked() {
    let err = |o| QueueClient::new(o).err().unwrap().to_string();
    assert!(err(opts(vec![], true, "http://x")).contains("no queue"));
    assert!(err(opts(vec!["a", "b"], false, "http://x")).contains("exactly one queue"));
    assert!(err(opts(vec!["a"], false, "ftp://x")).contains("not an http(s) URL"));
    let mut o = opts(vec!["a"], false, "http://x");
    o.password = "bad\npassword".into();
    assert!(err(o).contains("password"));
    assert!(QueueClient::new(opts(vec!["a", "b"], true, "http://x")).is_ok());
}

#[test]
fn backoff_waits_stay_within_the_bounds() {
    let c = QueueClient::new(opts(vec!["q"], false, "http://x")).unwrap();
    let waits: Vec<Duration> = c.inner.backoff().take(40).collect();
    assert_eq!(waits.len(), 40);
    assert!(waits.iter().all(|w| *w >= Duration::from_millis(250)));
    assert!(
        waits.iter().all(|w| *w <= Duration::from_secs(10)),
        "{waits:?}"
    );
    assert!(waits[20] >= Duration::from_secs(5), "{waits:?}");
}
