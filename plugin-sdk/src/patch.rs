//! The changes an admission plugin makes to a Job, as an RFC 6902 JSON Patch.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation, TestOperation};
use serde::Serialize;
use serde_json::Value;

use crate::{Error, Job};

/// What [`crate::Admission::review`] changes in the Job: JSON Patch
/// operations, applied by the host in order to the Job the plugin was given.
///
/// The host checks the patched Job against the plugin's allowed paths just
/// as it checks a whole document, so a patch may do whatever the plugin's
/// scope allows; a patch that does not apply (`add` under a parent that is
/// not there, a `test` that fails) is a failure of the plugin. The easiest
/// way to build one is [`Patch::diff`]: read a part with
/// [`crate::JobView::get`], change it, and record the difference. Build
/// paths with [`pointer`], which escapes keys such as `example.com/team`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patch {
    ops: Vec<PatchOperation>,
    /// Set by the default `review`: the whole changed Job, sent as it is.
    document: Option<Box<Job>>,
}

fn parse(path: &str) -> Result<PointerBuf, Error> {
    PointerBuf::parse(path).map_err(|err| {
        Error::new(format!(
            "{path:?} is not a JSON pointer ({err}); expected e.g. \"/metadata/labels/team\""
        ))
    })
}

impl Patch {
    /// An empty patch: no change.
    pub fn new() -> Self {
        Patch::default()
    }

    /// Sets `path` to `value`, adding it (or, in an array, inserting it;
    /// `-` appends). The parent must exist.
    pub fn add(&mut self, path: &str, value: impl Serialize) -> Result<(), Error> {
        let op = AddOperation {
            path: parse(path)?,
            value: serde_json::to_value(value)?,
        };
        self.ops.push(PatchOperation::Add(op));
        Ok(())
    }

    /// Replaces the value at `path`, which must exist.
    pub fn replace(&mut self, path: &str, value: impl Serialize) -> Result<(), Error> {
        let op = ReplaceOperation {
            path: parse(path)?,
            value: serde_json::to_value(value)?,
        };
        self.ops.push(PatchOperation::Replace(op));
        Ok(())
    }

    /// Removes the value at `path`, which must exist.
    pub fn remove(&mut self, path: &str) -> Result<(), Error> {
        let op = RemoveOperation { path: parse(path)? };
        self.ops.push(PatchOperation::Remove(op));
        Ok(())
    }

    /// Makes the patch apply only if the value at `path` is `value`.
    pub fn test(&mut self, path: &str, value: impl Serialize) -> Result<(), Error> {
        let op = TestOperation {
            path: parse(path)?,
            value: serde_json::to_value(value)?,
        };
        self.ops.push(PatchOperation::Test(op));
        Ok(())
    }

    /// Records the change of the value at `at` from `before` (`None`: it was
    /// not there) to `after`, as the fewest operations (each new map key,
    /// each appended element), so that the trail the executor keeps names
    /// exactly what changed. Nothing when the two are equal.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// let before = BTreeMap::from([("app".to_owned(), "api".to_owned())]);
    /// let mut after = before.clone();
    /// after.insert("team".into(), "infra".into());
    /// let mut patch = plugin_sdk::Patch::new();
    /// patch.diff("/metadata/labels", Some(&before), &after)?;
    /// assert_eq!(patch.to_string(), r#"[{"op":"add","path":"/metadata/labels/team","value":"infra"}]"#);
    /// # Ok::<(), plugin_sdk::Error>(())
    /// ```
    pub fn diff<T: Serialize>(
        &mut self,
        at: &str,
        before: Option<&T>,
        after: &T,
    ) -> Result<(), Error> {
        let after = serde_json::to_value(after)?;
        let Some(before) = before else {
            self.ops.push(PatchOperation::Add(AddOperation {
                path: parse(at)?,
                value: after,
            }));
            return Ok(());
        };
        let before = serde_json::to_value(before)?;
        let base = parse(at)?;
        for mut op in json_patch::diff(&before, &after).0 {
            let path = match &mut op {
                PatchOperation::Add(o) => &mut o.path,
                PatchOperation::Remove(o) => &mut o.path,
                PatchOperation::Replace(o) => &mut o.path,
                PatchOperation::Move(o) => &mut o.path,
                PatchOperation::Copy(o) => &mut o.path,
                PatchOperation::Test(o) => &mut o.path,
            };
            let mut full = base.clone();
            full.append(&*path);
            *path = full;
            self.ops.push(op);
        }
        Ok(())
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.document.is_none()
            && self
                .ops
                .iter()
                .all(|op| matches!(op, PatchOperation::Test(_)))
    }

    /// Replaces the whole Job: what the default `review` does after
    /// [`crate::Admission::admit`] changed it.
    pub(crate) fn set_document(&mut self, job: Job) {
        self.document = Some(Box::new(job));
    }

    /// The patch as the component sends it.
    pub(crate) fn into_change(self) -> Result<Change, Error> {
        if let Some(job) = self.document {
            return Ok(Change::Document(serde_json::to_string(&job)?));
        }
        if self.is_empty() {
            return Ok(Change::None);
        }
        Ok(Change::Patch(serde_json::to_string(&self.ops)?))
    }

    /// The Job in `text` with this patch applied, as the host applies it.
    pub(crate) fn apply(&self, text: &str) -> Result<Job, Error> {
        if let Some(job) = &self.document {
            return Ok((**job).clone());
        }
        apply(text, &self.ops)
    }
}

/// The Job in `text` with the RFC 6902 operations `ops` applied.
pub(crate) fn apply(text: &str, ops: &[PatchOperation]) -> Result<Job, Error> {
    let mut doc: Value = serde_json::from_str(text)?;
    json_patch::patch(&mut doc, ops)
        .map_err(|err| Error::new(format!("the patch does not apply: {err}")))?;
    Ok(serde_json::from_value(doc)?)
}

/// The operations as JSON text, as the component sends them.
impl std::fmt::Display for Patch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_string(&self.ops).map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}

/// What a patch becomes on the wire.
pub(crate) enum Change {
    None,
    Patch(String),
    Document(String),
}

/// The JSON pointer (RFC 6901) of a path of keys: `~` and `/` in a key are
/// escaped, so annotation keys such as `example.com/team` stay one segment.
///
/// ```
/// assert_eq!(
///     plugin_sdk::pointer(["metadata", "annotations", "example.com/team"]),
///     "/metadata/annotations/example.com~1team"
/// );
/// ```
pub fn pointer<I, S>(segments: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        for c in segment.as_ref().chars() {
            match c {
                '~' => out.push_str("~0"),
                '/' => out.push_str("~1"),
                c => out.push(c),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_patch_is_sent_as_rfc_6902_operations() {
        let mut patch = Patch::new();
        patch.test("/metadata/name", "j").unwrap();
        assert!(patch.is_empty());
        patch
            .add(&pointer(["metadata", "labels", "a/b"]), "x")
            .unwrap();
        patch.remove("/spec/x").unwrap();
        patch.replace("/spec/y", 1).unwrap();
        let Change::Patch(text) = patch.into_change().unwrap() else {
            panic!("expected a patch");
        };
        let sent: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            sent,
            json!([
                {"op": "test", "path": "/metadata/name", "value": "j"},
                {"op": "add", "path": "/metadata/labels/a~1b", "value": "x"},
                {"op": "remove", "path": "/spec/x"},
                {"op": "replace", "path": "/spec/y", "value": 1}
            ])
        );
        assert!(matches!(Patch::new().into_change(), Ok(Change::None)));
        let err = Patch::new().add("metadata", 1).unwrap_err();
        assert!(
            err.message().contains("\"metadata\" is not a JSON pointer"),
            "{err}"
        );
    }

    #[test]
    fn a_diff_names_each_change_under_its_path() {
        let before = json!({"a": 1, "list": [1], "gone": true});
        let after = json!({"a": 2, "list": [1, 2], "new/key": "x"});
        let mut patch = Patch::new();
        patch.diff("/spec/x", Some(&before), &after).unwrap();
        patch.diff("/spec/y", None, &json!({"k": "v"})).unwrap();
        patch.diff("/spec/z", Some(&after), &after).unwrap();
        let text = json!({"spec": {"x": before, "z": after}}).to_string();
        let mut applied = serde_json::from_str::<Value>(&text).unwrap();
        json_patch::patch(&mut applied, &patch.ops).unwrap();
        assert_eq!(
            applied,
            json!({"spec": {"x": after, "y": {"k": "v"}, "z": after}})
        );
        let paths: Vec<String> = patch
            .ops
            .iter()
            .map(|op| {
                serde_json::to_value(op).unwrap()["path"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert!(paths.contains(&"/spec/x/new~1key".to_owned()), "{paths:?}");
        assert!(paths.contains(&"/spec/x/list/1".to_owned()), "{paths:?}");
        assert!(!paths.iter().any(|p| p.starts_with("/spec/z")), "{paths:?}");
    }
}
