//! One owner per workspace, across every nxops process of the user.
//!
//! The first sidecar attached to a workspace takes an exclusive `flock` on
//! `<runtime>/<key>.lock` and serves `<runtime>/<key>.sock`; every other sidecar
//! attached to it is a follower that keeps one connection to the owner and
//! forwards the workspace's requests over it. The kernel drops the lock when the
//! owner exits or dies (even by SIGKILL), and the owner's socket connections end
//! at the same moment, so followers notice at once, race for the lock, and the
//! winner becomes the new owner while the others reconnect to it.
//!
//! Files (runtime folder 0700, owned by us; socket 0600; peers must have our uid):
//! - `<key>.lock`: the lock, never deleted (deleting a lock file others wait on splits the lock).
//! - `<key>.sock`: the owner's socket; a stale one is replaced by the next owner.
//! - `<key>.json`: `{pid, root, socket, startedAt, version}`, written by the owner.
//!
//! `<key>` is 16 hex digits of sha256(workspace root), so paths stay far below
//! the 108-byte `sun_path` limit whatever the workspace path is.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::environment::Environment;

/// `sun_path` is 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Where one workspace's lock, socket and owner record live.
#[derive(Debug, Clone)]
pub struct Paths {
    pub lock: PathBuf,
    pub socket: PathBuf,
    pub info: PathBuf,
}

/// The owner's record, read by followers, the CLI and the Nx plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerInfo {
    pub pid: u32,
    pub root: PathBuf,
    pub socket: PathBuf,
    pub started_at: u64,
    pub version: String,
}

impl Paths {
    pub fn for_workspace(env: &Environment, key: &str) -> anyhow::Result<Paths> {
        let dir = runtime_dir(env)?;
        let paths = Paths {
            lock: dir.join(format!("{key}.lock")),
            socket: dir.join(format!("{key}.sock")),
            info: dir.join(format!("{key}.json")),
        };
        if paths.socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!("the socket path {} is longer than {MAX_SOCKET_PATH} bytes", paths.socket.display());
        }
        Ok(paths)
    }

    /// The running owner's record, when there is one.
    pub fn owner_info(&self) -> Option<OwnerInfo> {
        serde_json::from_slice(&std::fs::read(&self.info).ok()?).ok()
    }
}

/// `$XDG_RUNTIME_DIR/nxops` when that is set and short enough, else `/tmp/nxops-<uid>`.
/// Created 0700; refused if it is a symlink, not ours, or open to others.
pub fn runtime_dir(env: &Environment) -> anyhow::Result<PathBuf> {
    let fallback = PathBuf::from(format!("/tmp/nxops-{}", env.uid()));
    let dir = match env.get_non_empty("XDG_RUNTIME_DIR").map(Path::new) {
        // Leave room for "/<16 hex>.sock".
        Some(xdg) if xdg.is_absolute() && xdg.as_os_str().len() + 6 + 22 <= MAX_SOCKET_PATH => xdg.join("nxops"),
        _ => fallback,
    };
    ensure_private_dir(&dir, env.uid())?;
    Ok(dir)
}

fn ensure_private_dir(dir: &Path, uid: u32) -> anyhow::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("failed to create the runtime folder {}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("failed to inspect {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("the runtime folder {} is not a real folder (a symlink or a file is in its place)", dir.display());
    }
    if meta.uid() != uid {
        bail!("the runtime folder {} belongs to uid {}, not to you", dir.display(), meta.uid());
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(|| {
            format!("the runtime folder {} is open to other users and cannot be tightened", dir.display())
        })?;
    }
    Ok(())
}

/// Held while this process owns the workspace; dropping it releases everything.
pub struct OwnerGuard {
    paths: Paths,
    lock: Option<File>,
    listener: Arc<UnixListener>,
}

/// Tries to become the owner without waiting. `Ok(None)` means another process owns it.
pub fn try_own(paths: &Paths, root: &Path) -> anyhow::Result<Option<OwnerGuard>> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&paths.lock)
        .with_context(|| format!("failed to open the lock file {}", paths.lock.display()))?;
    match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("failed to lock {}", paths.lock.display())),
    }
    // We hold the lock, so any socket file left here is stale.
    let _ = std::fs::remove_file(&paths.socket);
    let listener =
        UnixListener::bind(&paths.socket).with_context(|| format!("failed to listen on {}", paths.socket.display()))?;
    std::fs::set_permissions(&paths.socket, std::fs::Permissions::from_mode(0o600))?;
    let info = OwnerInfo {
        pid: std::process::id(),
        root: root.to_path_buf(),
        socket: paths.socket.clone(),
        started_at: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    write_atomically(&paths.info, &serde_json::to_vec_pretty(&info)?)?;
    Ok(Some(OwnerGuard { paths: paths.clone(), lock: Some(lock), listener: Arc::new(listener) }))
}

impl OwnerGuard {
    pub fn listener(&self) -> Arc<UnixListener> {
        self.listener.clone()
    }

    pub fn socket(&self) -> &Path {
        &self.paths.socket
    }

    /// Stops accepting connections (the accept loop ends) while the lock is still held.
    pub fn stop_listening(&self) {
        let _ = std::fs::remove_file(&self.paths.socket);
        let _ = rustix::net::shutdown(&*self.listener, rustix::net::Shutdown::Both);
    }
}

impl Drop for OwnerGuard {
    fn drop(&mut self) {
        // Remove the files first, then wake the accept loop, then unlock:
        // a follower that wins the lock next always finds a clean folder.
        let _ = std::fs::remove_file(&self.paths.socket);
        let _ = std::fs::remove_file(&self.paths.info);
        let _ = rustix::net::shutdown(&*self.listener, rustix::net::Shutdown::Both);
        drop(self.lock.take());
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("failed to write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("failed to replace {}", path.display()))?;
    Ok(())
}

/// True when the connecting process runs as our user.
pub fn peer_is_us(stream: &UnixStream) -> bool {
    match rustix::net::sockopt::socket_peercred(stream) {
        Ok(cred) => cred.uid.as_raw() == rustix::process::getuid().as_raw(),
        Err(_) => false,
    }
}

/// Connects to the owner's socket, if an owner is listening.
pub fn connect(paths: &Paths) -> Option<UnixStream> {
    let stream = UnixStream::connect(&paths.socket).ok()?;
    stream.set_read_timeout(None).ok()?;
    Some(stream)
}

/// A backoff for the follower loop: 5 ms doubling to 200 ms.
#[derive(Debug)]
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(5))
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Duration::from_millis(200));
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_owner_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            lock: dir.path().join("k.lock"),
            socket: dir.path().join("k.sock"),
            info: dir.path().join("k.json"),
        };
        let first = try_own(&paths, Path::new("/ws")).unwrap().expect("first owner");
        assert!(try_own(&paths, Path::new("/ws")).unwrap().is_none());
        assert_eq!(paths.owner_info().unwrap().pid, std::process::id());
        let mode = std::fs::metadata(&paths.socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(first);
        assert!(!paths.socket.exists() && !paths.info.exists());
        assert!(try_own(&paths, Path::new("/ws")).unwrap().is_some());
    }

    #[test]
    fn runtime_folder_must_be_private_and_ours() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let err = ensure_private_dir(&link, rustix::process::getuid().as_raw()).unwrap_err();
        assert!(err.to_string().contains("not a real folder"), "{err}");
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure_private_dir(&open, rustix::process::getuid().as_raw()).unwrap();
        assert_eq!(std::fs::metadata(&open).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
