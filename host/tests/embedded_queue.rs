#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The embedded queue over real HTTP: the protocol, its auth, the reaper, persistence, the user API and the git route.

use std::path::Path;
use std::time::{Duration, SystemTime};

use executor::embedded::model::{
    ErrorBody, ExecutorList, JobDetail, JobList, JobState, JobSummary, Repository, Submitted,
};
use executor::embedded::{Embedded, EmbeddedError, EmbeddedOptions};
use executor::job::log::LogEvent;
use executor::plugins::{LogRecord, Stream};
use executor::queue::client::{ClientOptions, JobRef, QueueClient};
use executor::queue::upload::{UploadPolicy, upload};
use executor::queue::wire::{HeartbeatReply, JobId, MultiHeartbeatReply};
use k8s_openapi::jiff::Timestamp;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Enough for any answer that should come at once; a hang fails instead of blocking the suite.
const PATIENCE: Duration = Duration::from_secs(30);

struct Server {
    url: String,
    queue: Embedded,
    http: reqwest::Client,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), EmbeddedError>>,
}

fn options(dir: &Path) -> EmbeddedOptions {
    EmbeddedOptions {
        db_path: dir.join("queue.db"),
        executor_password: Some("hunter2".into()),
        api_token: Some("api-token".into()),
        ..EmbeddedOptions::default()
    }
}

async fn start(opts: EmbeddedOptions) -> Server {
    let queue = Embedded::open(opts).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(queue.clone().serve(listener, shutdown.clone()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PATIENCE * 3)
        .build()
        .unwrap();
    Server {
        url,
        queue,
        http,
        shutdown,
        task,
    }
}

/// What a dequeue handed out.
#[derive(Clone, Debug)]
struct Held {
    id: i64,
    queue: String,
    token: String,
    payload: Value,
}

impl Server {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    /// A call with the shared executor secret.
    fn executor(&self, path: &str) -> RequestBuilder {
        self.http
            .post(format!("{}/.executors/{path}", self.url))
            .header("Authorization", "token-executor hunter2")
    }

    /// A per-job call with the job's token.
    fn job(&self, path: &str, job: &Held, executor: &str) -> RequestBuilder {
        self.http
            .post(format!(
                "{}/.executors/queue/{}/{path}",
                self.url, job.queue
            ))
            .bearer_auth(&job.token)
            .header("X-Sourcegraph-Job-ID", job.id.to_string())
            .header("X-Sourcegraph-Executor-Name", executor)
    }

    fn api(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1/{path}", self.url))
            .bearer_auth("api-token")
    }

    async fn submit(&self, body: Value) -> Submitted {
        let resp = self
            .api(Method::POST, "jobs")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.unwrap()
    }

    async fn submit_short(&self, queue: &str) -> i64 {
        let body = json!({"queue": queue, "image": "alpine:3", "commands": ["echo hi"]});
        self.submit(body).await.id
    }

    async fn dequeue(&self, queue: &str, executor: &str) -> Option<Held> {
        let body = json!({"executorName": executor, "version": "dev"});
        let resp = self
            .executor(&format!("queue/{queue}/dequeue"))
            .json(&body)
            .send()
            .await
            .unwrap();
        held(resp).await
    }

    async fn detail(&self, id: i64, query: &str) -> JobDetail {
        let resp = self
            .api(Method::GET, &format!("jobs/{id}{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    async fn state(&self, id: i64) -> JobSummary {
        self.detail(id, "").await.summary
    }
}

async fn held(resp: reqwest::Response) -> Option<Held> {
    match resp.status() {
        StatusCode::NO_CONTENT => {
            assert!(resp.bytes().await.unwrap().is_empty(), "204 has no body");
            None
        }
        StatusCode::OK => {
            let payload: Value = resp.json().await.unwrap();
            Some(Held {
                id: payload["id"].as_i64().unwrap(),
                queue: payload["queue"].as_str().unwrap().to_owned(),
                token: payload["token"].as_str().unwrap().to_owned(),
                payload,
            })
        }
        other => panic!("dequeue answered {other}: {}", resp.text().await.unwrap()),
    }
}

async fn error(resp: reqwest::Response, status: StatusCode, needle: &str) {
    assert_eq!(resp.status(), status, "expected {status} for {needle:?}");
    let body: ErrorBody = resp.json().await.unwrap();
    assert!(
        body.error.contains(needle),
        "{needle:?} not in {:?}",
        body.error
    );
}

fn entry(out: &str) -> Value {
    json!({"key": "step.kubernetes.main", "command": ["sh", "-c", "echo hi"],
           "startTime": "2026-01-01T00:00:00Z", "out": out})
}

#[tokio::test]
async fn the_auth_test_needs_the_executor_secret() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(options(dir.path())).await;
    let url = format!("{}/.executors/test/auth", s.url);
    let ok = s
        .http
        .get(&url)
        .header("Authorization", "token-executor hunter2");
    assert_eq!(ok.send().await.unwrap().status(), StatusCode::OK);
    for auth in [None, Some("token-executor wrong"), Some("Bearer hunter2")] {
        let mut req = s.http.get(&url);
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        error(req.send().await.unwrap(), StatusCode::UNAUTHORIZED, "").await;
    }
    s.stop().await;
}

#[tokio::test]
async fn dequeue_hands_out_the_oldest_job_with_a_fresh_token_then_204() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(options(dir.path())).await;
    let first = s.submit_short("batches").await;
    let second = s.submit_short("batches").await;
    let other = s.submit_short("codeintel").await;

    let job = s.dequeue("batches", "e1").await.unwrap();
    assert_eq!((job.id, job.queue.as_str()), (first, "batches"));
    assert!(job.token.len() == 40 && job.token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(job.payload["dockerSteps"][0]["key"], "main");
    let summary = s.state(first).await;
    assert_eq!(
        (summary.state, summary.executor.as_deref()),
        (JobState::Processing, Some("e1"))
    );
    let next = s.dequeue("batches", "e1").await.unwrap();
    assert_eq!(next.id, second);
    assert_ne!(next.token, job.token);
    assert!(s.dequeue("batches", "e1").await.is_none());

    let multi = |queues: Value| {
        s.executor("queue/dequeue")
            .json(&json!({"executorName": "e2", "version": "dev", "queues": queues}))
            .send()
    };
    let taken = held(multi(json!(["batches", "codeintel"])).await.unwrap())
        .await
        .unwrap();
    assert_eq!((taken.id, taken.queue.as_str()), (other, "codeintel"));
    assert!(
        held(multi(json!(["batches", "codeintel"])).await.unwrap())
            .await
            .is_none()
    );
    error(
        multi(json!([])).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "`queues`",
    )
    .await;
    error(
        multi(json!(["Bad_Queue"])).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "not a queue name",
    )
    .await;

    let bad = s
        .executor("queue/batches/dequeue")
        .body("{")
        .send()
        .await
        .unwrap();
    error(bad, StatusCode::BAD_REQUEST, "not valid").await;
    let nameless = s
        .executor("queue/batches/dequeue")
        .json(&json!({"executorName": " "}))
        .send();
    error(
        nameless.await.unwrap(),
        StatusCode::BAD_REQUEST,
        "`executorName` is empty",
    )
    .await;
    let unauthorized = s
        .http
        .post(format!("{}/.executors/queue/batches/dequeue", s.url));
    let resp = unauthorized
        .json(&json!({"executorName": "e"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn heartbeats_name_the_jobs_still_held_and_those_to_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(options(dir.path())).await;
    s.submit_short("batches").await;
    s.submit_short("batches").await;
    let a = s.dequeue("batches", "e1").await.unwrap();
    let b = s.dequeue("batches", "e1").await.unwrap();
    let beat = |executor: &str, ids: Value| {
        s.executor("queue/batches/heartbeat")
            .json(
                &json!({"version": "V2", "executorName": executor, "jobIds": ids,
                          "os": "linux", "architecture": "amd64", "executorVersion": "dev"}),
            )
            .send()
    };
    // Ids arrive as ints or strings; unknown ones are simply not known.
    let resp = beat("e1", json!([a.id, b.id.to_string(), 999]))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let reply: HeartbeatReply = resp.json().await.unwrap();
    assert_eq!(reply.known_ids, [JobId(a.id), JobId(b.id)]);
    assert!(reply.cancel_ids.is_empty());

    let cancel = s
        .api(Method::POST, &format!("jobs/{}/cancel", b.id))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::ACCEPTED);
    let reply: HeartbeatReply = beat("e1", json!([a.id, b.id]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (reply.known_ids.len(), reply.cancel_ids),
        (2, vec![JobId(b.id)])
    );
    let reply: HeartbeatReply = beat("e2", json!([a.id, b.id]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        reply.known_ids.is_empty(),
        "another executor does not hold them"
    );

    let multi = s
        .executor("queue/heartbeat")
        .json(&json!({"executorName": "e1", "queueNames": ["batches", "codeintel"],
                      "jobIdsByQueue": [{"queueName": "batches", "jobIds": [a.id.to_string(), b.id]},
                                        {"queueName": "codeintel", "jobIds": [a.id]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(multi.status(), StatusCode::OK);
    let reply: MultiHeartbeatReply = multi.json().await.unwrap();
    let known: Vec<String> = reply.known_ids.iter().map(ToString::to_string).collect();
    assert_eq!(
        known,
        [format!("{}-batches", a.id), format!("{}-batches", b.id)]
    );
    assert_eq!(reply.cancel_ids[0].to_string(), format!("{}-batches", b.id));

    let executors: ExecutorList = s
        .api(Method::GET, "executors")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = executors
        .executors
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["e1", "e2"]);
    let resp = beat("", json!([])).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn log_entries_and_marks_are_for_the_executor_that_holds_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(options(dir.path())).await;
    let id = s.submit_short("batches").await;
    let job = s.dequeue("batches", "e1").await.unwrap();
    assert_eq!(job.id, id);

    let mut add = entry("stdout: hi");
    add["executorName"] = json!("e1");
    add["jobId"] = json!(id);
    let resp = s
        .job("addExecutionLogEntry", &job, "e1")
        .json(&add)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let entry_id: i64 = serde_json::from_str(&resp.text().await.unwrap()).unwrap();

    let mut update = entry("stdout: hi\nstdout: bye");
    update["executorName"] = json!("e1");
    update["jobId"] = json!(id.to_string());
    update["entryId"] = json!(entry_id);
    update["exitCode"] = json!(0);
    update["durationMs"] = json!(1500);
    let resp = s
        .job("updateExecutionLogEntry", &job, "e1")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // Another executor name in the body: the job is not its to write.
    let mut foreign = add.clone();
    foreign["executorName"] = json!("e2");
    let resp = s
        .job("addExecutionLogEntry", &job, "e2")
        .json(&foreign)
        .send()
        .await
        .unwrap();
    error(
        resp,
        StatusCode::INTERNAL_SERVER_ERROR,
        "not processing in queue batches for executor e2",
    )
    .await;
    let mut foreign_update = update.clone();
    foreign_update["executorName"] = json!("e2");
    let resp = s
        .job("updateExecutionLogEntry", &job, "e2")
        .json(&foreign_update)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let mut missing_entry = update.clone();
    missing_entry["entryId"] = json!(entry_id + 100);
    let resp = s
        .job("updateExecutionLogEntry", &job, "e1")
        .json(&missing_entry)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let resp = s
        .job("markComplete", &job, "e2")
        .json(&json!({"executorName": "e2", "jobId": id}))
        .send()
        .await
        .unwrap();
    error(resp, StatusCode::NOT_FOUND, "not processing").await;
    let elsewhere = Held {
        queue: "codeintel".into(),
        ..job.clone()
    };
    let resp = s
        .job("markComplete", &elsewhere, "e1")
        .json(&json!({"executorName": "e1", "jobId": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "the job is not in that queue"
    );

    let done = json!({"executorName": "e1", "jobId": id});
    let resp = s
        .job("markComplete", &job, "e1")
        .json(&done)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // The token died with the job.
    let resp = s
        .job("markComplete", &job, "e1")
        .json(&done)
        .send()
        .await
        .unwrap();
    error(resp, StatusCode::UNAUTHORIZED, "unknown").await;

    let detail = s.detail(id, "").await;
    assert_eq!(detail.summary.state, JobState::Completed);
    assert!(detail.summary.finished_at.is_some());
    assert_eq!(detail.entries.len(), 1);
    let e = &detail.entries[0];
    assert_eq!(
        (
            e.id,
            e.entry.key.as_str(),
            e.entry.exit_code,
            e.entry.duration_ms
        ),
        (entry_id, "step.kubernetes.main", Some(0), Some(1500))
    );
    assert_eq!(e.entry.out.as_deref(), Some("stdout: hi\nstdout: bye"));
    assert!(detail.payload.get("token").is_none());
    assert_eq!(detail.payload["id"], id);
    s.stop().await;
}

#[tokio::test]
async fn per_job_calls_refuse_what_the_protocol_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(options(dir.path())).await;
    let a_id = s.submit_short("batches").await;
    let b_id = s.submit_short("batches").await;
    let a = s.dequeue("batches", "e1").await.unwrap();
    let b = s.dequeue("batches", "e1").await.unwrap();
    let url = format!("{}/.executors/queue/batches/markFailed", s.url);
    let body = json!({"executorName": "e1", "jobId": a_id, "errorMessage": "boom"});
    let call = |auth: Option<String>, id: Option<&str>, name: Option<&str>| {
        let mut req = s.http.post(&url).json(&body);
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        if let Some(id) = id {
            req = req.header("X-Sourcegraph-Job-ID", id);
        }
        if let Some(name) = name {
            req = req.header("X-Sourcegraph-Executor-Name", name);
        }
        req.send()
    };
    let a_str = a_id.to_string();
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    let cases = [
        (
            None,
            Some(a_str.as_str()),
            Some("e1"),
            StatusCode::UNAUTHORIZED,
            "missing",
        ),
        (
            Some("Basic abc".into()),
            Some(&a_str),
            Some("e1"),
            StatusCode::UNAUTHORIZED,
            "not accepted",
        ),
        (
            bearer("0000"),
            Some(&a_str),
            Some("e1"),
            StatusCode::UNAUTHORIZED,
            "unknown",
        ),
        (
            Some("token-executor wrong".into()),
            None,
            None,
            StatusCode::UNAUTHORIZED,
            "wrong",
        ),
        (
            bearer(&a.token),
            None,
            Some("e1"),
            StatusCode::BAD_REQUEST,
            "X-Sourcegraph-Job-ID",
        ),
        (
            bearer(&a.token),
            Some("abc"),
            Some("e1"),
            StatusCode::BAD_REQUEST,
            "X-Sourcegraph-Job-ID",
        ),
        (
            bearer(&a.token),
            Some(&a_str),
            Some(""),
            StatusCode::BAD_REQUEST,
            "X-Sourcegraph-Executor-Name",
        ),
        (
            bearer(&a.token),
            Some(&a_str),
            None,
            StatusCode::BAD_REQUEST,
            "X-Sourcegraph-Executor-Name",
        ),
        (
            bearer(&b.token),
            Some(&a_str),
            Some("e1"),
            StatusCode::FORBIDDEN,
            "not the token of job",
        ),
    ];
    for (auth, id, name, status, needle) in cases {
        error(call(auth, id, name).await.unwrap(), status, needle).await;
    }
    // b's own token, but a body about job a.
    let b_str = b_id.to_string();
    let resp = call(bearer(&b.token), Some(&b_str), Some("e1"))
        .await
        .unwrap();
    error(
        resp,
        StatusCode::FORBIDDEN,
        &format!("is for job {b_id}, not job {a_id}"),
    )
    .await;
    assert_eq!(
        s.state(a_id).await.state,
        JobState::Processing,
        "nothing was written"
    );

    // The shared secret stands in for a job token.
    let resp = call(Some("token-executor hunter2".into()), None, None)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let a_now = s.state(a_id).await;
    assert_eq!(
        (a_now.state, a_now.message.as_deref()),
        (JobState::Failed, Some("boom"))
    );
    s.stop().await;
}

#[tokio::test]
async fn a_silent_executor_costs_three_resets_then_the_job_fails() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(options(dir.path())).await;
    let id = s.submit_short("batches").await;
    let timeout = EmbeddedOptions::default().heartbeat_timeout;
    for reset in 1..=4u32 {
        let job = s.dequeue("batches", "e1").await.unwrap();
        assert_eq!(job.id, id);
        let store = s.queue.store();
        assert!(
            store.reset_stale(SystemTime::now()).unwrap().is_empty(),
            "a fresh job stays"
        );
        let later = SystemTime::now() + timeout + Duration::from_secs(1);
        assert_eq!(store.reset_stale(later).unwrap().len(), 1);
        let summary = s.state(id).await;
        if reset <= 3 {
            assert_eq!((summary.state, summary.attempts), (JobState::Queued, reset));
        } else {
            assert_eq!(summary.state, JobState::Failed);
            let message = summary.message.unwrap();
            assert!(
                message.contains("executor e1 stopped heartbeating"),
                "{message}"
            );
        }
        // The old owner can no longer write.
        let resp = s
            .job("markComplete", &job, "e1")
            .json(&json!({"executorName": "e1", "jobId": id}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(s.dequeue("batches", "e1").await.is_none());
    s.stop().await;
}

#[tokio::test]
async fn the_reaper_requeues_a_job_whose_executor_went_silent() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(EmbeddedOptions {
        heartbeat_timeout: Duration::ZERO,
        reaper_interval: Duration::from_millis(20),
        ..options(dir.path())
    })
    .await;
    let id = s.submit_short("batches").await;
    s.dequeue("batches", "e1").await.unwrap();
    // The long poll wakes on each change: no sleeping until the reaper has run.
    let mut detail = s.detail(id, "").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while detail.summary.state != JobState::Queued {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reset: {detail:?}"
        );
        detail = s
            .detail(id, &format!("?since={}&wait=30", detail.version))
            .await;
    }
    assert_eq!(detail.summary.attempts, 1);
    assert!(
        detail
            .summary
            .message
            .unwrap()
            .contains("stopped heartbeating")
    );
    s.stop().await;
}

#[tokio::test]
async fn an_errored_job_is_requeued_and_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(options(dir.path())).await;
    let id = s.submit_short("batches").await;
    let first = s.dequeue("batches", "e1").await.unwrap();
    let errored = json!({"executorName": "e1", "jobId": id, "errorMessage": "pod evicted"});
    let resp = s
        .job("markErrored", &first, "e1")
        .json(&errored)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let summary = s.state(id).await;
    assert_eq!(
        (summary.state, summary.attempts, summary.message.as_deref()),
        (JobState::Queued, 1, Some("pod evicted"))
    );

    let second = s.dequeue("batches", "e2").await.unwrap();
    assert_eq!(second.id, id);
    let resp = s
        .job("markFailed", &first, "e1")
        .json(&errored)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "the first attempt's token is dead"
    );
    let failed = json!({"executorName": "e2", "jobId": id, "errorMessage": "exit code 3"});
    let resp = s
        .job("markFailed", &second, "e2")
        .json(&failed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let summary = s.state(id).await;
    assert_eq!(
        (summary.state, summary.message.as_deref()),
        (JobState::Failed, Some("exit code 3"))
    );
    s.stop().await;
}

#[tokio::test]
async fn jobs_entries_and_generated_secrets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        db_path: dir.path().join("queue.db"),
        ..EmbeddedOptions::default()
    };
    let s = start(opts.clone()).await;
    assert!(s.queue.generated());
    let (password, token) = (
        s.queue.executor_password().to_owned(),
        s.queue.api_token().to_owned(),
    );
    assert_ne!(password, token);
    let http = &s.http;
    let submit = |body: Value| {
        http.post(format!("{}/api/v1/jobs", s.url))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let short = json!({"queue": "batches", "image": "alpine", "commands": ["true"]});
    let done: Submitted = submit(short.clone()).await.unwrap().json().await.unwrap();
    let waiting: Submitted = submit(short.clone()).await.unwrap().json().await.unwrap();
    let take = http
        .post(format!("{}/.executors/queue/batches/dequeue", s.url))
        .header("Authorization", format!("token-executor {password}"))
        .json(&json!({"executorName": "e1"}));
    let job = held(take.send().await.unwrap()).await.unwrap();
    assert_eq!(job.id, done.id);
    let mut add = entry("stdout: kept");
    add["executorName"] = json!("e1");
    add["jobId"] = json!(job.id);
    assert_eq!(
        s.job("addExecutionLogEntry", &job, "e1")
            .json(&add)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let complete = json!({"executorName": "e1", "jobId": job.id});
    assert_eq!(
        s.job("markComplete", &job, "e1")
            .json(&complete)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    s.stop().await;

    let again = Embedded::open(opts).unwrap();
    assert!(!again.generated());
    assert_eq!(
        (again.executor_password(), again.api_token()),
        (password.as_str(), token.as_str())
    );
    let kept = again.store().job(done.id, None).unwrap().unwrap();
    assert_eq!(kept.summary.state, JobState::Completed);
    assert_eq!(kept.entries[0].entry.out.as_deref(), Some("stdout: kept"));
    assert_eq!(
        again.store().summary(waiting.id).unwrap().unwrap().state,
        JobState::Queued
    );
    let next = again.store().insert_raw("batches", "{}").unwrap();
    assert!(next > waiting.id, "ids are never reused");
}

#[tokio::test]
async fn the_user_api_submits_lists_shows_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(options(dir.path())).await;
    for auth in [None, Some("Bearer wrong"), Some("token-executor hunter2")] {
        let mut req = s.http.get(format!("{}/api/v1/jobs", s.url));
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        error(
            req.send().await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "API token",
        )
        .await;
    }

    let full = s
        .submit(json!({"payload": {"version": 2, "token": "forged", "files": {"a.txt": {"content": "aGk="}},
                                   "dockerSteps": [{"image": "alpine", "commands": ["cat a.txt"], "dir": ""}]}}))
        .await;
    assert_eq!(full.queue, "default");
    let short = s
        .submit(
            json!({"queue": "batches", "image": "alpine:3", "commands": ["echo $A $TOKEN"],
                       "env": {"A": "1"}, "secrets": {"TOKEN": "s3cr3t"}}),
        )
        .await;
    assert_eq!(
        (short.queue.as_str(), short.id > full.id),
        ("batches", true)
    );
    let payload = s.detail(short.id, "").await.payload;
    assert_eq!(payload["version"], 2);
    assert_eq!(
        payload["dockerSteps"][0]["env"],
        json!(["A=1", "TOKEN=s3cr3t"])
    );
    assert_eq!(
        payload["redactedValues"],
        json!({"s3cr3t": "${{ secrets.TOKEN }}"})
    );
    let full_payload = s.detail(full.id, "").await.payload;
    assert!(
        full_payload.get("token").is_none(),
        "a submitted token is dropped"
    );

    let refused = [
        (
            json!({"payload": {"cliSteps": [{"command": ["src"]}]}}),
            "src-cli step(s)",
        ),
        (
            json!({"payload": {"dockerSteps": [{"commands": ["x"]}]}}),
            "has no image",
        ),
        (
            json!({"queue": "Bad Queue", "image": "a", "commands": ["x"]}),
            "not a queue name",
        ),
        (
            json!({"image": "a", "commands": ["x"], "repository": "github.com/acme/nope", "commit": "main"}),
            "repository github.com/acme/nope is not registered",
        ),
        (
            json!({"image": "a", "commands": ["x"], "typo": 1}),
            "unknown field `typo`",
        ),
        (
            json!({"image": "a", "commands": ["x"], "repository": "github.com/acme/nope"}),
            "needs `commit`",
        ),
    ];
    for (body, needle) in refused {
        let resp = s
            .api(Method::POST, "jobs")
            .json(&body)
            .send()
            .await
            .unwrap();
        error(resp, StatusCode::BAD_REQUEST, needle).await;
    }

    let list = |query: &'static str| {
        let s = &s;
        async move {
            let resp = s
                .api(Method::GET, &format!("jobs{query}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let list: JobList = resp.json().await.unwrap();
            list.jobs.iter().map(|j| j.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(list("").await, [short.id, full.id], "newest first");
    assert_eq!(list("?queue=batches").await, [short.id]);
    assert_eq!(list("?state=completed").await, Vec::<i64>::new());
    let resp = s.api(Method::GET, "jobs?state=done").send().await.unwrap();
    error(resp, StatusCode::BAD_REQUEST, "not a job state").await;
    error(
        s.api(Method::GET, "jobs/4242").send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "does not exist",
    )
    .await;

    // Cancelling a queued job ends it at once, and only once.
    let resp = s
        .api(Method::POST, &format!("jobs/{}/cancel", full.id))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        resp.json::<JobSummary>().await.unwrap().state,
        JobState::Cancelled
    );
    let resp = s
        .api(Method::POST, &format!("jobs/{}/cancel", full.id))
        .send()
        .await
        .unwrap();
    error(resp, StatusCode::CONFLICT, "already cancelled").await;
    let resp = s
        .api(Method::POST, "jobs/4242/cancel")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(s.dequeue("default", "e1").await.is_none());

    // A processing one is cancelled through its executor, keeping its message.
    let job = s.dequeue("batches", "e1").await.unwrap();
    let resp = s
        .api(Method::POST, &format!("jobs/{}/cancel", job.id))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let summary: JobSummary = resp.json().await.unwrap();
    assert_eq!(
        (summary.state, summary.cancel_requested),
        (JobState::Processing, true)
    );
    let failed =
        json!({"executorName": "e1", "jobId": job.id, "errorMessage": "cancelled by the user"});
    let resp = s
        .job("markFailed", &job, "e1")
        .json(&failed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let summary = s.state(job.id).await;
    assert_eq!(
        (summary.state, summary.message.as_deref()),
        (JobState::Cancelled, Some("cancelled by the user"))
    );
    assert_eq!(list("?state=cancelled").await, [short.id, full.id]);
    s.stop().await;
}

#[tokio::test]
async fn a_long_poll_answers_when_the_job_changes_or_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(options(dir.path())).await;
    let id = s.submit_short("batches").await;
    let before = s.detail(id, "").await;
    assert_eq!(before.summary.state, JobState::Queued);

    let poll = s
        .api(
            Method::GET,
            &format!("jobs/{id}?since={}&wait=60", before.version),
        )
        .send();
    let started = tokio::time::Instant::now();
    let (resp, taken) = tokio::join!(poll, s.dequeue("batches", "e1"));
    let changed: JobDetail = resp.unwrap().json().await.unwrap();
    assert!(taken.is_some());
    assert!(changed.version > before.version);
    assert_eq!(changed.summary.state, JobState::Processing);
    assert!(
        started.elapsed() < PATIENCE,
        "answered at the change, not at the timeout"
    );

    let started = tokio::time::Instant::now();
    let same = s
        .detail(id, &format!("?since={}&wait=1", changed.version))
        .await;
    assert_eq!(same.version, changed.version);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for a change that did not come"
    );

    // Entries: whole by default; with `entries=changed`, only those
    // written after `since`.
    let held = taken.unwrap();
    let mut add = entry("stdout: a");
    add["executorName"] = json!("e1");
    add["jobId"] = json!(id);
    let added = s
        .job("addExecutionLogEntry", &held, "e1")
        .json(&add)
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::OK);
    let first = s.detail(id, "").await;
    assert_eq!(first.entries.len(), 1);
    let whole = s.detail(id, &format!("?since={}", first.version - 1)).await;
    assert_eq!(whole.entries.len(), 1);
    let none_since = s
        .detail(id, &format!("?since={}&entries=changed", first.version))
        .await;
    assert!(none_since.entries.is_empty(), "{:?}", none_since.entries);
    let all_again = s
        .detail(id, &format!("?since={}&entries=all", first.version))
        .await;
    assert_eq!(all_again.entries.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn an_entry_that_escapes_past_the_request_limit_still_ends_stored_and_final() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(options(dir.path())).await;
    s.submit_short("batches").await;
    let held = s.dequeue("batches", "e1").await.unwrap();
    let client = QueueClient::new(ClientOptions {
        base: url::Url::parse(&s.url).unwrap(),
        password: "hunter2".into(),
        executor_name: "e1".into(),
        queues: vec!["batches".into()],
        multi_queue: false,
        outage_limit: PATIENCE,
    })
    .unwrap();
    let job = client.job(
        JobRef {
            queue: held.queue.clone(),
            id: held.id,
        },
        Some(held.token.clone()),
        CancellationToken::new(),
    );
    let (events, rx) = tokio::sync::mpsc::channel(8);
    let uploading = tokio::spawn(async move { upload(rx, &job, &UploadPolicy::default()).await });
    events
        .send(LogEvent::Opened {
            entry: 0,
            key: "step.kubernetes.step.0".into(),
            command: vec!["sh".into()],
            start: Timestamp::now(),
        })
        .await
        .unwrap();
    // 12 MiB of a control character, 72 MiB once JSON-escaped: over the
    // queue's 64 MiB request limit, which answers 413 to an entry that big.
    let line = "\u{1}".repeat(48 << 10);
    for _ in 0..256 {
        let record = LogRecord {
            stream: Stream::Stdout,
            text: line.clone(),
        };
        events
            .send(LogEvent::Lines {
                entry: 0,
                records: vec![record],
                written: vec![Timestamp::now()],
            })
            .await
            .unwrap();
    }
    events
        .send(LogEvent::Closed {
            entry: 0,
            exit_code: 3,
            duration: Duration::from_secs(1),
        })
        .await
        .unwrap();
    drop(events);
    let uploaded = tokio::time::timeout(PATIENCE * 4, uploading)
        .await
        .unwrap()
        .unwrap();
    assert!(uploaded.errors.is_empty(), "{:?}", uploaded.errors);

    let detail = s.detail(held.id, "").await;
    let [stored] = detail.entries.as_slice() else {
        panic!("one entry: {:?}", detail.entries.len());
    };
    assert_eq!(stored.entry.exit_code, Some(3), "its final state is stored");
    let out = stored.entry.out.as_deref().unwrap();
    assert!(out.starts_with("stdout: \u{1}"), "the head is kept");
    assert!(out.ends_with("\u{1}\n"), "so is the tail");
    assert!(
        out.lines().any(|l| l.contains("dropped here")),
        "a note says what was dropped"
    );
    s.stop().await;
}

fn git(dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "init.defaultBranch=main",
        ]);
    cmd
}

async fn run(cmd: &mut tokio::process::Command) -> std::process::Output {
    tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .unwrap()
        .unwrap()
}

async fn ok(cmd: &mut tokio::process::Command) -> String {
    let out = run(cmd).await;
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn auth_headers(job: &Held) -> Vec<String> {
    [
        format!("http.extraHeader=Authorization: Bearer {}", job.token),
        format!("http.extraHeader=X-Sourcegraph-Job-ID: {}", job.id),
        "http.extraHeader=X-Sourcegraph-Executor-Name: e1".to_owned(),
        "protocol.version=2".to_owned(),
    ]
    .into_iter()
    .flat_map(|c| ["-c".to_owned(), c])
    .collect()
}

#[tokio::test]
async fn registration_refuses_what_cannot_be_cloned_and_submission_resolves_refs_to_commits() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin");
    std::fs::create_dir(&origin).unwrap();
    ok(git(&origin).args(["init", "--quiet", "-b", "main"])).await;
    ok(git(&origin).args(["commit", "--quiet", "--allow-empty", "-m", "first"])).await;
    let commit = ok(git(&origin).args(["rev-parse", "HEAD"])).await;
    let s = start(options(dir.path())).await;
    let register = |name: &str, url: String| {
        s.api(Method::POST, "repositories")
            .json(&json!({"name": name, "url": url}))
            .send()
    };
    for (url, needle) in [
        ("/not/a/url".to_owned(), "/not/a/url does not exist"),
        (
            "file:///does/not/exist".to_owned(),
            "/does/not/exist does not exist",
        ),
        (dir.path().display().to_string(), "is not a git repository"),
    ] {
        error(
            register("github.com/acme/bad", url).await.unwrap(),
            StatusCode::BAD_REQUEST,
            needle,
        )
        .await;
    }
    let resp = register(
        "github.com/acme/api",
        format!("file://{}", origin.display()),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    for revision in ["main", "HEAD", "refs/heads/main", &commit[..7]] {
        let body = json!({"image": "alpine", "commands": ["true"],
                          "repository": "github.com/acme/api", "commit": revision});
        let id = s.submit(body).await.id;
        let job: Value = s
            .api(Method::GET, &format!("jobs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            job["payload"]["commit"], commit,
            "{revision} is queued as the commit it names"
        );
    }
    error(
        s.api(Method::POST, "jobs")
            .json(&json!({"image": "alpine", "commands": ["true"],
                          "repository": "github.com/acme/api", "commit": "no-such-branch"}))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "\"no-such-branch\" names no commit of github.com/acme/api",
    )
    .await;

    let removed = s
        .api(Method::DELETE, "repositories/github.com/acme/api")
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::OK);
    error(
        s.api(Method::POST, "jobs")
            .json(&json!({"image": "alpine", "commands": ["true"],
                          "repository": "github.com/acme/api", "commit": "main"}))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "register it with `executor repos add github.com/acme/api",
    )
    .await;
    error(
        s.api(Method::DELETE, "repositories/github.com/acme/api")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "is not registered",
    )
    .await;
}

#[tokio::test]
async fn git_fetches_a_registered_repository_with_the_token_of_its_job_only() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin");
    std::fs::create_dir(&origin).unwrap();
    ok(git(&origin).args(["init", "--quiet"])).await;
    std::fs::write(origin.join("README.md"), "hello from the embedded queue\n").unwrap();
    ok(git(&origin).args(["add", "README.md"])).await;
    ok(git(&origin).args(["commit", "--quiet", "-m", "first"])).await;
    let commit = ok(git(&origin).args(["rev-parse", "HEAD"])).await;

    let s = start(options(dir.path())).await;
    let register = |name: &str, url: String| {
        s.api(Method::POST, "repositories")
            .json(&json!({"name": name, "url": url}))
            .send()
    };
    let resp = register(
        "github.com/acme/api",
        format!("file://{}", origin.display()),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = register("github.com/acme/other", origin.display().to_string())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = register(
        "github.com/acme/remote",
        "https://git.example.com/acme/remote.git".into(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    error(
        register("github.com/acme/bad", "git@host:x".into())
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "not supported",
    )
    .await;
    let repos: Vec<Repository> = s
        .api(Method::GET, "repositories")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| serde_json::from_value(r.clone()).unwrap())
        .collect();
    assert_eq!(repos.len(), 3);

    let job_on = |repo: &'static str| {
        let s = &s;
        let commit = commit.clone();
        async move {
            let body = json!({"queue": "batches", "image": "alpine", "commands": ["true"], "repository": repo, "commit": commit});
            s.submit(body).await;
            s.dequeue("batches", "e1").await.unwrap()
        }
    };
    let api_job = job_on("github.com/acme/api").await;
    let other_job = job_on("github.com/acme/other").await;
    let remote_job = job_on("github.com/acme/remote").await;
    let url = format!("{}/.executors/git/github.com/acme/api", s.url);

    // What the setup container does: fetch the one commit, then check it out.
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    ok(git(&work).args(["init", "--quiet"])).await;
    ok(git(&work).args(auth_headers(&api_job)).args([
        "fetch",
        "--quiet",
        "--no-tags",
        "--depth=1",
        &url,
        &commit,
    ]))
    .await;
    ok(git(&work).args(["checkout", "--quiet", "--force", &commit])).await;
    assert_eq!(
        std::fs::read_to_string(work.join("README.md")).unwrap(),
        "hello from the embedded queue\n"
    );
    // And a plain clone.
    ok(git(dir.path())
        .args(auth_headers(&api_job))
        .args(["clone", "--quiet", &url, "clone"]))
    .await;
    assert!(dir.path().join("clone/README.md").exists());

    // The token of a job bound to another repository does not open this one.
    let out = run(git(dir.path())
        .args(auth_headers(&other_job))
        .args(["clone", "--quiet", &url, "denied"]))
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("403"), "{stderr}");
    let refs = |job: &Held, repo: &str, service: &str| {
        s.http
            .get(format!(
                "{}/.executors/git/{repo}/info/refs?service={service}",
                s.url
            ))
            .bearer_auth(&job.token)
            .header("X-Sourcegraph-Job-ID", job.id.to_string())
            .header("X-Sourcegraph-Executor-Name", "e1")
            .send()
    };
    error(
        refs(&other_job, "github.com/acme/api", "git-upload-pack")
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "does not grant repository github.com/acme/api",
    )
    .await;
    error(
        refs(&api_job, "github.com/acme/api", "git-receive-pack")
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "only",
    )
    .await;
    let resp = refs(&api_job, "github.com/acme/api", "git-upload-pack")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "application/x-git-upload-pack-advertisement"
    );

    // A remote repository is fetched by the queue (see the test below);
    // this one does not exist.
    let resp = refs(&remote_job, "github.com/acme/remote", "git-upload-pack")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert!(resp.headers().get("location").is_none());

    // The shared secret opens any repository; an unregistered one is 404.
    let executor = |repo: &str| {
        s.http
            .get(format!(
                "{}/.executors/git/{repo}/info/refs?service=git-upload-pack",
                s.url
            ))
            .header("Authorization", "token-executor hunter2")
            .send()
    };
    assert_eq!(
        executor("github.com/acme/other").await.unwrap().status(),
        StatusCode::OK
    );
    error(
        executor("github.com/acme/unknown").await.unwrap(),
        StatusCode::NOT_FOUND,
        "not registered",
    )
    .await;

    // Once the job ends, its token opens nothing.
    let done = json!({"executorName": "e1", "jobId": api_job.id});
    assert_eq!(
        s.job("markComplete", &api_job, "e1")
            .json(&done)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        refs(&api_job, "github.com/acme/api", "git-upload-pack")
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}

#[tokio::test]
async fn the_files_route_says_the_embedded_queue_stores_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(options(dir.path())).await;
    s.submit_short("batches").await;
    let job = s.dequeue("batches", "e1").await.unwrap();
    let file = |method: Method| {
        s.http
            .request(
                method,
                format!("{}/.executors/files/batch-changes/a/b.json", s.url),
            )
            .bearer_auth(&job.token)
            .header("X-Sourcegraph-Job-ID", job.id.to_string())
            .header("X-Sourcegraph-Executor-Name", "e1")
            .send()
    };
    error(
        file(Method::GET).await.unwrap(),
        StatusCode::NOT_FOUND,
        "batch-changes/a/b.json: the embedded queue stores no files",
    )
    .await;
    assert_eq!(
        file(Method::HEAD).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let anonymous = s
        .http
        .get(format!("{}/.executors/files/b/k", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

/// What a remote git host saw: each request's path and headers.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, axum::http::HeaderMap)>>>;

/// A remote git host that answers the smart protocol's two calls with fixed
/// bodies and remembers what it was sent.
async fn remote_git_host() -> (String, Seen) {
    use axum::routing::get;
    let seen = Seen::default();
    let (refs_seen, pack_seen) = (seen.clone(), seen.clone());
    let app = axum::Router::new()
        .route(
            "/acme/remote.git/info/refs",
            get(move |headers: axum::http::HeaderMap| async move {
                refs_seen
                    .lock()
                    .unwrap()
                    .push(("info/refs".into(), headers));
                (
                    [(
                        "content-type",
                        "application/x-git-upload-pack-advertisement",
                    )],
                    "001e# service=git-upload-pack\n0000",
                )
            }),
        )
        .route(
            "/acme/remote.git/git-upload-pack",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: String| async move {
                    pack_seen
                        .lock()
                        .unwrap()
                        .push(("git-upload-pack".into(), headers));
                    (
                        [("content-type", "application/x-git-upload-pack-result")],
                        format!("got {body}"),
                    )
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://bot:p%40ss@{addr}/acme/remote.git"), seen)
}

#[tokio::test]
async fn a_remote_repository_is_fetched_by_the_queue_and_the_job_token_never_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, seen) = remote_git_host().await;
    let s = start(options(dir.path())).await;
    let resp = s
        .api(Method::POST, "repositories")
        .json(&json!({"name": "github.com/acme/remote", "url": remote}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let listed = s
        .api(Method::GET, "repositories")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("http://***@127.0.0.1:") && !listed.contains("p%40ss"),
        "the repository's password is shown: {listed}"
    );
    s.submit(
        json!({"queue": "batches", "image": "alpine", "commands": ["true"],
                    "repository": "github.com/acme/remote",
                    // A full SHA: a ref name would be resolved by asking this
                    // fake host, which advertises no refs.
                    "commit": "0123456789abcdef0123456789abcdef01234567"}),
    )
    .await;
    let job = s.dequeue("batches", "e1").await.unwrap();
    let call = |method: Method, path: &str| {
        s.http
            .request(
                method,
                format!("{}/.executors/git/github.com/acme/remote/{path}", s.url),
            )
            .bearer_auth(&job.token)
            .header("X-Sourcegraph-Job-ID", job.id.to_string())
            .header("X-Sourcegraph-Executor-Name", "e1")
            .header("Git-Protocol", "version=2")
    };
    let refs = call(Method::GET, "info/refs?service=git-upload-pack")
        .send()
        .await
        .unwrap();
    assert_eq!(
        refs.status(),
        StatusCode::OK,
        "the git route sent the job to the remote host ({:?}), and git takes the job token along",
        refs.headers().get("location")
    );
    assert_eq!(
        refs.headers()["content-type"],
        "application/x-git-upload-pack-advertisement"
    );
    assert_eq!(
        refs.text().await.unwrap(),
        "001e# service=git-upload-pack\n0000"
    );
    let pack = call(Method::POST, "git-upload-pack")
        .header("content-type", "application/x-git-upload-pack-request")
        .body("0009done\n")
        .send()
        .await
        .unwrap();
    assert_eq!(pack.status(), StatusCode::OK);
    assert_eq!(pack.text().await.unwrap(), "got 0009done\n");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter()
            .map(|(path, _)| path.as_str())
            .collect::<Vec<_>>(),
        ["info/refs", "git-upload-pack"]
    );
    for (path, headers) in &seen {
        for (name, value) in headers {
            let value = value.to_str().unwrap_or_default();
            assert!(
                !value.contains(&job.token) && !name.as_str().starts_with("x-sourcegraph"),
                "the remote host got the job's {name}: {value} ({path})"
            );
        }
        // The registered URL's own credentials: bot, p@ss.
        assert_eq!(headers["authorization"], "Basic Ym90OnBAc3M=", "{path}");
        assert_eq!(headers["git-protocol"], "version=2", "{path}");
    }
    s.stop().await;
}
