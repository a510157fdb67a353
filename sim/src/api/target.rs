//! What a resource path names (kube-apiserver's RequestInfo): the resource, namespace, name and subresource, and the store key they make; no I/O.

use crate::resources::{self, Resource};
use crate::status::ApiError;
use crate::store::Key;

/// The answer of a handler: a response, or the `Status` it fails with.
pub(super) type Reply = Result<axum::response::Response, ApiError>;

/// What a resource path names.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) resource: &'static Resource,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) sub: Option<String>,
}

impl Target {
    /// `/api/v1/...` or `/apis/<group>/<version>/...`, then
    /// `[namespaces/<ns>/]<resource>[/<name>[/<sub>]]`.
    pub(super) fn parse(segments: &[&str]) -> Option<Target> {
        let (group, version, rest) = match segments {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
            _ => (None, rest),
        };
        let (name, sub) = match rest {
            [_] => (None, None),
            [_, name] => (Some((*name).to_owned()), None),
            [_, name, sub] => (Some((*name).to_owned()), Some((*sub).to_owned())),
            _ => return None,
        };
        let resource = resources::find(group, version, rest.first()?)?;
        if namespace.is_some() && !resource.namespaced {
            return None;
        }
        if let Some(sub) = &sub
            && !resource.subresources.contains(&sub.as_str())
        {
            return None;
        }
        Some(Target {
            resource,
            namespace,
            name,
            sub,
        })
    }

    /// The store key the path names; a namespaced resource needs its namespace.
    pub(super) fn key(&self) -> Result<Key, ApiError> {
        let name = self.name.as_deref().unwrap_or_default();
        if self.resource.namespaced && self.namespace.is_none() {
            return Err(ApiError::no_route(&format!(
                "{}/{name}",
                self.resource.name
            )));
        }
        Ok(Key::new(
            self.resource,
            self.namespace.as_deref().unwrap_or_default(),
            name,
        ))
    }
}
