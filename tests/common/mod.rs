//! Shared helpers for integration tests: real Nx 24 fixture workspaces, a private
//! HOME per test, and the real nxops binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn nxops_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nxops"))
}

/// Fails with instructions when the fixture's node_modules are missing.
pub fn require_fixture() {
    let nx = repo_root().join("fixtures/nx24/node_modules/nx/package.json");
    assert!(nx.exists(), "the Nx fixture is not installed: run fixtures/setup.sh (scripts/test does it for you)");
}

/// A scratch folder for one test: a HOME outside /tmp (Nx refuses a ~/.nx under /tmp)
/// and a place for workspaces outside any git repository. Removed on drop.
pub struct Scratch {
    pub home: tempfile::TempDir,
    pub spaces: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&base).unwrap();
        let home = tempfile::Builder::new().prefix("home-").tempdir_in(&base).unwrap();
        let spaces = tempfile::Builder::new().prefix("nxops-ws-").tempdir().unwrap();
        Scratch { home, spaces }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A fresh fixture workspace at `<spaces>/<name>` made by fixtures/make-workspace.sh.
    pub fn workspace(&self, name: &str, git: &str) -> PathBuf {
        require_fixture();
        let dest = self.spaces.path().join(name);
        let out = Command::new(repo_root().join("fixtures/make-workspace.sh"))
            .arg(&dest)
            .args(["--git", git])
            .env("HOME", self.home())
            .stdin(Stdio::null())
            .output()
            .expect("run make-workspace.sh");
        assert!(out.status.success(), "make-workspace.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::canonicalize(dest).unwrap()
    }

    /// A command for the nxops binary with this scratch HOME and a clean NX_/NXOPS_ environment.
    pub fn nxops(&self, cwd: &Path) -> Command {
        let mut cmd = Command::new(nxops_bin());
        cmd.current_dir(cwd).stdin(Stdio::null());
        scrub_env(&mut cmd, self.home());
        cmd
    }

    /// A `node -e SCRIPT` command run in `cwd` with the same environment.
    pub fn node(&self, cwd: &Path, script: &str) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg("-e").arg(script).current_dir(cwd).stdin(Stdio::null());
        scrub_env(&mut cmd, self.home());
        cmd
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

fn scrub_env(cmd: &mut Command, home: &Path) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("NX_") || key.starts_with("NXOPS_") || key.starts_with("XDG_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", home).env("NX_DAEMON", "false").env("NX_NO_CLOUD", "true");
}

/// Runs and returns the output, failing the test with stderr when it does not succeed.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed with {}:\nstdout: {}\nstderr: {}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}
