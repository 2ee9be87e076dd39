//! MCP pools through the real sidecar: servers from the workspace's .mcp.json
//! (real servers from npm and PyPI, and the stubborn fake), trust, requests
//! within a session's lease, affinity across sessions, notifications to the
//! lessee, a server killed mid-call, and no server process left afterwards.

mod common;

use std::time::Duration;

use common::{Scratch, Sidecar, json_of, run_ok, supervised_by};
use serde_json::{Value, json};

fn fixture(path: &str) -> String {
    common::repo_root().join("fixtures/mcp").join(path).display().to_string()
}

fn workspace(scratch: &Scratch) -> std::path::PathBuf {
    assert!(
        common::repo_root().join("fixtures/mcp/.venv/bin/mcp-server-time").exists(),
        "the MCP fixtures are not installed: run fixtures/mcp/setup.sh (scripts/test does)"
    );
    let ws = scratch.workspace("ws", "none");
    let memory_file = scratch.home().join("memory.jsonl");
    let servers = json!({"mcpServers": {
        "memory": {"command": "node", "args": [fixture("node_modules/@modelcontextprotocol/server-memory/dist/index.js")],
                   "env": {"MEMORY_FILE_PATH": memory_file}},
        "time": {"command": fixture(".venv/bin/mcp-server-time"), "args": ["--local-timezone", "Etc/UTC"]},
        "stubborn": {"command": fixture("stubborn.sh")},
        "remote": {"type": "http", "url": "https://example.invalid/mcp"}
    }});
    std::fs::write(ws.join(".mcp.json"), serde_json::to_vec_pretty(&servers).unwrap()).unwrap();
    std::fs::write(ws.join("nxops.json"), r#"{"mcp": {"defaults": {"minIdle": 0, "max": 2, "acquireTimeout": "2s"}}}"#)
        .unwrap();
    ws
}

fn server<'a>(servers: &'a Value, name: &str) -> &'a Value {
    servers["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {servers}"))
}

fn request(sidecar: &mut Sidecar, server: &str, method: &str, params: Value) -> Value {
    sidecar
        .request("nxops/mcp/request", json!({"server": server, "method": method, "params": params}))
        .unwrap_or_else(|e| panic!("{server} {method}: {e}"))
}

#[test]
fn pooled_servers_answer_within_a_lease_and_leave_nothing_behind() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch);
    // Without a sidecar the CLI lists what is configured; nothing is pooled.
    let alone = json_of(&run_ok(scratch.nxops(&ws).args(["--json", "mcp", "list"])));
    assert_eq!(alone["sidecar"], false);
    assert_eq!(server(&alone, "time")["reason"], "no sidecar runs for this workspace", "{alone}");
    let mut a = Sidecar::started(&scratch, &ws);

    // Commands from the workspace's .mcp.json wait for an allowance, like nxops.json's.
    let before = a.request("nxops/mcp/servers", json!({})).unwrap();
    assert_eq!(server(&before, "memory")["pooled"], false, "{before}");
    assert_eq!(server(&before, "memory")["trust"], "not-allowed");
    assert_eq!(server(&before, "remote")["reason"], "http servers are listed, not pooled");
    let refused = a.request("nxops/mcp/request", json!({"server": "memory", "method": "tools/list"})).unwrap_err();
    assert_eq!(refused["code"], -32006, "{refused}");
    let status = json_of(&run_ok(scratch.nxops(&ws).args(["--json", "trust", "--status"])));
    assert_eq!(status["mcp"][0]["kind"], "Claude Code", "{status}");
    run_ok(scratch.nxops(&ws).args(["trust"]));
    let after = a.request("nxops/mcp/servers", json!({})).unwrap();
    assert_eq!(server(&after, "memory")["pooled"], true, "{after}");

    // Both eras through the same method; a session keeps its connection.
    let tools = request(&mut a, "memory", "tools/list", json!({}));
    assert!(tools["result"]["tools"].as_array().unwrap().iter().any(|t| t["name"] == "create_entities"), "{tools}");
    let again = request(&mut a, "memory", "tools/list", json!({}));
    assert_eq!(again["connection"], tools["connection"], "affinity");
    let time = request(
        &mut a,
        "time",
        "tools/call",
        json!({"name": "get_current_time", "arguments": {"timezone": "Etc/UTC"}}),
    );
    assert!(time["result"]["content"][0]["text"].as_str().unwrap().contains("Etc/UTC"), "{time}");
    let table = run_ok(scratch.nxops(&ws).args(["mcp", "list"]));
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.starts_with("NAME") && table.lines().any(|l| l.starts_with("memory ") && l.contains(" yes ")),
        "{table}"
    );
    assert!(table.contains("remote: http servers are listed, not pooled"), "{table}");
    let eras = a.request("nxops/mcp/servers", json!({})).unwrap();
    assert_eq!(server(&eras, "memory")["pool"]["era"], "legacy");
    assert_eq!(server(&eras, "time")["pool"]["era"], "modern");

    // Another client (a second sidecar, which forwards to the owner) never shares it.
    let mut b = Sidecar::started(&scratch, &ws);
    let other = request(&mut b, "memory", "tools/list", json!({}));
    assert_ne!(other["connection"], tools["connection"]);
    b.request("nxops/mcp/release", json!({})).unwrap();

    // The server's own messages during a lease reach that session.
    let slow = request(
        &mut a,
        "stubborn",
        "tools/call",
        json!({"name": "sleep", "arguments": {"ms": 200, "steps": 2}, "_meta": {"progressToken": "p1"}}),
    );
    assert!(slow["result"].is_object(), "{slow}");
    let note = a.notification("nxops/mcp/notification");
    assert_eq!(note["params"]["server"], "stubborn");
    assert_eq!(note["params"]["message"]["method"], "notifications/progress");
    assert_eq!(note["params"]["message"]["params"]["progressToken"], "p1");

    // $/cancelRequest of a forwarded request reaches the server as notifications/cancelled.
    a.send(&json!({"jsonrpc": "2.0", "id": 9001, "method": "nxops/mcp/request",
                   "params": {"server": "stubborn", "method": "tools/call", "params": {"name": "sleep", "arguments": {"ms": 30000}}}}));
    std::thread::sleep(Duration::from_millis(200));
    a.notify("$/cancelRequest", json!({"id": 9001}));
    let cancelled = a.response_to(&json!(9001));
    assert_eq!(cancelled["error"]["code"], -32800, "{cancelled}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let servers = a.request("nxops/mcp/servers", json!({})).unwrap();
        let stderr = server(&servers, "stubborn")["pool"]["stderr"].to_string();
        if stderr.contains("cancelled") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the server never saw the cancellation: {stderr}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A server that dies mid-call: the request fails, the next one gets a fresh connection.
    let first = request(&mut a, "stubborn", "tools/list", json!({}));
    let crashed = a.request(
        "nxops/mcp/request",
        json!({"server": "stubborn", "method": "tools/call", "params": {"name": "crash", "arguments": {}}}),
    );
    assert!(crashed.unwrap_err()["message"].as_str().unwrap().contains("exited"));
    let fresh = request(&mut a, "stubborn", "tools/list", json!({}));
    assert_ne!(fresh["connection"], first["connection"]);

    drop(b);
    let status = a.close_stdin_and_wait();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !supervised_by(scratch.home()).is_empty() {
        assert!(std::time::Instant::now() < deadline, "left: {:?}", supervised_by(scratch.home()));
        std::thread::sleep(Duration::from_millis(20));
    }
}
