//! Which instance this process is: the name its Jobs carry so that its next life (and only that) sweeps what a killed one left, claimed with a lock so that two executors on one host never share it.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use crate::config::{Config, hostname};

/// How many executors of one user may run side by side on one host.
const SLOTS: usize = 64;

/// This process's instance, held for its life.
#[derive(Debug)]
pub struct Instance {
    /// The name its Jobs carry (`executor.sourcegraph.com/instance`).
    pub name: String,
    /// The slot's lock, released by the kernel when the process ends, so the
    /// next process to claim the slot knows the earlier one is gone.
    _lock: Option<File>,
}

/// Why no instance could be claimed.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// The lock directory or a lock file could not be used.
    #[error("cannot use {}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Every slot is held by a running executor.
    #[error("{SLOTS} executors already run on this host as this user (locks in {})", dir.display())]
    Full {
        /// The lock directory.
        dir: PathBuf,
    },
}

impl Instance {
    /// In a pod, the pod's name (one executor per pod; its restarts are the
    /// same instance). Elsewhere `<host>-<uid>-<slot>`, the first slot whose
    /// lock in `<data dir>/instances` is free: a second `serve` or a `run` on
    /// the same host gets its own, and a restart after a crash gets the
    /// crashed one's back.
    pub fn claim(config: &Config) -> Result<Instance, InstanceError> {
        if config.kubernetes.pod.is_some() {
            return Ok(Instance {
                name: config.instance(),
                _lock: None,
            });
        }
        let Some(data_dir) = &config.embedded.data_dir else {
            // No place for locks: a name no other process has, so nothing of
            // another's is swept (and nothing of a crashed one either).
            return Ok(Instance {
                name: format!("{}-{}", hostname(), std::process::id()),
                _lock: None,
            });
        };
        Self::claim_in(&data_dir.join("instances"), &hostname())
    }

    fn claim_in(dir: &Path, host: &str) -> Result<Instance, InstanceError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| InstanceError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        // The directory's owner is this user (it is in the user's data
        // directory): users sharing a host and a namespace stay apart.
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata(dir).map_err(io(dir))?.uid();
        for slot in 0..SLOTS {
            let path = dir.join(format!("slot-{slot}.lock"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(io(&path))?;
            match file.try_lock() {
                Ok(()) => {
                    return Ok(Instance {
                        name: format!("{host}-{uid}-{slot}"),
                        _lock: Some(file),
                    });
                }
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => return Err(io(&path)(e)),
            }
        }
        Err(InstanceError::Full {
            dir: dir.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_processes_on_one_host_never_share_an_instance_and_a_freed_one_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Instance::claim_in(dir.path(), "build-host").unwrap();
        let second = Instance::claim_in(dir.path(), "build-host").unwrap();
        assert_ne!(first.name, second.name);
        assert!(
            first.name.starts_with("build-host-") && first.name.ends_with("-0"),
            "{}",
            first.name
        );
        let name = first.name.clone();
        drop(first);
        // The next life after the first ended (a crash releases it too).
        let again = Instance::claim_in(dir.path(), "build-host").unwrap();
        assert_eq!(again.name, name);
        drop(second);
    }
}
