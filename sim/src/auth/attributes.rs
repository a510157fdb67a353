//! A request's authorization attributes as kube-apiserver's RequestInfoFactory derives them from method, path and query, and the `Forbidden` error worded as its responsewriters word it.

use super::User;
use crate::status::ApiError;

/// What a request asks to do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`; for a non-resource request the lowercase method.
    pub verb: String,
    /// Whether the path names an API resource (`/api/v1/...`, `/apis/g/v/...`).
    pub resource_request: bool,
    /// The API group ("" for core).
    pub group: String,
    /// The resource (`pods`).
    pub resource: String,
    /// The subresource (`log`, `status`), or empty.
    pub subresource: String,
    /// The namespace, or empty.
    pub namespace: String,
    /// The object's name, or empty.
    pub name: String,
    /// The URL path (what non-resource rules match).
    pub path: String,
}

impl Attributes {
    /// The attributes of `method` on `path` with `query`, as the real
    /// server's RequestInfoFactory computes them.
    pub fn of_request(method: &str, path: &str, query: &str) -> Attributes {
        let mut a = Attributes {
            verb: method.to_ascii_lowercase(),
            path: path.to_owned(),
            ..Attributes::default()
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut rest: &[&str] = match parts.as_slice() {
            ["api", rest @ ..] if rest.len() >= 2 => rest,
            ["apis", group, rest @ ..] if rest.len() >= 2 => {
                a.group = (*group).to_owned();
                rest
            }
            _ => return a,
        };
        a.resource_request = true;
        rest = &rest[1..]; // the version
        let by_method = match rest.first() {
            Some(&special @ ("watch" | "proxy")) if rest.len() >= 2 => {
                a.verb = special.to_owned();
                rest = &rest[1..];
                false
            }
            _ => {
                a.verb = match method {
                    "POST" => "create",
                    "GET" | "HEAD" => "get",
                    "PUT" => "update",
                    "PATCH" => "patch",
                    "DELETE" => "delete",
                    _ => "",
                }
                .to_owned();
                true
            }
        };
        if rest.first() == Some(&"namespaces")
            && let Some(ns) = rest.get(1)
        {
            a.namespace = (*ns).to_owned();
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        if let Some(r) = rest.first() {
            a.resource = (*r).to_owned();
        }
        if let Some(n) = rest.get(1) {
            a.name = (*n).to_owned();
        }
        if let Some(s) = rest.get(2)
            && a.verb != "proxy"
        {
            a.subresource = (*s).to_owned();
        }
        if by_method && a.name.is_empty() && a.verb == "get" {
            let query: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            a.verb = if matches!(param("watch"), Some("true" | "1")) {
                "watch"
            } else {
                "list"
            }
            .to_owned();
            if let Some(name) = param("fieldSelector").and_then(exact_name) {
                a.name = name.to_owned();
            }
        }
        if by_method && a.name.is_empty() && a.verb == "delete" {
            a.verb = "deletecollection".to_owned();
        }
        a
    }

    /// `pods/log`, or the resource alone.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// The `403 Forbidden` the real server answers a denied request with;
    /// `reason` (the authorizer's, e.g. a binding to a missing role) follows
    /// after a colon.
    pub fn forbidden(&self, user: &User, reason: &str) -> ApiError {
        let what = if !self.resource_request {
            format!(
                "User {:?} cannot {} path {:?}",
                user.name, self.verb, self.path
            )
        } else if !self.namespace.is_empty() {
            format!(
                "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
                user.name,
                self.verb,
                self.combined_resource(),
                self.group,
                self.namespace
            )
        } else {
            format!(
                "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
                user.name,
                self.verb,
                self.combined_resource(),
                self.group
            )
        };
        let what = if reason.is_empty() {
            what
        } else {
            format!("{what}: {reason}")
        };
        let (resource, group) = if self.resource_request {
            (self.resource.as_str(), self.group.as_str())
        } else {
            ("", "")
        };
        ApiError::forbidden(resource, group, &self.name, &what)
    }
}

/// The name a `fieldSelector` of exactly `metadata.name=<name>` selects.
fn exact_name(selector: &str) -> Option<&str> {
    if selector.contains(',') {
        return None;
    }
    let value = selector
        .strip_prefix("metadata.name==")
        .or_else(|| selector.strip_prefix("metadata.name="))?;
    let valid = !value.is_empty() && value != "." && value != ".." && !value.contains(['/', '%']);
    valid.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: &str, path: &str, query: &str) -> Attributes {
        Attributes::of_request(method, path, query)
    }

    #[test]
    fn the_verb_comes_from_the_method_the_name_and_the_watch_parameter() {
        assert_eq!(attrs("GET", "/api/v1/namespaces/a/pods", "").verb, "list");
        assert_eq!(
            attrs("GET", "/api/v1/namespaces/a/pods", "watch=1").verb,
            "watch"
        );
        assert_eq!(attrs("GET", "/api/v1/namespaces/a/pods/p", "").verb, "get");
        assert_eq!(
            attrs("DELETE", "/apis/batch/v1/namespaces/a/jobs", "").verb,
            "deletecollection"
        );
        let w = attrs(
            "GET",
            "/api/v1/namespaces/a/pods",
            "watch=true&fieldSelector=metadata.name%3Dp",
        );
        assert_eq!((w.verb.as_str(), w.name.as_str()), ("watch", "p"));
    }

    #[test]
    fn subresources_namespaces_and_groups_are_read_from_the_path() {
        let a = attrs("GET", "/api/v1/namespaces/ns/pods/p/log", "");
        assert_eq!(
            (
                a.group.as_str(),
                a.namespace.as_str(),
                a.combined_resource().as_str(),
                a.name.as_str()
            ),
            ("", "ns", "pods/log", "p")
        );
        let n = attrs("PUT", "/api/v1/namespaces/ns/status", "");
        assert_eq!(
            (n.resource.as_str(), n.name.as_str(), n.subresource.as_str()),
            ("namespaces", "ns", "status")
        );
        let j = attrs("POST", "/apis/batch/v1/namespaces/ns/jobs", "");
        assert_eq!((j.group.as_str(), j.verb.as_str()), ("batch", "create"));
        assert!(!attrs("GET", "/apis/batch/v1", "").resource_request);
        assert!(!attrs("GET", "/sim/stats", "").resource_request);
    }

    #[test]
    fn a_denial_is_worded_as_the_real_server_words_it() {
        let user = User::service_account("ns", "sa", "u");
        let job = attrs("POST", "/apis/batch/v1/namespaces/ns/jobs", "");
        assert_eq!(
            job.forbidden(&user, "").message,
            "jobs.batch is forbidden: User \"system:serviceaccount:ns:sa\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"ns\""
        );
        let pods = attrs("GET", "/api/v1/pods", "");
        assert_eq!(
            pods.forbidden(&user, "").message,
            "pods is forbidden: User \"system:serviceaccount:ns:sa\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
        );
        let log = attrs("GET", "/api/v1/namespaces/ns/pods/p/log", "");
        assert_eq!(
            log.forbidden(&user, "").message,
            "pods \"p\" is forbidden: User \"system:serviceaccount:ns:sa\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"ns\""
        );
        let stats = attrs("GET", "/sim/stats", "");
        assert_eq!(
            stats.forbidden(&user, "").message,
            "forbidden: User \"system:serviceaccount:ns:sa\" cannot get path \"/sim/stats\""
        );
    }
}
