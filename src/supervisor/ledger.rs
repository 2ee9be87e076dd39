//! The owner's record of the processes it started, so that the next owner can
//! end what a crashed sidecar left running.
//!
//! `<state>/processes.json` lists each live run's pid, group and start time
//! (clock ticks since boot). It is rewritten (temporary file, then rename) on
//! every start and end, so it is always whole. No fsync: the file only has to
//! survive the sidecar, not the machine, and a reboot ends every process anyway.
//! On start-up the new owner ends each recorded group whose leader is still the
//! same process (pid and start time), then every process still carrying the
//! workspace's marker (escaped daemons, children of a dead leader).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde::{Deserialize, Serialize};

use super::tree;
use crate::procfs;
use crate::reaper;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub run: u64,
    pub pid: u32,
    pub pgid: u32,
    pub start_time: u64,
    /// The process's stop timeout, which the next owner honours too.
    pub stop_timeout_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    sidecar_pid: u32,
    processes: BTreeMap<String, Record>,
}

pub struct Ledger {
    path: Option<PathBuf>,
    file: File,
}

impl Ledger {
    pub fn new(state_dir: Option<&Path>) -> Ledger {
        Ledger {
            path: state_dir.map(|d| d.join("processes.json")),
            file: File { sidecar_pid: std::process::id(), processes: BTreeMap::new() },
        }
    }

    pub fn started(&mut self, name: &str, record: Record) {
        self.file.processes.insert(name.to_string(), record);
        self.save();
    }

    pub fn ended(&mut self, name: &str, run: u64) {
        if self.file.processes.get(name).is_some_and(|r| r.run == run) {
            self.file.processes.remove(name);
            self.save();
        }
    }

    fn save(&self) {
        let Some(path) = &self.path else { return };
        if let Err(err) = write_atomically(path, &serde_json::to_vec_pretty(&self.file).expect("ledger serializes")) {
            tracing::warn!(target: "nxops::supervisor", "cannot record processes in {}: {err}", path.display());
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path)
}

/// What start-up found and ended.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Leftovers {
    pub ended: Vec<u32>,
    pub took_ms: u64,
}

/// Ends everything a previous owner of workspace `key` left behind: SIGTERM,
/// then SIGKILL after the longest recorded stop timeout (else `timeout`).
/// Blocking; run before starting any process.
pub fn end_leftovers(state_dir: Option<&Path>, key: &str, timeout: Duration) -> Leftovers {
    let started = Instant::now();
    let recorded: Vec<Record> = state_dir
        .map(|d| d.join("processes.json"))
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|bytes| serde_json::from_slice::<File>(&bytes).ok())
        .map(|f| f.processes.into_values().collect())
        .unwrap_or_default();
    // Recorded groups whose leader is still the same process, and everything
    // that carries the workspace's marker, found before anything is signalled.
    let groups: Vec<u32> =
        recorded.iter().filter(|r| procfs::is_same_process(r.pid, r.start_time)).map(|r| r.pgid).collect();
    let mut targets: Vec<(u32, u64)> = tree::marked_by(key).iter().map(|p| (p.pid, p.start_time)).collect();
    for p in procfs::snapshot() {
        if groups.contains(&p.pgid) && !p.is_zombie() && !targets.iter().any(|(pid, _)| *pid == p.pid) {
            targets.push((p.pid, p.start_time));
        }
    }
    let timeout = recorded.iter().map(|r| Duration::from_millis(r.stop_timeout_ms)).max().unwrap_or(timeout);
    for (signal, wait) in [(Signal::TERM, timeout), (Signal::KILL, Duration::from_secs(5))] {
        let alive: Vec<&(u32, u64)> = targets.iter().filter(|(pid, start)| live(*pid, *start)).collect();
        if alive.is_empty() {
            break;
        }
        for pgid in &groups {
            reaper::signal_group(*pgid, signal);
        }
        for (pid, _) in &alive {
            reaper::signal_process(*pid, signal);
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && targets.iter().any(|(pid, start)| live(*pid, *start)) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let mut ended: Vec<u32> = targets.iter().map(|(pid, _)| *pid).collect();
    ended.sort_unstable();
    Leftovers { ended, took_ms: started.elapsed().as_millis() as u64 }
}

/// True while the process that started at `start` is running (not a zombie).
fn live(pid: u32, start: u64) -> bool {
    procfs::stat(pid).is_some_and(|s| s.start_time == start && !s.is_zombie())
}
