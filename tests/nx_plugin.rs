//! The Nx plugin end to end: both npm packages packed by nx-plugin/scripts/pack.sh,
//! installed with npm into a fresh Nx 24 fixture workspace, then `nx g init`,
//! `nx show projects`, an ops target, and `nx run-many` with and without a sidecar.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Scratch, Sidecar, json_of, run_ok};
use serde_json::{Value, json};

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Packs both packages with a stripped copy of this build's binary (the debug
/// binary's symbols would make the tarball ten times larger for nothing).
fn pack(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let binary = scratch.home().join("nxops");
    run_ok(Command::new("strip").arg("-o").arg(&binary).arg(common::nxops_bin()));
    let out = scratch.home().join("npm");
    let packed = run_ok(
        Command::new(common::repo_root().join("nx-plugin/scripts/pack.sh"))
            .arg("--binary")
            .arg(&binary)
            .arg("--out")
            .arg(&out),
    );
    let paths: Vec<PathBuf> = String::from_utf8_lossy(&packed.stdout).lines().map(PathBuf::from).collect();
    let find = |part: &str| paths.iter().find(|p| p.to_string_lossy().contains(part)).cloned().expect(part);
    (find("nx-plugin"), find("linux-x64"))
}

/// A fixture workspace with its own node_modules: npm installs the locked Nx 24
/// (from the npm cache) and both tarballs.
fn installed_workspace(scratch: &Scratch, tarballs: &[&Path]) -> PathBuf {
    let ws = scratch.workspace("ws", "none");
    std::fs::remove_file(ws.join("node_modules")).expect("make-workspace.sh links node_modules");
    run_ok(scratch.tool(&ws, "npm").args(["ci", "--prefer-offline", "--ignore-scripts"]));
    run_ok(scratch.tool(&ws, "npm").args(["install", "-D", "--prefer-offline", "--ignore-scripts"]).args(tarballs));
    ws
}

fn nx(scratch: &Scratch, ws: &Path, args: &[&str]) -> std::process::Output {
    let out = scratch.tool(ws, "node").arg(ws.join("node_modules/.bin/nx")).args(args).output().unwrap();
    assert!(out.status.success(), "nx {args:?} failed: {}", text(&out));
    out
}

#[test]
fn the_packed_plugin_works_in_a_fresh_nx_24_workspace() {
    let scratch = Scratch::new();
    let (plugin, platform) = pack(&scratch);
    let ws = installed_workspace(&scratch, &[&platform]);
    assert!(ws.join("node_modules/@nxops/linux-x64/bin/nxops").exists(), "the binary came with its package");

    // `nx add` installs the plugin (here from its tarball) and runs its init generator;
    // running the generator again changes nothing.
    let spec = format!("@nxops/nx-plugin@file:{}", plugin.display());
    nx(&scratch, &ws, &["add", &spec]);
    assert!(ws.join("node_modules/@nxops/nx-plugin/package.json").exists());
    let nx_json: Value = serde_json::from_slice(&std::fs::read(ws.join("nx.json")).unwrap()).unwrap();
    let registered = nx_json["plugins"].as_array().unwrap();
    assert!(registered.iter().any(|p| p == "@nxops/nx-plugin" || p["plugin"] == "@nxops/nx-plugin"), "{nx_json}");
    let package: Value = serde_json::from_slice(&std::fs::read(ws.join("package.json")).unwrap()).unwrap();
    assert_eq!(package["scripts"]["ops:cache:stats"], "nx run nx24-fixture:ops-cache-stats", "{package}");
    let before = (std::fs::read(ws.join("nx.json")).unwrap(), std::fs::read(ws.join("package.json")).unwrap());
    nx(&scratch, &ws, &["g", "@nxops/nx-plugin:init"]);
    let after = (std::fs::read(ws.join("nx.json")).unwrap(), std::fs::read(ws.join("package.json")).unwrap());
    assert!(before == after, "init is idempotent");

    let projects = String::from_utf8_lossy(&nx(&scratch, &ws, &["show", "projects"]).stdout).into_owned();
    for project in ["alpha", "beta", "gamma", "nx24-fixture"] {
        assert!(projects.lines().any(|l| l == project), "{project} in {projects}");
    }
    let root = json_of(&nx(&scratch, &ws, &["show", "project", "nx24-fixture", "--json"]));
    for target in ["ops-cache-stats", "ops-cache-clean", "ops-cache-reset", "ops-cache-verify", "ops-env-info"] {
        assert!(root["targets"][target].is_object(), "{target} in {root}");
    }

    // A cache entry exists once a task ran; then the ops target, through the package.json script.
    nx(&scratch, &ws, &["run-many", "-t", "build"]);
    let stats = run_ok(scratch.tool(&ws, "npm").args(["run", "ops:cache:stats"]));
    assert!(text(&stats).contains("Nx cache") && text(&stats).contains("entries   3"), "{}", text(&stats));

    // No sidecar: the hook started a one-shot maintenance run, which stamped its check.
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

    // With a sidecar: tasks see its socket, and each run's results reach it.
    let mut sidecar = Sidecar::started(&scratch, &ws);
    let socket =
        json_of(&run_ok(scratch.nxops(&ws).args(["call", "nxops/workspace/list"])))["workspaces"][0]["role"]["socket"]
            .as_str()
            .unwrap()
            .to_string();
    std::fs::write(
        ws.join("packages/alpha/build.js"),
        std::fs::read_to_string(ws.join("packages/alpha/build.js")).unwrap()
            + "fs.writeFileSync(path.join(out, 'socket.txt'), String(process.env.NXOPS_SOCKET));\n",
    )
    .unwrap();
    nx(&scratch, &ws, &["run-many", "-t", "build"]);
    assert_eq!(std::fs::read_to_string(ws.join("dist/alpha/socket.txt")).unwrap(), socket);
    std::fs::remove_dir_all(ws.join("dist")).unwrap();
    nx(&scratch, &ws, &["run-many", "-t", "build"]);
    for project in ["alpha", "beta", "gamma"] {
        assert!(ws.join(format!("dist/{project}/index.js")).exists(), "the cache hit restored dist/{project}");
    }

    let runs = sidecar.request("nxops/tasks/runs", json!({"limit": 2})).unwrap();
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let (last, first) = (&runs[0], &runs[1]);
    assert_eq!(last["summary"], json!({"tasks": 3, "cacheHits": 3, "executed": 0, "failed": 0, "skipped": 0}));
    assert_eq!(first["summary"]["tasks"], 3);
    assert_eq!(
        first["tasks"].as_array().unwrap().iter().find(|t| t["project"] == "alpha").unwrap()["status"],
        "success"
    );
    assert!(last["command"].as_str().unwrap().contains("run-many"), "{last}");
    for task in last["tasks"].as_array().unwrap() {
        assert_eq!(task["status"], "local-cache", "{task}");
        assert!(task["hash"].as_str().is_some_and(|h| !h.is_empty()), "{task}");
    }
    drop(sidecar);

    // A bad option stops the project graph with its place named.
    let mut nx_json: Value = serde_json::from_slice(&std::fs::read(ws.join("nx.json")).unwrap()).unwrap();
    nx_json["plugins"] = json!([{"plugin": "@nxops/nx-plugin", "options": {"cache": {"maxSzie": "2GB"}}}]);
    std::fs::write(ws.join("nx.json"), serde_json::to_vec_pretty(&nx_json).unwrap()).unwrap();
    let out =
        scratch.tool(&ws, "node").arg(ws.join("node_modules/.bin/nx")).args(["show", "projects"]).output().unwrap();
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("plugins[0].options.cache.maxSzie") && said.contains("did you mean"), "{said}");
}
