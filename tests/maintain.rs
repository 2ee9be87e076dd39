//! `nxops maintain`: the one-shot check the Nx plugin starts after a run when
//! no sidecar runs, and task reports kept by the sidecar that owns the workspace.

mod common;

use common::{Scratch, Sidecar, json_of, run_ok};
use serde_json::json;

#[test]
fn a_one_shot_check_is_throttled_and_cleans_only_when_a_threshold_is_passed() {
    let scratch = Scratch::new();
    let ws = scratch.filled_workspace();
    let first = json_of(&run_ok(scratch.nxops(&ws).args(["--json", "maintain", "--if-due"])));
    assert_eq!(first["checked"], true, "{first}");
    assert_eq!(first["reason"], "nothing due");
    assert!(first["cacheBytes"].as_u64().unwrap() > 0);
    let second = json_of(&run_ok(scratch.nxops(&ws).args(["--json", "maintain", "--if-due"])));
    assert_eq!(second["checked"], false, "{second}");
    assert!(second["reason"].as_str().unwrap().starts_with("checked "), "{second}");

    // Without --if-due the check runs; over the size threshold it cleans, but entries
    // used in the last hour are kept (as every automatic clean keeps them), and it says so.
    let over = json_of(&run_ok(scratch.nxops(&ws).args(["--json", "--set", "cache.maxSize=5KB", "maintain"])));
    assert_eq!(over["checked"], true);
    let reason = over["reason"].as_str().unwrap();
    assert!(reason.starts_with("a clean was due, but nothing may be evicted yet"), "{over}");
    assert!(reason.contains("every entry was used in the last hour"), "{over}");
    assert!(over["blocked"]["evictableInMs"].as_u64().unwrap() > 0, "{over}");
    assert_eq!((over["clean"]["trigger"].clone(), over["clean"]["entries"].clone()), (json!("automatic"), json!(0)));
    let human = run_ok(scratch.nxops(&ws).args(["maintain"]));
    assert!(String::from_utf8_lossy(&human.stdout).starts_with("Maintenance: nothing due\n  cache "), "{human:?}");
}

#[test]
fn the_owner_keeps_reported_runs_and_refuses_bad_reports() {
    let scratch = Scratch::new();
    let ws = scratch.filled_workspace();
    let mut sidecar = Sidecar::started(&scratch, &ws);
    sidecar.request("nxops/subscribe", json!({"events": ["tasksReported"]})).unwrap();
    for run in 0..3 {
        let tasks = json!([
            {"id": "alpha:build", "project": "alpha", "target": "build", "hash": "1", "status": "local-cache", "code": 0},
            {"id": "beta:build", "project": "beta", "target": "build", "hash": "2", "status": "failure", "code": 1}
        ]);
        let params = json!({"runId": format!("run{run}"), "command": "nx run-many -t build", "tasks": tasks});
        assert_eq!(sidecar.request("nxops/tasks/report", params).unwrap(), json!({"accepted": 2}));
        let event = sidecar.notification("nxops/tasksReported");
        assert_eq!(
            event["params"]["summary"],
            json!({"tasks": 2, "cacheHits": 1, "executed": 1, "failed": 1, "skipped": 0})
        );
    }
    let runs = json_of(&run_ok(scratch.nxops(&ws).args(["call", "nxops/tasks/runs", r#"{"limit": 2}"#])));
    let ids: Vec<&str> = runs["runs"].as_array().unwrap().iter().map(|r| r["runId"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["run2", "run1"], "newest first, limited");

    let bad = sidecar.request(
        "nxops/tasks/report",
        json!({"runId": "x", "tasks": [{"id": "a", "project": "a", "target": "b", "status": "done"}]}),
    );
    assert!(bad.unwrap_err()["message"].as_str().unwrap().contains("tasks[0].status: unknown status \"done\""));
    let bad = sidecar.request("nxops/tasks/report", json!({"tasks": []})).unwrap_err();
    assert!(bad["message"].as_str().unwrap().contains("missing field `runId`"), "{bad}");
    drop(sidecar);

    // Without a sidecar nobody keeps runs: the report says so, and the list is empty.
    let out =
        scratch.nxops(&ws).args(["call", "nxops/tasks/report", r#"{"runId": "x", "tasks": []}"#]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let runs = json_of(&run_ok(scratch.nxops(&ws).args(["call", "nxops/tasks/runs"])));
    assert_eq!(runs["sidecar"], false);
    assert_eq!(runs["runs"], json!([]));
}
