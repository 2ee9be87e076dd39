//! `nxops system info` benchmark: the whole command's wall time (process start
//! to exit) in a real Nx 24 fixture workspace, beside the old way of finding the
//! tools' versions, measured in the same run.
//!
//! The baseline is what `system info` did before it read version files: find
//! `node`, `npm` and `pnpm` on `$PATH` and run `<tool> --version` for the three
//! at once (one thread each, as the old `collect` did), waiting for the slowest;
//! the old code already read nx's version from the workspace's
//! `node_modules/nx/package.json`, so nx costs both ways the same file read. The
//! baseline is the probes alone, without starting nxops or reading `/proc`: a
//! lower bound of the old command. Rounds interleave the two.
//!
//! Also measured: the cold report (no `tool-versions.json` yet, so node is asked
//! once, while the rest is gathered), and that the versions reported are the ones
//! the tools print for `--version`. Each round runs cold, warm, then the baseline.
//!
//! Run: `cargo bench --bench info` (add `-- --quick` for 5 rounds instead of 20).
//! Needs the Nx fixture (`fixtures/setup.sh`; scripts/setup runs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 5 } else { 20 };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::Builder::new().prefix("nxops-info-bench-").tempdir_in("/var/tmp").expect("scratch");
    let home = scratch.path().join("home");
    std::fs::create_dir_all(home.join("run")).unwrap();
    let ws = scratch.path().join("ws");
    let made = Command::new(repo.join("fixtures/make-workspace.sh")).arg(&ws).args(["--git", "none"]).output().unwrap();
    assert!(made.status.success(), "make-workspace.sh: {}", String::from_utf8_lossy(&made.stderr));
    let nxops = PathBuf::from(env!("CARGO_BIN_EXE_nxops"));
    let state = home.join(".local/state/nxops/tool-versions.json");

    println!("nxops system info benchmark (median of {rounds}; baseline measured in the same run)");
    let (mut cold, mut warm, mut old) = (Vec::new(), Vec::new(), Vec::new());
    let mut report = serde_json::Value::Null;
    let mut answers = Vec::new();
    for _ in 0..rounds {
        let _ = std::fs::remove_file(&state);
        cold.push(timed(|| system_info(&nxops, &home, &ws)).0);
        let (took, json) = timed(|| system_info(&nxops, &home, &ws));
        warm.push(took);
        report = json;
        let (took, printed) = timed(old_probes);
        old.push(took);
        answers = printed;
    }
    let (cold, warm, old) = (median(&mut cold), median(&mut warm), median(&mut old));
    println!(
        "  warm     nxops {:>7.1} ms   old probes (node, npm, pnpm --version at once) {:>7.1} ms   {:>5.0}x faster (target <= 50 ms)",
        ms(warm),
        ms(old),
        old.as_secs_f64() / warm.as_secs_f64()
    );
    println!("  cold     nxops {:>7.1} ms   (no tool-versions.json yet: node asked once, beside the rest)", ms(cold));
    let mut same = true;
    let mut listed = Vec::new();
    for (tool, printed) in &answers {
        let reported = report["tools"][tool]["version"].as_str().map(str::to_string);
        same &= reported == *printed;
        listed.push(format!("{tool} {}", reported.as_deref().unwrap_or("-")));
    }
    let nx = report["tools"]["nx"]["version"].as_str().unwrap_or("-");
    println!("  answers  {}, nx {nx}; equal to what `--version` prints: {same}", listed.join(", "));
    assert!(same, "the versions differ from the tools' own answers: {report}");
}

/// One `nxops system info --json` in the workspace, with a private HOME.
fn system_info(nxops: &Path, home: &Path, ws: &Path) -> serde_json::Value {
    let mut cmd = Command::new(nxops);
    cmd.args(["--json", "system", "info"]).current_dir(ws).stdin(Stdio::null()).stderr(Stdio::inherit());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("NX_") || key.starts_with("NXOPS_") || key.starts_with("XDG_") {
            cmd.env_remove(&key);
        }
    }
    let out = cmd.env("HOME", home).env("XDG_RUNTIME_DIR", home.join("run")).output().unwrap();
    assert!(out.status.success(), "nxops system info failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The old `collect`'s probes: each tool found on PATH and asked `--version`, all at once.
fn old_probes() -> Vec<(&'static str, Option<String>)> {
    std::thread::scope(|s| {
        let probes: Vec<_> = ["node", "npm", "pnpm"].into_iter().map(|t| (t, s.spawn(move || version_of(t)))).collect();
        probes.into_iter().map(|(t, h)| (t, h.join().unwrap())).collect()
    })
}

fn version_of(tool: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    let bin = std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|c| c.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))?;
    let out = Command::new(bin).arg("--version").stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success().then(|| text.lines().next().unwrap_or("").trim().trim_start_matches('v').to_string())
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let started = Instant::now();
    let value = f();
    (started.elapsed(), value)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
