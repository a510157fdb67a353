//! Which local program stands in for an image: the `images:` mapping of the `--nodes` file, from image reference globs to an executable (the image's entrypoint) or a directory of tools; no process handling.

use std::path::{Path, PathBuf};

/// One mapping: pods whose image matches `image` run `command`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageMapping {
    /// A glob over image references (`*` within a path segment, `**`
    /// across them, `?`, `[abc]`, `{a,b}`), e.g. `sourcegraph/executor:*`.
    pub image: String,
    /// An absolute path: an executable is the image's entrypoint (run when
    /// the container gives no `command`); a directory is a set of tools.
    /// Either way its directory is bound read-only into the container at
    /// `/.sim-image` and put first on the container's `PATH`.
    pub command: PathBuf,
}

/// What a mapped image provides to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedImage {
    /// The directory bound read-only and put first on `PATH`.
    pub dir: PathBuf,
    /// The entrypoint, when the mapping names an executable.
    pub entrypoint: Option<PathBuf>,
}

/// Why a mapping cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageMappingError {
    /// The path is relative.
    #[error("images[{index}].command: {path} is not an absolute path")]
    Relative {
        /// The mapping's index.
        index: usize,
        /// The path.
        path: String,
    },
    /// The image glob is empty.
    #[error("images[{index}].image: an image reference glob is required")]
    EmptyGlob {
        /// The mapping's index.
        index: usize,
    },
}

/// Checks what can be checked before any pod runs (the path itself may
/// appear later, e.g. a binary still being built).
pub fn validate(mappings: &[ImageMapping]) -> Result<(), ImageMappingError> {
    for (index, m) in mappings.iter().enumerate() {
        if m.image.trim().is_empty() {
            return Err(ImageMappingError::EmptyGlob { index });
        }
        if !m.command.is_absolute() {
            return Err(ImageMappingError::Relative {
                index,
                path: m.command.display().to_string(),
            });
        }
    }
    Ok(())
}

/// The first mapping whose glob matches `image`, resolved against the file
/// system as it is now.
pub fn resolve(mappings: &[ImageMapping], image: &str) -> Option<MappedImage> {
    let m = mappings
        .iter()
        .find(|m| glob_match::glob_match(&m.image, image))?;
    Some(mapped(&m.command))
}

fn mapped(path: &Path) -> MappedImage {
    if path.is_dir() {
        return MappedImage {
            dir: path.to_path_buf(),
            entrypoint: None,
        };
    }
    MappedImage {
        dir: path
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
        entrypoint: Some(path.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(image: &str, command: &str) -> ImageMapping {
        ImageMapping {
            image: image.into(),
            command: command.into(),
        }
    }

    #[test]
    fn the_first_matching_glob_decides_and_unmapped_images_have_none() {
        let dir = std::env::temp_dir();
        let exe = dir.join("executor-not-there");
        let mappings = [
            mapping("sourcegraph/executor:*", exe.to_str().unwrap()),
            mapping("**", dir.to_str().unwrap()),
        ];
        let m = resolve(&mappings[..1], "sourcegraph/executor:6.0").unwrap();
        assert_eq!(m.entrypoint.as_deref(), Some(exe.as_path()));
        assert_eq!(m.dir, dir);
        assert_eq!(resolve(&mappings[..1], "busybox"), None);
        assert_eq!(resolve(&mappings[..1], "sourcegraph/executor"), None);
        let tools = resolve(&mappings, "docker.io/library/alpine:3").unwrap();
        assert_eq!(tools.entrypoint, None);
        assert_eq!(tools.dir, dir);
    }

    #[test]
    fn relative_paths_and_empty_globs_are_refused() {
        assert_eq!(
            validate(&[mapping("a:*", "target/debug/executor")]).unwrap_err(),
            ImageMappingError::Relative {
                index: 0,
                path: "target/debug/executor".into()
            }
        );
        assert!(validate(&[mapping(" ", "/bin/sh")]).is_err());
        assert!(validate(&[mapping("a:*", "/bin/sh")]).is_ok());
    }
}
