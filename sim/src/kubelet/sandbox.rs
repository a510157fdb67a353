//! The container sandbox: bubblewrap's command line for one container (its own user, PID, IPC and UTS namespaces; the host's system directories read-only; the pod's volumes; the user), the spawner that ties every container to the simulator process's life, and the signals to a sandbox's processes.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// The host's top-level directories a container sees, read-only: what the
/// host's tools (`sh`, `git`, ...) need to run, and nothing of users' data.
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
];

/// `PATH` in every container, as container runtimes set it.
pub(super) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where a mapped image's directory is in the container: a path of its own,
/// because at its host path (say under `/tmp`) a pod's volume could hide it.
pub(super) const IMAGE_ROOT: &str = "/.sim-image";

/// Why a sandbox cannot be started.
#[derive(Debug, thiserror::Error)]
pub(super) enum SandboxError {
    /// bubblewrap is missing or cannot make the namespaces on this host.
    #[error("the container sandbox cannot be created on this host: {0}")]
    Unavailable(String),
    /// The process could not be started.
    #[error("failed to start the container process with bwrap: {0}")]
    Spawn(#[from] std::io::Error),
}

/// One bind of a volume into the container.
#[derive(Debug, Clone)]
pub(super) struct Mount {
    /// The directory or file on the host.
    pub host: PathBuf,
    /// Where the container sees it.
    pub path: String,
    /// Bound read-only.
    pub read_only: bool,
}

/// Everything that makes one container's sandbox.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    /// The command and its arguments (resolved on the container's `PATH`).
    pub argv: Vec<String>,
    /// The working directory (made if missing).
    pub workdir: String,
    /// The container's host name (the pod's name).
    pub hostname: String,
    /// The user and group inside the user namespace.
    pub uid: i64,
    /// The group.
    pub gid: i64,
    /// The pod's volume mounts.
    pub mounts: Vec<Mount>,
    /// A mapped image's directory, bound read-only at [`IMAGE_ROOT`].
    pub image_dir: Option<PathBuf>,
    /// The environment (after `PATH` and `HOSTNAME`).
    pub env: Vec<(String, String)>,
}

/// A started sandbox: bubblewrap's outer process, and the PID (in the
/// simulator's namespace) of the sandbox's init once bubblewrap reports it.
pub(super) struct Sandbox {
    /// bubblewrap's outer process; its exit status is the command's.
    pub child: Child,
    init: Init,
}

/// The sandbox's init, as bubblewrap reports it on `--info-fd`.
enum Init {
    /// Not read yet.
    Reading(tokio::task::JoinHandle<Option<i32>>),
    /// Read (`None`: bubblewrap never said).
    Known(Option<i32>),
}

impl Sandbox {
    /// Sends SIGTERM to the container's main process, as a runtime sends it
    /// to the container's PID 1: its children hear of it only from it (a
    /// shell's `sleep` is not killed under its trap). When the main process
    /// cannot be told, the sandbox's whole session gets it.
    pub async fn terminate(&mut self) {
        let Some(init) = self.init_pid().await else {
            return;
        };
        let main = children(init);
        if main.is_empty() {
            let _ = rustix::process::kill_process_group(init, rustix::process::Signal::TERM);
        }
        for pid in main {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }

    /// Kills every process of the sandbox: the PID namespace ends with its init.
    pub async fn kill(&mut self) {
        if let Some(init) = self.init_pid().await {
            let _ = rustix::process::kill_process(init, rustix::process::Signal::KILL);
        }
        let _ = self.child.start_kill();
    }

    async fn init_pid(&mut self) -> Option<rustix::process::Pid> {
        if let Init::Reading(task) = &mut self.init {
            let read = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
            self.init = Init::Known(read.ok().and_then(Result::ok).flatten());
        }
        match self.init {
            Init::Known(pid) => pid.and_then(rustix::process::Pid::from_raw),
            Init::Reading(_) => None,
        }
    }
}

/// The children of `pid` (bubblewrap's init runs the container's command
/// as its one child), from `/proc`.
fn children(pid: rustix::process::Pid) -> Vec<rustix::process::Pid> {
    let raw = pid.as_raw_nonzero().get();
    std::fs::read_to_string(format!("/proc/{raw}/task/{raw}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter_map(rustix::process::Pid::from_raw)
        .collect()
}

/// Whether the sandbox can be made here: checked once per process, by
/// starting an empty one.
pub(super) fn check() -> Result<(), String> {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    CHECK
        .get_or_init(|| {
            let mut args = namespace_args("sim-check", 0, 0);
            args.extend(system_args(&[]));
            args.extend(["--proc", "/proc", "--dev", "/dev", "--", "true"].map(OsString::from));
            let out = std::process::Command::new("bwrap")
                .args(&args)
                .env_clear()
                .env("PATH", DEFAULT_PATH)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run bwrap (install bubblewrap): {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "bwrap cannot create user, PID, IPC and UTS namespaces ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        })
        .clone()
}

/// Starts the container's process in its sandbox.
pub(super) async fn start(spec: &Spec) -> Result<Sandbox, SandboxError> {
    check().map_err(SandboxError::Unavailable)?;
    let (info_tx, mut info_rx) = tokio::net::unix::pipe::pipe()?;
    let info_fd = info_tx.into_blocking_fd()?;
    let mut cmd = Command::new("bwrap");
    cmd.args(args(spec, info_fd.as_raw_fd()));
    let path = match &spec.image_dir {
        Some(_) => format!("{IMAGE_ROOT}:{DEFAULT_PATH}"),
        None => DEFAULT_PATH.to_owned(),
    };
    cmd.env_clear()
        .env("PATH", path)
        .env("HOSTNAME", &spec.hostname)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Out of the simulator's process group: a terminal's Ctrl-C reaches
        // the simulator, which stops its pods with their grace period.
        .process_group(0)
        .kill_on_drop(true);
    tie_to_simulator(&mut cmd, info_fd.as_raw_fd());
    let child = spawner::spawn(cmd, info_fd).await?;
    let init = tokio::spawn(async move {
        let mut buf = Vec::new();
        // bubblewrap writes `{"child-pid": N, ...}` once and closes it.
        let _ = (&mut info_rx).take(4096).read_to_end(&mut buf).await;
        let info: serde_json::Value = serde_json::from_slice(&buf).ok()?;
        info["child-pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
    });
    Ok(Sandbox {
        child,
        init: Init::Reading(init),
    })
}

/// bubblewrap's outer process gets SIGKILL when the simulator's spawner
/// thread ends, which is when the simulator's process ends, however it
/// ends; `--die-with-parent` passes that on to the sandbox's init, and the
/// kernel kills every process of a PID namespace whose init dies.
fn tie_to_simulator(cmd: &mut Command, info_fd: i32) {
    let parent = rustix::process::getpid();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs between fork and exec and makes only
    // async-signal-safe system calls (prctl, getppid, fcntl), allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // The simulator may have ended between fork and prctl.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::other("the simulator has ended"));
            }
            // bubblewrap's `--info-fd` must survive exec.
            let fd = std::os::fd::BorrowedFd::borrow_raw(info_fd);
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            Ok(())
        });
    }
}

/// The spawner: one thread for the whole process that starts every
/// container, because a parent-death signal fires when the *thread* that
/// forked the process ends, and runtime threads come and go.
mod spawner {
    use super::*;

    struct Request {
        cmd: Command,
        keep: OwnedFd,
        handle: tokio::runtime::Handle,
        reply: tokio::sync::oneshot::Sender<std::io::Result<Child>>,
    }

    fn sender() -> Option<&'static mpsc::Sender<Request>> {
        static SPAWNER: OnceLock<Option<mpsc::Sender<Request>>> = OnceLock::new();
        SPAWNER
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel::<Request>();
                std::thread::Builder::new()
                    .name("sim-kubelet-spawner".into())
                    .spawn(move || {
                        for mut req in rx {
                            let _runtime = req.handle.enter();
                            let child = req.cmd.spawn();
                            drop(req.keep);
                            let _ = req.reply.send(child);
                        }
                    })
                    .ok()?;
                Some(tx)
            })
            .as_ref()
    }

    /// Starts `cmd` from the spawner thread (keeping `keep` open until it
    /// has started), registered with the current runtime.
    pub(super) async fn spawn(cmd: Command, keep: OwnedFd) -> std::io::Result<Child> {
        let gone = || std::io::Error::other("the kubelet's spawner thread is gone");
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = Request {
            cmd,
            keep,
            handle: tokio::runtime::Handle::current(),
            reply,
        };
        sender()
            .ok_or_else(gone)?
            .send(request)
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// The namespaces, the user and the host name.
fn namespace_args(hostname: &str, uid: i64, gid: i64) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--hostname",
    ]
    .map(OsString::from)
    .into();
    args.push(hostname.into());
    args.extend(["--uid".into(), uid.to_string().into()]);
    args.extend(["--gid".into(), gid.to_string().into()]);
    args
}

/// bubblewrap's arguments for `spec`, reporting its init on `info_fd`.
fn args(spec: &Spec, info_fd: i32) -> Vec<OsString> {
    let mut args = namespace_args(&spec.hostname, spec.uid, spec.gid);
    args.extend(["--info-fd".into(), info_fd.to_string().into()]);
    // Mount points the host lacks inside a read-only system directory.
    let mut targets: Vec<&str> = spec.mounts.iter().map(|m| m.path.as_str()).collect();
    targets.push(&spec.workdir);
    let (system, expanded) = system_args_expanding(&targets);
    args.extend(system);
    args.extend(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"].map(OsString::from));
    if let Some(dir) = &spec.image_dir {
        args.extend(["--ro-bind".into(), dir.into(), IMAGE_ROOT.into()]);
    }
    // A mount inside another one comes after it.
    let mut mounts: Vec<&Mount> = spec.mounts.iter().collect();
    mounts.sort_by_key(|m| Path::new(&m.path).components().count());
    for m in mounts {
        let flag = if m.read_only { "--ro-bind" } else { "--bind" };
        args.extend([flag.into(), m.host.clone().into(), m.path.clone().into()]);
    }
    args.extend(["--dir".into(), spec.workdir.clone().into()]);
    // Only the volumes and /tmp stay writable.
    for dir in expanded.iter().rev() {
        args.extend(["--remount-ro".into(), dir.into()]);
    }
    args.extend(["--remount-ro", "/", "--chdir"].map(OsString::from));
    args.push(spec.workdir.clone().into());
    args.push("--".into());
    args.extend(spec.argv.iter().map(OsString::from));
    args
}

/// The system directories as binds (or symlinks, as on merged-/usr hosts).
fn system_args(targets: &[&str]) -> Vec<OsString> {
    system_args_expanding(targets).0
}

/// The system directories; a directory that must hold a mount point the
/// host lacks becomes a tmpfs with its entries bound one by one (returned
/// second, to be made read-only once the mounts are in place).
fn system_args_expanding(targets: &[&str]) -> (Vec<OsString>, Vec<PathBuf>) {
    let mut args = Vec::new();
    let mut expanded = Vec::new();
    for dir in SYSTEM_DIRS {
        entry_args(Path::new(dir), targets, &mut args, &mut expanded);
    }
    // A resolver configuration linked out of /etc (systemd-resolved).
    if let Ok(resolv) = std::fs::canonicalize("/etc/resolv.conf")
        && !SYSTEM_DIRS.iter().any(|d| resolv.starts_with(d))
        && let Some(parent) = resolv.parent()
    {
        args.extend(["--ro-bind-try".into(), parent.into(), parent.into()]);
    }
    (args, expanded)
}

fn entry_args(
    path: &Path,
    targets: &[&str],
    args: &mut Vec<OsString>,
    expanded: &mut Vec<PathBuf>,
) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() {
        if let Ok(target) = std::fs::read_link(path) {
            args.extend(["--symlink".into(), target.into(), path.into()]);
        }
        return;
    }
    let needs_expanding = meta.is_dir()
        && targets.iter().any(|t| {
            let t = Path::new(t);
            t != path && t.starts_with(path) && !t.exists()
        });
    if !needs_expanding {
        args.extend(["--ro-bind".into(), path.into(), path.into()]);
        return;
    }
    args.extend(["--tmpfs".into(), path.into()]);
    expanded.push(path.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            entry_args(&e.path(), targets, args, expanded);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mounts: Vec<Mount>) -> Spec {
        Spec {
            argv: vec!["sh".into(), "-c".into(), "true".into()],
            workdir: "/".into(),
            hostname: "p".into(),
            uid: 0,
            gid: 0,
            mounts,
            image_dir: None,
            env: vec![],
        }
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn nothing_of_the_host_is_bound_but_system_directories_and_volumes() {
        let mount = Mount {
            host: "/srv/vol".into(),
            path: "/data".into(),
            read_only: false,
        };
        let args = strings(&args(&spec(vec![mount]), 3));
        let binds: Vec<_> = args
            .windows(3)
            .filter(|w| w[0] == "--bind" || w[0] == "--ro-bind" || w[0] == "--dev-bind")
            .map(|w| (w[0].clone(), w[1].clone()))
            .collect();
        for (flag, host) in &binds {
            if host == "/srv/vol" {
                assert_eq!(flag, "--bind");
            } else {
                assert_eq!(flag, "--ro-bind", "{host}");
                assert!(SYSTEM_DIRS.contains(&host.as_str()), "{host}");
            }
        }
        assert!(args.iter().any(|a| a == "--unshare-pid"));
        assert!(!args.iter().any(|a| a == "--dev-bind"));
    }

    #[test]
    fn a_mount_point_missing_in_etc_expands_etc_into_its_entries() {
        let mount = Mount {
            host: "/srv/vol".into(),
            path: "/etc/not-on-this-host/conf".into(),
            read_only: true,
        };
        let args = strings(&args(&spec(vec![mount]), 3));
        let at = |w: [&str; 2]| args.windows(2).position(|x| x[0] == w[0] && x[1] == w[1]);
        assert!(at(["--tmpfs", "/etc"]).is_some());
        assert!(at(["--ro-bind", "/etc/passwd"]).is_some());
        assert!(at(["--remount-ro", "/etc"]).unwrap() > at(["--ro-bind", "/srv/vol"]).unwrap());
    }
}
