//! The Nx plugin end to end, under npm and under pnpm 12 (scripts/setup installs
//! it): both npm packages packed by nx-plugin/scripts/pack.sh (the binary
//! stripped, its size checked), installed into a fresh Nx 24 fixture workspace,
//! then `nx add`, the inferred targets, all eight `ops:*` scripts (calling the
//! nxops bin, not Nx), the maintenance check createNodes starts, runs seen by the
//! sidecar with the Nx daemon off and on, and a bad option stopping the graph.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Scratch, Sidecar, json_of, run_ok};
use serde_json::{Value, json};

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Packs both packages with this build's binary, which pack.sh strips.
fn pack(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let out = scratch.home().join("npm");
    let packed = run_ok(
        Command::new(common::repo_root().join("nx-plugin/scripts/pack.sh"))
            .arg("--binary")
            .arg(common::nxops_bin())
            .arg("--out")
            .arg(&out),
    );
    let paths: Vec<PathBuf> = String::from_utf8_lossy(&packed.stdout).lines().map(PathBuf::from).collect();
    let find = |part: &str| paths.iter().find(|p| p.to_string_lossy().contains(part)).cloned().expect(part);
    (find("nx-plugin"), find("linux-x64"))
}

/// The package manager a test installs with.
#[derive(Clone, Copy, PartialEq)]
enum Pm {
    Npm,
    Pnpm,
}

impl Pm {
    fn program(self) -> PathBuf {
        match self {
            Pm::Npm => PathBuf::from("npm"),
            Pm::Pnpm => common::repo_root().join("scripts/tools/pnpm/node_modules/.bin/pnpm"),
        }
    }
}

/// `program` in `ws` with the scratch environment and pnpm on PATH.
fn tool(scratch: &Scratch, ws: &Path, program: &Path) -> Command {
    let mut cmd = scratch.tool(ws, program.to_str().unwrap());
    let pnpm_bin = common::repo_root().join("scripts/tools/pnpm/node_modules/.bin");
    let path = format!("{}:{}", pnpm_bin.display(), std::env::var("PATH").unwrap_or_default());
    cmd.env("PATH", path).env("CI", "true");
    cmd
}

/// A fixture workspace with its own node_modules and the platform package:
/// npm installs the locked Nx 24; pnpm installs it from its store, with the
/// unpublished platform package overridden by its tarball.
fn installed_workspace(scratch: &Scratch, pm: Pm, platform: &Path) -> PathBuf {
    let ws = scratch.workspace("ws", "none");
    std::fs::remove_file(ws.join("node_modules")).expect("make-workspace.sh links node_modules");
    let run = |args: &[&str]| run_ok(tool(scratch, &ws, &pm.program()).args(args));
    match pm {
        Pm::Npm => {
            run(&["ci", "--prefer-offline", "--ignore-scripts"]);
            run(&["install", "-D", "--prefer-offline", "--ignore-scripts", platform.to_str().unwrap()]);
        }
        Pm::Pnpm => {
            std::fs::remove_file(ws.join("package-lock.json")).unwrap();
            // The unpublished platform package from its tarball; the real user's store, so
            // packages come from it (not the network) after the first run.
            let store = std::env::var("HOME").map(|h| format!("{h}/.local/share/pnpm/store")).unwrap();
            let settings = format!(
                "storeDir: {store:?}\noverrides:\n  \"@nxops/linux-x64\": {:?}\n",
                format!("file:{}", platform.display())
            );
            std::fs::write(ws.join("pnpm-workspace.yaml"), settings).unwrap();
            // pnpm 12 installs, then refuses to finish while Nx's install script is not
            // approved: `pnpm approve-builds nx` approves it and runs it.
            let out = tool(scratch, &ws, &pm.program()).args(["install", "--prefer-offline"]).output().unwrap();
            assert!(out.status.success() || text(&out).contains("ERR_PNPM_IGNORED_BUILDS"), "{}", text(&out));
            run(&["approve-builds", "nx"]);
        }
    }
    ws
}

fn nx_env(scratch: &Scratch, ws: &Path, pm: Pm, args: &[&str], daemon: &str) -> std::process::Output {
    let _ = pm; // Nx itself, whichever package manager installed it.
    let out = tool(scratch, ws, Path::new("node"))
        .env("NX_DAEMON", daemon)
        .arg(ws.join("node_modules/nx/dist/bin/nx.js"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "nx {args:?} failed: {}", text(&out));
    out
}

fn nx(scratch: &Scratch, ws: &Path, pm: Pm, args: &[&str]) -> std::process::Output {
    nx_env(scratch, ws, pm, args, "false")
}

/// Stops the workspace's Nx daemon when the test ends, however it ends.
struct DaemonGuard<'a>(&'a Scratch, &'a Path);

impl Drop for DaemonGuard<'_> {
    fn drop(&mut self) {
        let _ = tool(self.0, self.1, Path::new("node"))
            .env("NX_DAEMON", "true")
            .arg(self.1.join("node_modules/nx/dist/bin/nx.js"))
            .args(["daemon", "--stop"])
            .output();
    }
}

/// One test for both package managers: pack.sh builds in the source tree, so
/// two packings must not run at once.
#[test]
fn the_packed_plugin_works_with_npm_and_pnpm() {
    let packing = Scratch::new();
    let (plugin, platform) = pack(&packing);
    let packed = std::fs::metadata(&platform).unwrap().len();
    // The debug binary packs to ~14 MB stripped (the AWS SDK of the team cache's bucket store is
    // most of the growth) and to ~80 MB unstripped: the bound tells the two apart.
    assert!(packed < 24 << 20, "the platform package is {packed} bytes: is the binary stripped?");
    exercise(Pm::Npm, &plugin, &platform);
    exercise(Pm::Pnpm, &plugin, &platform);
}

fn exercise(pm: Pm, plugin: &Path, platform: &Path) {
    let scratch = Scratch::new();
    let ws = installed_workspace(&scratch, pm, platform);
    // `nx add` installs the plugin (here from its tarball) and runs its init generator;
    // running the generator again changes nothing.
    let spec = format!("@nxops/nx-plugin@file:{}", plugin.display());
    nx(&scratch, &ws, pm, &["add", &spec]);
    // The binary the plugin brought, beside it (npm: node_modules/@nxops; pnpm: the
    // plugin's own node_modules/@nxops in its store folder), is stripped.
    let installed = std::fs::canonicalize(ws.join("node_modules/@nxops/nx-plugin")).unwrap();
    let shipped = installed.parent().unwrap().join("linux-x64/bin/nxops");
    let sections =
        String::from_utf8_lossy(&run_ok(Command::new("readelf").arg("-S").arg(&shipped)).stdout).into_owned();
    assert!(!sections.contains(".debug_info") && !sections.contains(".symtab"), "not stripped: {sections}");
    let nx_json: Value = serde_json::from_slice(&std::fs::read(ws.join("nx.json")).unwrap()).unwrap();
    assert_eq!(nx_json["plugins"], json!([{"plugin": "@nxops/nx-plugin", "options": {}}]), "no hooks by default");
    let package: Value = serde_json::from_slice(&std::fs::read(ws.join("package.json")).unwrap()).unwrap();
    assert_eq!(package["scripts"]["ops:cache:stats"], "exec nxops cache stats", "{package}");
    let before = (std::fs::read(ws.join("nx.json")).unwrap(), std::fs::read(ws.join("package.json")).unwrap());
    nx(&scratch, &ws, pm, &["g", "@nxops/nx-plugin:init"]);
    let after = (std::fs::read(ws.join("nx.json")).unwrap(), std::fs::read(ws.join("package.json")).unwrap());
    assert!(before == after, "init is idempotent");

    let root = json_of(&nx(&scratch, &ws, pm, &["show", "project", "nx24-fixture", "--json"]));
    for target in ["ops-cache-stats", "ops-cache-clean", "ops-cache-reset", "ops-cache-verify", "ops-env-info"] {
        assert!(root["targets"][target].is_object(), "{target} in {root}");
    }

    // A run, then every ops:* script through the package manager, straight to the binary.
    nx(&scratch, &ws, pm, &["run-many", "-t", "build"]);
    let script = |name: &str, extra: &[&str]| {
        let out = tool(&scratch, &ws, &pm.program()).args(["run", name]).args(extra).output().unwrap();
        assert!(out.status.success(), "{name}: {}", text(&out));
        text(&out)
    };
    let stats = script("ops:cache:stats", &[]);
    assert!(stats.contains("Nx cache") && stats.contains("entries   3"), "{stats}");
    assert!(!stats.contains("nx run"), "the script does not go through Nx: {stats}");
    // createNodes (the graph of the run above) started the maintenance check, which stamped it.
    let state = nxops::config::state_dir(
        &nxops::environment::Environment::from_pairs([("HOME", scratch.home().to_str().unwrap())]),
        &ws,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !state.join("maintenance.json").exists() {
        assert!(Instant::now() < deadline, "no maintenance stamp in {}", state.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    for name in ["ops:cache:clean", "ops:perf:optimize", "ops:system:info", "ops:env:info", "ops:monitor:check"] {
        script(name, &[]);
    }
    // npm needs `--` before a script's arguments; pnpm passes one on to the binary.
    let count: &[&str] = if pm == Pm::Npm { &["--", "--count", "1"] } else { &["--count", "1"] };
    script("ops:monitor:start", count);
    // Ctrl-C, monitor start's way out, to the whole foreground group: a success.
    let mut monitor = tool(&scratch, &ws, &pm.program());
    monitor.args(["run", "ops:monitor:start"]);
    let mut child = {
        use std::os::unix::process::CommandExt;
        monitor.process_group(0).stdout(std::process::Stdio::null()).spawn().unwrap()
    };
    std::thread::sleep(Duration::from_millis(1500));
    let pgid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process_group(pgid, rustix::process::Signal::INT).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "ops:monitor:start after Ctrl-C: {status:?}");
    let reset = script("ops:cache:reset", &[]);
    let stats = tool(&scratch, &ws, &pm.program()).args(["run", "ops:cache:stats"]).output().unwrap();
    assert!(
        !stats.status.success() && text(&stats).contains("yet, or not since its cache was reset"),
        "after a reset there is nothing to count, and stats says why: {reset}\n{}",
        text(&stats)
    );

    // With a sidecar: every run is seen (no hook), the daemon off and on.
    let mut sidecar = Sidecar::started(&scratch, &ws);
    sidecar.request("nxops/subscribe", json!({"events": ["tasksReported"]})).unwrap();
    nx(&scratch, &ws, pm, &["run-many", "-t", "build"]);
    let off = sidecar.notification("nxops/tasksReported");
    assert_eq!(off["params"]["summary"]["tasks"], 3, "{off}");
    let _daemon = DaemonGuard(&scratch, &ws);
    nx_env(&scratch, &ws, pm, &["run-many", "-t", "build"], "true");
    // With the daemon on, the daemon writes the task history; on a loaded CI machine it
    // can take a while. If the run is never seen, say what Nx recorded and what the owner knows.
    let Some(on) = sidecar.notification_within("nxops/tasksReported", Duration::from_secs(60)) else {
        let runs = sidecar.request("nxops/tasks/runs", json!({"limit": 5}));
        let databases: Vec<_> = std::fs::read_dir(ws.join(".nx/workspace-data"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        panic!("the daemon-on run was never reported; runs: {runs:?}; workspace data: {databases:?}");
    };
    assert_eq!(on["params"]["summary"], json!({"tasks": 3, "cacheHits": 3, "executed": 0, "failed": 0, "skipped": 0}));
    assert_eq!(on["params"]["checkout"], json!(ws), "a checkout-local cache names its checkout");
    let runs = sidecar.request("nxops/tasks/runs", json!({"limit": 2})).unwrap();
    let last = &runs["runs"][0];
    assert!(last["command"].as_str().unwrap().contains("run-many"), "{last}");
    for task in last["tasks"].as_array().unwrap() {
        assert_eq!(task["status"], "local-cache", "{task}");
    }
    drop(sidecar);

    // A bad option stops the project graph with its place named.
    let mut nx_json: Value = serde_json::from_slice(&std::fs::read(ws.join("nx.json")).unwrap()).unwrap();
    nx_json["plugins"] = json!([{"plugin": "@nxops/nx-plugin", "options": {"cache": {"maxSzie": "2GB"}}}]);
    std::fs::write(ws.join("nx.json"), serde_json::to_vec_pretty(&nx_json).unwrap()).unwrap();
    let out = tool(&scratch, &ws, Path::new("node"))
        .arg(ws.join("node_modules/nx/dist/bin/nx.js"))
        .args(["show", "projects"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("plugins[0].options.cache.maxSzie") && said.contains("did you mean"), "{said}");
}
