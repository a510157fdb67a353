//! Container image references: which registry an image comes from.
//!
//! Follows the rules of Docker's reference grammar, as the kubelet applies
//! them: the first path component is a registry host only when it contains a
//! `.` or a `:` or is `localhost`; otherwise the image is on Docker Hub
//! (`docker.io`), and single-name images are under `library/`.

/// An image reference split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host, with its port if any (e.g. `ghcr.io`, `localhost:5000`, `docker.io`).
    pub registry: String,
    /// The repository path within the registry (e.g. `acme/tools`, `library/alpine`).
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest (`sha256:...`), if any.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Splits `image` into registry, repository, tag and digest.
    pub fn parse(image: &str) -> ImageRef {
        let (rest, digest) = match image.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.to_owned())),
            None => (image, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), path)
            }
            _ => ("docker.io".to_owned(), rest),
        };
        // A tag is a `:` in the last path component (a port lives in the host).
        let last = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match path[last..].rfind(':') {
            Some(i) => (&path[..last + i], Some(path[last + i + 1..].to_owned())),
            None => (path, None),
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        };
        ImageRef {
            registry,
            repository,
            tag,
            digest,
        }
    }

    /// `registry/repository`, the image without tag or digest (e.g. `docker.io/library/alpine`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// The registry host of `image` (`docker.io` for Docker Hub images).
pub fn registry(image: &str) -> String {
    ImageRef::parse(image).registry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_images_get_the_default_registry_and_library() {
        let r = ImageRef::parse("alpine:3");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/alpine")
        );
        assert_eq!(r.tag.as_deref(), Some("3"));
        assert_eq!(ImageRef::parse("acme/tools").name(), "docker.io/acme/tools");
    }

    #[test]
    fn hosts_are_told_apart_from_namespaces() {
        assert_eq!(registry("ghcr.io/acme/api:1.2"), "ghcr.io");
        assert_eq!(registry("localhost/x"), "localhost");
        let r = ImageRef::parse("registry.local:5000/team/app@sha256:abc");
        assert_eq!(r.registry, "registry.local:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some("sha256:abc"));
    }

    #[test]
    fn port_is_not_a_tag() {
        let r = ImageRef::parse("localhost:5000/app");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag),
            ("localhost:5000", "app", None)
        );
    }
}
