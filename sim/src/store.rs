//! The object store: every object by resource, namespace and name, one monotonic `resourceVersion`, and the event history that watches resume from.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::resources::Resource;
use crate::status::ApiError;

/// How many events are kept for watches to resume from, at most; older
/// versions answer `410 Gone`, as after an etcd compaction.
pub const HISTORY: usize = 20_000;
/// ...and for how long: the API server's watch cache keeps about this much
/// (its `eventFreshDuration`). Each event holds a copy of its object, so a
/// count alone let a busy simulator hold hundreds of MiB of old pods.
pub const HISTORY_WINDOW: Duration = Duration::from_secs(75);
/// Events a watcher may fall behind the live feed before its watch ends
/// with `410 Gone` (it then resumes from the history or re-lists). The feed
/// keeps its last this-many events alive whoever reads them, so it is kept
/// well below [`HISTORY`].
pub const LIVE_BUFFER: usize = 4_096;

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// Resource name (`jobs`).
    pub resource: &'static str,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl Key {
    /// The key of `name` in `namespace` of `resource`.
    pub fn new(resource: &Resource, namespace: &str, name: &str) -> Key {
        Key {
            resource: resource.name,
            namespace: if resource.namespaced {
                namespace.to_owned()
            } else {
                String::new()
            },
            name: name.to_owned(),
        }
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted (the object as it was, with a new `resourceVersion`).
    Deleted,
}

impl EventType {
    /// As a watch event's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches deliver it.
#[derive(Debug, Clone)]
pub struct Event {
    /// What happened.
    pub kind: EventType,
    /// Where.
    pub key: Key,
    /// The object after the change, as JSON text. Events outlive their
    /// change (75 s of history, and the live feed's ring), and text takes a
    /// fraction of the memory of a parsed `Value`; watches send it as it is.
    json: Box<str>,
    /// The `resourceVersion` of the change.
    pub rv: u64,
}

impl Event {
    fn new(kind: EventType, key: Key, object: &Value, rv: u64) -> Event {
        Event {
            kind,
            key,
            json: object.to_string().into_boxed_str(),
            rv,
        }
    }

    /// The object after the change, as JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The object after the change, parsed.
    pub fn object(&self) -> Value {
        // The text is serde_json's own rendering of a `Value`, which parses
        // back; `Null` only if that ever stopped holding.
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }
}

struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    /// Each event with when it happened.
    history: VecDeque<(Instant, Arc<Event>)>,
    /// `Event` objects in the order they were created, with their uid, for
    /// [`Store::expire_events`].
    expiring: VecDeque<(Instant, Key, String)>,
}

/// The store. Every write takes one lock, bumps the version and publishes
/// the event under that lock, so watchers see changes in version order.
pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<Event>>,
    /// [`HISTORY_WINDOW`], but for tests.
    window: Duration,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

/// What a watch starts with: the events it must replay, then the live feed.
pub struct Subscription {
    /// Events after the requested version (or the current objects as
    /// `ADDED` when none was requested), in order.
    pub backlog: Vec<Arc<Event>>,
    /// Every later event.
    pub live: broadcast::Receiver<Arc<Event>>,
    /// The version the backlog ends at.
    pub rv: u64,
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store::with_window(HISTORY_WINDOW)
    }

    /// An empty store whose history keeps events for `window`.
    fn with_window(window: Duration) -> Store {
        let (events, _) = broadcast::channel(LIVE_BUFFER);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                expiring: VecDeque::new(),
            }),
            events,
            window,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the map consistent (every
        // write is a single insert), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every event from now on (the controllers' feed).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// The current `resourceVersion`.
    pub fn version(&self) -> u64 {
        self.lock().rv
    }

    /// The object at `key`.
    pub fn get(&self, key: &Key) -> Option<Value> {
        self.lock().objects.get(key).cloned()
    }

    /// Every object of `resource` (in `namespace`, if given), with the version
    /// the list is consistent at.
    pub fn list(&self, resource: &Resource, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = range(&inner.objects, resource.name, namespace)
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rv)
    }

    /// The objects of `resource` (in `namespace`, if given) for which `pred`
    /// holds; only those are copied.
    pub fn select(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let inner = self.lock();
        range(&inner.objects, resource.name, namespace)
            .filter(|(_, v)| pred(v))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Runs `f` on the objects of `resource` (in `namespace`, if given) for
    /// which `pred` holds, borrowed under the lock: nothing is copied, and
    /// writers wait meanwhile, so keep `f` short.
    pub fn with_selected<R>(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        pred: impl Fn(&Value) -> bool,
        f: impl FnOnce(&[&Value]) -> R,
    ) -> R {
        let inner = self.lock();
        let items: Vec<&Value> = range(&inner.objects, resource.name, namespace)
            .filter(|(_, v)| pred(v))
            .map(|(_, v)| v)
            .collect();
        f(&items)
    }

    /// [`Self::select`] with the version the result is consistent at.
    pub fn list_where(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        pred: impl Fn(&Value) -> bool,
    ) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = range(&inner.objects, resource.name, namespace)
            .filter(|(_, v)| pred(v))
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rv)
    }

    /// Every object, of any resource, for which `pred` holds.
    pub fn find(&self, pred: impl Fn(&Key, &Value) -> bool) -> Vec<(Key, Value)> {
        self.lock()
            .objects
            .iter()
            .filter(|(k, v)| pred(k, v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Stores a new object; its metadata gets `uid`, `creationTimestamp` and
    /// `resourceVersion` here.
    pub fn create(
        &self,
        resource: &Resource,
        key: Key,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        if inner.objects.contains_key(&key) {
            return Err(ApiError::already_exists(
                resource.name,
                resource.group,
                &key.name,
            ));
        }
        inner.rv += 1;
        let rv = inner.rv;
        let meta = meta_mut(&mut object);
        // The API layer assigns the uid before defaulting (a Job's selector
        // names it); objects made by the simulator itself get one here.
        meta.entry("uid")
            .or_insert_with(|| json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        if !key.namespace.is_empty() {
            meta.insert("namespace".into(), json!(key.namespace));
        }
        self.publish(&mut inner, EventType::Added, key, object.clone());
        Ok(object)
    }

    /// Changes the object at `key` with `change`, which sees the current
    /// object and may refuse. A change that leaves the object as it was is
    /// not an event and keeps the version, as on the real server.
    pub fn update(
        &self,
        resource: &Resource,
        key: &Key,
        change: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let Some(current) = inner.objects.get(key) else {
            return Err(ApiError::not_found(
                resource.name,
                resource.group,
                &key.name,
            ));
        };
        let mut next = current.clone();
        change(&mut next)?;
        // Identity fields never change through an update.
        for field in ["uid", "creationTimestamp", "name", "namespace"] {
            match current["metadata"].get(field) {
                Some(v) => {
                    meta_mut(&mut next).insert(field.into(), v.clone());
                }
                None => {
                    meta_mut(&mut next).remove(field);
                }
            }
        }
        meta_mut(&mut next).insert(
            "resourceVersion".into(),
            current["metadata"]["resourceVersion"].clone(),
        );
        if &next == current {
            return Ok(next);
        }
        inner.rv += 1;
        let rv = inner.rv;
        meta_mut(&mut next).insert("resourceVersion".into(), json!(rv.to_string()));
        self.publish(&mut inner, EventType::Modified, key.clone(), next.clone());
        Ok(next)
    }

    /// Removes the object at `key`.
    pub fn delete(&self, resource: &Resource, key: &Key) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        self.remove(&mut inner, key)
            .ok_or_else(|| ApiError::not_found(resource.name, resource.group, &key.name))
    }

    /// Removes the object at `key`, if any, and publishes its deletion
    /// under a new version; returns it as deleted.
    fn remove(&self, inner: &mut Inner, key: &Key) -> Option<Value> {
        let mut object = inner.objects.get(key)?.clone();
        inner.rv += 1;
        let rv = inner.rv;
        meta_mut(&mut object).insert("resourceVersion".into(), json!(rv.to_string()));
        self.publish(inner, EventType::Deleted, key.clone(), object.clone());
        Some(object)
    }

    /// Deletes the `Event` objects created `ttl` ago or earlier, as the API
    /// server's `--event-ttl` does (its lease on each in etcd): without it,
    /// a cluster that runs jobs for hours keeps every event it ever recorded.
    pub fn expire_events(&self, ttl: Duration) {
        if let Some(cutoff) = Instant::now().checked_sub(ttl) {
            self.expire_events_before(cutoff);
        }
    }

    /// Deletes the `Event` objects created before `cutoff`.
    fn expire_events_before(&self, cutoff: Instant) {
        let mut inner = self.lock();
        while let Some((at, _, _)) = inner.expiring.front() {
            if *at >= cutoff {
                break;
            }
            let Some((_, key, uid)) = inner.expiring.pop_front() else {
                break;
            };
            // Deleted and made again under the same name: a younger object.
            let same = inner
                .objects
                .get(&key)
                .is_some_and(|o| o["metadata"]["uid"].as_str() == Some(uid.as_str()));
            if same {
                self.remove(&mut inner, &key);
            }
        }
    }

    fn publish(&self, inner: &mut Inner, kind: EventType, key: Key, object: Value) {
        let now = Instant::now();
        let event = Arc::new(Event::new(kind, key.clone(), &object, inner.rv));
        if kind == EventType::Added && key.resource == "events" {
            let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
            inner.expiring.push_back((now, key.clone(), uid.to_owned()));
        }
        match kind {
            EventType::Deleted => inner.objects.remove(&key),
            _ => inner.objects.insert(key, object),
        };
        while inner.history.front().is_some_and(|(at, _)| {
            inner.history.len() >= HISTORY || now.saturating_duration_since(*at) >= self.window
        }) {
            inner.history.pop_front();
        }
        inner.history.push_back((now, event.clone()));
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }

    /// Starts a watch of `resource` (in `namespace`, if given) from version
    /// `from`: `None` (or 0) replays the current objects as `ADDED`; a
    /// version older than the history answers `410 Gone`.
    pub fn watch(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        from: Option<u64>,
    ) -> Result<Subscription, ApiError> {
        let inner = self.lock();
        let live = self.events.subscribe();
        let relevant =
            |k: &Key| k.resource == resource.name && namespace.is_none_or(|ns| k.namespace == ns);
        let backlog = match from.filter(|v| *v > 0) {
            None => inner
                .objects
                .iter()
                .filter(|(k, _)| relevant(k))
                .map(|(k, v)| Arc::new(Event::new(EventType::Added, k.clone(), v, inner.rv)))
                .collect(),
            Some(rv) => {
                let oldest = inner.history.front().map_or(inner.rv, |(_, e)| e.rv - 1);
                if rv < oldest {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({oldest})"
                    )));
                }
                inner
                    .history
                    .iter()
                    .filter(|(_, e)| e.rv > rv && relevant(&e.key))
                    .map(|(_, e)| e.clone())
                    .collect()
            }
        };
        Ok(Subscription {
            backlog,
            live,
            rv: inner.rv,
        })
    }

    /// Drops all but the newest `keep` events of the history, as a
    /// compaction would; for tests of `410 Gone`.
    pub fn compact(&self, keep: usize) {
        let mut inner = self.lock();
        while inner.history.len() > keep {
            inner.history.pop_front();
        }
    }
}

/// The objects of one resource (and namespace), found by key order rather
/// than by walking every object.
fn range<'m>(
    objects: &'m BTreeMap<Key, Value>,
    resource: &'static str,
    namespace: Option<&str>,
) -> impl Iterator<Item = (&'m Key, &'m Value)> {
    let start = Key {
        resource,
        namespace: namespace.unwrap_or_default().to_owned(),
        name: String::new(),
    };
    let namespace = namespace.map(str::to_owned);
    objects.range(start..).take_while(move |(k, _)| {
        k.resource == resource && namespace.as_ref().is_none_or(|ns| &k.namespace == ns)
    })
}

/// `metadata` of `object` as a map, made if missing.
pub fn meta_mut(object: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let Value::Object(map) = object else {
        unreachable!("made an object just above")
    };
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !meta.is_object() {
        *meta = json!({});
    }
    match meta {
        Value::Object(m) => m,
        _ => unreachable!("made an object just above"),
    }
}

/// The current time as the API writes it (RFC 3339, seconds, UTC).
pub fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::resource;

    fn two_config_maps(store: &Store) -> u64 {
        let maps = resource("", "configmaps");
        let first = store
            .create(maps, Key::new(maps, "default", "a"), json!({}))
            .map(|o| o["metadata"]["resourceVersion"].clone());
        store
            .create(maps, Key::new(maps, "default", "b"), json!({}))
            .map(|_| ())
            .unwrap_or_else(|e| panic!("{e:?}"));
        first
            .ok()
            .and_then(|v| v.as_str()?.parse().ok())
            .unwrap_or_else(|| panic!("the first create gives a version"))
    }

    #[test]
    fn a_watch_resumes_from_a_version_inside_the_history_window() {
        let store = Store::new();
        let first = two_config_maps(&store);
        let watch = store
            .watch(resource("", "configmaps"), Some("default"), Some(first))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let names: Vec<_> = watch.backlog.iter().map(|e| e.key.name.clone()).collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn events_older_than_the_window_are_gone_so_resuming_from_them_is_410() {
        let store = Store::with_window(Duration::ZERO);
        let first = two_config_maps(&store);
        let err = store
            .watch(resource("", "configmaps"), Some("default"), Some(first - 1))
            .err()
            .unwrap_or_else(|| panic!("a version before the window must be refused"));
        assert_eq!(err.code, 410, "{err:?}");
    }

    #[test]
    fn event_objects_are_deleted_after_their_ttl_and_nothing_else_is() {
        let store = Store::new();
        let events = resource("", "events");
        let maps = resource("", "configmaps");
        let create = |r, name: &str| {
            store
                .create(r, Key::new(r, "default", name), json!({}))
                .unwrap_or_else(|e| panic!("{e:?}"));
        };
        create(events, "pod.1");
        create(maps, "kept");
        let watch = store
            .watch(events, Some("default"), None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let mut live = watch.live;

        store.expire_events(Duration::from_secs(3600));
        assert!(store.get(&Key::new(events, "default", "pod.1")).is_some());

        // Deleted, then made again under its name: the new one is younger
        // than the old one's time.
        let cutoff = Instant::now();
        store
            .delete(events, &Key::new(events, "default", "pod.1"))
            .unwrap_or_else(|e| panic!("{e:?}"));
        create(events, "pod.1");
        store.expire_events_before(cutoff);
        assert!(store.get(&Key::new(events, "default", "pod.1")).is_some());

        create(events, "pod.2");
        store.expire_events(Duration::ZERO);
        assert!(store.get(&Key::new(events, "default", "pod.1")).is_none());
        assert!(store.get(&Key::new(events, "default", "pod.2")).is_none());
        assert!(store.get(&Key::new(maps, "default", "kept")).is_some());

        // Watchers see each expiry as a deletion.
        let mut seen = Vec::new();
        while let Ok(e) = live.try_recv() {
            seen.push((e.kind, e.key.name.clone()));
        }
        assert_eq!(
            seen,
            [
                (EventType::Deleted, "pod.1".to_owned()),
                (EventType::Added, "pod.1".to_owned()),
                (EventType::Added, "pod.2".to_owned()),
                (EventType::Deleted, "pod.1".to_owned()),
                (EventType::Deleted, "pod.2".to_owned()),
            ]
        );
    }
}
