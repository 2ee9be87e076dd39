//! `nxops cache reset`: the workspace's own `nx reset` (cache only unless asked
//! for everything) under a timeout, and when it fails or hangs, the same done
//! by hand: stop the workspace's Nx daemon (only when its record's pid is
//! proven to be this workspace's daemon, see `daemon`), empty the cache, and
//! with `--all` remove the database, the workspace data and this workspace's
//! daemon socket folder (the one its record names; other workspaces' are never
//! touched).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::scan;
use super::trash::Trash;
use super::{CacheError, daemon};
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
        let nx = ws.nx();
        report.removed.push(nx.cache_dir);
        if options.all {
            report.removed.extend([nx.db_dir, nx.workspace_data_dir]);
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
    let nx = ws.nx();
    // Read before anything is removed: `--all` deletes the folder the record is in.
    let record = daemon::read_record(&nx.workspace_data_dir);
    if let Some(record) = &record {
        report.daemon_stopped = daemon::stop(&ws.root, record);
    }
    if nx.cache_dir.is_dir() {
        empty_folder(&nx.cache_dir)?;
        report.removed.push(nx.cache_dir.clone());
    }
    if options.all {
        for file in db_files(&nx.db_dir) {
            if std::fs::remove_file(&file).is_ok() {
                report.removed.push(file);
            }
        }
        if nx.workspace_data_dir.is_dir() && !nx.cache_dir.starts_with(&nx.workspace_data_dir) {
            std::fs::remove_dir_all(&nx.workspace_data_dir)
                .map_err(|e| CacheError::io(format!("failed to remove {}", nx.workspace_data_dir.display()), e))?;
            report.removed.push(nx.workspace_data_dir.clone());
        }
        // Only this workspace's socket folder, and only when no daemon of its own still serves it.
        let folder = record.as_ref().and_then(daemon::socket_folder);
        let served = record.as_ref().is_some_and(|r| daemon::not_our_daemon(&ws.root, r).is_none());
        if let Some(folder) = folder.filter(|_| !served) {
            report.removed.extend(daemon::remove_socket_folder(&folder));
        }
    }
    Ok(())
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
