//! `nxops system info`: the machine, its resources and the JavaScript toolchain.
//!
//! Read from `/proc`, `uname` and `statvfs`; tool versions come from running
//! `<tool> --version` (in parallel, with a timeout), except Nx, whose version is
//! read from the workspace's installed `nx/package.json` the way Node resolves it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    let (node, npm, pnpm) = std::thread::scope(|s| {
        let node = s.spawn(|| tool_version(env, "node"));
        let npm = s.spawn(|| tool_version(env, "npm"));
        let pnpm = s.spawn(|| tool_version(env, "pnpm"));
        (join(node), join(npm), join(pnpm))
    });
    let nx = match workspace_root {
        Some(root) => installed_nx(root),
        None => Tool { version: None, path: None, problem: Some("no workspace".into()) },
    };
    let uname = rustix::system::uname();
    SystemInfo {
        nxops_version: env!("CARGO_PKG_VERSION").to_string(),
        os: os_name(),
        kernel: uname.release().to_string_lossy().into_owned(),
        arch: uname.machine().to_string_lossy().into_owned(),
        cpu: cpu(),
        memory: memory(),
        cache_volume: cache_dir.and_then(volume),
        tools: Tools { node, npm, pnpm, nx },
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

/// Finds `name` on `$PATH` and asks it for `--version`.
fn tool_version(env: &Environment, name: &str) -> Tool {
    let Some(path) = which(env, name) else {
        return Tool { version: None, path: None, problem: Some("not found on PATH".into()) };
    };
    match run_with_timeout(&path, &["--version"], Duration::from_secs(10)) {
        Ok(out) => {
            let version = out.lines().next().unwrap_or("").trim().trim_start_matches('v').to_string();
            Tool { version: Some(version), path: Some(path), problem: None }
        }
        Err(problem) => Tool { version: None, path: Some(path), problem: Some(problem) },
    }
}

/// The first executable `name` in `$PATH`.
pub fn which(env: &Environment, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = env.get("PATH")?;
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn run_with_timeout(program: &Path, args: &[&str], timeout: Duration) -> Result<String, String> {
    let mut child = crate::reaper::spawn(
        Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()),
    )
    .map_err(|e| format!("cannot run: {e}"))?;
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut text = String::new();
        stdout.map(|mut s| s.read_to_string(&mut text));
        text
    });
    match child.exit.wait_timeout(timeout) {
        Some(exit) if exit.success() => Ok(reader.join().unwrap_or_default()),
        Some(exit) => Err(format!("exited with {exit}")),
        None => {
            crate::reaper::signal_process(child.pid, rustix::process::Signal::KILL);
            child.exit.wait();
            Err(format!("did not answer within {}s", timeout.as_secs()))
        }
    }
}

/// `require.resolve('nx/package.json')` from the workspace root: the nearest
/// `node_modules/nx/package.json` walking up.
pub fn installed_nx(root: &Path) -> Tool {
    for dir in root.ancestors() {
        let manifest = dir.join("node_modules/nx/package.json");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("version")?.as_str().map(str::to_string));
        return match version {
            Some(v) => Tool { version: Some(v), path: Some(manifest), problem: None },
            None => Tool { version: None, path: Some(manifest), problem: Some("package.json has no version".into()) },
        };
    }
    Tool {
        version: None,
        path: None,
        problem: Some("nx is not installed in the workspace (no node_modules/nx)".into()),
    }
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
    fn installed_nx_is_found_by_walking_up() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("node_modules/nx");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("package.json"), r#"{"name":"nx","version":"24.0.6"}"#).unwrap();
        let ws = dir.path().join("apps/ws");
        std::fs::create_dir_all(&ws).unwrap();
        assert_eq!(installed_nx(&ws).version.as_deref(), Some("24.0.6"));
    }

    #[test]
    fn missing_tools_say_why() {
        let env = Environment::from_pairs([("PATH", "/nonexistent")]);
        let tool = tool_version(&env, "node");
        assert_eq!(tool.problem.as_deref(), Some("not found on PATH"));
    }

    #[test]
    fn machine_figures_are_read() {
        let info = collect(&Environment::from_process(), None, Some(Path::new("/")));
        assert!(info.cpu.count >= 1);
        assert!(info.memory.total_bytes > info.memory.available_bytes / 2);
        assert!(info.cache_volume.as_ref().is_some_and(|v| v.total_bytes >= v.free_bytes && v.total_bytes > 0));
        assert!(!info.kernel.is_empty());
    }
}
