//! The only place in nxops that waits for child processes.
//!
//! Linux gives a parent one exit status per child, to whichever `wait` call
//! asks first. A `waitpid(-1)` anywhere in a process steals statuses from every
//! other waiter (tokio::process, std's `Child::wait`), and a sidecar that is a
//! child subreaper must call it, or adopted orphans stay zombies. So nxops has
//! exactly one waiter, this module (design A of the supervision notes):
//!
//! - every child is started with [`spawn`] (or [`output`]), which runs
//!   `Command::spawn` while holding the table lock and registers the pid before
//!   releasing it, so no exit can be reaped before its owner is known;
//! - one thread blocks in `waitid(P_ALL, WEXITED | WNOWAIT)`: the kernel wakes it
//!   when any child exits (an event, not polling). It then takes the table lock,
//!   so it never reaps while a spawn is in progress (std and glibc reap a child
//!   whose `exec` failed themselves), and reaps with `waitpid(-1, WNOHANG)`
//!   until nothing is left;
//! - a reaped pid that is in the table completes its [`ExitWatch`]; any other pid
//!   is an adopted orphan (a grandchild reparented to a subreaper), counted and
//!   announced to the [`orphans`] listeners;
//! - with no children at all, `waitid` fails with `ECHILD` and the thread sleeps
//!   until the next spawn. An orphan can only be reparented to us while one of
//!   our children is alive, so nothing is missed while it sleeps.
//!
//! No `tokio::process`, no `std::process::Child::wait`, anywhere else: tokio is
//! built without its `process` feature, so the rule is checked by the compiler.

use std::collections::HashMap;
use std::io;
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use rustix::process::{Pid, WaitIdOptions, WaitOptions, WaitStatus};
use serde::Serialize;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    /// The exit code, when it exited by itself.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
}

impl Exit {
    fn from_wait(status: WaitStatus) -> Exit {
        Exit { code: status.exit_status(), signal: status.terminating_signal() }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// As std describes it, for callers that want `ExitStatus`.
    pub fn to_status(self) -> ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        match (self.code, self.signal) {
            (Some(code), _) => ExitStatus::from_raw((code & 0xff) << 8),
            (None, Some(signal)) => ExitStatus::from_raw(signal & 0x7f),
            (None, None) => ExitStatus::from_raw(0),
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "signal {} ({signal})", signal_name(signal)),
            (None, None) => write!(f, "an unknown status"),
        }
    }
}

/// `SIGKILL` for 9, and so on; the number for signals without a common name.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// Where a child's exit status lands; shared by the reaper and every watcher.
#[derive(Default)]
struct Slot {
    exit: Mutex<Option<Exit>>,
    changed: Condvar,
    notify: tokio::sync::Notify,
}

/// Waits for one child's exit, from threads or tasks; cheap to clone.
#[derive(Clone)]
pub struct ExitWatch {
    pid: u32,
    slot: Arc<Slot>,
}

impl ExitWatch {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit, if it has happened.
    pub fn try_exit(&self) -> Option<Exit> {
        *lock(&self.slot.exit)
    }

    /// Blocks until the child exits.
    pub fn wait(&self) -> Exit {
        let mut exit = lock(&self.slot.exit);
        loop {
            if let Some(exit) = *exit {
                return exit;
            }
            exit = self.slot.changed.wait(exit).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Blocks until the child exits or `timeout` passes.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Exit> {
        let deadline = Instant::now() + timeout;
        let mut exit = lock(&self.slot.exit);
        loop {
            if let Some(exit) = *exit {
                return Some(exit);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            exit = self.slot.changed.wait_timeout(exit, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Resolves when the child exits.
    pub async fn exited(&self) -> Exit {
        loop {
            let notified = self.slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(exit) = self.try_exit() {
                return exit;
            }
            notified.await;
        }
    }
}

/// A started child: its pid, its pipes, and the watch on its exit.
pub struct Child {
    pub pid: u32,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    pub exit: ExitWatch,
}

/// The reaper's bookkeeping, one lock for all of it.
#[derive(Default)]
struct Table {
    /// Children started by `spawn` and not yet reaped.
    watched: HashMap<u32, Arc<Slot>>,
    /// Bumped by every spawn, to wake the reaper thread when it had no children.
    spawns: u64,
    listeners: Vec<Arc<dyn Fn(u32, Exit) + Send + Sync>>,
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);
static SPAWNED: Condvar = Condvar::new();
static STARTED: Once = Once::new();
static ORPHANS_REAPED: AtomicU64 = AtomicU64::new(0);

fn table() -> MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts `command` and registers it with the reaper. The pipes asked for with
/// `Stdio::piped()` are handed over in the returned [`Child`].
pub fn spawn(command: &mut Command) -> io::Result<Child> {
    STARTED.call_once(start_thread);
    if let Some(&soft) = CHILD_FD_SOFT_LIMIT.get() {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec the closure only calls setrlimit, which is
        // async-signal-safe, and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
                let restored = rustix::process::Rlimit { current: Some(soft), maximum: limit.maximum };
                rustix::process::setrlimit(rustix::process::Resource::Nofile, restored).map_err(io::Error::from)
            });
        }
    }
    let mut table = table();
    let mut child = command.spawn()?;
    let pid = child.id();
    let slot = Arc::new(Slot::default());
    table.watched.insert(pid, slot.clone());
    table.spawns += 1;
    drop(table);
    SPAWNED.notify_all();
    // std's `Child` is only a pid and pipes; dropping it neither waits nor kills.
    Ok(Child {
        pid,
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        exit: ExitWatch { pid, slot },
    })
}

/// Runs `command` to completion and collects its output, like `Command::output`.
pub fn output(command: &mut Command) -> io::Result<Output> {
    use std::io::Read;
    use std::process::Stdio;
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    if command.get_program().is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty program name"));
    }
    let mut child = spawn(command)?;
    let err = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut err) = err {
            let _ = err.read_to_end(&mut bytes);
        }
        bytes
    });
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut stdout)?;
    }
    let stderr = errors.join().unwrap_or_default();
    let status = child.exit.wait().to_status();
    Ok(Output { status, stdout, stderr })
}

/// Calls `listener` with every adopted orphan reaped from now on.
pub fn on_orphan(listener: Arc<dyn Fn(u32, Exit) + Send + Sync>) {
    table().listeners.push(listener);
}

/// True while `pid` is a child started by `spawn` and not yet reaped.
pub fn is_watched(pid: u32) -> bool {
    table().watched.contains_key(&pid)
}

/// How many adopted orphans (not started by us) this process has reaped.
pub fn orphans_reaped() -> u64 {
    ORPHANS_REAPED.load(Ordering::Relaxed)
}

/// The soft limit of open files this process started with, when
/// `raise_fd_limit` raised it: every child gets it back.
static CHILD_FD_SOFT_LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Raises this process's soft limit of open files to its hard limit (each
/// supervised process holds 4 descriptors here; the usual soft limit of 1024
/// would stop a sidecar at about 250). Children get the original soft limit
/// back, so programs that use `select()` see what they always saw. Returns the
/// limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(soft), hard) = (limit.current, limit.maximum) else { return Ok(u64::MAX) };
    // An unlimited hard limit is capped at what the kernel allows a process (nr_open).
    let target = hard.unwrap_or(1 << 20).min(1 << 20);
    if target <= soft {
        return Ok(soft);
    }
    setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: hard })?;
    let _ = CHILD_FD_SOFT_LIMIT.set(soft);
    Ok(target)
}

/// Makes this process the child subreaper of its descendants: orphans are
/// reparented here instead of to init, and reaped by the reaper thread.
pub fn become_subreaper() -> io::Result<()> {
    STARTED.call_once(start_thread);
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    Ok(())
}

fn start_thread() {
    let started = std::thread::Builder::new().name("nxops-reaper".into()).spawn(reap_forever);
    if let Err(err) = started {
        // Without the thread no exit is ever seen; that must not go unnoticed.
        panic!("cannot start the reaper thread: {err}");
    }
}

fn reap_forever() {
    loop {
        let spawns_before = table().spawns;
        // Sleeps in the kernel until some child has exited; reaps nothing.
        match rustix::process::waitid(rustix::process::WaitId::All, WaitIdOptions::EXITED | WaitIdOptions::NOWAIT) {
            Ok(_) => {}
            Err(rustix::io::Errno::CHILD) => {
                let mut table = table();
                while table.spawns == spawns_before {
                    table = SPAWNED.wait(table).unwrap_or_else(|p| p.into_inner());
                }
                continue;
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => {
                tracing::error!(target: "nxops::reaper", "waitid failed: {err}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        let mut table = table();
        let mut orphans = Vec::new();
        loop {
            // `wait`, not `waitpid(None)`: rustix turns `None` into pid 0, which only
            // waits for children in our own process group, and ours each have their own.
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => {
                    let (pid, exit) = (pid.as_raw_nonzero().get() as u32, Exit::from_wait(status));
                    match table.watched.remove(&pid) {
                        Some(slot) => {
                            *lock(&slot.exit) = Some(exit);
                            slot.changed.notify_all();
                            slot.notify.notify_waiters();
                        }
                        None => orphans.push((pid, exit)),
                    }
                }
                Ok(None) | Err(rustix::io::Errno::CHILD) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(err) => {
                    tracing::error!(target: "nxops::reaper", "waitpid failed: {err}");
                    break;
                }
            }
        }
        let listeners = table.listeners.clone();
        drop(table);
        for (pid, exit) in orphans {
            ORPHANS_REAPED.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "nxops::reaper", "reaped adopted orphan {pid} ({exit})");
            for listener in &listeners {
                listener(pid, exit);
            }
        }
    }
}

/// Sends `signal` to the process group `pgid`; false when the group is gone.
pub fn signal_group(pgid: u32, signal: rustix::process::Signal) -> bool {
    match Pid::from_raw(pgid as i32) {
        Some(pgid) => rustix::process::kill_process_group(pgid, signal).is_ok(),
        None => false,
    }
}

/// Sends `signal` to one process; false when it is gone.
pub fn signal_process(pid: u32, signal: rustix::process::Signal) -> bool {
    match Pid::from_raw(pid as i32) {
        Some(pid) => rustix::process::kill_process(pid, signal).is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn exit_codes_and_signals_reach_their_watchers() {
        let ok = spawn(Command::new("true").stdin(Stdio::null())).unwrap();
        let bad = spawn(Command::new("sh").args(["-c", "exit 7"])).unwrap();
        let killed = spawn(Command::new("sleep").arg("30")).unwrap();
        assert!(signal_process(killed.pid, rustix::process::Signal::KILL));
        assert_eq!(ok.exit.wait(), Exit { code: Some(0), signal: None });
        assert_eq!(bad.exit.wait(), Exit { code: Some(7), signal: None });
        assert_eq!(killed.exit.wait(), Exit { code: None, signal: Some(9) });
        assert_eq!(killed.exit.wait().to_string(), "signal SIGKILL (9)");
    }

    #[test]
    fn children_in_their_own_process_groups_are_reaped() {
        use std::os::unix::process::CommandExt;
        let child = spawn(Command::new("sh").args(["-c", "exit 5"]).process_group(0)).unwrap();
        assert_eq!(child.exit.wait_timeout(Duration::from_secs(10)).map(|e| e.code), Some(Some(5)));
    }

    #[test]
    fn output_collects_both_streams() {
        let out = output(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"])).unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn a_missing_program_is_an_error_and_the_reaper_goes_on() {
        let err = spawn(&mut Command::new("/nonexistent/nxops-test-program")).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        // A bare name with a changed PATH makes std fork and exec by hand; its
        // failed child is reaped by std under our lock, never by the reaper.
        for _ in 0..20 {
            let err = spawn(Command::new("nxops-no-such-program").env("PATH", "/nonexistent")).err().unwrap();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
        }
        assert!(output(&mut Command::new("true")).unwrap().status.success());
    }

    #[test]
    fn wait_timeout_returns_none_while_running() {
        let child = spawn(Command::new("sleep").arg("30")).unwrap();
        assert_eq!(child.exit.wait_timeout(Duration::from_millis(50)), None);
        signal_process(child.pid, rustix::process::Signal::TERM);
        assert_eq!(child.exit.wait_timeout(Duration::from_secs(10)).unwrap().signal, Some(15));
    }

    #[test]
    fn many_concurrent_spawns_never_lose_a_status() {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let code = (t * 50 + i) % 200;
                        let child = spawn(Command::new("sh").args(["-c", &format!("exit {code}")])).unwrap();
                        assert_eq!(child.exit.wait().code, Some(code));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn a_subreaper_reaps_the_orphans_of_its_children() {
        become_subreaper().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        on_orphan(Arc::new(move |pid, exit| lock(&sink).push((pid, exit))));
        // The child prints its grandchild's pid and exits; the grandchild is reparented to us.
        let out = output(Command::new("sh").args(["-c", "sleep 0.2 & echo $!"])).unwrap();
        let grandchild: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lock(&seen).iter().any(|(pid, _)| *pid == grandchild) {
            assert!(Instant::now() < deadline, "the orphan {grandchild} was never reaped");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(orphans_reaped() >= 1);
        assert!(!std::path::Path::new(&format!("/proc/{grandchild}")).exists());
    }

    #[tokio::test]
    async fn tasks_await_exits() {
        let child = spawn(Command::new("sh").args(["-c", "sleep 0.05; exit 4"])).unwrap();
        assert_eq!(child.exit.exited().await.code, Some(4));
        assert_eq!(child.exit.exited().await.code, Some(4), "an exit is remembered");
    }
}
