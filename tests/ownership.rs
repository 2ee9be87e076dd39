//! One owner per workspace: a second sidecar follows and forwards, the CLI talks
//! to the owner, and when the owner is SIGKILLed a follower takes over.

mod common;

use std::time::{Duration, Instant};

use common::{Scratch, Sidecar, alive, json_of, run_ok};
use serde_json::{Value, json};

fn role(sidecar: &mut Sidecar) -> Value {
    let list = sidecar.request("nxops/workspace/list", json!({})).unwrap();
    list["workspaces"][0]["role"].clone()
}

/// Polls `role` until `done` holds (takeover is asynchronous), for at most 10 s.
fn wait_role(sidecar: &mut Sidecar, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let role = role(sidecar);
        if done(&role) {
            return role;
        }
        assert!(Instant::now() < deadline, "role never settled: {role}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn second_sidecar_follows_and_forwards_then_takes_over_after_sigkill() {
    let s = Scratch::new();
    let ws = s.workspace("shared", "none");
    let mut first = Sidecar::started(&s, &ws);
    assert_eq!(role(&mut first)["kind"], "owner");

    let mut second = Sidecar::started(&s, &ws);
    let followed = wait_role(&mut second, |r| r["connected"] == true);
    assert_eq!(followed["kind"], "follower");
    assert_eq!(followed["ownerPid"], first.pid());

    // A workspace request on the follower runs on the owner: the owner sees the forwarder's session.
    let info = second.request("nxops/env/info", json!({})).unwrap();
    assert_eq!(info["workspaceRoot"], json!(ws));
    let sessions = first.request("nxops/status", json!({})).unwrap()["sessions"].clone();
    assert!(sessions.as_array().unwrap().iter().any(|s| s["clientName"] == "nxops-forwarder"), "{sessions:#}");

    // The CLI reaches the owner too.
    let status = json_of(&run_ok(s.nxops(&ws).args(["call", "nxops/status"])));
    assert_eq!(status["pid"], first.pid());

    second.request("nxops/subscribe", json!({"events": ["ownershipChanged"]})).unwrap();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let took_over = wait_role(&mut second, |r| r["kind"] == "owner");
    assert!(took_over["socket"].as_str().is_some());
    assert_eq!(second.notification("nxops/ownershipChanged")["params"]["workspace"], json!(ws));
    let status = json_of(&run_ok(s.nxops(&ws).args(["call", "nxops/status"])));
    assert_eq!(status["pid"], second.pid(), "the CLI now reaches the new owner");
    assert!(second.request("nxops/env/info", json!({})).is_ok());
}

#[test]
fn three_sidecars_elect_exactly_one_new_owner() {
    let s = Scratch::new();
    let ws = s.workspace("three", "none");
    let mut owner = Sidecar::started(&s, &ws);
    let mut b = Sidecar::started(&s, &ws);
    let mut c = Sidecar::started(&s, &ws);
    wait_role(&mut b, |r| r["connected"] == true);
    wait_role(&mut c, |r| r["connected"] == true);
    assert_eq!(role(&mut owner)["kind"], "owner");
    owner.child.kill().unwrap();
    owner.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (rb, rc) = (role(&mut b), role(&mut c));
        let owners = [&rb, &rc].iter().filter(|r| r["kind"] == "owner").count();
        assert!(owners <= 1, "two owners at once: {rb} {rc}");
        let other = if rb["kind"] == "owner" { &rc } else { &rb };
        if owners == 1 && other["connected"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "no settled owner: {rb} {rc}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn graceful_exit_hands_over_without_a_gap_in_service() {
    let s = Scratch::new();
    let ws = s.workspace("handover", "none");
    let mut first = Sidecar::started(&s, &ws);
    let mut second = Sidecar::started(&s, &ws);
    wait_role(&mut second, |r| r["connected"] == true);
    assert_eq!(first.close_stdin_and_wait().code(), Some(0));
    wait_role(&mut second, |r| r["kind"] == "owner");
    assert!(!alive(first.pid()));
}

#[test]
fn call_without_a_sidecar_runs_in_process_and_reports_errors_as_json() {
    let s = Scratch::new();
    let ws = s.workspace("alone", "none");
    let status = json_of(&run_ok(s.nxops(&ws).args(["call", "nxops/status"])));
    assert_eq!(status["workspaces"][0]["role"]["kind"], "in-process");
    assert_eq!(status["sessions"][0]["transport"], "in-process");

    let out = s.nxops(&ws).args(["call", "nxops/workspace/attach", "{\"pth\": 1}"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err: Value =
        serde_json::from_slice(&out.stderr[..out.stderr.iter().rposition(|&b| b == b'}').unwrap() + 1]).unwrap();
    assert_eq!(err["code"], -32602);
    assert!(out.stdout.is_empty());

    let out = s.nxops(&ws).args(["call", "nxops/status", "{not json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PARAMS_JSON: is not valid JSON"));
}

#[test]
fn socket_path_fits_whatever_the_workspace_path() {
    let s = Scratch::new();
    let deep = s.spaces.path().join("a".repeat(60)).join("b".repeat(60)).join("c".repeat(60)).join("d".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    let ws = {
        let made = s.workspace("tmp-deep", "none");
        let target = deep.join("ws");
        std::fs::rename(&made, &target).unwrap();
        target
    };
    assert!(ws.as_os_str().len() > 250);
    let mut sidecar = Sidecar::started(&s, &ws);
    let role = role(&mut sidecar);
    assert_eq!(role["kind"], "owner", "{role}");
    assert!(role["socket"].as_str().unwrap().len() <= 107);
    let status = json_of(&run_ok(s.nxops(&ws).args(["call", "nxops/status"])));
    assert_eq!(status["pid"], sidecar.pid());
}

#[test]
fn cli_commands_run_on_the_owner_when_one_runs() {
    let s = Scratch::new();
    let ws = s.workspace("cli-owner", "none");
    run_ok(
        std::process::Command::new(common::repo_root().join("fixtures/fill-cache.sh")).arg(&ws).env("HOME", s.home()),
    );
    let mut sidecar = Sidecar::start(&s, &ws, &[("NXOPS_CACHE_MAX_AGE", "3d")]);
    sidecar.initialize(&ws);
    sidecar.request("nxops/subscribe", json!({"events": ["cacheCleanup"]})).unwrap();

    // The owner's settings are in force (its environment says 3d), and --set still applies on top.
    let info = json_of(&run_ok(s.nxops(&ws).args(["env", "info", "--json", "--set", "cache.maxSize=1GB"])));
    let setting = |key: &str| info["settings"].as_array().unwrap().iter().find(|s| s["key"] == key).unwrap().clone();
    assert_eq!(setting("cache.maxAge")["source"], "env", "answered by the owner");
    assert_eq!(setting("cache.maxSize")["source"], "flag");

    let stats = json_of(&run_ok(s.nxops(&ws).args(["cache", "stats", "--json"])));
    assert_eq!(stats["entries"], 8);
    let report = json_of(&run_ok(s.nxops(&ws).args(["cache", "clean", "--dry-run", "--json"])));
    assert_eq!(report["dryRun"], true);
    let report = json_of(&run_ok(s.nxops(&ws).args(["cache", "clean", "--json"])));
    assert_eq!(report["trigger"], "manual");
    // The clean ran in the owner: its subscribers hear about it.
    assert_eq!(sidecar.notification("nxops/cacheCleanup")["params"]["workspace"], json!(ws));
}
