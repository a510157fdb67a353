//! Accounting: requests by verb and resource, open watches and log streams; what a job costs the API server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// Counters, shared by every request.
#[derive(Default)]
pub struct Stats {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String), u64>,
    open: BTreeMap<(String, String), i64>,
}

/// Counts an open stream while it lives.
pub struct Open {
    inner: Arc<Mutex<Inner>>,
    key: (String, String),
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner.open.entry(self.key.clone()).or_default() -= 1;
    }
}

impl Stats {
    /// Counts one request.
    pub fn request(&self, verb: &str, resource: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner
            .requests
            .entry((verb.to_owned(), resource.to_owned()))
            .or_default() += 1;
    }

    /// Counts an open `watch` or `log` stream until the guard is dropped.
    pub fn open(&self, kind: &str, resource: &str) -> Open {
        let key = (kind.to_owned(), resource.to_owned());
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner.open.entry(key.clone()).or_default() += 1;
        Open {
            inner: self.inner.clone(),
            key,
        }
    }

    /// `{"requests": {"list jobs": 3, ...}, "open": {"watch pods": 1, ...}, "total": N}`.
    pub fn snapshot(&self) -> Value {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let requests: serde_json::Map<String, Value> = inner
            .requests
            .iter()
            .map(|((v, r), n)| (format!("{v} {r}"), json!(n)))
            .collect();
        let open: serde_json::Map<String, Value> = inner
            .open
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|((v, r), n)| (format!("{v} {r}"), json!(n)))
            .collect();
        let total: u64 = inner.requests.values().sum();
        json!({"requests": requests, "open": open, "total": total})
    }
}
