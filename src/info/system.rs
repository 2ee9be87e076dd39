//! `nxops system info`: the machine, its resources and the JavaScript toolchain.
//!
//! Read from `/proc`, `uname` and `statvfs`; tool versions come from the files
//! the tools ship (see [`super::versions`]): npm's and pnpm's `package.json`
//! behind their symlinks on `$PATH`, the workspace's installed `nx/package.json`,
//! and node's `--version`, asked once per binary and remembered by
//! [`super::version_cache`]. When node must be asked, it runs while the rest of
//! the report is gathered.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::version_cache::VersionCache;
use super::versions::{self, NODE, NPM, PNPM, Probe};
use crate::config::units::format_size;
use crate::environment::Environment;
use crate::output::{Report, Section};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemInfo {
    pub nxops_version: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpu: Cpu,
    pub memory: Memory,
    /// The volume holding the workspace's Nx cache; `None` outside a workspace.
    pub cache_volume: Option<Volume>,
    pub tools: Tools,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cpu {
    pub model: String,
    /// Logical CPUs online.
    pub count: usize,
    /// CPUs this process may run on (affinity, cgroup quota).
    pub available: usize,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// The cache folder the figures are for.
    pub cache_dir: PathBuf,
    /// The nearest existing folder, which was measured (the cache may not exist yet).
    pub measured: PathBuf,
    pub total_bytes: u64,
    /// Free space usable by this user.
    pub free_bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tools {
    pub node: Tool,
    pub npm: Tool,
    pub pnpm: Tool,
    /// The workspace's installed nx.
    pub nx: Tool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    pub version: Option<String>,
    pub path: Option<PathBuf>,
    /// Why there is no version: "not found on PATH", "timed out", ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Collects the report. `cache_dir` and `workspace_root` come from the workspace, when there is one.
pub fn collect(env: &Environment, workspace_root: Option<&Path>, cache_dir: Option<&Path>) -> SystemInfo {
    let cache = VersionCache::open(crate::config::state_base(env).as_deref());
    let probe = Probe { env, workspace_root, cache: &cache };
    let (node, rest) = std::thread::scope(|s| {
        // The only probe that may start a process: node, on a cache miss.
        let node = s.spawn(|| probe.tool(NODE));
        let rest = (probe.tool(NPM), probe.tool(PNPM), machine(cache_dir));
        (join(node), rest)
    });
    cache.save();
    let (npm, pnpm, machine) = rest;
    let nx = match workspace_root {
        Some(root) => versions::installed_nx(root),
        None => Tool { version: None, path: None, problem: Some("no workspace".into()) },
    };
    SystemInfo { tools: Tools { node, npm, pnpm, nx }, ..machine }
}

/// The machine's part of the report, with no tools yet.
fn machine(cache_dir: Option<&Path>) -> SystemInfo {
    let uname = rustix::system::uname();
    let none = || Tool { version: None, path: None, problem: None };
    SystemInfo {
        nxops_version: env!("CARGO_PKG_VERSION").to_string(),
        os: os_name(),
        kernel: uname.release().to_string_lossy().into_owned(),
        arch: uname.machine().to_string_lossy().into_owned(),
        cpu: cpu(),
        memory: memory(),
        cache_volume: cache_dir.and_then(volume),
        tools: Tools { node: none(), npm: none(), pnpm: none(), nx: none() },
    }
}

fn join(handle: std::thread::ScopedJoinHandle<'_, Tool>) -> Tool {
    handle.join().unwrap_or_else(|_| Tool { version: None, path: None, problem: Some("probe panicked".into()) })
}

fn os_name() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

fn cpu() -> Cpu {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let count = info.lines().filter(|l| l.starts_with("processor")).count().max(1);
    let available = std::thread::available_parallelism().map_or(1, usize::from);
    Cpu { model, count, available }
}

fn memory() -> Memory {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    Memory { total_bytes: field("MemTotal"), available_bytes: field("MemAvailable") }
}

fn volume(cache_dir: &Path) -> Option<Volume> {
    let measured = cache_dir.ancestors().find(|p| p.exists())?.to_path_buf();
    let stat = rustix::fs::statvfs(&measured).ok()?;
    Some(Volume {
        cache_dir: cache_dir.to_path_buf(),
        measured,
        total_bytes: stat.f_blocks * stat.f_frsize,
        free_bytes: stat.f_bavail * stat.f_frsize,
    })
}

impl Report for SystemInfo {
    fn human(&self) -> String {
        let mut out = String::new();
        Section::new("System")
            .row("os", &self.os)
            .row("kernel", format!("{} ({})", self.kernel, self.arch))
            .row("cpu", format!("{} x {} ({} available)", self.cpu.count, self.cpu.model, self.cpu.available))
            .row(
                "memory",
                format!(
                    "{} total, {} available",
                    format_size(self.memory.total_bytes),
                    format_size(self.memory.available_bytes)
                ),
            )
            .row(
                "cache volume",
                match &self.cache_volume {
                    Some(v) => format!(
                        "{} total, {} free ({})",
                        format_size(v.total_bytes),
                        format_size(v.free_bytes),
                        v.measured.display()
                    ),
                    None => "no workspace".into(),
                },
            )
            .render(&mut out);
        let tool = |t: &Tool| match (&t.version, &t.problem) {
            (Some(v), _) => v.clone(),
            (None, Some(p)) => format!("- ({p})"),
            (None, None) => "-".into(),
        };
        Section::new("Tools")
            .row("nxops", &self.nxops_version)
            .row("node", tool(&self.tools.node))
            .row("npm", tool(&self.tools.npm))
            .row("pnpm", tool(&self.tools.pnpm))
            .row("nx", tool(&self.tools.nx))
            .render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_figures_are_read() {
        let home = tempfile::tempdir().unwrap();
        let env = Environment::from_pairs([("PATH", "/nonexistent"), ("HOME", home.path().to_str().unwrap())]);
        let info = collect(&env, None, Some(Path::new("/")));
        assert!(info.cpu.count >= 1);
        assert!(info.memory.total_bytes > info.memory.available_bytes / 2);
        assert!(info.cache_volume.as_ref().is_some_and(|v| v.total_bytes >= v.free_bytes && v.total_bytes > 0));
        assert!(!info.kernel.is_empty());
        assert_eq!(info.tools.node.problem.as_deref(), Some("not found on PATH"));
        assert_eq!(info.tools.nx.problem.as_deref(), Some("no workspace"));
    }
}
