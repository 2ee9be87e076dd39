//! Nx plugin benchmark: what `@nxops/nx-plugin` adds to `nx run-many`, measured
//! in the same run against the same fixture workspace without the plugin, and
//! against a no-op plugin of the same shape.
//!
//! Copies of the Nx 24 fixture workspace, each with its own node_modules
//! installed by npm (the locked Nx 24, and the packed plugin where it has one):
//! - without a plugin (the baseline);
//! - with `fixtures/plugins/noop-hooks-plugin`, a package of the same shape as
//!   ours (createNodes on nx.json, preTasksExecution, postTasksExecution) that
//!   does nothing: Nx runs every plugin with task hooks in an isolated worker
//!   process and starts it again for the hooks of each run, and this control
//!   measures that price, which no plugin with hooks can avoid;
//! - with `@nxops/nx-plugin` and a sidecar owning the workspace (the hooks report
//!   the run over the socket);
//! - with `@nxops/nx-plugin` and no nxops binary anywhere (no platform package,
//!   no NXOPS_BIN, not on PATH): it must cost nothing beyond the control.
//!
//! Each workspace's cache is warmed first, so every measured `nx run-many -t build`
//! is three cache hits (the shortest run, where a hook's cost shows most), with
//! Nx's daemon off (as in CI) and on (as on a workstation). Rounds interleave the
//! scenarios; each figure is a median. Target: the hooks add at most 30 ms.
//!
//! A third set runs with `NX_ISOLATE_PLUGINS=false`, where Nx loads plugins in its
//! own process: what the plugin and its hooks cost with no worker to start.
//!
//! Run: `cargo bench --bench plugin` (add `-- --quick` for 3 rounds instead of 10).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 10 };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::Builder::new().prefix("nxops-plugin-bench-").tempdir_in("/var/tmp").expect("scratch");
    let home = scratch.path().join("home");
    std::fs::create_dir_all(home.join("run")).unwrap();

    println!(
        "nxops plugin benchmark ({rounds} rounds of `nx run-many -t build`, all cache hits; baseline in the same run)"
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
    let control = workspace(&repo, scratch.path(), &home, "control", &[]);
    // Installed as a package, as @nxops/nx-plugin is (a local path would add Nx's transpiler).
    let installed = control.join("node_modules/noop-hooks-plugin");
    std::fs::create_dir_all(&installed).unwrap();
    for file in ["index.js", "package.json"] {
        std::fs::copy(repo.join("fixtures/plugins/noop-hooks-plugin").join(file), installed.join(file)).unwrap();
    }
    register_plugin(&control, "noop-hooks-plugin");
    let nxops = workspace(&repo, scratch.path(), &home, "with-nxops", &[&plugin, &platform]);
    register_plugin(&nxops, "@nxops/nx-plugin");
    let absent = workspace(&repo, scratch.path(), &home, "nxops-absent", &[&plugin, &platform]);
    register_plugin(&absent, "@nxops/nx-plugin");
    // No binary anywhere: the platform package goes (PATH never has nxops here).
    std::fs::remove_dir_all(absent.join("node_modules/@nxops/linux-x64")).unwrap();
    let sidecar = start_sidecar(&binary, &home, &nxops);

    // (label, workspace, mode): mode 0 = daemon off, 1 = daemon on, 2 = daemon off and
    // NX_ISOLATE_PLUGINS=false (plugins load in Nx's own process: no worker to start).
    let scenarios: [(&str, &PathBuf, usize); 9] = [
        ("without a plugin", &plain, 0),
        ("no-op plugin, same hooks", &control, 0),
        ("nxops plugin + sidecar", &nxops, 0),
        ("nxops plugin, no nxops", &absent, 0),
        ("without a plugin", &plain, 1),
        ("no-op plugin, same hooks", &control, 1),
        ("nxops plugin + sidecar", &nxops, 1),
        ("without a plugin", &plain, 2),
        ("nxops plugin + sidecar", &nxops, 2),
    ];
    for (_, ws, mode) in scenarios {
        nx(&home, ws, mode, &["run-many", "-t", "build"]); // warm: the measured runs are all cache hits
        nx(&home, ws, mode, &["run-many", "-t", "build"]);
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); scenarios.len()];
    for _ in 0..rounds {
        for (i, (_, ws, mode)) in scenarios.iter().enumerate() {
            let started = Instant::now();
            let out = nx(&home, ws, *mode, &["run-many", "-t", "build"]);
            times[i].push(started.elapsed());
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(said.contains("from the cache"), "not all cache hits: {said}");
        }
    }
    let medians: Vec<Duration> = times.iter_mut().map(|t| median(t)).collect();
    let headings =
        ["Nx daemon off, as in CI", "Nx daemon on, as on a workstation", "NX_ISOLATE_PLUGINS=false, daemon off"];
    for (mode, base, control) in [(0, 0, 1), (1, 4, 5), (2, 7, 7)] {
        println!(
            "  {} (medians; baseline spread {:.0} ms)",
            headings[mode],
            ms(*times[base].iter().max().unwrap()) - ms(*times[base].iter().min().unwrap())
        );
        for (i, (label, _, m)) in scenarios.iter().enumerate() {
            if *m != mode {
                continue;
            }
            let vs_base = ms(medians[i]) - ms(medians[base]);
            let vs_control = ms(medians[i]) - ms(medians[control]);
            let note = match i {
                1 | 5 => "  (Nx's price for any plugin with task hooks: an isolated worker per run)".to_string(),
                2 | 6 => format!("  nxops's own share vs the no-op plugin {vs_control:+6.1} ms (target <= 30 ms)"),
                3 => format!("  vs the no-op plugin {vs_control:+6.1} ms (nothing measurable when nxops is absent)"),
                8 => "  (the plugin and its hooks alone, no worker: target <= 30 ms)".to_string(),
                _ => String::new(),
            };
            println!("    {label:<26} {:>7.1} ms   {vs_base:+7.1} ms vs no plugin{note}", ms(medians[i]));
        }
    }
    let runs = ok(command(&binary, &home, &nxops).args(["call", "nxops/tasks/runs", r#"{"limit": 50}"#]));
    let reported: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    println!(
        "  runs the sidecar received: {} (expected {})",
        reported["runs"].as_array().map_or(0, Vec::len),
        3 * rounds + 6
    );
    stop(sidecar);
    for ws in [&plain, &control, &nxops] {
        let _ = command("node", &home, ws)
            .arg(ws.join("node_modules/.bin/nx"))
            .args(["daemon", "--stop"])
            .env("NX_DAEMON", "true")
            .output();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
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
/// Nx's daemon and cloud off, npm on the real user's cache, and a PATH without nxops.
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
    let path: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
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

fn register_plugin(ws: &Path, plugin: &str) {
    let path = ws.join("nx.json");
    let mut nx_json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    nx_json["plugins"] = serde_json::json!([plugin]);
    std::fs::write(&path, serde_json::to_vec_pretty(&nx_json).unwrap()).unwrap();
}

fn nx(home: &Path, ws: &Path, mode: usize, args: &[&str]) -> Output {
    let mut cmd = command("node", home, ws);
    cmd.arg(ws.join("node_modules/.bin/nx")).args(args).env("NX_DAEMON", if mode == 1 { "true" } else { "false" });
    if mode == 2 {
        cmd.env("NX_ISOLATE_PLUGINS", "false");
    }
    ok(&mut cmd)
}

/// A sidecar owning `ws`, as an editor starts one; its stdin stays open until `stop`.
fn start_sidecar(binary: &Path, home: &Path, ws: &Path) -> Child {
    let mut child = command(binary, home, ws)
        .args(["serve", "--stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the sidecar");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"processId":null,"rootUri":"file://{}","capabilities":{{}}}}}}"#,
        ws.display()
    );
    use std::io::Write;
    let stdin = child.stdin.as_mut().unwrap();
    write!(stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    stdin.flush().unwrap();
    let socket_dir = home.join("run/nxops");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_dir(&socket_dir)
        .is_ok_and(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "sock")))
    {
        assert!(Instant::now() < deadline, "the sidecar did not open its socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn stop(mut sidecar: Child) {
    drop(sidecar.stdin.take());
    let _ = sidecar.wait();
}
