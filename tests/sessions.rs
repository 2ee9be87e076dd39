//! Sessions through the real sidecar, real processes and a real MCP server
//! (server-memory from npm): what a session creates is tracked against it, an
//! `exit` closes it at once, a client that vanishes has its session expire, a
//! named session outlives connections and restarts with its specs and MCP
//! affinity, and a SIGKILLed owner's sessions are restored by the next owner.
//! The expiry rules themselves are tested with an injected clock in
//! `src/sessions/registry.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Scratch, Sidecar, alive, json_of, run_ok, supervised_by};
use serde_json::{Value, json};

/// A workspace with the real memory server in an allowed .mcp.json.
fn workspace(scratch: &Scratch) -> PathBuf {
    common::memory_mcp_workspace(scratch, r#"{"mcp": {"defaults": {"minIdle": 0, "max": 3}}}"#)
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sleeper(name: &str) -> Value {
    json!({"name": name, "command": "sleep", "args": ["1000"], "stopTimeout": "2s"})
}

fn sessions(sidecar: &mut Sidecar) -> Vec<Value> {
    sidecar.request("nxops/session/list", json!({})).unwrap()["sessions"].as_array().unwrap().clone()
}

fn session<'a>(list: &'a [Value], id: &str) -> Option<&'a Value> {
    list.iter().find(|s| s["id"] == id)
}

fn pid_of(sidecar: &mut Sidecar, name: &str) -> Option<u32> {
    let list = sidecar.request("nxops/process/list", json!({})).unwrap();
    let process = list["processes"].as_array().unwrap().iter().find(|p| p["name"] == name)?.clone();
    process["pid"].as_u64().map(|p| p as u32)
}

fn mcp_call(sidecar: &mut Sidecar, params: Value) -> Value {
    let mut params = params;
    params["server"] = json!("memory");
    params["method"] = json!("tools/list");
    sidecar.request("nxops/mcp/request", params).unwrap()
}

/// An LSP client on a follower sidecar that ends with `shutdown` and `exit`.
fn exit_gracefully(mut sidecar: Sidecar) {
    sidecar.request("shutdown", Value::Null).unwrap();
    sidecar.notify("exit", Value::Null);
    assert!(sidecar.wait().success());
}

#[test]
fn a_clients_session_holds_what_it_made_and_exit_closes_it_at_once() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch);
    let mut owner = Sidecar::started(&scratch, &ws);
    owner.request("nxops/subscribe", json!({"events": ["sessionOpened", "sessionClosed"]})).unwrap();
    let mut follower = Sidecar::start(&scratch, &ws, &[]);
    follower.initialize(&ws);
    let started = follower.request("nxops/process/start", sleeper("web")).unwrap();
    let web = started["pid"].as_u64().unwrap() as u32;
    let session_id = started["session"].as_str().expect("a client's process belongs to its session").to_string();
    assert_eq!(session_id, format!("{}.1", follower.pid()), "the follower's client, named for the owner");
    follower.request("nxops/subscribe", json!({"events": ["healthCheck"]})).unwrap();
    let leased = mcp_call(&mut follower, json!({}));
    assert!(leased["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{leased}");

    let list = sessions(&mut owner);
    let theirs = session(&list, &session_id).expect("the owner lists the follower's client");
    assert_eq!(theirs["kind"], "connection");
    assert_eq!(theirs["state"], "active");
    assert_eq!(theirs["clientName"], "nxops-tests", "announced with its client's name");
    assert_eq!(theirs["processes"]["web"]["command"], "sleep");
    assert_eq!(theirs["mcp"], json!(["memory"]));
    eventually("the follower reported its client's subscriptions", || {
        session(&sessions(&mut owner), &session_id).is_some_and(|s| s["subscriptions"] == json!(["healthCheck"]))
    });
    let ours =
        session(&list, &format!("{}.1", owner.pid())).unwrap_or_else(|| panic!("the owner's own client: {list:#?}"));
    assert_eq!(ours["processes"], json!({}));

    // `exit` is a deliberate end: the session closes now, its process stops, its lease returns.
    exit_gracefully(follower);
    eventually("the follower's process stopped", || !alive(web));
    let closed = owner.notification("nxops/sessionClosed");
    assert_eq!(closed["params"]["session"], json!(session_id));
    assert_eq!(closed["params"]["ending"], "closed");
    assert_eq!(closed["params"]["processes"], json!(["web"]));
    assert!(session(&sessions(&mut owner), &session_id).is_none());
    assert_eq!(pid_of(&mut owner, "web"), None, "a closed session's process is forgotten, its name free");
    let servers = owner.request("nxops/mcp/servers", json!({})).unwrap();
    assert_eq!(servers["servers"][0]["pool"]["leases"], json!([]), "{servers}");
    // The server kept the session's state: its connection is never leased to another session (issue 19).
    assert_eq!(servers["servers"][0]["pool"]["idle"], 0, "a used connection ended: {servers}");
    assert_eq!(servers["servers"][0]["pool"]["parked"], 0, "{servers}");

    // A one-shot `nxops call` is a connection too, and ends with `exit`: what it made ends with it.
    let params = json!({"name": "oneshot", "command": "sleep", "args": ["1000"]}).to_string();
    let answer = json_of(&run_ok(scratch.nxops(&ws).args(["call", "nxops/process/start", &params])));
    let oneshot = answer["pid"].as_u64().unwrap() as u32;
    eventually("the call's process stopped with its session", || !alive(oneshot));
    let counts = owner.request("nxops/session/list", json!({})).unwrap()["counts"].clone();
    assert_eq!((counts["expiredTotal"].as_u64(), counts["active"].as_u64()), (Some(0), Some(1)), "{counts}");
}

#[test]
fn a_vanished_clients_session_expires_and_is_cleaned_up_gracefully() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch);
    let timeout = [("NXOPS_SESSIONS_TIMEOUT", "1s")];
    let mut owner = Sidecar::start(&scratch, &ws, &timeout);
    owner.initialize(&ws);
    owner.request("nxops/subscribe", json!({"events": ["sessionClosed"]})).unwrap();
    let mut follower = Sidecar::start(&scratch, &ws, &timeout);
    follower.initialize(&ws);
    let started = follower.request("nxops/process/start", sleeper("api")).unwrap();
    let api = started["pid"].as_u64().unwrap() as u32;
    let id = started["session"].as_str().unwrap().to_string();

    // The follower dies without a word: its connection to the owner ends.
    follower.child.kill().unwrap();
    let _ = follower.child.wait();
    let killed_at = Instant::now();
    eventually("the session is disconnected", || {
        session(&sessions(&mut owner), &id).is_some_and(|s| s["state"] == "disconnected")
    });
    assert!(alive(api), "nothing is stopped before the timeout");
    let closed = owner.notification("nxops/sessionClosed");
    assert!(killed_at.elapsed() >= Duration::from_millis(900), "expired after sessions.timeout, not before");
    assert_eq!(closed["params"]["session"], json!(id));
    assert_eq!(closed["params"]["ending"], "expired");
    assert!(!alive(api), "cleaned up: the process was stopped");
    let health = owner.request("nxops/health", json!({})).unwrap();
    let component = health["components"].as_array().unwrap().iter().find(|c| c["name"] == "sessions").unwrap();
    assert_eq!(component["score"], 90, "{health}");
    let reason = component["reasons"][0].as_str().unwrap();
    assert!(reason.contains("1 client(s) vanished without closing"), "a killed follower's client vanished: {health}");
    assert_eq!(health["rating"], "Excellent", "one expiry alone keeps the workspace healthy");
}

/// Regression: a client that ends its input (documented as a clean exit) and a named session that
/// expires by design were counted as clients gone without closing: four finished scripts made
/// `monitor check` exit 1.
#[test]
fn finished_scripts_and_expired_named_sessions_do_not_count_against_health() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let env = [("NXOPS_SESSIONS_TIMEOUT", "1s")];
    let mut owner = Sidecar::start(&scratch, &ws, &env);
    owner.initialize(&ws);
    owner.request("nxops/session/open", json!({"name": "job", "timeout": "1s"})).unwrap();
    // Four scripts, each through its own sidecar, that start a process and end their input.
    for i in 0..4 {
        let mut script = Sidecar::start(&scratch, &ws, &env);
        script.initialize(&ws);
        script.request("nxops/process/start", sleeper(&format!("s{i}"))).unwrap();
        assert!(script.close_stdin_and_wait().success());
    }
    // One that says `shutdown` first, then ends its input: closed at once, like `exit`.
    let mut polite = Sidecar::start(&scratch, &ws, &env);
    polite.initialize(&ws);
    let id = polite.request("nxops/process/start", sleeper("p")).unwrap()["session"].as_str().unwrap().to_string();
    polite.request("shutdown", Value::Null).unwrap();
    assert!(polite.close_stdin_and_wait().success());
    assert!(session(&sessions(&mut owner), &id).is_none(), "closed at once, not left to expire");
    eventually("every session but the owner's own ended", || sessions(&mut owner).len() == 1);
    let counts = owner.request("nxops/session/list", json!({})).unwrap()["counts"].clone();
    let figures = ["expiredTotal", "closedTotal", "vanishedRecently"].map(|k| counts[k].as_u64());
    assert_eq!(figures, [Some(5), Some(1), Some(0)], "{counts}");
    assert_eq!(owner.request("nxops/process/list", json!({})).unwrap()["processes"], json!([]), "all cleaned up");
    let check = scratch.nxops(&ws).args(["--json", "monitor", "check"]).output().unwrap();
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    let report = json_of(&check);
    let component = report["components"].as_array().unwrap().iter().find(|c| c["name"] == "sessions").unwrap();
    assert_eq!((component["score"].clone(), component["reasons"].clone()), (json!(100), json!([])), "{report}");
}

#[test]
fn a_named_session_outlives_connections_restarts_keeping_its_specs_and_expires_without_heartbeats() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch);
    let mut owner = Sidecar::started(&scratch, &ws);
    let cli = |args: &[&str]| json_of(&run_ok(scratch.nxops(&ws).arg("--json").args(args)));

    let opened = cli(&["session", "open", "e2e", "--timeout", "3s", "--label", "job=ci-7"]);
    assert_eq!((opened["kind"].as_str(), opened["labels"]["job"].as_str()), (Some("named"), Some("ci-7")));
    let started = cli(&["proc", "start", "--session", "e2e", "db", "--", "sleep", "1000"]);
    assert_eq!(started["session"], "e2e");
    let first = started["pid"].as_u64().unwrap() as u32;
    let detached = cli(&["proc", "start", "tool", "--", "sleep", "1000"]);
    assert_eq!(detached["session"], Value::Null, "without --session the CLI's process belongs to no session");
    let tool = detached["pid"].as_u64().unwrap() as u32;
    // A script's MCP requests under the session's name lease for the session.
    mcp_call(&mut owner, json!({"lease": "e2e"}));

    let list = cli(&["session", "list"]);
    let e2e = list["sessions"].as_array().unwrap().iter().find(|s| s["id"] == "e2e").unwrap().clone();
    assert_eq!(e2e["processes"]["db"]["args"], json!(["1000"]));
    assert_eq!(e2e["mcp"], json!(["memory"]));
    let human = String::from_utf8_lossy(&run_ok(scratch.nxops(&ws).args(["session", "list"])).stdout).to_string();
    assert!(human.contains("e2e") && human.contains("named") && human.contains("db"), "{human}");

    let servers = owner.request("nxops/mcp/servers", json!({})).unwrap();
    let before = servers["servers"][0]["pool"]["coldStarts"].as_u64().unwrap();
    let restarted = cli(&["session", "restart", "e2e"]);
    assert_eq!((restarted["id"].as_str(), restarted["restarts"].as_u64()), (Some("e2e"), Some(1)));
    assert_eq!(restarted["processes"], e2e["processes"], "the same specs");
    assert_eq!(restarted["labels"], e2e["labels"]);
    eventually("the old db ended", || !alive(first));
    let second = pid_of(&mut owner, "db").expect("db runs again");
    assert_ne!(second, first);
    let servers = owner.request("nxops/mcp/servers", json!({})).unwrap();
    let pool = &servers["servers"][0]["pool"];
    assert_eq!(pool["leases"], json!(["e2e"]), "the MCP affinity is kept: {pool}");
    assert_eq!(pool["coldStarts"].as_u64().unwrap(), before + 1, "with a fresh connection: {pool}");

    // Heartbeats keep it open past its timeout; without them it expires and is cleaned up.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(1000));
        cli(&["session", "heartbeat", "e2e"]);
    }
    assert!(alive(second), "kept open by heartbeats");
    eventually("e2e expired", || {
        cli(&["session", "list"])["sessions"].as_array().unwrap().iter().all(|s| s["id"] != "e2e")
    });
    eventually("its process stopped", || !alive(second));
    assert!(alive(tool), "a detached process is nobody's to stop");
    let servers = owner.request("nxops/mcp/servers", json!({})).unwrap();
    assert_eq!(servers["servers"][0]["pool"]["leases"], json!([]));

    // Force: killed at once, whatever its stop timeout.
    cli(&["session", "open", "quick"]);
    let stubborn = common::repo_root().join("fixtures/procs/stubborn.sh");
    let started = cli(&["proc", "start", "--session", "quick", "stubborn", "--", stubborn.to_str().unwrap()]);
    let pid = started["pid"].as_u64().unwrap() as u32;
    let took = Instant::now();
    let closed = cli(&["session", "close", "quick", "--force"]);
    assert_eq!(closed["ending"], "forced");
    assert!(took.elapsed() < Duration::from_secs(4), "no stop timeout waited: {:?}", took.elapsed());
    assert!(!alive(pid));
    run_ok(scratch.nxops(&ws).args(["proc", "stop", "tool"]));
}

#[test]
fn a_sigkilled_owners_sessions_are_restored_by_the_next_owner() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch);
    let mut first = Sidecar::started(&scratch, &ws);
    first.request("nxops/session/open", json!({"name": "keep", "labels": {"who": "script"}})).unwrap();
    let started = first
        .request(
            "nxops/process/start",
            json!({"name": "db", "command": "sleep", "args": ["1000"],
        "session": "keep"}),
        )
        .unwrap();
    let old = started["pid"].as_u64().unwrap() as u32;
    mcp_call(&mut first, json!({"lease": "keep"}));
    // The owner's own client's process, which dies with it (its client is gone).
    first.request("nxops/process/start", sleeper("mine")).unwrap();
    // A named session whose time runs out while no sidecar runs.
    first.request("nxops/session/open", json!({"name": "brief", "timeout": "1s"})).unwrap();
    first
        .request(
            "nxops/process/start",
            json!({"name": "late", "command": "sleep", "args": ["1000"],
        "session": "brief"}),
        )
        .unwrap();
    // Written in the background, within moments of each change.
    let file = sessions_file(&scratch, &ws);
    eventually("the three sessions are saved", || {
        let saved: Value = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        saved["sessions"]
            .as_array()
            .is_some_and(|s| s.len() == 3 && s.iter().any(|s| s["processes"].get("late").is_some()))
    });

    first.child.kill().unwrap();
    let _ = first.child.wait();
    std::thread::sleep(Duration::from_millis(1200));
    let mut second = Sidecar::started(&scratch, &ws);
    second.request("nxops/subscribe", json!({"events": ["sessionRestarted"]})).unwrap();
    eventually("keep's process runs again", || pid_of(&mut second, "db").is_some_and(|p| p != old && alive(p)));
    assert!(!alive(old), "the crashed owner's run was ended, not adopted");
    let list = sessions(&mut second);
    let keep = session(&list, "keep").expect("restored");
    assert_eq!((keep["labels"]["who"].as_str(), keep["mcp"].clone()), (Some("script"), json!(["memory"])));
    assert!(session(&list, &format!("{}.1", first.pid())).is_none(), "the dead owner's own client does not come back");
    assert_eq!(pid_of(&mut second, "mine"), None);
    assert!(session(&list, "brief").is_none(), "expired while no sidecar ran");
    assert_eq!(pid_of(&mut second, "late"), None, "and its process was not started again");
    eventually("the affinity is restored", || {
        let servers = second.request("nxops/mcp/servers", json!({})).unwrap();
        servers["servers"][0]["pool"]["leases"] == json!(["keep"])
    });
    let counts = second.request("nxops/session/list", json!({})).unwrap()["counts"].clone();
    assert_eq!(counts["expiredTotal"], 2, "the dead owner's client and brief: {counts}");
    drop(second);
    assert!(supervised_by(scratch.home()).is_empty(), "a graceful exit stops the restored processes");
    // Without a sidecar the CLI shows what the next one will restore.
    let saved = json_of(&run_ok(scratch.nxops(&ws).args(["--json", "session", "list"])));
    assert_eq!(saved["sidecar"], false);
    let keep = session(saved["sessions"].as_array().unwrap(), "keep").expect("keep is saved").clone();
    assert_eq!((keep["state"].as_str(), keep["processes"]["db"]["command"].as_str()), (Some("saved"), Some("sleep")));
    let text = String::from_utf8_lossy(&run_ok(scratch.nxops(&ws).args(["session", "list"])).stdout).to_string();
    assert!(text.contains("keep") && text.contains("No sidecar runs for this workspace"), "{text}");
}

#[test]
fn bad_session_requests_get_errors_that_name_the_field() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let mut owner = Sidecar::started(&scratch, &ws);
    let error = |owner: &mut Sidecar, method: &str, params: Value| -> String {
        let err = owner.request(method, params).unwrap_err();
        assert_eq!(err["code"], -32602, "{err}");
        err["message"].as_str().unwrap().to_string()
    };
    let m = error(&mut owner, "nxops/session/open", json!({"name": "a.b"}));
    assert!(m.contains("name:") && m.contains("'.'"), "{m}");
    let m = error(&mut owner, "nxops/session/open", json!({"name": "x", "timeout": "soon"}));
    assert!(m.contains("timeout:"), "{m}");
    // Regression: unknown sessions were blamed on "nxops/session", a method that does not exist.
    let m = error(&mut owner, "nxops/session/close", json!({"session": "nope"}));
    assert!(m.starts_with("invalid params for nxops/session/close: session: no open session \"nope\""), "{m}");
    let m = error(&mut owner, "nxops/session/restart", json!({"session": "nope"}));
    assert!(m.starts_with("invalid params for nxops/session/restart: session: no open session \"nope\""), "{m}");
    let m = error(&mut owner, "nxops/session/heartbeat", json!({"session": "nope"}));
    assert!(m.starts_with("invalid params for nxops/session/heartbeat: session: no open session"), "{m}");
    let m = error(&mut owner, "nxops/session/close", json!({"session": "x", "mode": "gentle"}));
    assert!(m.contains("mode") || m.contains("gentle"), "{m}");
    let m = error(&mut owner, "nxops/process/start", json!({"name": "w", "command": "true", "session": "nope"}));
    assert!(m.starts_with("invalid params for nxops/process/start: session: no open session \"nope\""), "{m}");
    let err = owner.request("nxops/session/close", json!({"session": "nope"})).unwrap_err();
    assert_eq!(err["data"]["method"], "nxops/session/close", "{err}");
    let m = error(
        &mut owner,
        "nxops/process/start",
        json!({"name": "w", "command": "true", "session": "x", "detached": true}),
    );
    assert!(m.contains("detached:"), "{m}");
    let bad = scratch.nxops(&ws).args(["session", "open", "x", "--label", "novalue"]).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--label"), "{bad:?}");
    // The sidecar serves on.
    assert!(owner.request("nxops/session/list", json!({})).is_ok());
    // A broken sessions file is moved aside, never deleted, and the owner starts without sessions.
    drop(owner);
    let file = sessions_file(&scratch, &ws);
    std::fs::write(&file, b"{\"version\": 1, \"sessions\": [{\"id\": ").unwrap();
    // What an owner killed mid-write leaves (4194999 is above the largest pid_max: nobody runs as it).
    let stale = file.with_file_name(".sessions.json.4194999.tmp");
    std::fs::write(&stale, b"{\"version\": 1, \"sess").unwrap();
    let mut owner = Sidecar::started(&scratch, &ws);
    assert!(owner.request("nxops/session/list", json!({})).is_ok());
    assert!(file.with_extension("json.corrupt").exists(), "kept for the user");
    assert!(!stale.exists(), "a dead writer's temporary file is removed at start");
}

/// `<state>/sessions.json` of the workspace, from `nxops env info`.
fn sessions_file(scratch: &Scratch, ws: &Path) -> PathBuf {
    let info = json_of(&run_ok(scratch.nxops(ws).args(["--json", "env", "info"])));
    let state = info["stateDir"].as_str().expect("env info names the state dir");
    PathBuf::from(state).join("sessions.json")
}

#[test]
fn clients_that_come_and_go_leave_nothing_behind() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch);
    let timeout = [("NXOPS_SESSIONS_TIMEOUT", "1s")];
    let mut owner = Sidecar::start(&scratch, &ws, &timeout);
    owner.initialize(&ws);
    // Six editors through their own sidecars: each starts two processes, and the first
    // three (the pool's `max`) lease a connection to the MCP server.
    let mut clients: Vec<Sidecar> = (0..6)
        .map(|i| {
            let mut client = Sidecar::start(&scratch, &ws, &timeout);
            client.initialize(&ws);
            for p in 0..2 {
                client.request("nxops/process/start", sleeper(&format!("c{i}-p{p}"))).unwrap();
            }
            if i < 3 {
                mcp_call(&mut client, json!({}));
            }
            client
        })
        .collect();
    assert_eq!(sessions(&mut owner).len(), 7, "the owner's own client and six others");
    let servers = owner.request("nxops/mcp/servers", json!({})).unwrap();
    assert_eq!(servers["servers"][0]["pool"]["busy"], 3, "{servers}");
    // Half vanish (SIGKILL), half end properly, in turn.
    for (i, mut client) in clients.drain(..).enumerate() {
        if i % 2 == 0 {
            client.child.kill().unwrap();
            let _ = client.child.wait();
        } else {
            exit_gracefully(client);
        }
    }
    eventually("every client's session ended", || sessions(&mut owner).len() == 1);
    let list = owner.request("nxops/process/list", json!({})).unwrap();
    assert_eq!(list["processes"], json!([]), "{list}");
    let servers = owner.request("nxops/mcp/servers", json!({})).unwrap();
    let pool = &servers["servers"][0]["pool"];
    assert_eq!((pool["busy"].as_u64(), pool["leases"].clone()), (Some(0), json!([])), "{pool}");
    let counts = owner.request("nxops/session/list", json!({})).unwrap()["counts"].clone();
    assert_eq!((counts["expiredTotal"].as_u64(), counts["closedTotal"].as_u64()), (Some(3), Some(3)), "{counts}");
    // What runs now is the pool's warm connections only; they end with the owner.
    let left = supervised_by(scratch.home());
    assert!(left.len() <= 3, "only pooled MCP servers: {left:?}");
    drop(owner);
    assert!(supervised_by(scratch.home()).is_empty());
}
