#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The queue client and the log uploader against a fake queue on loopback: paths, headers and
//! bodies of every call, and what happens when the queue is down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use executor::job::log::LogEvent;
use executor::payload::JobPayload;
use executor::plugins::{LogRecord, Stream};
use executor::queue::client::{
    ClientError, ClientOptions, DEFAULT_OUTAGE_LIMIT, JobClient, JobRef, QueueClient, Tuning,
};
use executor::queue::upload::{UploadPolicy, upload};
use executor::queue::wire::ExecutionLogEntry;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

/// One request as the fake queue saw it, and the status it answered (0: the
/// connection was dropped unanswered).
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HashMap<String, String>,
    body: String,
    status: u16,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{}: {e}", self.body))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Answers from `replies`, 204 for paths without one.
    Up,
    /// 503 to everything.
    Unavailable,
    /// Never answers.
    Hang,
    /// Closes every new connection at once.
    Drop,
}

struct Fake {
    mode: Mutex<Mode>,
    replies: Mutex<HashMap<String, (u16, String)>>,
    seen: mpsc::UnboundedSender<Seen>,
}

impl Fake {
    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn reply(&self, path: &str, status: u16, body: &str) {
        self.replies
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body.to_owned()));
    }

    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, reply) = match fake.mode() {
        Mode::Unavailable => (503, "the queue is down".to_owned()),
        Mode::Hang => (0, String::new()),
        Mode::Up | Mode::Drop => fake
            .replies
            .lock()
            .unwrap()
            .get(uri.path())
            .cloned()
            .unwrap_or((204, String::new())),
    };
    let seen = Seen {
        method,
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or("<binary>").to_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        status,
    };
    let _ = fake.seen.send(seen);
    if status == 0 {
        std::future::pending::<()>().await;
    }
    (StatusCode::from_u16(status).unwrap(), reply).into_response()
}

/// A listener that drops new connections while the fake is in [`Mode::Drop`].
struct Flaky {
    inner: TcpListener,
    fake: Arc<Fake>,
}

impl axum::serve::Listener for Flaky {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Ok((socket, addr)) = self.inner.accept().await else {
                continue;
            };
            if self.fake.mode() != Mode::Drop {
                return (socket, addr);
            }
            drop(socket);
            let _ = self.fake.seen.send(Seen {
                method: Method::POST,
                path: "<dropped>".into(),
                headers: HashMap::new(),
                body: String::new(),
                status: 0,
            });
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

async fn fake(mode: Mode) -> (Arc<Fake>, Url, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let fake = Arc::new(Fake {
        mode: Mutex::new(mode),
        replies: Mutex::new(HashMap::new()),
        seen: tx,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let app = Router::new().fallback(handle).with_state(fake.clone());
    let flaky = Flaky {
        inner: listener,
        fake: fake.clone(),
    };
    tokio::spawn(async move { axum::serve(flaky, app).await });
    (fake, url, rx)
}

fn options(base: &Url, queues: &[&str], multi_queue: bool) -> ClientOptions {
    ClientOptions {
        base: base.clone(),
        password: "hunter2".into(),
        executor_name: "exec-1".into(),
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        multi_queue,
        outage_limit: DEFAULT_OUTAGE_LIMIT,
    }
}

/// Retries within milliseconds, so that tests wait on attempts, not time.
fn quick() -> Tuning {
    Tuning {
        first_retry_delay: Duration::from_millis(1),
        max_retry_delay: Duration::from_millis(4),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
    }
}

fn single(base: &Url) -> QueueClient {
    QueueClient::with_tuning(options(base, &["batches"], false), quick()).unwrap()
}

fn job(client: &QueueClient, queue: &str, id: i64) -> (JobClient, CancellationToken) {
    let gone = CancellationToken::new();
    let job = client.job(
        JobRef {
            queue: queue.into(),
            id,
        },
        Some(format!("tok{id}")),
        gone.clone(),
    );
    (job, gone)
}

fn entry() -> ExecutionLogEntry {
    ExecutionLogEntry {
        key: "step.kubernetes.step.0.run".into(),
        command: vec!["make".into()],
        start_time: "2026-01-02T03:04:05Z".into(),
        exit_code: None,
        out: Some("stdout: hi\n".into()),
        duration_ms: None,
    }
}

/// The next `n` requests the fake saw.
async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>, n: usize) -> Vec<Seen> {
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(seen.recv().await.expect("the fake queue stopped"));
    }
    got
}

fn assert_job_headers(s: &Seen, id: &str) {
    assert_eq!(s.method, Method::POST, "{s:?}");
    assert_eq!(
        s.header("authorization"),
        Some(format!("Bearer tok{id}").as_str()),
        "{s:?}"
    );
    assert_eq!(s.header("x-sourcegraph-job-id"), Some(id), "{s:?}");
    assert_eq!(
        s.header("x-sourcegraph-executor-name"),
        Some("exec-1"),
        "{s:?}"
    );
    assert_eq!(s.header("content-type"), Some("application/json"), "{s:?}");
}

#[tokio::test]
async fn single_queue_calls_name_the_queue_in_their_paths() {
    let (fake, url, mut seen) = fake(Mode::Up).await;
    let payload = r#"{"version":2,"id":"42","token":"tok42","repositoryName":"github.com/acme/api","dockerSteps":[]}"#;
    fake.reply("/.executors/test/auth", 200, "ok");
    fake.reply("/.executors/queue/batches/dequeue", 200, payload);
    fake.reply(
        "/.executors/queue/batches/heartbeat",
        200,
        r#"{"knownIds":["42"],"cancelIds":[43]}"#,
    );
    fake.reply("/.executors/queue/batches/addExecutionLogEntry", 200, "7");
    let client = single(&url);

    client.test_auth().await.unwrap();
    let [s] = <[Seen; 1]>::try_from(next(&mut seen, 1).await).unwrap();
    assert_eq!(
        (s.method.clone(), s.path.as_str()),
        (Method::GET, "/.executors/test/auth")
    );
    assert_eq!(s.header("authorization"), Some("token-executor hunter2"));

    let got = client.dequeue().await.unwrap().unwrap();
    let batches42 = JobRef {
        queue: "batches".into(),
        id: 42,
    };
    assert_eq!(got.job, batches42);
    assert_eq!(got.token.as_deref(), Some("tok42"));
    assert_eq!(got.body, payload);
    let [s] = <[Seen; 1]>::try_from(next(&mut seen, 1).await).unwrap();
    assert_eq!(
        (s.method.clone(), s.path.as_str()),
        (Method::POST, "/.executors/queue/batches/dequeue")
    );
    assert_eq!(s.header("authorization"), Some("token-executor hunter2"));
    assert_eq!(s.header("content-type"), Some("application/json"));
    let body = s.json();
    assert_eq!(body["executorName"], "exec-1");
    assert!(!body["version"].as_str().unwrap().is_empty());
    assert!(body.get("queues").is_none(), "{body}");

    let beat = client
        .heartbeat(std::slice::from_ref(&batches42))
        .await
        .unwrap();
    assert_eq!(beat.known, std::slice::from_ref(&batches42));
    assert_eq!(
        beat.cancel,
        [JobRef {
            queue: "batches".into(),
            id: 43
        }]
    );
    let [s] = <[Seen; 1]>::try_from(next(&mut seen, 1).await).unwrap();
    assert_eq!(s.path, "/.executors/queue/batches/heartbeat");
    assert_eq!(s.header("authorization"), Some("token-executor hunter2"));
    let body = s.json();
    assert_eq!(body["version"], "V2");
    assert_eq!(body["executorName"], "exec-1");
    assert_eq!(body["jobIds"], json!(["42"]));
    assert_eq!(body["os"], std::env::consts::OS);
    assert!(body.get("queueNames").is_none(), "{body}");

    let (job, _gone) = job(&client, "batches", 42);
    assert_eq!(job.job(), &batches42);
    assert_eq!(job.add_entry(&entry()).await.unwrap(), 7);
    let mut closed = entry();
    closed.exit_code = Some(0);
    closed.duration_ms = Some(1200);
    job.update_entry(7, &closed).await.unwrap();
    job.mark_complete().await.unwrap();
    job.mark_errored("the node went away").await.unwrap();
    job.mark_failed("step 0 failed").await.unwrap();
    let got = next(&mut seen, 5).await;
    for s in &got {
        assert_job_headers(s, "42");
    }
    let calls: Vec<(&str, Value)> = got.iter().map(|s| (s.path.as_str(), s.json())).collect();
    let e = json!({"key": "step.kubernetes.step.0.run", "command": ["make"], "startTime": "2026-01-02T03:04:05Z", "out": "stdout: hi\n"});
    let with = |extra: Value| {
        let mut v = e.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    assert_eq!(
        calls,
        [
            (
                "/.executors/queue/batches/addExecutionLogEntry",
                with(json!({"executorName": "exec-1", "jobId": 42}))
            ),
            (
                "/.executors/queue/batches/updateExecutionLogEntry",
                with(
                    json!({"executorName": "exec-1", "jobId": 42, "entryId": 7, "exitCode": 0, "durationMs": 1200})
                )
            ),
            (
                "/.executors/queue/batches/markComplete",
                json!({"executorName": "exec-1", "jobId": 42})
            ),
            (
                "/.executors/queue/batches/markErrored",
                json!({"executorName": "exec-1", "jobId": 42, "errorMessage": "the node went away"})
            ),
            (
                "/.executors/queue/batches/markFailed",
                json!({"executorName": "exec-1", "jobId": 42, "errorMessage": "step 0 failed"})
            ),
        ]
    );
}

#[tokio::test]
async fn multi_queue_calls_name_the_queues_in_their_bodies_and_the_job_in_its_path() {
    let (fake, url, mut seen) = fake(Mode::Up).await;
    fake.reply(
        "/.executors/queue/dequeue",
        200,
        r#"{"id":5,"queue":"codeintel","token":"tok5"}"#,
    );
    fake.reply(
        "/.executors/queue/heartbeat",
        200,
        r#"{"knownIds":["5-codeintel"],"cancelIds":["9-batches"]}"#,
    );
    let client =
        QueueClient::with_tuning(options(&url, &["batches", "codeintel"], true), quick()).unwrap();

    let got = client.dequeue().await.unwrap().unwrap();
    let codeintel5 = JobRef {
        queue: "codeintel".into(),
        id: 5,
    };
    assert_eq!(got.job, codeintel5);
    let [s] = <[Seen; 1]>::try_from(next(&mut seen, 1).await).unwrap();
    assert_eq!(s.path, "/.executors/queue/dequeue");
    assert_eq!(s.header("authorization"), Some("token-executor hunter2"));
    assert_eq!(s.json()["queues"], json!(["batches", "codeintel"]));

    let beat = client
        .heartbeat(std::slice::from_ref(&codeintel5))
        .await
        .unwrap();
    assert_eq!(beat.known, std::slice::from_ref(&codeintel5));
    assert_eq!(
        beat.cancel,
        [JobRef {
            queue: "batches".into(),
            id: 9
        }]
    );
    let [s] = <[Seen; 1]>::try_from(next(&mut seen, 1).await).unwrap();
    assert_eq!(s.path, "/.executors/queue/heartbeat");
    let body = s.json();
    assert_eq!(body["executorName"], "exec-1");
    assert_eq!(body["queueNames"], json!(["batches", "codeintel"]));
    assert_eq!(
        body["jobIdsByQueue"],
        json!([{"queueName": "batches", "jobIds": []}, {"queueName": "codeintel", "jobIds": ["5"]}])
    );
    assert_eq!(body["executorVersion"], env!("CARGO_PKG_VERSION"));

    let (job, _gone) = job(&client, "codeintel", 5);
    job.mark_complete().await.unwrap();
    let [s] = <[Seen; 1]>::try_from(next(&mut seen, 1).await).unwrap();
    assert_eq!(s.path, "/.executors/queue/codeintel/markComplete");
    assert_job_headers(&s, "5");

    // Without its queue, a job of a multi-queue dequeue cannot be addressed.
    fake.reply("/.executors/queue/dequeue", 200, r#"{"id":6}"#);
    let err = client.dequeue().await.unwrap_err();
    assert!(matches!(err, ClientError::BadPayload { .. }), "{err}");
    assert!(err.to_string().contains("job 6 has no `queue`"), "{err}");
}

#[tokio::test]
async fn an_empty_queue_answers_204() {
    let (_fake, url, _seen) = fake(Mode::Up).await;
    assert_eq!(single(&url).dequeue().await.unwrap(), None);
}

#[tokio::test]
async fn a_payload_broken_elsewhere_still_names_its_job() {
    let (fake, url, _seen) = fake(Mode::Up).await;
    let client = single(&url);
    let path = "/.executors/queue/batches/dequeue";
    let broken = r#"{"id":9,"token":"tok9","dockerSteps":5,"files":"nope"}"#;
    fake.reply(path, 200, broken);
    let got = client.dequeue().await.unwrap().unwrap();
    assert_eq!((got.job.id, got.token.as_deref()), (9, Some("tok9")));
    assert_eq!(got.body, broken);
    assert!(
        JobPayload::parse(&got.body).is_err(),
        "the payload should be refused later"
    );

    fake.reply(path, 200, r#"{"id":" 10 "}"#);
    assert_eq!(client.dequeue().await.unwrap().unwrap().job.id, 10);

    for (body, want) in [
        (r#"{"id":"ten"}"#, r#"`id` "ten" is not an integer"#),
        (r#"{"token":"t"}"#, "no `id`"),
        ("<html>", "not a JSON object"),
        ("", "empty"),
    ] {
        fake.reply(path, 200, body);
        let err = client.dequeue().await.unwrap_err();
        assert!(
            matches!(err, ClientError::BadPayload { .. }),
            "{body}: {err}"
        );
        let text = err.to_string();
        assert!(text.contains(want) && text.contains(path), "{body}: {text}");
    }
}

#[tokio::test]
async fn a_job_without_a_token_uses_the_executor_secret() {
    let (_fake, url, mut seen) = fake(Mode::Up).await;
    let client = single(&url);
    let job = client.job(
        JobRef {
            queue: "batches".into(),
            id: 3,
        },
        None,
        CancellationToken::new(),
    );
    job.mark_complete().await.unwrap();
    let [s] = <[Seen; 1]>::try_from(next(&mut seen, 1).await).unwrap();
    assert_eq!(s.header("authorization"), Some("token-executor hunter2"));
    assert_eq!(s.header("x-sourcegraph-job-id"), Some("3"));
}

#[tokio::test]
async fn per_job_calls_ride_out_an_outage_of_503s() {
    let (fake, url, mut seen) = fake(Mode::Unavailable).await;
    fake.reply("/.executors/queue/batches/addExecutionLogEntry", 200, "11");
    let client = single(&url);
    let (job, _gone) = job(&client, "batches", 4);
    let call = tokio::spawn(async move { job.add_entry(&entry()).await });
    let refused = next(&mut seen, 3).await;
    assert!(refused.iter().all(|s| s.status == 503), "{refused:?}");
    fake.set_mode(Mode::Up);
    assert_eq!(call.await.unwrap().unwrap(), 11);
    let mut all = refused;
    while let Ok(s) = seen.try_recv() {
        all.push(s);
    }
    let served: Vec<&Seen> = all.iter().filter(|s| s.status == 200).collect();
    assert_eq!(served.len(), 1, "{all:?}");
    assert!(
        all.iter().all(|s| s.body == all[0].body),
        "every attempt sends the same entry"
    );
    assert_eq!(served[0].json()["out"], "stdout: hi\n");
}

#[tokio::test]
async fn per_job_calls_ride_out_dropped_connections() {
    let (fake, url, mut seen) = fake(Mode::Drop).await;
    let client = single(&url);
    let (job, _gone) = job(&client, "batches", 4);
    let call = tokio::spawn(async move { job.update_entry(8, &entry()).await });
    let dropped = next(&mut seen, 3).await;
    assert!(dropped.iter().all(|s| s.path == "<dropped>"), "{dropped:?}");
    fake.set_mode(Mode::Up);
    call.await.unwrap().unwrap();
    let served = loop {
        let s = seen.recv().await.unwrap();
        if s.path != "<dropped>" {
            break s;
        }
    };
    assert_eq!(
        served.path,
        "/.executors/queue/batches/updateExecutionLogEntry"
    );
    assert_eq!(served.json()["entryId"], 8);
    assert!(seen.try_recv().is_err(), "one update reached the queue");
}

#[tokio::test]
async fn per_job_calls_retry_after_a_timeout() {
    let (fake, url, mut seen) = fake(Mode::Hang).await;
    let tuning = Tuning {
        request_timeout: Duration::from_millis(200),
        ..quick()
    };
    let client = QueueClient::with_tuning(options(&url, &["batches"], false), tuning).unwrap();
    let (job, _gone) = job(&client, "batches", 4);
    let call = tokio::spawn(async move { job.mark_failed("cancelled").await });
    next(&mut seen, 2).await;
    fake.set_mode(Mode::Up);
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_4xx_is_not_retried_and_is_named() {
    let (fake, url, mut seen) = fake(Mode::Up).await;
    fake.reply(
        "/.executors/queue/batches/markComplete",
        404,
        "job not found",
    );
    let client = single(&url);
    let (job, _gone) = job(&client, "batches", 4);
    let err = job.mark_complete().await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(
        err.to_string(),
        "markComplete /.executors/queue/batches/markComplete: HTTP 404: job not found"
    );
    next(&mut seen, 1).await;
    assert!(seen.try_recv().is_err(), "a 4xx was retried");
}

#[tokio::test]
async fn a_gone_job_stops_its_retries() {
    let (_fake, url, mut seen) = fake(Mode::Unavailable).await;
    let client = single(&url);
    let (job, gone) = job(&client, "batches", 4);
    let call = tokio::spawn(async move { job.add_entry(&entry()).await });
    next(&mut seen, 2).await;
    gone.cancel();
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::Gone { .. }), "{err}");
    assert!(
        err.to_string().contains("job batches/4 is no longer known"),
        "{err}"
    );
}

#[tokio::test]
async fn retries_end_at_the_outage_limit() {
    let (_fake, url, _seen) = fake(Mode::Unavailable).await;
    let mut opts = options(&url, &["batches"], false);
    opts.outage_limit = Duration::from_millis(40);
    let client = QueueClient::with_tuning(opts, quick()).unwrap();
    let (job, _gone) = job(&client, "batches", 4);
    let err = job.mark_complete().await.unwrap_err();
    let ClientError::OutageLimit { attempts, .. } = &err else {
        panic!("{err}");
    };
    assert!(*attempts >= 2, "{err}");
    assert!(
        err.to_string().contains("HTTP 503: the queue is down"),
        "{err}"
    );
}

#[tokio::test]
async fn polling_calls_make_one_attempt() {
    let (_fake, url, mut seen) = fake(Mode::Unavailable).await;
    let client = single(&url);
    let err = client.dequeue().await.unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
    assert!(
        err.to_string()
            .starts_with("dequeue /.executors/queue/batches/dequeue: HTTP 503"),
        "{err}"
    );
    assert_eq!(client.heartbeat(&[]).await.unwrap_err().status(), Some(503));
    assert_eq!(client.test_auth().await.unwrap_err().status(), Some(503));
    next(&mut seen, 3).await;
    assert!(seen.try_recv().is_err(), "a polling call was retried");
}

#[tokio::test]
async fn an_uploaded_log_survives_an_outage_whole() {
    let (fake, url, mut seen) = fake(Mode::Unavailable).await;
    fake.reply("/.executors/queue/batches/addExecutionLogEntry", 200, "1");
    let client = single(&url);
    let (job, _gone) = job(&client, "batches", 4);
    let (tx, rx) = mpsc::channel(8);
    let line = |stream, text: &str| LogRecord {
        stream,
        text: text.into(),
    };
    for event in [
        LogEvent::Opened {
            entry: 0,
            key: "step.kubernetes.step.0.run".into(),
            command: vec!["make".into()],
            start: Timestamp::UNIX_EPOCH,
        },
        LogEvent::Lines {
            entry: 0,
            records: vec![
                line(Stream::Stdout, "one"),
                line(Stream::Stdout, "two"),
                line(Stream::Stderr, "three"),
            ],
            written: vec![Timestamp::now(); 3],
        },
        LogEvent::Closed {
            entry: 0,
            exit_code: 2,
            duration: Duration::from_secs(3),
        },
    ] {
        tx.send(event).await.unwrap();
    }
    drop(tx);
    let uploading = tokio::spawn(async move { upload(rx, &job, &UploadPolicy::default()).await });
    next(&mut seen, 3).await;
    fake.set_mode(Mode::Up);
    let uploaded = uploading.await.unwrap();
    assert!(uploaded.errors.is_empty(), "{:?}", uploaded.errors);
    let mut served = Vec::new();
    while let Ok(s) = seen.try_recv() {
        if s.status != 503 {
            served.push(s);
        }
    }
    let paths: Vec<&str> = served.iter().map(|s| s.path.as_str()).collect();
    // The entry had ended before its first send went through: a small
    // entry's add carries all of it, and nothing is left to update.
    assert_eq!(paths, ["/.executors/queue/batches/addExecutionLogEntry"]);
    let last = served[0].json();
    assert_eq!(last["out"], "stdout: one\nstdout: two\nstderr: three\n");
    assert_eq!(
        (last["exitCode"].clone(), last["durationMs"].clone()),
        (json!(2), json!(3000))
    );
}
