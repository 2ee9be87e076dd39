//! The workspace's Nx daemon, as its record names it, proven before it is
//! signalled.
//!
//! Nx 24 writes `<workspace data>/d/server-process.json` (`{processId,
//! socketPath, nxVersion}`) after it spawns `node <nx>/src/daemon/server/start.js`
//! with the workspace root as its working folder. A pid in that record may
//! since have been reused by anything, so nxops treats the pid as this
//! workspace's daemon only when all of these hold:
//! - its command line runs `src/daemon/server/start.js` from the `nx` package
//!   installed in the workspace's `node_modules` (or an ancestor's, as
//!   `node_modules/.bin/nx` is found), compared after resolving symlinks;
//! - its working folder is the workspace root;
//! - it started no later than the record was last written (2 s of slack for the
//!   clock-tick and file-time granularity): a process started after the record
//!   cannot be the one that wrote it.
//!
//! A command line that merely contains "nx" and "daemon" proves nothing
//! (`nginx: master process ... -g daemon on;`).
//!
//! The daemon's socket lives in a folder of the machine-wide sockets root
//! (`/tmp/.nx/<uid>/sockets/<hash>/d.sock`, the hash derived by Nx's native
//! code); only the folder named by this workspace's record is ever this
//! workspace's, so only that one is removed (see [`socket_folder`]).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the daemon's record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonRecord {
    pub pid: u32,
    pub socket_path: Option<PathBuf>,
    /// When the record was last written.
    pub written: Option<SystemTime>,
}

/// Slack between the daemon's start and its record's time (ticks are 10 ms,
/// file times may be rounded to the second on some file systems).
const START_SLACK: Duration = Duration::from_secs(2);

/// The Nx daemon's record: `<workspace data>/d/server-process.json`.
pub fn record_path(workspace_data_dir: &Path) -> PathBuf {
    workspace_data_dir.join("d/server-process.json")
}

/// The daemon's record, when there is one that can be read.
pub fn read_record(workspace_data_dir: &Path) -> Option<DaemonRecord> {
    let path = record_path(workspace_data_dir);
    let bytes = std::fs::read(&path).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let pid = u32::try_from(value.get("processId")?.as_u64()?).ok()?;
    let socket_path = value.get("socketPath").and_then(|s| s.as_str()).map(PathBuf::from);
    let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    Some(DaemonRecord { pid, socket_path, written })
}

/// Why the recorded pid is not (or no longer) this workspace's daemon; `None` when it is.
pub fn not_our_daemon(root: &Path, record: &DaemonRecord) -> Option<String> {
    let pid = record.pid;
    let Some(stat) = crate::procfs::stat(pid) else { return Some(format!("pid {pid} is not running")) };
    if stat.is_zombie() {
        return Some(format!("pid {pid} has exited"));
    }
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
        return Some(format!("the working folder of pid {pid} cannot be read"));
    };
    if cwd != root {
        return Some(format!("pid {pid} runs in {}, not in the workspace", cwd.display()));
    }
    if !runs_workspace_daemon_script(pid, &root, &cwd) {
        return Some(format!(
            "pid {pid} ({}) does not run this workspace's Nx daemon script",
            crate::procfs::cmdline(pid)
        ));
    }
    if let (Some(written), Some(started)) = (record.written, start_time(stat.start_time))
        && started > written + START_SLACK
    {
        return Some(format!("pid {pid} started after the daemon record was written (a reused pid)"));
    }
    None
}

/// True when some argument of `pid` is `<nx>/src/daemon/server/start.js` (or
/// `dist/src/...`) of the `nx` package installed for `root`.
fn runs_workspace_daemon_script(pid: u32, root: &Path, cwd: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let installed: Vec<PathBuf> =
        root.ancestors().filter_map(|dir| std::fs::canonicalize(dir.join("node_modules/nx")).ok()).collect();
    cmdline.split(|b| *b == 0).filter(|arg| !arg.is_empty()).any(|arg| {
        let arg = Path::new(std::ffi::OsStr::from_bytes(arg));
        if !arg.ends_with("src/daemon/server/start.js") {
            return false;
        }
        let Ok(script) = std::fs::canonicalize(cwd.join(arg)) else { return false };
        installed.iter().any(|nx| script.starts_with(nx))
    })
}

/// A start time in clock ticks since boot, as wall-clock time.
fn start_time(ticks: u64) -> Option<SystemTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: u64 = stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    let per_second = crate::procfs::ticks_per_second().max(1);
    Some(UNIX_EPOCH + Duration::from_secs(boot) + Duration::from_millis(ticks * 1000 / per_second))
}

/// Stops this workspace's daemon named by the record, if it is proven to be
/// one (see the module doc): SIGTERM, then SIGKILL after 2 s. Returns its pid.
pub fn stop(root: &Path, record: &DaemonRecord) -> Option<u32> {
    if let Some(why) = not_our_daemon(root, record) {
        tracing::info!(target: "nxops::cache", "not stopping the recorded Nx daemon: {why}");
        return None;
    }
    let pid = record.pid;
    let start = crate::procfs::stat(pid)?.start_time;
    let target = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::kill_process(target, rustix::process::Signal::TERM).ok()?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while crate::procfs::is_same_process(pid, start) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if crate::procfs::is_same_process(pid, start) {
        let _ = rustix::process::kill_process(target, rustix::process::Signal::KILL);
    }
    Some(pid)
}

/// This workspace's daemon socket folder, from its record: the parent of
/// `socketPath`, accepted only when the socket is `d.sock` in a folder directly
/// under [`sockets_base`]. A socket elsewhere (`NX_SOCKET_DIR`) is left alone:
/// nxops does not remove folders it cannot tell are Nx's.
pub fn socket_folder(record: &DaemonRecord) -> Option<PathBuf> {
    let socket = record.socket_path.as_ref()?;
    if socket.file_name()? != "d.sock" || !socket.is_absolute() {
        return None;
    }
    let folder = socket.parent()?;
    let sockets_root = folder.parent()?;
    (sockets_root == sockets_base()).then(|| folder.to_path_buf())
}

/// The machine-wide root of Nx's daemon socket folders for this user.
pub fn sockets_base() -> PathBuf {
    PathBuf::from(format!("/tmp/.nx/{}/sockets", rustix::process::getuid().as_raw()))
}

/// Removes this workspace's socket folder when no daemon serves it: the stale
/// `d.sock` (a socket, never followed) and then the folder, only if that
/// leaves it empty. Returns the folder when it was removed.
pub fn remove_socket_folder(folder: &Path) -> Option<PathBuf> {
    let socket = folder.join("d.sock");
    if std::fs::symlink_metadata(&socket).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())) {
        let _ = std::fs::remove_file(&socket);
    }
    let meta = std::fs::symlink_metadata(folder).ok()?;
    if !meta.is_dir() {
        return None;
    }
    std::fs::remove_dir(folder).ok().map(|()| folder.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_of(pid: u32) -> DaemonRecord {
        DaemonRecord { pid, socket_path: None, written: Some(SystemTime::now()) }
    }

    #[test]
    fn a_process_that_merely_mentions_nx_and_daemon_is_not_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        // bash, not sh: dash has no `exec -a`.
        let mut child = std::process::Command::new("bash")
            .args(["-c", "exec -a 'nginx: master process nx -g daemon on;' sleep 30"])
            .current_dir(dir.path())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let pid = child.id();
        let cmdline = crate::procfs::cmdline(pid);
        let why = not_our_daemon(dir.path(), &record_of(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(cmdline.contains("nx") && cmdline.contains("daemon"), "{cmdline}");
        let why = why.unwrap_or_default();
        assert!(why.contains("does not run this workspace's Nx daemon script"), "{why}");
    }

    #[test]
    fn a_process_started_after_the_record_is_a_reused_pid() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let mut record = record_of(me);
        record.written = Some(UNIX_EPOCH + Duration::from_secs(1));
        // Our own cwd is not the temp folder, so the check stops earlier; run the
        // time rule alone.
        let started = start_time(crate::procfs::stat(me).unwrap().start_time).unwrap();
        assert!(started > record.written.unwrap() + START_SLACK);
        assert!(not_our_daemon(dir.path(), &record).is_some());
    }

    #[test]
    fn only_a_socket_folder_directly_under_the_sockets_root_is_ours() {
        let base = sockets_base();
        let mut record = record_of(1);
        record.socket_path = Some(base.join("abc/d.sock"));
        assert_eq!(socket_folder(&record), Some(base.join("abc")));
        record.socket_path = Some(PathBuf::from("/home/me/d.sock"));
        assert_eq!(socket_folder(&record), None);
        record.socket_path = Some(base.join("abc/other.sock"));
        assert_eq!(socket_folder(&record), None);
        record.socket_path = None;
        assert_eq!(socket_folder(&record), None);
    }
}
