//! `nxops cache reset`: the workspace's own `nx reset` (cache only unless asked
//! for everything) under a timeout, and when it fails or hangs, the same done
//! by hand: stop the Nx daemon by the pid in its `server-process.json`, empty
//! the cache, and with `--all` remove the database, the workspace data and stale
//! daemon socket folders.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::scan;
use super::trash::Trash;
use super::{CacheError, now_secs};
use crate::output::{Report, Section};
use crate::workspace::Workspace;

#[derive(Debug, Clone, Copy)]
pub struct ResetOptions {
    /// Everything `nx reset` removes (cache, database, workspace data, daemon), not only the cache.
    pub all: bool,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResetPath {
    /// The workspace's `nx reset` did it.
    NxReset,
    /// `nx reset` was missing, failed or hung; nxops did it by hand.
    Manual,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetReport {
    pub path: ResetPath,
    pub all: bool,
    pub command: Option<String>,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// The last lines `nx reset` printed.
    pub nx_output: String,
    /// Why the manual path was taken.
    pub fallback_reason: Option<String>,
    pub daemon_stopped: Option<u32>,
    pub removed: Vec<PathBuf>,
    pub duration_ms: u64,
}

pub fn run(ws: &Workspace, options: ResetOptions) -> Result<ResetReport, CacheError> {
    let started = Instant::now();
    let mut report = ResetReport {
        path: ResetPath::NxReset,
        all: options.all,
        command: None,
        exit_code: None,
        timed_out: false,
        nx_output: String::new(),
        fallback_reason: None,
        daemon_stopped: None,
        removed: Vec::new(),
        duration_ms: 0,
    };
    match nx_binary(&ws.root) {
        Some(nx) => run_nx_reset(ws, &nx, options, &mut report),
        None => report.fallback_reason = Some("nx is not installed in the workspace (no node_modules/.bin/nx)".into()),
    }
    if report.fallback_reason.is_some() {
        report.path = ResetPath::Manual;
        manual_reset(ws, options, &mut report)?;
    } else {
        report.removed.push(ws.nx.cache_dir.clone());
        if options.all {
            report.removed.extend([ws.nx.db_dir.clone(), ws.nx.workspace_data_dir.clone()]);
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

fn nx_binary(root: &Path) -> Option<PathBuf> {
    root.ancestors().map(|dir| dir.join("node_modules/.bin/nx")).find(|p| p.exists())
}

fn run_nx_reset(ws: &Workspace, nx: &Path, options: ResetOptions, report: &mut ResetReport) {
    let mut args = vec!["reset"];
    if !options.all {
        args.push("--only-cache");
    }
    report.command = Some(format!("{} {}", nx.display(), args.join(" ")));
    let child = crate::reaper::spawn(
        Command::new(nx)
            .args(&args)
            .current_dir(&ws.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0),
    );
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            report.fallback_reason = Some(format!("cannot run nx reset: {e}"));
            return;
        }
    };
    let output = collect_output(&mut child);
    match child.exit.wait_timeout(options.timeout) {
        Some(exit) => {
            report.exit_code = exit.code;
            report.nx_output = tail(&output.join().unwrap_or_default(), 20);
            if !exit.success() {
                report.fallback_reason = Some(format!("nx reset exited with {exit}"));
            }
        }
        None => {
            crate::reaper::signal_group(child.pid, rustix::process::Signal::KILL);
            child.exit.wait();
            report.timed_out = true;
            report.nx_output = tail(&output.join().unwrap_or_default(), 20);
            report.fallback_reason = Some(format!("nx reset did not finish within {:?}", options.timeout));
        }
    }
}

/// Reads the child's stdout and stderr on threads so a chatty child never blocks.
fn collect_output(child: &mut crate::reaper::Child) -> std::thread::JoinHandle<String> {
    use std::io::Read;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    std::thread::spawn(move || {
        let mut text = String::new();
        let errs = std::thread::spawn(move || {
            let mut t = String::new();
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_string(&mut t);
            }
            t
        });
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut text);
        }
        text + &errs.join().unwrap_or_default()
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn manual_reset(ws: &Workspace, options: ResetOptions, report: &mut ResetReport) -> Result<(), CacheError> {
    report.daemon_stopped = stop_daemon(&ws.nx.workspace_data_dir);
    if ws.nx.cache_dir.is_dir() {
        empty_folder(&ws.nx.cache_dir)?;
        report.removed.push(ws.nx.cache_dir.clone());
    }
    if options.all {
        for file in db_files(&ws.nx.db_dir) {
            if std::fs::remove_file(&file).is_ok() {
                report.removed.push(file);
            }
        }
        if ws.nx.workspace_data_dir.is_dir() && !ws.nx.cache_dir.starts_with(&ws.nx.workspace_data_dir) {
            std::fs::remove_dir_all(&ws.nx.workspace_data_dir)
                .map_err(|e| CacheError::io(format!("failed to remove {}", ws.nx.workspace_data_dir.display()), e))?;
            report.removed.push(ws.nx.workspace_data_dir.clone());
        }
        report.removed.extend(stale_socket_folders());
    }
    Ok(())
}

/// The Nx daemon's record: `<workspace data>/d/server-process.json`.
pub fn daemon_record(workspace_data_dir: &Path) -> PathBuf {
    workspace_data_dir.join("d/server-process.json")
}

/// The pid in the daemon's record, when there is a record.
pub fn daemon_pid(workspace_data_dir: &Path) -> Option<u32> {
    let record = std::fs::read(daemon_record(workspace_data_dir)).ok()?;
    Some(serde_json::from_slice::<serde_json::Value>(&record).ok()?.get("processId")?.as_u64()? as u32)
}

/// True when `pid` is alive and really an Nx daemon (its command line says so).
pub fn is_nx_daemon(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    cmdline.contains("nx") && cmdline.contains("daemon")
}

/// Stops the daemon recorded in `<workspace data>/d/server-process.json`, if it
/// is alive and really an Nx daemon: SIGTERM, then SIGKILL after 2 s.
pub fn stop_daemon(workspace_data_dir: &Path) -> Option<u32> {
    let pid = daemon_pid(workspace_data_dir)? as i32;
    if !is_nx_daemon(pid as u32) {
        return None;
    }
    let target = rustix::process::Pid::from_raw(pid)?;
    rustix::process::kill_process(target, rustix::process::Signal::TERM).ok()?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = rustix::process::kill_process(target, rustix::process::Signal::KILL);
    Some(pid as u32)
}

/// Takes every child of the cache folder into the trash and deletes it.
fn empty_folder(cache_dir: &Path) -> Result<(), CacheError> {
    let io = |e| CacheError::io(format!("failed to empty {}", cache_dir.display()), e);
    let trash = Trash::open(cache_dir).map_err(io)?;
    for item in std::fs::read_dir(cache_dir).map_err(io)?.flatten() {
        if item.path() != trash.path() {
            trash.take(&item.path()).map_err(io)?;
        }
    }
    trash.empty(scan::default_threads()).map_err(io)?;
    Ok(())
}

fn db_files(db_dir: &Path) -> Vec<PathBuf> {
    let Ok(listing) = std::fs::read_dir(db_dir) else { return Vec::new() };
    listing
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let base = name.trim_end_matches("-wal").trim_end_matches("-shm");
            crate::workspace::nx_paths::schema_version(base).is_some()
                || base
                    .strip_suffix(".lock")
                    .is_some_and(|b| crate::workspace::nx_paths::schema_version(&format!("{b}.db")).is_some())
        })
        .collect()
}

/// Empty daemon socket folders under `/tmp/.nx/<uid>/sockets` that are at least a minute old.
fn stale_socket_folders() -> Vec<PathBuf> {
    let base = PathBuf::from(format!("/tmp/.nx/{}/sockets", rustix::process::getuid().as_raw()));
    let Ok(listing) = std::fs::read_dir(&base) else { return Vec::new() };
    let now = now_secs();
    listing
        .flatten()
        .map(|e| e.path())
        .filter(|p| super::age_of(p, now) >= 60 && std::fs::remove_dir(p).is_ok())
        .collect()
}

impl Report for ResetReport {
    fn human(&self) -> String {
        let mut out = String::new();
        let how = match self.path {
            ResetPath::NxReset => "by the workspace's nx reset".to_string(),
            ResetPath::Manual => {
                format!("by hand ({})", self.fallback_reason.as_deref().unwrap_or("nx reset was not usable"))
            }
        };
        let mut section = Section::new(&format!("Reset {} {how}", if self.all { "everything" } else { "the cache" }));
        if let Some(command) = &self.command {
            section.push("command", command.clone());
        }
        if let Some(pid) = self.daemon_stopped {
            section.push("daemon", format!("stopped pid {pid}"));
        }
        for path in &self.removed {
            section.push("removed", path.display().to_string());
        }
        section.push("took", format!("{} ms", self.duration_ms));
        section.render(&mut out);
        out
    }
}
