//! Nx plugin benchmark: what nxops costs an `nx run-many`, measured in the same run
//! against the same fixture workspace without nxops, and how soon the sidecar learns of
//! each run.
//!
//! Four copies of the Nx 24 fixture workspace, each with its own node_modules installed by
//! npm (the locked Nx 24, and the packed plugin and platform package where they have them):
//! - "no nxops": no plugin, no sidecar (the baseline);
//! - "nxops, default setup": `nx g @nxops/nx-plugin:init` (the plugin with no task hooks)
//!   and a sidecar owning the workspace, as an editor starts one;
//! - "nxops, no plugin": a sidecar only;
//! - "nxops, hooks on": `init --hooks` (the opt-in `@nxops/nx-plugin/hooks`) and a sidecar.
//!
//! Each workspace's cache is warmed first, so every measured `nx run-many -t build` is three
//! cache hits (the shortest run, where any cost shows most), with Nx's daemon off (as in CI)
//! and on (as on a workstation). Each round runs the eight (setup, daemon) pairs in a shuffled
//! order; a setup's figure is the median over rounds of its difference from the baseline in
//! the same round (paired), with the interquartile range of those differences as its spread.
//! Targets: the default setup at most +10 ms with the daemon on, and the no-plugin setup
//! within noise in both modes.
//!
//! Every sidecar subscribes to `tasksReported` over its stdio, as the editor extension does;
//! the figure is the time from the end of a run's last task (Nx's own `endTime` in its task
//! history) to that event's arrival here (target p50 <= 100 ms), and every run must arrive.
//!
//! Last, `pnpm run ops:cache:stats` end to end beside the nxops command it runs, both in the
//! default setup's workspace, alternated (target: at most 100 ms more); `npm run` and the
//! `ops-cache-stats` Nx target (through `nx run`, as before #15) for scale.
//!
//! Run: `cargo bench --bench plugin` (add `-- --quick` for 3 rounds instead of 15).

#[path = "support/lsp.rs"]
mod lsp;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const SETUPS: [&str; 4] = ["no nxops", "nxops, default setup", "nxops, no plugin", "nxops, hooks on"];
const MODES: [&str; 2] = ["Nx daemon off, as in CI", "Nx daemon on, as on a workstation"];

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 15 };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::Builder::new().prefix("nxops-plugin-bench-").tempdir_in("/var/tmp").expect("scratch");
    let home = scratch.path().join("home");
    std::fs::create_dir_all(home.join("run")).unwrap();

    println!(
        "nxops plugin benchmark ({rounds} shuffled rounds of `nx run-many -t build`, all cache hits; baseline in the same rounds)"
    );
    let binary = scratch.path().join("nxops");
    ok(Command::new("strip").arg("-o").arg(&binary).arg(env!("CARGO_BIN_EXE_nxops")));
    let packed = ok(Command::new(repo.join("nx-plugin/scripts/pack.sh"))
        .arg("--binary")
        .arg(&binary)
        .arg("--out")
        .arg(scratch.path().join("npm")));
    let tarballs: Vec<String> = String::from_utf8_lossy(&packed.stdout).lines().map(str::to_string).collect();
    let platform = tarballs.iter().find(|t| t.contains("linux-x64")).expect("the platform tarball").clone();
    let plugin = tarballs.iter().find(|t| t.contains("nx-plugin")).expect("the plugin tarball").clone();

    let plain = workspace(&repo, scratch.path(), &home, "plain", &[]);
    let default = workspace(&repo, scratch.path(), &home, "default", &[&plugin, &platform]);
    nx(&home, &default, false, &["g", "@nxops/nx-plugin:init"]);
    let bare = workspace(&repo, scratch.path(), &home, "no-plugin", &[]);
    let hooks = workspace(&repo, scratch.path(), &home, "hooks", &[&plugin, &platform]);
    nx(&home, &hooks, false, &["g", "@nxops/nx-plugin:init", "--hooks"]);
    let workspaces = [&plain, &default, &bare, &hooks];
    let sidecars: Vec<Option<Sidecar>> = workspaces
        .iter()
        .enumerate()
        .map(|(setup, ws)| (setup > 0).then(|| Sidecar::start(&binary, &home, ws)))
        .collect();

    // Every run made: (setup, daemon on, wall-clock start and end in ms), to name slow reports.
    let mut made: Vec<(usize, bool, f64, f64)> = Vec::new();
    for (setup, ws) in workspaces.iter().enumerate() {
        for daemon in [false, true] {
            for _ in 0..2 {
                let start = now_ms();
                nx(&home, ws, daemon, &["run-many", "-t", "build"]); // warm: the measured runs are all cache hits
                made.push((setup, daemon, start, now_ms()));
            }
        }
    }
    let warm_runs = 4;
    let pairs: Vec<(usize, usize)> = (0..2).flat_map(|mode| (0..4).map(move |setup| (setup, mode))).collect();
    // times[mode][setup][round]
    let mut times: Vec<Vec<Vec<Duration>>> = vec![vec![Vec::new(); 4]; 2];
    let mut order = pairs.clone();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..rounds {
        shuffle(&mut order, &mut seed);
        for &(setup, mode) in &order {
            let (started, start) = (Instant::now(), now_ms());
            let out = nx(&home, workspaces[setup], mode == 1, &["run-many", "-t", "build"]);
            times[mode][setup].push(started.elapsed());
            made.push((setup, mode == 1, start, now_ms()));
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(said.contains("from the cache"), "not all cache hits: {said}");
        }
    }
    for (mode, heading) in MODES.iter().enumerate() {
        let base = &times[mode][0];
        println!("  {heading} (baseline median {:.1} ms)", ms(median(base)));
        for (setup, label) in SETUPS.iter().enumerate().skip(1) {
            let mut diffs: Vec<f64> = (0..rounds).map(|r| ms(times[mode][setup][r]) - ms(base[r])).collect();
            diffs.sort_by(f64::total_cmp);
            let (p25, p50, p75) = (quantile(&diffs, 0.25), quantile(&diffs, 0.5), quantile(&diffs, 0.75));
            let target = match (setup, mode) {
                (1, 1) => "  (target <= +10 ms)",
                (2, _) => "  (target: within the spread)",
                (1, 0) => "  (every nx process loads every plugin with the daemon off)",
                _ => "",
            };
            println!(
                "    {label:<22} {:>7.1} ms   paired {p50:+7.1} ms vs no nxops, spread {p25:+.1} .. {p75:+.1} ms{target}",
                ms(median(&times[mode][setup]))
            );
        }
    }

    println!("  runs seen by the sidecar, from the end of the last task to tasksReported here");
    let expected = warm_runs + 2 * rounds;
    for (setup, sidecar) in sidecars.iter().enumerate() {
        let Some(sidecar) = sidecar else { continue };
        let runs =
            ok(command(&binary, &home, workspaces[setup]).args(["call", "nxops/tasks/runs", r#"{"limit": 50}"#]));
        let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
        let runs = runs["runs"].as_array().cloned().unwrap_or_default();
        let arrived = sidecar.arrivals();
        // The first run creates Nx's database, which the owner then has to find: apart.
        let first = runs.last().and_then(|run| latency(run, &arrived));
        let mut latencies: Vec<f64> =
            runs[..runs.len().saturating_sub(1)].iter().filter_map(|run| latency(run, &arrived)).collect();
        latencies.sort_by(f64::total_cmp);
        let p50 = if latencies.is_empty() { f64::NAN } else { quantile(&latencies, 0.5) };
        let max = latencies.last().copied().unwrap_or(f64::NAN);
        println!(
            "    {:<22} {} of {expected} runs listed, {} events   p50 {p50:>6.1} ms, max {max:>6.1} ms (target p50 <= 100 ms); the first run {:.0} ms",
            SETUPS[setup],
            runs.len(),
            arrived.len(),
            first.unwrap_or(f64::NAN),
        );
        for run in &runs {
            let Some(late) = latency(run, &arrived).filter(|ms| *ms > 250.0) else { continue };
            let start = run["startTime"].as_f64().unwrap_or_default();
            let when = made.iter().position(|m| m.0 == setup && m.2 <= start && start <= m.3);
            let daemon = when.map_or("?", |i| if made[i].1 { "daemon on" } else { "daemon off" });
            println!(
                "      slow: {} ({daemon}, run {} of this setup) reported after {late:.0} ms",
                run["runId"],
                when.map_or(0, |i| made[..=i].iter().filter(|m| m.0 == setup).count())
            );
        }
    }

    // `pnpm run ops:cache:stats` beside `nxops cache stats` itself, alternated.
    // In a pnpm workspace (pnpm checks a workspace's install before it runs a script), set up
    // the default way with `nx add`, and the same in the npm one.
    let pnpm = repo.join("scripts/tools/pnpm/node_modules/.bin/pnpm");
    let with_pnpm = pnpm_workspace(&repo, scratch.path(), &home, &pnpm, &platform, &plugin);
    nx(&home, &with_pnpm, false, &["run-many", "-t", "build"]);
    let samples = if quick { 5 } else { 15 };
    let (mut direct, mut via_pnpm, mut via_npm) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..samples {
        direct.push(timed(command(&binary, &home, &with_pnpm).args(["cache", "stats"])));
        via_pnpm.push(timed(command(&pnpm, &home, &with_pnpm).args(["run", "ops:cache:stats"])));
        via_npm.push(timed(command("npm", &home, &default).args(["run", "ops:cache:stats"])));
    }
    let via_nx: Vec<Duration> = (0..if quick { 2 } else { 5 })
        .map(|_| {
            let mut cmd = command("node", &home, &default);
            cmd.arg(nx_js(&default)).args(["run", "nx24-fixture:ops-cache-stats"]);
            timed(&mut cmd)
        })
        .collect();
    let nxops_ms = ms(median(&direct));
    println!("  `ops:cache:stats` end to end (medians of {samples})");
    println!("    nxops cache stats              {nxops_ms:>7.1} ms");
    for (label, times, note) in [
        ("pnpm run ops:cache:stats", &via_pnpm, "  (target <= +100 ms)"),
        ("npm run ops:cache:stats", &via_npm, ""),
        ("nx run ...:ops-cache-stats", &via_nx, "  (the Nx target, for scale)"),
    ] {
        let m = ms(median(times));
        println!("    {label:<30} {m:>7.1} ms   {:+7.1} ms vs the command itself{note}", m - nxops_ms);
    }

    drop(sidecars);
    for ws in workspaces {
        let _ = command("node", &home, ws).arg(nx_js(ws)).args(["daemon", "--stop"]).env("NX_DAEMON", "true").output();
    }
}

/// From the end of `run`'s last task (Nx's `endTime`) to its `tasksReported` here, in ms.
fn latency(run: &Value, arrived: &HashMap<String, f64>) -> Option<f64> {
    let last_end = run["tasks"].as_array()?.iter().filter_map(|t| t["endTime"].as_f64()).reduce(f64::max)?;
    Some(arrived.get(run["runId"].as_str()?)? - last_end)
}

/// Fisher-Yates with a xorshift generator: a different order each round, the same each run.
fn shuffle<T>(items: &mut [T], seed: &mut u64) {
    for i in (1..items.len()).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        items.swap(i, (*seed % (i as u64 + 1)) as usize);
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

fn timed(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    ok(cmd);
    started.elapsed()
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `program` with the scratch HOME and runtime folder, no NX_/NXOPS_/XDG_ variables,
/// Nx's daemon and cloud off, npm on the real user's cache, and a PATH with pnpm and without nxops.
fn command(program: impl AsRef<std::ffi::OsStr>, home: &Path, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("NX_") || key.starts_with("NXOPS_") || key.starts_with("XDG_") {
            cmd.env_remove(&key);
        }
    }
    if let Some(real_home) = std::env::var_os("HOME") {
        cmd.env("npm_config_cache", Path::new(&real_home).join(".npm"));
    }
    // pnpm (scripts/setup's pinned one) for `nx add` in the pnpm workspace.
    let pnpm = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tools/pnpm/node_modules/.bin");
    let path: Vec<PathBuf> = std::iter::once(pnpm)
        .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()))
        .filter(|dir| !dir.join("nxops").exists())
        .collect();
    cmd.env("PATH", std::env::join_paths(path).unwrap())
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env("NX_DAEMON", "false")
        .env("NX_NO_CLOUD", "true")
        .env("NX_TUI", "false")
        .env("npm_config_update_notifier", "false");
    cmd
}

/// A fixture copy with its own node_modules and these tarballs installed.
fn workspace(repo: &Path, scratch: &Path, home: &Path, name: &str, tarballs: &[&String]) -> PathBuf {
    let ws = scratch.join(name);
    ok(Command::new(repo.join("fixtures/make-workspace.sh")).arg(&ws).args(["--git", "none"]).env("HOME", home));
    std::fs::remove_file(ws.join("node_modules")).unwrap();
    ok(command("npm", home, &ws).args(["ci", "--prefer-offline", "--ignore-scripts", "--no-audit", "--no-fund"]));
    if !tarballs.is_empty() {
        ok(command("npm", home, &ws)
            .args(["install", "-D", "--prefer-offline", "--ignore-scripts", "--no-audit", "--no-fund"])
            .args(tarballs));
    }
    ws
}

/// A fixture copy installed by pnpm (Nx from the user's pnpm store, the unpublished
/// platform package overridden by its tarball), with the plugin added by `nx add`.
fn pnpm_workspace(repo: &Path, scratch: &Path, home: &Path, pnpm: &Path, platform: &str, plugin: &str) -> PathBuf {
    let ws = scratch.join("pnpm");
    ok(Command::new(repo.join("fixtures/make-workspace.sh")).arg(&ws).args(["--git", "none"]).env("HOME", home));
    std::fs::remove_file(ws.join("node_modules")).unwrap();
    std::fs::remove_file(ws.join("package-lock.json")).unwrap();
    let store = std::env::var("HOME").map(|h| format!("{h}/.local/share/pnpm/store")).unwrap();
    let settings =
        format!("storeDir: {store:?}\noverrides:\n  \"@nxops/linux-x64\": {:?}\n", format!("file:{platform}"));
    std::fs::write(ws.join("pnpm-workspace.yaml"), settings).unwrap();
    // pnpm 12 installs, then refuses to finish while Nx's install script is not approved.
    let install = command(pnpm, home, &ws).args(["install", "--prefer-offline"]).output().unwrap();
    let said = String::from_utf8_lossy(&install.stdout).into_owned() + &String::from_utf8_lossy(&install.stderr);
    assert!(install.status.success() || said.contains("ERR_PNPM_IGNORED_BUILDS"), "{said}");
    ok(command(pnpm, home, &ws).args(["approve-builds", "nx"]));
    nx(home, &ws, false, &["add", &format!("@nxops/nx-plugin@file:{plugin}")]);
    ws
}

/// Nx's own script (node_modules/.bin/nx is a shell shim under pnpm).
fn nx_js(ws: &Path) -> PathBuf {
    ws.join("node_modules/nx/dist/bin/nx.js")
}

fn nx(home: &Path, ws: &Path, daemon: bool, args: &[&str]) -> Output {
    let mut cmd = command("node", home, ws);
    cmd.arg(nx_js(ws)).args(args).env("NX_DAEMON", if daemon { "true" } else { "false" });
    ok(&mut cmd)
}

/// A sidecar owning a workspace, as an editor starts one, subscribed to `tasksReported`;
/// a thread notes when each event arrives. Its stdin stays open until it is dropped.
struct Sidecar {
    child: Child,
    stdin: Option<ChildStdin>,
    arrivals: Arc<Mutex<HashMap<String, f64>>>,
}

impl Sidecar {
    fn start(binary: &Path, home: &Path, ws: &Path) -> Sidecar {
        let mut child = command(binary, home, ws)
            .args(["serve", "--stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the sidecar");
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let arrivals: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
        let (answered, answers) = std::sync::mpsc::channel();
        let noted = arrivals.clone();
        std::thread::spawn(move || {
            while let Some(message) = lsp::read_frame(&mut stdout) {
                if message["method"] == "nxops/tasksReported" {
                    let run = message["params"]["runId"].as_str().unwrap_or_default().to_string();
                    noted.lock().unwrap().entry(run).or_insert_with(now_ms);
                } else if message.get("id").is_some() && message.get("method").is_none() {
                    let _ = answered.send(message);
                }
            }
        });
        let root = format!("file://{}", ws.display());
        let mut ask = |message: Value| {
            stdin.write_all(&lsp::frame(&message)).unwrap();
            stdin.flush().unwrap();
        };
        ask(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                   "params": {"processId": null, "rootUri": root, "capabilities": {}}}));
        answers.recv_timeout(Duration::from_secs(20)).expect("initialize answered");
        ask(json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}));
        ask(json!({"jsonrpc": "2.0", "id": 2, "method": "nxops/subscribe", "params": {"events": ["tasksReported"]}}));
        let subscribed = answers.recv_timeout(Duration::from_secs(20)).expect("subscribe answered");
        assert!(subscribed["result"]["subscribed"].is_array(), "{subscribed}");
        // Owning the workspace (its socket answers the CLI) before the first run is made.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = command(binary, home, ws).args(["call", "nxops/tasks/runs", r#"{"limit": 1}"#]).output().unwrap();
            let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if answer["sidecar"] == true {
                break;
            }
            assert!(Instant::now() < deadline, "the sidecar does not own {}: {answer}", ws.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        Sidecar { child, stdin: Some(stdin), arrivals }
    }

    /// When each run's `tasksReported` arrived (milliseconds since the epoch), by run id.
    fn arrivals(&self) -> HashMap<String, f64> {
        self.arrivals.lock().unwrap().clone()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        drop(self.stdin.take()); // end of input: the sidecar exits
        let _ = self.child.wait();
    }
}
