//! One supervised process: a task that owns its lifecycle.
//!
//! The task is the only writer of the process's state. It starts runs, learns
//! of exits from the reaper (an event, never polling), decides restarts with
//! the [`RestartBook`], probes health, and stops the whole tree on request.
//! Everyone else talks to it through [`Cmd`] and reads the shared [`View`].
//!
//! ```text
//!  stopped ──start──▶ running ──exit/failed probe/memory──▶ backoff ──delay──▶ running
//!     ▲                  │  ╲                                   │
//!     └──────stop────────┘   ╲──budget spent──▶ failed           └──stop──▶ stopped
//!                             ╲─clean exit (on-failure/never)──▶ exited
//! ```

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::leak::LeakWatch;
use super::logs::{self, LogStream};
use super::policy::{Decision, RestartBook};
use super::spec::{Probe, ProcessSpec};
use super::tree::{self, MARKER_VAR, RunId};
use crate::procfs;
use crate::reaper::{self, Exit, ExitWatch};

/// Where a spec came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Declared in the workspace's nxops.json.
    Config,
    /// Started at run time by a connected client.
    Client,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Running,
    /// Ended; waiting out the backoff delay before the next run.
    Backoff,
    Stopping,
    /// Not running because nobody started it, or a user stopped it.
    Stopped,
    /// Ended by itself and its restart mode does not restart it.
    Exited,
    /// Given up: the restart budget is spent. Stays so until started again.
    Failed,
}

/// How the last run ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastExit {
    pub pid: u32,
    /// `{code, signal}`, null for a start that failed (no process ran).
    #[serde(flatten, with = "exit_or_nulls")]
    pub exit: Option<Exit>,
    /// In words: "exit code 1", "signal SIGKILL (9)", "health check failed 3 times", "stopped".
    pub reason: String,
    pub at: u64,
    pub uptime_ms: u64,
}

/// What `list` shows for one process; written only by its task.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub name: String,
    pub origin: Origin,
    pub state: State,
    pub pid: Option<u32>,
    pub pgid: Option<u32>,
    pub run: u64,
    pub started_at: Option<u64>,
    pub uptime_ms: Option<u64>,
    /// Restarts made by the supervisor since the process was last started by hand.
    pub restarts: u32,
    pub healthy: Option<bool>,
    /// Resident memory of the whole tree and its CPU use, at the last sample.
    pub rss_bytes: u64,
    pub cpu_percent: f64,
    /// The tree's processes at the last sample.
    pub pids: Vec<u32>,
    /// Members that exited and that their parent (in the tree) has not reaped,
    /// in two samples in a row: zombies nobody will reap while that parent lives.
    pub zombies: Vec<u32>,
    #[serde(skip)]
    zombies_seen: Vec<u32>,
    pub last_exit: Option<LastExit>,
    pub next_restart_in_ms: Option<u64>,
    pub given_up: Option<String>,
    pub command: String,
    pub spec: ProcessSpec,
    #[serde(skip)]
    started_instant: Option<Instant>,
    #[serde(skip)]
    next_restart_at: Option<Instant>,
}

impl View {
    /// Records the zombies of this sample; those also in the previous one linger.
    pub fn sampled_zombies(&mut self, now: Vec<u32>) {
        self.zombies = now.iter().copied().filter(|pid| self.zombies_seen.contains(pid)).collect();
        self.zombies_seen = now;
    }

    /// The view as of now (uptime and countdown computed at read time).
    pub fn current(&self) -> View {
        let mut view = self.clone();
        view.uptime_ms = self.started_instant.map(|t| t.elapsed().as_millis() as u64);
        view.next_restart_in_ms =
            self.next_restart_at.map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64);
        view
    }
}

/// `Option<Exit>` flattened as `code` and `signal`, both null when there was no exit.
mod exit_or_nulls {
    use super::Exit;
    use serde::Serialize;

    pub fn serialize<S: serde::Serializer>(exit: &Option<Exit>, s: S) -> Result<S::Ok, S::Error> {
        exit.unwrap_or(Exit { code: None, signal: None }).serialize(s)
    }
}

pub enum Cmd {
    /// Start (or, when running, do nothing); a user start forgives past failures.
    Start {
        reply: oneshot::Sender<Result<(), String>>,
    },
    Stop {
        force: bool,
        reply: oneshot::Sender<()>,
    },
    Restart {
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The sampler found the tree over its memory limit or leaking with restart on.
    Fail {
        reason: String,
    },
    /// Replace the spec (a client's new definition, or a reloaded file); applies from the next run.
    Respec(Box<ProcessSpec>),
}

/// The handle everyone else holds.
pub struct Service {
    pub tx: mpsc::UnboundedSender<Cmd>,
    pub view: Arc<Mutex<View>>,
    pub stdout: Arc<LogStream>,
    pub stderr: Arc<LogStream>,
    pub leak: Mutex<LeakWatch>,
    /// CPU ticks and time at the previous sample.
    pub last_cpu: Mutex<Option<(u64, Instant, u64)>>,
}

impl Service {
    pub fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One run of the process.
struct Running {
    exit: ExitWatch,
    pid: u32,
    run: u64,
    started: Instant,
}

pub fn create(shared: &Arc<Shared>, spec: ProcessSpec, origin: Origin, start_now: bool) -> Arc<Service> {
    let (tx, rx) = mpsc::unbounded_channel();
    let log_dir = shared.state_dir.as_ref().map(|d| d.join("logs"));
    let log_path = |stream: &str| log_dir.as_ref().map(|d| d.join(format!("{}.{stream}.log", spec.name)));
    let view = View {
        name: spec.name.clone(),
        origin,
        state: State::Stopped,
        pid: None,
        pgid: None,
        run: 0,
        started_at: None,
        uptime_ms: None,
        restarts: 0,
        healthy: None,
        rss_bytes: 0,
        cpu_percent: 0.0,
        pids: Vec::new(),
        zombies: Vec::new(),
        zombies_seen: Vec::new(),
        last_exit: None,
        next_restart_in_ms: None,
        given_up: None,
        command: spec.command_line(),
        spec: spec.clone(),
        started_instant: None,
        next_restart_at: None,
    };
    let service = Arc::new(Service {
        tx,
        view: Arc::new(Mutex::new(view)),
        stdout: LogStream::new(log_path("stdout")),
        stderr: LogStream::new(log_path("stderr")),
        leak: Mutex::new(LeakWatch::default()),
        last_cpu: Mutex::new(None),
    });
    let actor = Actor {
        shared: shared.clone(),
        service: service.clone(),
        spec,
        book: RestartBook::default(),
        restarting: None,
    };
    shared.runtime.spawn(actor.run(rx, start_now));
    service
}

struct Actor {
    shared: Arc<Shared>,
    service: Arc<Service>,
    spec: ProcessSpec,
    book: RestartBook,
    /// The pid of the run that ended when the next start is a restart, and
    /// whether a user asked for it (else the supervisor's policy did).
    restarting: Option<(u32, bool)>,
}

/// Answers a client's start once the task has acted on it.
type Reply = oneshot::Sender<Result<(), String>>;

enum Next {
    /// Start a run now; the reply (a client's start) is sent once it has started or failed to.
    Start(Option<Reply>),
    Wait,
    Backoff(Instant),
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>, start_now: bool) {
        let mut next = if start_now { Next::Start(None) } else { Next::Wait };
        loop {
            next = match next {
                Next::Start(reply) => match self.start() {
                    Ok(running) => {
                        reply.map(|r| r.send(Ok(())));
                        self.supervise(running, &mut rx).await
                    }
                    Err(reason) => {
                        let next = self.after_failed_start(reason);
                        // The start was carried out; the view says how it failed.
                        reply.map(|r| r.send(Ok(())));
                        next
                    }
                },
                Next::Wait => match rx.recv().await {
                    None => return,
                    Some(cmd) => self.idle_command(cmd),
                },
                Next::Backoff(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => Next::Start(None),
                        cmd = rx.recv() => match cmd {
                            None => return,
                            Some(cmd) => self.backoff_command(cmd, at),
                        },
                    }
                }
            };
            if self.shared.stopped() && !matches!(next, Next::Wait) {
                if let Next::Start(Some(reply)) = next {
                    let _ = reply.send(Err("the workspace is being detached".into()));
                }
                next = Next::Wait;
            }
        }
    }

    fn idle_command(&mut self, cmd: Cmd) -> Next {
        match cmd {
            Cmd::Start { reply } | Cmd::Restart { reply } => {
                self.book.forgive();
                self.view().restarts = 0;
                match self.start_now() {
                    Ok(()) => Next::Start(Some(reply)),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        Next::Wait
                    }
                }
            }
            Cmd::Stop { reply, .. } => {
                let _ = reply.send(());
                Next::Wait
            }
            Cmd::Fail { .. } => Next::Wait,
            Cmd::Respec(spec) => {
                self.respec(*spec);
                Next::Wait
            }
        }
    }

    fn backoff_command(&mut self, cmd: Cmd, at: Instant) -> Next {
        match cmd {
            Cmd::Start { reply } | Cmd::Restart { reply } => {
                self.restarting = None;
                Next::Start(Some(reply))
            }
            Cmd::Stop { reply, .. } => {
                self.restarting = None;
                self.set_state(State::Stopped);
                self.view().next_restart_at = None;
                let _ = reply.send(());
                Next::Wait
            }
            Cmd::Fail { .. } => Next::Backoff(at),
            Cmd::Respec(spec) => {
                self.respec(*spec);
                Next::Backoff(at)
            }
        }
    }

    /// A start must not wait for the actor's loop; this only checks that the
    /// sidecar is not shutting down.
    fn start_now(&self) -> Result<(), String> {
        if self.shared.stopped() { Err("the workspace is being detached".into()) } else { Ok(()) }
    }

    fn respec(&mut self, spec: ProcessSpec) {
        let mut view = self.view();
        view.command = spec.command_line();
        view.spec = spec.clone();
        drop(view);
        self.spec = spec;
    }

    fn view(&self) -> MutexGuard<'_, View> {
        self.service.view()
    }

    fn set_state(&self, state: State) {
        self.view().state = state;
    }

    /// Spawns a run: its own process group, stdin from /dev/null, output to the logs.
    fn start(&mut self) -> Result<Running, String> {
        let spec = &self.spec;
        let run = self.shared.next_run();
        let program = resolve_program(spec)?;
        let mut command = Command::new(&program);
        command
            .args(&spec.args)
            .current_dir(&spec.cwd)
            .envs(&spec.env)
            .env(MARKER_VAR, tree::marker(&self.shared.key, &spec.name, run))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = reaper::spawn(&mut command).map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let pid = child.pid;
        let start_time = procfs::stat(pid).map_or(0, |s| s.start_time);
        let stop_timeout_ms = spec.stop_timeout.as_millis() as u64;
        self.shared
            .ledger()
            .started(&spec.name, super::ledger::Record { run, pid, pgid: pid, start_time, stop_timeout_ms });
        // Each pump writes its run's header before the run's output (logs.rs).
        let header = format!("run {run}, pid {pid}");
        if let Some(out) = child.stdout.take() {
            self.shared.runtime.spawn(logs::pump_run(OwnedFd::from(out), self.service.stdout.clone(), header.clone()));
        }
        if let Some(err) = child.stderr.take() {
            self.shared.runtime.spawn(logs::pump_run(OwnedFd::from(err), self.service.stderr.clone(), header));
        }
        let started = Instant::now();
        let previous = self.restarting.take();
        {
            let mut view = self.view();
            view.state = State::Running;
            view.pid = Some(pid);
            view.pgid = Some(pid);
            view.run = run;
            view.started_at = Some(crate::clock::now_ms());
            view.started_instant = Some(started);
            view.next_restart_at = None;
            view.given_up = None;
            view.healthy = spec.health.as_ref().map(|_| true);
            view.pids = vec![pid];
            view.rss_bytes = 0;
            view.cpu_percent = 0.0;
        }
        if let Ok(mut leak) = self.service.leak.lock() {
            leak.reset();
        }
        let restarts = self.view().restarts;
        self.shared.publish(
            "processStarted",
            json!({"name": spec.name, "pid": pid, "pgid": pid, "run": run, "restarts": restarts}),
        );
        if let Some((previous_pid, requested)) = previous {
            self.shared.publish(
                "processRestarted",
                json!({"name": spec.name, "pid": pid, "previousPid": previous_pid, "restarts": restarts,
                       "requested": requested}),
            );
        }
        Ok(Running { exit: child.exit, pid, run, started })
    }

    fn after_failed_start(&mut self, reason: String) -> Next {
        tracing::warn!(target: "nxops::supervisor", "{}: {reason}", self.spec.name);
        let last = LastExit { pid: 0, exit: None, reason: reason.clone(), at: crate::clock::now_ms(), uptime_ms: 0 };
        self.view().last_exit = Some(last);
        self.decide(0, None, reason, Duration::ZERO, true)
    }

    /// Watches one run until it ends or is stopped; returns what comes next.
    async fn supervise(&mut self, running: Running, rx: &mut mpsc::UnboundedReceiver<Cmd>) -> Next {
        let health = self.spec.health.clone();
        let interval = health.as_ref().map_or(Duration::from_secs(3600), |h| h.interval);
        let mut probe_at = tokio::time::Instant::now() + interval;
        let mut failed_probes = 0u32;
        loop {
            tokio::select! {
                exit = running.exit.exited() => {
                    let reason = exit.to_string();
                    let failed = !exit.success();
                    return self.ended(&running, Some(exit), reason, failed, false).await;
                }
                cmd = rx.recv() => match cmd {
                    None => {
                        self.stop_run(&running, false).await;
                        return Next::Wait;
                    }
                    Some(Cmd::Start { reply }) => { let _ = reply.send(Ok(())); }
                    Some(Cmd::Stop { force, reply }) => {
                        self.stop_run(&running, force).await;
                        let _ = reply.send(());
                        return Next::Wait;
                    }
                    Some(Cmd::Restart { reply }) => {
                        self.stop_run(&running, false).await;
                        self.restarting = Some((running.pid, true));
                        self.book.forgive();
                        self.view().restarts = 0;
                        return Next::Start(Some(reply));
                    }
                    Some(Cmd::Fail { reason }) => {
                        self.terminate(&running).await;
                        let exit = running.exit.try_exit();
                        return self.ended(&running, exit, reason, true, true).await;
                    }
                    Some(Cmd::Respec(spec)) => self.respec(*spec),
                },
                () = tokio::time::sleep_until(probe_at), if health.is_some() => {
                    let health = health.as_ref().expect("guarded");
                    let ok = tokio::select! {
                        ok = probe(&health.probe, &self.spec, health.timeout) => ok,
                        exit = running.exit.exited() => {
                            let reason = exit.to_string();
                            return self.ended(&running, Some(exit), reason, !exit.success(), false).await;
                        }
                    };
                    failed_probes = if ok { 0 } else { failed_probes + 1 };
                    self.view().healthy = Some(ok);
                    probe_at = tokio::time::Instant::now() + interval;
                    if failed_probes >= health.retries {
                        self.terminate(&running).await;
                        let exit = running.exit.try_exit();
                        let reason = format!("health check failed {failed_probes} times");
                        return self.ended(&running, exit, reason, true, true).await;
                    }
                }
            }
        }
    }

    /// A run ended by itself (or was ended for failing); decide what follows.
    async fn ended(
        &mut self,
        running: &Running,
        exit: Option<Exit>,
        reason: String,
        failed: bool,
        by_us: bool,
    ) -> Next {
        let uptime = running.started.elapsed();
        // Whatever the leader left in its group or escaped with goes too, off the restart path.
        self.clean_up_in_background(running);
        self.shared.ledger().ended(&self.spec.name, running.run);
        let last = LastExit {
            pid: running.pid,
            exit,
            reason: reason.clone(),
            at: crate::clock::now_ms(),
            uptime_ms: uptime.as_millis() as u64,
        };
        {
            let mut view = self.view();
            view.last_exit = Some(last);
            view.pid = None;
            view.pgid = None;
            view.pids.clear();
            view.rss_bytes = 0;
            view.cpu_percent = 0.0;
            view.started_instant = None;
        }
        self.shared.publish(
            "processExited",
            json!({"name": self.spec.name, "pid": running.pid, "exit": exit, "reason": reason,
                   "uptimeMs": uptime.as_millis() as u64, "requested": false, "byNxops": by_us, "stopMs": null}),
        );
        self.decide(running.pid, exit, reason, uptime, failed)
    }

    fn decide(&mut self, pid: u32, exit: Option<Exit>, reason: String, uptime: Duration, failed: bool) -> Next {
        let decision = self.book.decide(&self.spec, failed, uptime, Instant::now());
        let restarts = self.book.total;
        let (next, will_restart, delay, given_up) = match decision {
            Decision::Restart { delay } => {
                let at = Instant::now() + delay;
                self.restarting = Some((pid, false));
                let mut view = self.view();
                view.state = State::Backoff;
                view.next_restart_at = Some(at);
                view.restarts += 1;
                // A zero delay starts at once: tokio's timer would round it up to a millisecond.
                let next = if delay.is_zero() { Next::Start(None) } else { Next::Backoff(at) };
                (next, true, Some(delay), None)
            }
            Decision::GiveUp { reason } => {
                let mut view = self.view();
                view.state = State::Failed;
                view.given_up = Some(reason.clone());
                (Next::Wait, false, None, Some(reason))
            }
            Decision::Stay => {
                self.set_state(if failed { State::Failed } else { State::Exited });
                (Next::Wait, false, None, None)
            }
        };
        if failed {
            self.shared.publish(
                "processFailure",
                json!({"name": self.spec.name, "pid": pid, "exit": exit, "reason": reason, "restarts": restarts,
                       "willRestart": will_restart, "restartInMs": delay.map(|d| d.as_millis() as u64),
                       "givenUp": given_up}),
            );
        }
        next
    }

    /// A stop asked for by a user (or the sidecar leaving): the whole tree ends.
    async fn stop_run(&mut self, running: &Running, force: bool) {
        self.set_state(State::Stopping);
        let started = Instant::now();
        let timeout = if force { Duration::ZERO } else { self.spec.stop_timeout };
        end_tree(self.shared.clone(), run_id(&self.spec.name, running), running.exit.clone(), timeout).await;
        self.shared.ledger().ended(&self.spec.name, running.run);
        let exit = running.exit.try_exit();
        let uptime = running.started.elapsed();
        let last = LastExit {
            pid: running.pid,
            exit,
            reason: if force { "killed on request".into() } else { "stopped on request".into() },
            at: crate::clock::now_ms(),
            uptime_ms: uptime.as_millis() as u64,
        };
        {
            let mut view = self.view();
            view.state = State::Stopped;
            view.pid = None;
            view.pgid = None;
            view.started_instant = None;
            view.pids.clear();
            view.rss_bytes = 0;
            view.cpu_percent = 0.0;
            view.last_exit = Some(last);
        }
        self.shared.publish(
            "processExited",
            json!({"name": self.spec.name, "pid": running.pid, "exit": exit, "reason": "stopped on request",
                   "uptimeMs": uptime.as_millis() as u64, "requested": true, "byNxops": true,
                   "stopMs": started.elapsed().as_millis() as u64}),
        );
    }

    /// Ends a run that failed a check (health, memory) the way a stop does.
    async fn terminate(&mut self, running: &Running) {
        end_tree(self.shared.clone(), run_id(&self.spec.name, running), running.exit.clone(), self.spec.stop_timeout)
            .await;
    }

    /// Ends what the leader left behind, off the restart path: its group, and
    /// members that escaped it (found by one /proc scan on the blocking pool).
    fn clean_up_in_background(&self, running: &Running) {
        let shared = self.shared.clone();
        let id = run_id(&self.spec.name, running);
        let exit = running.exit.clone();
        let timeout = self.spec.stop_timeout;
        self.shared.runtime.spawn(async move { end_tree(shared, id, exit, timeout).await });
    }
}

fn run_id(name: &str, running: &Running) -> RunId {
    RunId { name: name.to_string(), run: running.run, leader: running.pid, pgid: running.pid }
}

/// SIGTERM to the run's group and escaped members; SIGKILL to whatever is left
/// after `timeout`; returns when nothing of the run is left (zombies reaped).
pub async fn end_tree(shared: Arc<Shared>, id: RunId, leader: ExitWatch, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut signal = if timeout.is_zero() { Signal::KILL } else { Signal::TERM };
    loop {
        let escaped = signal_run(&shared, &id, signal).await;
        loop {
            let leader_gone = leader.try_exit().is_some();
            let escaped_alive = escaped.iter().any(|(pid, start)| alive(*pid, *start));
            if leader_gone && !group_exists(id.pgid) && !escaped_alive {
                return;
            }
            if signal == Signal::TERM && Instant::now() >= deadline {
                break;
            }
            if signal == Signal::KILL && Instant::now() >= deadline + Duration::from_secs(10) {
                tracing::warn!(target: "nxops::supervisor", "{} run {}: processes survive SIGKILL", id.name, id.run);
                return;
            }
            let pause = tokio::time::sleep(Duration::from_millis(2));
            tokio::select! {
                () = pause => {}
                _ = leader.exited(), if !leader_gone => {}
            }
        }
        signal = Signal::KILL;
    }
}

/// Signals the group, and the run's members outside it; returns those (pid, start time).
async fn signal_run(shared: &Arc<Shared>, id: &RunId, signal: Signal) -> Vec<(u32, u64)> {
    reaper::signal_group(id.pgid, signal);
    let key = shared.key.clone();
    let run = id.clone();
    let members =
        tokio::task::spawn_blocking(move || tree::trees(&key, std::slice::from_ref(&run), &reaper::is_watched))
            .await
            .map(|t| t.of(&id.name, id.run).to_vec())
            .unwrap_or_default();
    let escaped: Vec<(u32, u64)> =
        members.iter().filter(|p| p.pgid != id.pgid && !p.is_zombie()).map(|p| (p.pid, p.start_time)).collect();
    for (pid, _) in &escaped {
        reaper::signal_process(*pid, signal);
    }
    escaped
}

fn alive(pid: u32, start_time: u64) -> bool {
    procfs::stat(pid).is_some_and(|s| s.start_time == start_time && !s.is_zombie())
}

/// True while any process, zombies included, is in group `pgid`.
fn group_exists(pgid: u32) -> bool {
    rustix::process::Pid::from_raw(pgid as i32).is_some_and(|p| rustix::process::test_kill_process_group(p).is_ok())
}

/// The program to run: a path as given (relative to cwd), or the first match in
/// the PATH the process will see.
fn resolve_program(spec: &ProcessSpec) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |p: &std::path::Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !spec.cwd.is_dir() {
        return Err(format!("the working folder {} does not exist", spec.cwd.display()));
    }
    if spec.command.contains('/') {
        let path = spec.cwd.join(&spec.command);
        return if executable(&path) {
            Ok(path)
        } else {
            Err(format!("command {:?} is not an executable file ({})", spec.command, path.display()))
        };
    }
    let path_var = spec.env.get("PATH").cloned().or_else(|| std::env::var("PATH").ok()).unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| spec.cwd.join(dir).join(&spec.command))
        .find(|p| executable(p))
        .ok_or_else(|| format!("command {:?} is not found in PATH ({path_var})", spec.command))
}

/// One health probe; true when healthy.
async fn probe(probe: &Probe, spec: &ProcessSpec, timeout: Duration) -> bool {
    match probe {
        Probe::Port(port) => {
            let connect = tokio::net::TcpStream::connect(("127.0.0.1", *port));
            matches!(tokio::time::timeout(timeout, connect).await, Ok(Ok(_)))
        }
        Probe::Command(argv) => {
            let mut command = Command::new(&argv[0]);
            command
                .args(&argv[1..])
                .current_dir(&spec.cwd)
                .envs(&spec.env)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            let Ok(child) = reaper::spawn(&mut command) else { return false };
            match tokio::time::timeout(timeout, child.exit.exited()).await {
                Ok(exit) => exit.success(),
                Err(_) => {
                    reaper::signal_group(child.pid, Signal::KILL);
                    false
                }
            }
        }
    }
}
