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
//! The runtime folder is `$XDG_RUNTIME_DIR/nxops`, else `<tmp>/nxops-<uid>`; when
//! that one is not ours (a folder of another user or a symlink in its place: on a
//! shared `/tmp` anyone can create the name first), `<state base>/run`, which no
//! other user can create first (see [`runtime_dir`]).
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

/// The runtime folder: the preferred one (`$XDG_RUNTIME_DIR/nxops` when that is
/// set, absolute and short enough, else `<tmp>/nxops-<uid>`, where `<tmp>` is
/// `$TMPDIR` when absolute and short enough, else `/tmp`), created 0700.
///
/// When the preferred folder cannot be ours (another user created it first, a
/// symlink or a file is in its place, or it cannot be created), the private
/// fallback `<state base>/run` is used instead: it lies in the user's own state
/// folder, so no other user can create it first. Every nxops process of the user
/// makes the same choice from the same folders, so they still meet at one lock.
/// The switch is said once per process on stderr. Nothing is ever written
/// through a symlink: a folder that is a symlink is refused, never followed.
pub fn runtime_dir(env: &Environment) -> anyhow::Result<PathBuf> {
    let preferred = preferred_runtime_dir(env);
    let refusal = match ensure_private_dir(&preferred, env.uid()) {
        Ok(()) => return Ok(preferred),
        Err(refusal) => refusal,
    };
    let Some(fallback) = fallback_runtime_dir(env) else {
        bail!("{refusal:#}, and there is no state folder (no home directory) for a private one");
    };
    if let Some(parent) = fallback.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("{refusal:#}, and the state folder {} cannot be created", parent.display()))?;
    }
    ensure_private_dir(&fallback, env.uid())
        .with_context(|| format!("{refusal:#}; the private fallback failed too"))?;
    say_fallback_once(&refusal, &fallback);
    Ok(fallback)
}

/// The folder nxops uses unless it is taken (see [`runtime_dir`]).
pub fn preferred_runtime_dir(env: &Environment) -> PathBuf {
    // Leave room for "/<16 hex>.sock" (22 bytes).
    let fits = |dir: &Path, extra: usize| dir.is_absolute() && dir.as_os_str().len() + extra + 22 <= MAX_SOCKET_PATH;
    if let Some(xdg) = env.get_non_empty("XDG_RUNTIME_DIR").map(Path::new)
        && fits(xdg, "/nxops".len())
    {
        return xdg.join("nxops");
    }
    let name = format!("nxops-{}", env.uid());
    let tmp = env.get_non_empty("TMPDIR").map(Path::new).filter(|t| fits(t, name.len() + 1));
    tmp.unwrap_or(Path::new("/tmp")).join(name)
}

/// `<state base>/run`, the private folder used when the preferred one is taken.
pub fn fallback_runtime_dir(env: &Environment) -> Option<PathBuf> {
    Some(crate::config::state_base(env)?.join("run"))
}

fn say_fallback_once(refusal: &anyhow::Error, fallback: &Path) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            target: "nxops::sidecar",
            "{refusal:#}; using the private folder {} for sockets and locks instead",
            fallback.display()
        );
    }
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

    #[test]
    fn a_taken_runtime_folder_falls_back_to_the_state_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (xdg, state) = (dir.path().join("xdg"), dir.path().join("state"));
        std::fs::create_dir(&xdg).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        // Someone put a symlink where our folder goes: it is not followed.
        std::os::unix::fs::symlink(&elsewhere, xdg.join("nxops")).unwrap();
        let env = Environment::from_pairs([
            ("XDG_RUNTIME_DIR", xdg.to_str().unwrap()),
            ("NXOPS_STATE_DIR", state.to_str().unwrap()),
        ]);
        assert_eq!(preferred_runtime_dir(&env), xdg.join("nxops"));
        let chosen = runtime_dir(&env).unwrap();
        assert_eq!(chosen, state.join("run"));
        assert_eq!(std::fs::metadata(&chosen).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(runtime_dir(&env).unwrap(), chosen, "every call agrees");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0, "nothing written through the symlink");
    }

    #[test]
    fn preferred_folder_without_xdg_is_under_tmpdir() {
        let env = Environment::from_pairs([("TMPDIR", "/var/tmp/x")]);
        let uid = rustix::process::getuid().as_raw();
        assert_eq!(preferred_runtime_dir(&env), PathBuf::from(format!("/var/tmp/x/nxops-{uid}")));
        let relative = Environment::from_pairs([("TMPDIR", "tmp")]);
        assert_eq!(preferred_runtime_dir(&relative), PathBuf::from(format!("/tmp/nxops-{uid}")));
        let long = "/t".repeat(60);
        let too_long = Environment::from_pairs([("TMPDIR", long.as_str()), ("XDG_RUNTIME_DIR", long.as_str())]);
        assert_eq!(preferred_runtime_dir(&too_long), PathBuf::from(format!("/tmp/nxops-{uid}")));
    }
}
