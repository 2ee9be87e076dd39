//! `nxops mcp proxy` owning the workspace (no sidecar): it starts only the
//! server it was asked for, and SIGTERM, SIGINT and SIGHUP start the same
//! teardown stdin EOF does, so no server it started, and no child of one,
//! outlives it. Also the official Python SDK's client as the agent, which
//! closes stdin and SIGTERMs its server's group 2 s later.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::{Scratch, Sidecar, alive, run_ok, supervised_by};
use serde_json::{Value, json};

/// The longest an MCP server's teardown may take: stdin EOF, 0.5 s grace, then
/// the group's SIGTERM and SIGKILL 2 s later (src/mcp/conn.rs), plus 2 s for a
/// machine whose two cores run other tests meanwhile.
const TEARDOWN_BOUND: Duration = Duration::from_millis(4500);

/// Two servers with a child of their own each (fixtures/mcp/with-child.sh):
/// `memory` exits on stdin EOF (leaving its `sleep` child behind), `stubborn`
/// ignores stdin EOF and SIGTERM behind a shell. Both files are allowed.
fn workspace(scratch: &Scratch) -> PathBuf {
    let ws = scratch.workspace("ws", "none");
    let mcp = common::repo_root().join("fixtures/mcp");
    let memory = mcp.join("node_modules/@modelcontextprotocol/server-memory/dist/index.js");
    assert!(memory.exists(), "the MCP fixtures are not installed: run fixtures/mcp/setup.sh (scripts/test does)");
    let home = scratch.home();
    let servers = json!({"mcpServers": {
        "memory": {"command": mcp.join("with-child.sh"), "args": ["node", memory],
                   "env": {"MEMORY_FILE_PATH": home.join("m.jsonl"), "CHILD_PIDFILE": home.join("memory-child.pid")}},
        "stubborn": {"command": mcp.join("with-child.sh"), "args": [mcp.join("stubborn.sh")],
                     "env": {"STUBBORN_PIDFILE": home.join("stubborn.pid"), "CHILD_PIDFILE": home.join("stubborn-child.pid")}}
    }});
    std::fs::write(ws.join(".mcp.json"), serde_json::to_vec(&servers).unwrap()).unwrap();
    run_ok(scratch.nxops(&ws).args(["trust"]));
    ws
}

struct Agent {
    proxy: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
}

impl Agent {
    /// `nxops mcp proxy SERVER` with its stdin and stdout piped.
    fn launch(scratch: &Scratch, ws: &Path, server: &str) -> Child {
        scratch
            .nxops(ws)
            .args(["mcp", "proxy", server])
            .env("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    }

    /// The proxy, its stdout read line by line.
    fn start(scratch: &Scratch, ws: &Path, server: &str) -> Agent {
        let mut proxy = Agent::launch(scratch, ws, server);
        let stdout = proxy.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(serde_json::from_str::<Value>(&line).expect("the proxy writes JSON lines")).is_err() {
                    return;
                }
            }
        });
        Agent { stdin: proxy.stdin.take().unwrap(), proxy, lines }
    }

    fn call(&mut self, id: i64, method: &str, params: Value) -> Value {
        writeln!(self.stdin, "{}", json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).unwrap();
        self.stdin.flush().unwrap();
        loop {
            let message = self.lines.recv_timeout(Duration::from_secs(20)).expect("an answer from the proxy");
            if message["id"] == id {
                return message;
            }
        }
    }
}

impl Agent {
    /// `initialize` and `tools/list`, as an agent opens.
    fn greet(&mut self) {
        let hello = self.call(
            1,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "agent", "version": "1"}}),
        );
        assert!(hello["result"]["serverInfo"]["name"].is_string(), "{hello}");
        let tools = self.call(2, "tools/list", json!({}));
        assert!(!tools["result"]["tools"].as_array().expect("a tool list").is_empty(), "{tools}");
    }

    /// Signals the proxy; its exit status once it exited, within `TEARDOWN_BOUND`.
    fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let signalled = Instant::now();
        run_ok(std::process::Command::new("kill").args([&format!("-{signal}"), &self.proxy.id().to_string()]));
        loop {
            if let Some(status) = self.proxy.try_wait().unwrap() {
                eprintln!("{signal} to the proxy: exited {status} after {:?}", signalled.elapsed());
                return status;
            }
            assert!(
                signalled.elapsed() < TEARDOWN_BOUND,
                "the proxy did not exit within {TEARDOWN_BOUND:?} of {signal}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
    }
}

/// The pid in `file`, if one was written.
fn pid_if_written(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The pid written to `file`, waiting for it to appear.
fn pid_in(file: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(pid) = pid_if_written(file) {
            return pid;
        }
        assert!(Instant::now() < deadline, "{} was never written", file.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until nothing of the workspace's runs: no process carrying its
/// supervision marker, and none of `pids` (the servers' children).
fn nothing_left(home: &Path, pids: &[u32], deadline: Instant) {
    loop {
        let marked = supervised_by(home);
        let living: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if marked.is_empty() && living.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left running: marked {marked:?}, children {living:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the proxy for `server`, talks to it, signals it, and checks that it
/// exits promptly with 128 + the signal's number and leaves nothing behind.
fn signal_ends_everything(signal: &str, number: i32, server: &str) {
    let scratch = Scratch::new();
    let ws = workspace(&scratch);
    let home = scratch.home().to_path_buf();
    let mut agent = Agent::start(&scratch, &ws, server);
    agent.greet();

    // The asked-for server and its child run under the proxy's supervision.
    let child = pid_in(&home.join(format!("{server}-child.pid")));
    let mut children = vec![child];
    if server == "stubborn" {
        children.push(pid_in(&home.join("stubborn.pid")));
    }
    assert!(children.iter().all(|p| alive(*p)), "{children:?}");
    let marked = supervised_by(&home);
    assert!(marked.contains(&child), "the server's child carries the marker: {marked:?} {child}");
    // A proxy that owns the workspace may have started other servers too; their children count as well.
    for other in ["memory-child.pid", "stubborn-child.pid", "stubborn.pid"] {
        children.extend(pid_if_written(&home.join(other)).filter(|pid| !children.contains(pid)));
    }

    let signalled = Instant::now();
    let status = agent.signal(signal);
    assert_eq!(status.code(), Some(128 + number), "{status}");
    nothing_left(&home, &children, signalled + TEARDOWN_BOUND);
}

#[test]
fn sigterm_ends_a_server_and_the_child_it_leaves_behind() {
    signal_ends_everything("TERM", 15, "memory");
}

#[test]
fn sigterm_ends_a_server_that_ignores_stdin_eof_and_sigterm() {
    signal_ends_everything("TERM", 15, "stubborn");
}

#[test]
fn sigint_ends_every_server_tree() {
    signal_ends_everything("INT", 2, "stubborn");
}

#[test]
fn sighup_ends_every_server_tree() {
    signal_ends_everything("HUP", 1, "memory");
}

/// The official Python SDK as the agent: it closes stdin, and since the
/// stubborn server's teardown takes longer than its 2 s grace, it SIGTERMs the
/// proxy's group mid-teardown (and would SIGKILL it 2 s later). The teardown
/// goes on to the end and nothing is left.
#[test]
fn the_python_sdk_client_closing_the_proxy_leaves_nothing() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch);
    let home = scratch.home().to_path_buf();
    let mcp = common::repo_root().join("fixtures/mcp");
    let python = mcp.join(".venv/bin/python");
    assert!(python.exists(), "the MCP fixtures are not installed: run fixtures/mcp/setup.sh (scripts/test does)");
    let started = Instant::now();
    let out = scratch
        .tool(&ws, python.to_str().unwrap())
        .arg(mcp.join("sdk_agent.py"))
        .arg(&ws)
        .arg(common::nxops_bin())
        .args(["mcp", "proxy", "stubborn"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "the SDK agent failed: {}", out.status);
    let report: Value = serde_json::from_slice(&out.stdout).expect("the agent prints one JSON line");
    eprintln!("SDK agent: {report} (whole run {:?})", started.elapsed());
    assert_eq!(report["server"], "nxops-stubborn", "{report}");
    assert!(report["tools"].as_array().unwrap().iter().any(|t| t == "echo"), "{report}");
    // Past its 2 s grace the SDK signalled the proxy, which still finished its teardown
    // (well before the SDK's SIGKILL at 4 s).
    let closed = report["closeSeconds"].as_f64().unwrap();
    assert!(closed > 2.0 && closed < 4.0, "closing took {closed} s");
    let mut children = vec![pid_in(&home.join("stubborn-child.pid")), pid_in(&home.join("stubborn.pid"))];
    children.extend(pid_if_written(&home.join("memory-child.pid")));
    nothing_left(&home, &children, Instant::now() + Duration::from_secs(1));
}

/// A proxy that took over the workspace of a SIGKILLed sidecar (it ends what
/// the sidecar left and starts the servers anew) and is then SIGTERMed ends
/// everything too: the dead sidecar's servers and its own.
#[test]
fn a_proxy_that_took_over_from_a_killed_sidecar_ends_everything_on_sigterm() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch);
    let home = scratch.home().to_path_buf();
    let mut sidecar = Sidecar::start(&scratch, &ws, &[("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")]);
    sidecar.initialize(&ws);
    let mut first = vec![pid_in(&home.join("memory-child.pid")), pid_in(&home.join("stubborn-child.pid"))];
    first.push(pid_in(&home.join("stubborn.pid")));
    let mut agent = Agent::start(&scratch, &ws, "memory");
    agent.greet();

    sidecar.child.kill().unwrap();
    sidecar.child.wait().unwrap();
    // The proxy takes the workspace over: the sidecar's servers are ended and
    // the proxy starts its own (a new child pid is written).
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = loop {
        match pid_if_written(&home.join("memory-child.pid")) {
            Some(pid) if !first.contains(&pid) && alive(pid) => break pid,
            _ => {}
        }
        assert!(Instant::now() < deadline, "the proxy never started servers of its own");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut children = first.clone();
    children.push(second);
    children.extend(pid_if_written(&home.join("stubborn-child.pid")).filter(|p| !children.contains(p)));
    children.extend(pid_if_written(&home.join("stubborn.pid")).filter(|p| !children.contains(p)));

    let signalled = Instant::now();
    let status = agent.signal("TERM");
    assert_eq!(status.code(), Some(143), "{status}");
    nothing_left(&home, &children, signalled + TEARDOWN_BOUND);
}

/// Without a sidecar the proxy starts only the server it was asked for; a
/// second proxy asking for another server (a follower of the first) still
/// gets it, started when first asked.
#[test]
fn a_proxy_owning_the_workspace_starts_only_its_server() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch);
    let home = scratch.home().to_path_buf();
    let mut memory = Agent::start(&scratch, &ws, "memory");
    memory.greet();
    let child = pid_in(&home.join("memory-child.pid"));
    // Other pools would have begun warming at once; give them ample time to show.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!home.join("stubborn.pid").exists(), "the proxy for memory started the stubborn server too");
    let marked = supervised_by(&home);
    assert!(marked.contains(&child), "{marked:?}");

    let mut stubborn = Agent::start(&scratch, &ws, "stubborn");
    stubborn.greet();
    let server = pid_in(&home.join("stubborn.pid"));
    let children = vec![child, server, pid_in(&home.join("stubborn-child.pid"))];

    let signalled = Instant::now();
    assert_eq!(stubborn.signal("TERM").code(), Some(143));
    assert_eq!(memory.signal("TERM").code(), Some(143));
    nothing_left(&home, &children, signalled + TEARDOWN_BOUND * 2);
}

/// An agent that stops reading fills the proxy's stdout; only the proxy's own
/// output thread waits on that pipe, so SIGTERM still tears everything down.
#[test]
fn an_agent_that_stops_reading_cannot_stall_the_teardown() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch);
    let home = scratch.home().to_path_buf();
    let mut proxy = Agent::launch(&scratch, &ws, "memory");
    let mut stdin = proxy.stdin.take().unwrap();
    let stdout = proxy.stdout.take().unwrap(); // held open, never read
    let hello = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "agent", "version": "1"}}});
    writeln!(stdin, "{hello}").unwrap();
    // About 2 MB of answers (a tool list is a few KB) against a 64 KB pipe.
    for id in 1..=400 {
        writeln!(stdin, "{}", json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})).unwrap();
    }
    stdin.flush().unwrap();
    let child = pid_in(&home.join("memory-child.pid"));
    std::thread::sleep(Duration::from_secs(2)); // the answers pile up; the pipe is full
    let mut agent = Agent { proxy, stdin, lines: channel().1 };
    let signalled = Instant::now();
    let status = agent.signal("TERM");
    assert_eq!(status.code(), Some(143), "{status}");
    nothing_left(&home, &[child], signalled + TEARDOWN_BOUND);
    drop(stdout);
}
