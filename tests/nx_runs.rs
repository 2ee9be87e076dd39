//! The owner learns of Nx runs from Nx's own records (task history and
//! run.json), with no plugin registered: real Nx 24 runs in the fixture
//! workspace, in the shared (`~/.nx/<id>`) and checkout-local layouts, a
//! failing task, and a database whose schema nxops does not know.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Scratch, Sidecar, json_of, run_ok};
use serde_json::{Value, json};

fn nx(scratch: &Scratch, ws: &Path, args: &[&str]) -> std::process::Output {
    scratch.tool(ws, "node").arg(ws.join("node_modules/.bin/nx")).args(args).output().unwrap()
}

/// Runs `nx args` and returns the `tasksReported` event it caused, with the time
/// from the process's exit to the event.
fn run_and_hear(scratch: &Scratch, ws: &Path, sidecar: &mut Sidecar, args: &[&str]) -> (Value, Duration) {
    let out = nx(scratch, ws, args);
    assert!(out.status.success(), "nx {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let exited = Instant::now();
    let event = sidecar.notification("nxops/tasksReported");
    (event["params"].clone(), exited.elapsed())
}

fn runs(scratch: &Scratch, ws: &Path) -> Value {
    json_of(&run_ok(scratch.nxops(ws).args(["call", "nxops/tasks/runs", r#"{"limit": 5}"#])))
}

#[test]
fn every_nx_run_reaches_the_owner_without_a_plugin() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "remote");
    let nx_json = std::fs::read_to_string(ws.join("nx.json")).unwrap();
    assert!(!nx_json.contains("plugins"), "no plugin is registered: {nx_json}");
    let mut sidecar = Sidecar::started(&scratch, &ws);
    sidecar.request("nxops/subscribe", json!({"events": ["tasksReported"]})).unwrap();

    // The first run creates Nx's database (shared layout: ~/.nx/<id>/databases).
    let (first, _) = run_and_hear(&scratch, &ws, &mut sidecar, &["run-many", "-t", "build"]);
    assert_eq!(first["summary"], json!({"tasks": 3, "cacheHits": 0, "executed": 3, "failed": 0, "skipped": 0}));
    assert_eq!(first["source"], "nx-records");
    assert_eq!(first["checkout"], Value::Null, "the shared database does not say which checkout ran it");
    let (hits, _) = run_and_hear(&scratch, &ws, &mut sidecar, &["run-many", "-t", "build"]);
    assert_eq!(hits["summary"]["cacheHits"], 3, "{hits}");
    assert_eq!(hits["command"], "nx run-many -t build", "run.json names the command");

    // A failing task is a run too, with the code Nx records (run-commands reports 1).
    std::fs::write(ws.join("packages/beta/test.js"), "process.exit(3)\n").unwrap();
    let out = nx(&scratch, &ws, &["run", "beta:test"]);
    assert!(!out.status.success());
    let failed = sidecar.notification("nxops/tasksReported")["params"].clone();
    assert_eq!(failed["summary"]["failed"], 1, "{failed}");

    let listed = runs(&scratch, &ws);
    assert_eq!(listed["watchProblem"], Value::Null, "{listed}");
    let listed = listed["runs"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let beta = &listed[0]["tasks"][0];
    assert_eq!((&beta["id"], &beta["status"], &beta["code"]), (&json!("beta:test"), &json!("failure"), &json!(1)));
    let alpha = listed[1]["tasks"].as_array().unwrap().iter().find(|t| t["project"] == "alpha").unwrap();
    assert_eq!((&alpha["target"], &alpha["status"]), (&json!("build"), &json!("local-cache")), "{alpha}");
    assert!(alpha["hash"].as_str().is_some_and(|h| !h.is_empty()) && alpha["startTime"].is_u64(), "{alpha}");
}

#[test]
fn a_checkout_local_cache_attributes_runs_to_the_checkout() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let mut sidecar = Sidecar::started(&scratch, &ws);
    sidecar.request("nxops/subscribe", json!({"events": ["tasksReported"]})).unwrap();
    let (run, _) = run_and_hear(&scratch, &ws, &mut sidecar, &["run", "alpha:build"]);
    assert_eq!(run["checkout"], json!(ws), "{run}");
    assert_eq!(run["summary"]["tasks"], 1);
}

#[test]
fn an_unknown_schema_is_reported_once_and_the_owner_keeps_serving() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    assert!(nx(&scratch, &ws, &["run", "alpha:build"]).status.success());
    let mut sidecar = Sidecar::started(&scratch, &ws);
    let db = std::fs::read_dir(ws.join(".nx/workspace-data"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "db"))
        .expect("Nx made its database");
    // Fault injection: a schema nxops does not know (Nx renaming a column).
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("ALTER TABLE task_history RENAME COLUMN start TO started_at")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let problem = loop {
        let listed = runs(&scratch, &ws);
        if let Some(problem) = listed["watchProblem"].as_str() {
            break problem.to_string();
        }
        assert!(Instant::now() < deadline, "no problem reported: {listed}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(problem.contains("no column start in task_history") && problem.contains(".db"), "{problem}");
    assert!(sidecar.request("nxops/status", json!({})).is_ok(), "the owner still answers");
}

/// The watch sleeps between Nx's writes: its own reads of the database (which
/// open, map and close its `-wal` and `-shm` files, as inotify sees) never wake
/// it again. Reading on every event without that filter spun at 15% of a core.
#[test]
fn an_idle_owner_after_runs_uses_no_cpu() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let mut sidecar = Sidecar::started(&scratch, &ws);
    sidecar.request("nxops/subscribe", json!({"events": ["tasksReported"]})).unwrap();
    run_and_hear(&scratch, &ws, &mut sidecar, &["run-many", "-t", "build"]);
    run_and_hear(&scratch, &ws, &mut sidecar, &["run-many", "-t", "build"]);
    std::thread::sleep(Duration::from_millis(500)); // Nx's last writes after the run settle
    let cpu_ticks = || nxops::procfs::stat(sidecar.pid()).expect("the sidecar runs").cpu_ticks;
    let before = cpu_ticks();
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks() - before;
    // Clock ticks are 1/100 s: 10 ticks in 3 s is 3% of a core, far above an idle owner's 0-2.
    assert!(used <= 10, "the idle owner used {used} ticks of CPU in 3 s");
}
