//! Agents made with the official Python SDK (`mcp` 2.x) over `nxops mcp proxy`,
//! against a real SDK server that keeps state per process and logs
//! cancellations (fixtures/mcp/stateful_server.py), with a sidecar and without:
//! an agent's cancellation reaches the server, and every agent gets a fresh
//! server (no state from the agent before it). Nothing is left running.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Scratch, Sidecar, run_ok, supervised_by};
use serde_json::{Value, json};

/// A workspace whose allowed .mcp.json has the stateful server, logging to `cancel.log` in HOME.
fn workspace(scratch: &Scratch, nxops_json: Option<Value>) -> PathBuf {
    workspace_with_env(scratch, nxops_json, json!({}))
}

/// `workspace`, with more variables in the server's entry.
fn workspace_with_env(scratch: &Scratch, nxops_json: Option<Value>, env: Value) -> PathBuf {
    let ws = scratch.workspace("ws", "none");
    let mcp = common::repo_root().join("fixtures/mcp");
    let python = mcp.join(".venv/bin/python");
    assert!(python.exists(), "the MCP fixtures are not installed: run fixtures/mcp/setup.sh (scripts/test does)");
    let mut entry_env = json!({"CANCEL_LOG": scratch.home().join("cancel.log")});
    entry_env.as_object_mut().unwrap().extend(env.as_object().unwrap().clone());
    let servers = json!({"mcpServers": {"stateful": {"command": python, "args": [mcp.join("stateful_server.py")],
        "env": entry_env}}});
    std::fs::write(ws.join(".mcp.json"), serde_json::to_vec(&servers).unwrap()).unwrap();
    if let Some(settings) = nxops_json {
        std::fs::write(ws.join("nxops.json"), serde_json::to_vec(&settings).unwrap()).unwrap();
    }
    run_ok(scratch.nxops(&ws).args(["trust"]));
    ws
}

/// Runs fixtures/mcp/`agent` with `nxops mcp proxy stateful` as its server; its JSON report.
fn run_agent(scratch: &Scratch, ws: &Path, agent: &str) -> Value {
    run_agent_with(scratch, ws, agent, &[])
}

/// `run_agent` with arguments before the server's command.
fn run_agent_with(scratch: &Scratch, ws: &Path, agent: &str, args: &[&str]) -> Value {
    run_agent_in(scratch, ws, agent, args, &[])
}

/// `run_agent_with`, the agent (and so the proxy it launches) having the variables `env` too.
fn run_agent_in(scratch: &Scratch, ws: &Path, agent: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mcp = common::repo_root().join("fixtures/mcp");
    let out = scratch
        .tool(ws, mcp.join(".venv/bin/python").to_str().unwrap())
        .envs(env.iter().copied())
        .arg(mcp.join(agent))
        .arg(ws)
        .args(args)
        .arg(common::nxops_bin())
        .args(["mcp", "proxy", "stateful"])
        .env("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")
        .env("CANCEL_LOG", scratch.home().join("cancel.log"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "the SDK agent failed: {}", out.status);
    serde_json::from_slice(&out.stdout).expect("the agent prints one JSON line")
}

/// The lines of the server's log (`started PID`, `cancelled PID`).
fn log_lines(home: &Path) -> Vec<(String, u32)> {
    let text = std::fs::read_to_string(home.join("cancel.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(what, pid)| (what.to_string(), pid.trim().parse().expect("a pid")))
        .collect()
}

/// Waits until the log has a line `what`, and returns its pid.
fn logged(home: &Path, what: &str, deadline: Instant) -> u32 {
    loop {
        if let Some((_, pid)) = log_lines(home).into_iter().find(|(w, _)| w == what) {
            return pid;
        }
        assert!(Instant::now() < deadline, "the server never logged {what:?}: {:?}", log_lines(home));
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn nothing_left(home: &Path, deadline: Instant) {
    loop {
        let marked = supervised_by(home);
        if marked.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left running: {marked:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Without a sidecar the proxy owns the server: the SDK's cancellation (sent
/// when the agent gives up after 1 s of a 5 s call) reaches it.
#[test]
fn an_agents_cancellation_reaches_the_server_without_a_sidecar() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, None);
    let report = run_agent(&scratch, &ws, "cancel_agent.py");
    assert_eq!(report["server"], "nxops-stateful", "{report}");
    assert_eq!(report["count"], 1, "{report}");
    assert_eq!(report["cancelSeen"], true, "the server saw no cancellation while the agent was there: {report}");
    let cancelled = logged(scratch.home(), "cancelled", Instant::now());
    assert!(log_lines(scratch.home()).contains(&("started".to_string(), cancelled)));
    nothing_left(scratch.home(), Instant::now() + Duration::from_secs(5));
}

/// With a sidecar the proxy forwards to it; the cancellation goes the same way
/// and reaches the server with the server's own request id (the SDK server
/// cancels only the request the id names).
#[test]
fn an_agents_cancellation_reaches_the_server_through_a_sidecar() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, None);
    let mut sidecar = Sidecar::start(&scratch, &ws, &[("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")]);
    sidecar.initialize(&ws);
    let report = run_agent(&scratch, &ws, "cancel_agent.py");
    assert_eq!(report["count"], 1, "{report}");
    assert_eq!(report["cancelSeen"], true, "the server saw no cancellation while the agent was there: {report}");
    let cancelled = logged(scratch.home(), "cancelled", Instant::now());
    assert!(log_lines(scratch.home()).contains(&("started".to_string(), cancelled)));
    assert!(sidecar.close_stdin_and_wait().success());
    nothing_left(scratch.home(), Instant::now() + Duration::from_secs(5));
}

/// Two agents in a row through one sidecar each see a fresh server: the
/// second one's `count` starts at 1 again (the SDK server counts per process).
#[test]
fn two_agents_in_a_row_each_see_fresh_state() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, Some(json!({"mcp": {"defaults": {"minIdle": 1, "max": 2}}})));
    let mut sidecar = Sidecar::start(&scratch, &ws, &[("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")]);
    sidecar.initialize(&ws);
    for round in 1..=2 {
        let report = run_agent_with(&scratch, &ws, "era_agent.py", &["initialize"]);
        assert_eq!(report["count"], 1, "agent {round} saw an earlier agent's state: {report}");
    }
    assert!(sidecar.close_stdin_and_wait().success());
    nothing_left(scratch.home(), Instant::now() + Duration::from_secs(5));
}

/// A server declared `stateless` in nxops.json shares one process between
/// sessions in a row: the second agent's `count` goes on from the first's.
#[test]
fn a_stateless_server_serves_one_agent_after_another() {
    let scratch = Scratch::new();
    let ws = workspace(
        &scratch,
        Some(json!({"mcp": {"servers": {"stateful": {"minIdle": 0, "max": 1, "stateless": true}}}})),
    );
    let mut sidecar = Sidecar::start(&scratch, &ws, &[("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")]);
    sidecar.initialize(&ws);
    let first = run_agent_with(&scratch, &ws, "era_agent.py", &["initialize"]);
    let second = run_agent_with(&scratch, &ws, "era_agent.py", &["initialize"]);
    assert_eq!((first["count"].clone(), second["count"].clone()), (json!(1), json!(2)), "{first} {second}");
    assert!(sidecar.close_stdin_and_wait().success());
    nothing_left(scratch.home(), Instant::now() + Duration::from_secs(5));
}

/// An agent's own variables reach the `${VAR}`s of the server's entry through
/// a sidecar that lacks them (as an `env` the agent's config gives the proxy):
/// that agent gets a server started for it alone, one nobody else is leased
/// even when the server is stateless, and the next agent gets the sidecar's
/// values. With `max` 1, a server of the first agent's kept for others would
/// be the one the second gets.
#[test]
fn an_agents_own_variables_reach_the_server_it_is_given() {
    let scratch = Scratch::new();
    let ws = workspace_with_env(
        &scratch,
        Some(json!({"mcp": {"servers": {"stateful": {"minIdle": 0, "max": 1, "stateless": true}}}})),
        json!({"GREETING": "${GREETING:-from the sidecar}"}),
    );
    let mut sidecar = Sidecar::start(&scratch, &ws, &[("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")]);
    sidecar.initialize(&ws);
    let own = run_agent_in(&scratch, &ws, "era_agent.py", &["initialize"], &[("GREETING", "hello from the agent")]);
    assert_eq!((&own["greeting"], &own["count"]), (&json!("hello from the agent"), &json!(1)), "{own}");
    let next = run_agent_with(&scratch, &ws, "era_agent.py", &["initialize"]);
    assert_eq!((&next["greeting"], &next["count"]), (&json!("from the sidecar"), &json!(1)), "{next}");
    // The pool's own servers are still shared as a stateless server's are.
    let third = run_agent_with(&scratch, &ws, "era_agent.py", &["initialize"]);
    assert_eq!((&third["greeting"], &third["count"]), (&json!("from the sidecar"), &json!(2)), "{third}");
    let started = log_lines(scratch.home()).into_iter().filter(|(what, _)| what == "started").count();
    assert_eq!(started, 2, "one server for the first agent, one shared by the others: {:?}", log_lines(scratch.home()));
    assert!(sidecar.close_stdin_and_wait().success());
    nothing_left(scratch.home(), Instant::now() + Duration::from_secs(5));
}

/// One dual-era server (every `mcp` 2.x server answers both eras), two
/// clients: one opens with `initialize` and gets the version it asked for
/// (2025-11-25, negotiated by the server), the other with `server/discover`
/// and gets the modern era; each on a connection of its own era.
#[test]
fn an_initialize_client_and_a_discover_client_on_one_dual_era_server() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, None);
    let mut sidecar = Sidecar::start(&scratch, &ws, &[("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")]);
    sidecar.initialize(&ws);
    let legacy = run_agent_with(&scratch, &ws, "era_agent.py", &["initialize"]);
    assert_eq!((legacy["era"].as_str(), legacy["protocol"].as_str()), (Some("legacy"), Some("2025-11-25")), "{legacy}");
    assert_eq!(legacy["server"], "nxops-stateful", "{legacy}");
    let modern = run_agent_with(&scratch, &ws, "era_agent.py", &["discover"]);
    assert_eq!(modern["era"], "modern", "{modern}");
    assert!(modern["supportedVersions"].as_array().unwrap().iter().any(|v| v == "2026-07-28"), "{modern}");
    assert_eq!((legacy["count"].clone(), modern["count"].clone()), (json!(1), json!(1)));
    // And again, without a sidecar (the proxy owns the server).
    assert!(sidecar.close_stdin_and_wait().success());
    let again = run_agent_with(&scratch, &ws, "era_agent.py", &["initialize"]);
    assert_eq!(again["protocol"], "2025-11-25", "{again}");
    nothing_left(scratch.home(), Instant::now() + Duration::from_secs(5));
}

fn pool_of(sidecar: &mut Sidecar) -> Value {
    let servers = sidecar.request("nxops/mcp/servers", json!({})).unwrap();
    servers["servers"][0]["pool"].clone()
}

fn lease_request(sidecar: &mut Sidecar, lease: &str) -> Result<Value, Value> {
    sidecar.request("nxops/mcp/request", json!({"server": "stateful", "method": "tools/list", "lease": lease}))
}

/// A `max` (and `minIdle`) change in nxops.json applies to a running sidecar's
/// pool by `nxops trust` alone: the pool grows, then shrinks again.
#[test]
fn a_max_change_applies_by_nxops_trust_alone() {
    let scratch = Scratch::new();
    let settings =
        |min: u64, max: u64| json!({"mcp": {"defaults": {"minIdle": min, "max": max, "acquireTimeout": "1s"}}});
    let ws = workspace(&scratch, Some(settings(0, 1)));
    let mut sidecar = Sidecar::start(&scratch, &ws, &[("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")]);
    sidecar.initialize(&ws);
    lease_request(&mut sidecar, "a").expect("the first lease");
    let busy = lease_request(&mut sidecar, "b").expect_err("max 1: the second lease waits, then fails");
    assert!(busy.to_string().contains("all 1 connections"), "{busy}");

    std::fs::write(ws.join("nxops.json"), serde_json::to_vec(&settings(1, 3)).unwrap()).unwrap();
    run_ok(scratch.nxops(&ws).args(["trust"]));
    lease_request(&mut sidecar, "b").expect("max 3 now: the second lease gets a connection");
    let deadline = Instant::now() + Duration::from_secs(20);
    while pool_of(&mut sidecar)["idle"] != 1 {
        assert!(Instant::now() < deadline, "minIdle 1 was never warmed: {}", pool_of(&mut sidecar));
        std::thread::sleep(Duration::from_millis(50));
    }

    std::fs::write(ws.join("nxops.json"), serde_json::to_vec(&settings(0, 2)).unwrap()).unwrap();
    run_ok(scratch.nxops(&ws).args(["trust"]));
    while pool_of(&mut sidecar)["idle"] != 0 {
        assert!(Instant::now() < deadline, "the idle connection did not end: {}", pool_of(&mut sidecar));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(pool_of(&mut sidecar)["busy"], 2, "leased connections stay with their leases");
    assert!(sidecar.close_stdin_and_wait().success());
    nothing_left(scratch.home(), Instant::now() + Duration::from_secs(5));
}

/// An agent that vanishes mid-call (its proxy's stdin closes while `slow`
/// runs): the call is cancelled or its server ended, and the next agent gets
/// a fresh server, not the one still busy with the call.
#[test]
fn an_agent_vanishing_mid_call_leaves_its_call_to_nobody() {
    use std::io::{BufRead, BufReader, Write};
    let scratch = Scratch::new();
    let ws = workspace(&scratch, Some(json!({"mcp": {"defaults": {"minIdle": 1, "max": 2}}})));
    let mut sidecar = Sidecar::start(&scratch, &ws, &[("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")]);
    sidecar.initialize(&ws);
    let mut proxy = scratch
        .nxops(&ws)
        .args(["mcp", "proxy", "stateful"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = proxy.stdin.take().unwrap();
    let mut lines = BufReader::new(proxy.stdout.take().unwrap()).lines();
    let hello =
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "agent", "version": "1"}});
    writeln!(stdin, "{}", json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})).unwrap();
    let call = json!({"name": "slow", "arguments": {"seconds": 10}, "_meta": {"progressToken": "p"}});
    writeln!(stdin, "{}", json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})).unwrap();
    // The call runs: progress arrives.
    let progress = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("notifications/progress"))
        .expect("progress from the running call");
    assert!(progress.contains("\"p\""), "{progress}");
    drop(stdin); // the agent is gone
    assert!(proxy.wait().unwrap().success());
    let cancelled = logged(scratch.home(), "cancelled", Instant::now() + Duration::from_secs(10));
    let next = run_agent_with(&scratch, &ws, "era_agent.py", &["initialize"]);
    assert_eq!(next["count"], 1, "the next agent got the vanished agent's server: {next}");
    let started: Vec<u32> =
        log_lines(scratch.home()).into_iter().filter(|(w, _)| w == "started").map(|(_, p)| p).collect();
    assert!(started.contains(&cancelled), "{started:?}");
    assert!(sidecar.close_stdin_and_wait().success());
    nothing_left(scratch.home(), Instant::now() + Duration::from_secs(5));
}
