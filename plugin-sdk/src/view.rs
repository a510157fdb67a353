//! The Job as the host sent it, read lazily: a plugin parses only the parts it asks for.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess,
    Visitor,
};

use crate::{Error, Job};

/// The Job an admission plugin reviews, as the JSON text the host sent.
///
/// Parsing the whole Job into [`Job`] and writing it back is most of what a
/// cheap plugin costs; [`JobView::get`] instead parses one part, into any
/// type that deserializes from it (a struct that names only the fields it
/// reads is the cheapest), skipping the rest of the text without building it.
///
/// ```
/// use plugin_sdk::JobView;
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Image {
///     image: Option<String>,
/// }
///
/// let text = r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"alpine:3"}]}}}}"#;
/// let job = JobView::new(text);
/// let containers: Vec<Image> = job.get("/spec/template/spec/containers")?.unwrap_or_default();
/// assert_eq!(containers[0].image.as_deref(), Some("alpine:3"));
/// assert_eq!(job.get::<String>("/metadata/name")?, None);
/// # Ok::<(), plugin_sdk::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct JobView<'a> {
    text: &'a str,
}

impl<'a> JobView<'a> {
    /// A view of the Job in `text` (JSON).
    pub fn new(text: &'a str) -> Self {
        JobView { text }
    }

    /// The Job's JSON text, as the host sent it.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The whole Job, parsed: what [`crate::Admission::admit`] works on.
    pub fn job(&self) -> Result<Job, Error> {
        serde_json::from_str(self.text).map_err(|err| {
            Error::new(format!(
                "the Job document does not parse as a batch/v1 Job: {err}"
            ))
        })
    }

    /// The value at `pointer` (RFC 6901, e.g. `/spec/template/spec/nodeSelector`;
    /// `""` is the whole Job), parsed as `T`; `None` when nothing is there.
    /// Array elements are named by their index (`/spec/template/spec/containers/0`).
    ///
    /// Each call reads the text once, so read a common parent into one
    /// struct rather than its fields one by one.
    pub fn get<T: DeserializeOwned>(&self, pointer: &str) -> Result<Option<T>, Error> {
        let path = segments(pointer)?;
        let mut found = None;
        let mut de = serde_json::Deserializer::from_str(self.text);
        Find {
            path: &path,
            found: &mut found,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|err| Error::new(format!("cannot read {pointer:?} of the Job: {err}")))?;
        Ok(found)
    }
}

/// The unescaped segments of a JSON pointer.
fn segments(pointer: &str) -> Result<Vec<String>, Error> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |why: &str| {
        Error::new(format!(
            "{pointer:?} is not a JSON pointer: {why}; expected e.g. \"/spec/template/spec\""
        ))
    };
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(bad("it must start with '/'"));
    };
    rest.split('/')
        .map(|raw| {
            let mut key = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                match c {
                    '~' => match chars.next() {
                        Some('0') => key.push('~'),
                        Some('1') => key.push('/'),
                        _ => return Err(bad("'~' must be followed by '0' or '1'")),
                    },
                    c => key.push(c),
                }
            }
            Ok(key)
        })
        .collect()
}

/// Walks down `path`, skipping every value off it, and parses what is at
/// its end into `found`.
struct Find<'p, T> {
    path: &'p [String],
    found: &'p mut Option<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Find<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        if self.path.is_empty() {
            *self.found = Some(T::deserialize(de)?);
            Ok(())
        } else {
            de.deserialize_any(self)
        }
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Find<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((key, rest)) = self.path.split_first() else {
            return Ok(());
        };
        // A key given twice counts as its last value, as in a parsed `Value`.
        while let Some(hit) = map.next_key_seed(KeyIs(key))? {
            if hit {
                *self.found = None;
                map.next_value_seed(Find {
                    path: rest,
                    found: &mut *self.found,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((index, rest)) = self.path.split_first() else {
            return Ok(());
        };
        // RFC 6901: an index is "0" or digits without a leading zero.
        let digits = !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit());
        let wanted = (digits && (index == "0" || !index.starts_with('0')))
            .then(|| index.parse::<usize>().ok())
            .flatten();
        let mut at = 0usize;
        loop {
            if Some(at) == wanted {
                let seed = Find {
                    path: rest,
                    found: &mut *self.found,
                };
                if seq.next_element_seed(seed)?.is_none() {
                    return Ok(());
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            at += 1;
        }
    }

    // A scalar where the path goes on: nothing is there.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Whether a map key is the one sought, compared without copying it.
struct KeyIs<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;

    fn doc() -> String {
        json!({
            "metadata": {"name": "j", "labels": {"a/b": "1", "t~x": "2"}},
            "spec": {"template": {"spec": {
                "containers": [{"name": "main", "image": "alpine:3"}],
                "initContainers": [{"name": "s0"}, {"name": "s1", "image": "busybox"}]
            }}},
            "status": null
        })
        .to_string()
    }

    #[test]
    fn get_reads_what_value_pointer_reads() {
        let text = doc();
        let whole: Value = serde_json::from_str(&text).unwrap();
        let view = JobView::new(&text);
        for pointer in [
            "",
            "/metadata",
            "/metadata/labels/a~1b",
            "/metadata/labels/t~0x",
            "/spec/template/spec/containers/0/image",
            "/spec/template/spec/initContainers/1",
            "/spec/template/spec/initContainers/2",
            "/spec/template/spec/initContainers/01",
            "/spec/template/spec/initContainers/+1",
            "/spec/template/spec/containers/x",
            "/metadata/name/deeper",
            "/status",
            "/status/x",
            "/absent",
        ] {
            assert_eq!(
                view.get::<Value>(pointer).unwrap(),
                whole.pointer(pointer).cloned(),
                "{pointer}"
            );
        }
    }

    #[test]
    fn get_parses_into_the_type_asked_for() {
        let text = doc();
        let labels: BTreeMap<String, String> = JobView::new(&text)
            .get("/metadata/labels")
            .unwrap()
            .unwrap();
        assert_eq!(labels["a/b"], "1");
        let err = JobView::new(&text)
            .get::<u32>("/metadata/name")
            .unwrap_err();
        assert!(err.message().contains("\"/metadata/name\""), "{err}");
    }

    #[test]
    fn bad_pointers_and_bad_documents_are_named() {
        let text = doc();
        let err = JobView::new(&text).get::<Value>("metadata").unwrap_err();
        assert!(err.message().contains("must start with '/'"), "{err}");
        let err = JobView::new(&text).get::<Value>("/a~2").unwrap_err();
        assert!(err.message().contains("'~' must be followed"), "{err}");
        assert!(JobView::new("{\"a\": ").get::<Value>("/a").is_err());
        assert!(JobView::new("{} trailing").get::<Value>("/a").is_err());
        let twice = r#"{"a": {"b": 1}, "a": {"c": 2}}"#;
        assert_eq!(JobView::new(twice).get::<Value>("/a/b").unwrap(), None);
        assert_eq!(JobView::new(twice).get::<u32>("/a/c").unwrap(), Some(2));
    }
}
