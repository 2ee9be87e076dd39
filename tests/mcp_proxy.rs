//! `nxops mcp proxy`: what an agent launches in place of an MCP server. It is
//! answered from a warm pooled connection, and when the agent goes away nothing
//! it caused keeps running.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::{Scratch, Sidecar, run_ok, supervised_by};
use serde_json::{Value, json};

struct Agent {
    proxy: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
}

impl Agent {
    fn start(scratch: &Scratch, ws: &std::path::Path, server: &str) -> Agent {
        let mut proxy = scratch
            .nxops(ws)
            .args(["mcp", "proxy", server])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = proxy.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(serde_json::from_str::<Value>(&line).expect("the proxy writes JSON lines")).is_err() {
                    return;
                }
            }
        });
        Agent { stdin: proxy.stdin.take(), proxy, lines }
    }

    fn send(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    /// The response to `id`, keeping notifications aside.
    fn answer(&mut self, id: i64, notes: &mut Vec<Value>) -> Value {
        loop {
            let message = self.lines.recv_timeout(Duration::from_secs(20)).expect("an answer from the proxy");
            if message["id"] == id {
                return message;
            }
            notes.push(message);
        }
    }

    fn answer_str(&mut self, id: &str, notes: &mut Vec<Value>) -> Value {
        loop {
            let message = self.lines.recv_timeout(Duration::from_secs(20)).expect("an answer from the proxy");
            if message["id"] == id {
                return message;
            }
            notes.push(message);
        }
    }

    fn leave(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.proxy.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the proxy did not exit when its agent went away");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn workspace(scratch: &Scratch) -> std::path::PathBuf {
    let ws = scratch.workspace("ws", "none");
    let stubborn = common::repo_root().join("fixtures/mcp/stubborn.sh");
    let memory =
        common::repo_root().join("fixtures/mcp/node_modules/@modelcontextprotocol/server-memory/dist/index.js");
    assert!(memory.exists(), "the MCP fixtures are not installed: run fixtures/mcp/setup.sh (scripts/test does)");
    let servers = json!({"mcpServers": {
        "stubborn": {"command": stubborn},
        "memory": {"command": "node", "args": [memory], "env": {"MEMORY_FILE_PATH": scratch.home().join("m.jsonl")}}
    }});
    std::fs::write(ws.join(".mcp.json"), serde_json::to_vec(&servers).unwrap()).unwrap();
    run_ok(scratch.nxops(&ws).args(["trust"]));
    ws
}

#[test]
fn a_proxy_that_owns_the_workspace_ends_the_server_when_its_agent_goes() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch);
    let mut agent = Agent::start(&scratch, &ws, "stubborn");
    let mut notes = Vec::new();
    agent.send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                      "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "agent", "version": "1"}}}));
    let hello = agent.answer(1, &mut notes);
    assert_eq!(hello["result"]["serverInfo"]["name"], "nxops-stubborn", "{hello}");
    agent.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    agent.send(json!({"jsonrpc": "2.0", "id": "two", "method": "tools/call",
                      "params": {"name": "sleep", "arguments": {"ms": 50, "steps": 2}, "_meta": {"progressToken": 7}}}));
    let slept = agent.answer_str("two", &mut notes);
    assert_eq!(slept["result"]["content"][0]["text"], "slept 50 ms", "{slept}");
    agent.send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}));
    let tools = agent.answer(3, &mut notes);
    assert!(tools["result"]["tools"].as_array().unwrap().iter().any(|t| t["name"] == "echo"), "{tools}");
    assert!(
        notes.iter().any(|n| n["method"] == "notifications/progress" && n["params"]["progressToken"] == 7),
        "{notes:?}"
    );
    assert!(!supervised_by(scratch.home()).is_empty(), "the server runs under the proxy");

    // The agent dies (its end of the pipe closes): the stubborn server, which
    // ignores stdin EOF and SIGTERM, is ended all the same.
    let status = agent.leave();
    assert!(status.success(), "{status}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !supervised_by(scratch.home()).is_empty() {
        assert!(Instant::now() < deadline, "left: {:?}", supervised_by(scratch.home()));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_proxy_beside_a_sidecar_answers_from_its_warm_pool() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch);
    let mut sidecar = Sidecar::started(&scratch, &ws);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let servers = sidecar.request("nxops/mcp/servers", json!({})).unwrap();
        let memory = servers["servers"].as_array().unwrap().iter().find(|s| s["name"] == "memory").unwrap().clone();
        if memory["pool"]["idle"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the pool never warmed: {memory}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let mut agent = Agent::start(&scratch, &ws, "memory");
    let mut notes = Vec::new();
    agent.send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                      "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "agent", "version": "1"}}}));
    let hello = agent.answer(1, &mut notes);
    let took = started.elapsed();
    assert_eq!(hello["result"]["serverInfo"]["name"], "memory-server", "{hello}");
    agent.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    assert!(agent.answer(2, &mut notes)["result"]["tools"].is_array());
    let pool = sidecar.request("nxops/mcp/servers", json!({})).unwrap();
    let memory = pool["servers"].as_array().unwrap().iter().find(|s| s["name"] == "memory").unwrap().clone();
    assert_eq!(memory["pool"]["warmAcquires"], 1, "{memory}");
    assert_eq!(memory["pool"]["coldStarts"], 1, "no new server process was started: {memory}");
    eprintln!("proxy start to initialize answered: {took:?}");
    assert!(agent.leave().success());
    drop(sidecar);
    assert!(supervised_by(scratch.home()).is_empty());
}
