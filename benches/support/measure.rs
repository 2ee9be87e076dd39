//! Small measuring helpers shared by the benchmarks that drive the sidecar: a scratch workspace,
//! medians, milliseconds and a process's resident memory.
// Each benchmark includes this file and uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

/// A throw-away Nx workspace (`ws/nx.json` holding `{}`) and a runtime folder (`run/`) beside it,
/// both removed when this is dropped.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub ws: PathBuf,
    pub run_dir: PathBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("a scratch folder");
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(ws.join("nx.json"), "{}").unwrap();
        let run_dir = dir.path().join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        Scratch { dir, ws, run_dir }
    }
}

/// The median (the upper one of an even count).
pub fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `VmRSS` of `pid` in KiB; 0 when it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
