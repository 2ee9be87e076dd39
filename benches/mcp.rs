//! MCP pool benchmark with a real server (@modelcontextprotocol/server-memory
//! from npm, fixtures/mcp), each figure beside its baseline from the same run:
//!
//! - A new session's first `tools/list` through the pool (a new lease, served
//!   by a warm connection), against spawning the same server and doing
//!   `initialize`, `notifications/initialized` and `tools/list` directly.
//!   Target: the pool at least 100x faster. Each session gets a fresh server,
//!   so each round first waits, untimed, for the pool to hold two never-used
//!   connections again.
//! - From the agent's side: launching `nxops mcp proxy time` (a warm sidecar
//!   runs) until the first `tools/list` is answered, against launching the real
//!   mcp-server-time (Python, from PyPI; its start takes about a second) and
//!   doing the same. Target: the proxy at least 100x faster. Beside it, the
//!   proxy's own start (launch to `initialize` answered) and a trivial process's
//!   (spawn and exit of `/bin/true`). Each proxy round waits, untimed, until the
//!   pool holds a never-used connection again, as an agent launched a moment
//!   after the last would find it.
//! - The pool's hop: `ping` through the sidecar (`nxops/mcp/request`, LSP framing
//!   in, newline JSON out) against `ping` straight to another process of the
//!   same server over its stdio. Target: at most 100 us more at p50.
//!
//! Run: `cargo bench --bench mcp` (add `-- --quick` for fewer rounds). Needs
//! `fixtures/mcp/setup.sh` (scripts/setup runs it).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/lsp.rs"]
mod lsp;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (cold_rounds, warm_rounds, pings) = if quick { (3, 20, 500) } else { (10, 100, 5000) };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let server = repo.join("fixtures/mcp/node_modules/@modelcontextprotocol/server-memory/dist/index.js");
    let time_server = repo.join("fixtures/mcp/.venv/bin/mcp-server-time");
    assert!(server.exists() && time_server.exists(), "run fixtures/mcp/setup.sh first");
    let scratch = tempfile::Builder::new().prefix("nxops-mcp-bench-").tempdir().unwrap();
    let home = scratch.path().join("home");
    std::fs::create_dir_all(home.join("run")).unwrap();
    let ws = scratch.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("nx.json"), "{}").unwrap();
    let memory_file = scratch.path().join("memory.jsonl");
    let servers = json!({"mcpServers": {
        "memory": {"command": "node", "args": [server], "env": {"MEMORY_FILE_PATH": memory_file}},
        "time": {"command": time_server, "args": ["--local-timezone", "Etc/UTC"]},
    }});
    std::fs::write(ws.join(".mcp.json"), serde_json::to_vec(&servers).unwrap()).unwrap();
    std::fs::write(ws.join("nxops.json"), r#"{"mcp": {"defaults": {"minIdle": 2, "max": 4}}}"#).unwrap();
    let nxops = env!("CARGO_BIN_EXE_nxops");
    let trusted = command(nxops, &home).args(["trust", "--workspace"]).arg(&ws).output().unwrap();
    assert!(trusted.status.success(), "{}", String::from_utf8_lossy(&trusted.stderr));

    println!("nxops MCP pool benchmark (server-memory; baselines measured in the same run)");
    let mut sidecar = Sidecar::start(nxops, &home, &ws);
    sidecar.wait_idle("memory", 2);
    sidecar.wait_idle("time", 2);

    // A new session's first tools/list: warm through the pool, cold straight.
    let mut cold = Vec::new();
    for _ in 0..cold_rounds {
        let started = Instant::now();
        let mut direct = Direct::spawn(&server, &memory_file, &home);
        cold.push(direct.first_tools_list(started).1);
        direct.close();
    }
    let mut warm = Vec::new();
    for i in 0..warm_rounds {
        // Untimed: a session arriving once the pool has a never-used connection ready again (each
        // session gets a fresh server, so sessions arriving faster than cold starts wait for one).
        sidecar.wait_idle("memory", 2);
        let lease = format!("bench-{i}");
        let started = Instant::now();
        let tools =
            sidecar.request("nxops/mcp/request", json!({"server": "memory", "method": "tools/list", "lease": lease}));
        warm.push(started.elapsed());
        assert!(tools["result"]["tools"].is_array(), "{tools}");
        sidecar.request("nxops/mcp/release", json!({"lease": lease}));
    }
    let (cold, warm) = (median(&mut cold), median(&mut warm));
    println!(
        "  new session, first tools/list   pool {:>8.2} ms   spawn+initialize {:>8.1} ms   {:>6.0}x faster (target >= 100x)",
        ms(warm),
        ms(cold),
        cold.as_secs_f64() / warm.as_secs_f64()
    );

    // From the agent's side: launch to the first tools/list, through the proxy and straight.
    let mut straight = Vec::new();
    for _ in 0..cold_rounds {
        let started = Instant::now();
        let mut direct = Direct::launch(command(&time_server, &home).args(["--local-timezone", "Etc/UTC"]));
        straight.push(direct.first_tools_list(started).1);
        direct.close();
    }
    let (mut proxied, mut proxy_start, mut trivial) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..warm_rounds.min(30) {
        sidecar.wait_idle("time", 2);
        let started = Instant::now();
        let mut proxy = Direct::launch(command(nxops, &home).args(["mcp", "proxy", "time"]).current_dir(&ws));
        let (initialized, listed) = proxy.first_tools_list(started);
        proxy_start.push(initialized);
        proxied.push(listed);
        proxy.close();
        let started = Instant::now();
        assert!(Command::new("/bin/true").status().unwrap().success());
        trivial.push(started.elapsed());
    }
    let (straight, proxied) = (median(&mut straight), median(&mut proxied));
    let (proxy_start, trivial) = (median(&mut proxy_start), median(&mut trivial));
    println!(
        "  agent launch, first tools/list  proxy {:>8.2} ms   direct launch    {:>8.1} ms   {:>6.0}x faster (target >= 100x)",
        ms(proxied),
        ms(straight),
        straight.as_secs_f64() / proxied.as_secs_f64()
    );
    println!(
        "  proxy launch, initialize answered {:>6.2} ms   a trivial process (/bin/true) {:>6.2} ms",
        ms(proxy_start),
        ms(trivial)
    );

    // The hop: ping through the pool vs ping straight to another process of the server.
    let mut direct = Direct::spawn(&server, &memory_file, &home);
    direct.call(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}),
    );
    direct.notify("notifications/initialized");
    let (mut through, mut straight) = (Vec::with_capacity(pings), Vec::with_capacity(pings));
    for _ in 0..pings {
        let t = Instant::now();
        sidecar.request("nxops/mcp/request", json!({"server": "memory", "method": "ping"}));
        through.push(t.elapsed());
        let t = Instant::now();
        direct.call("ping", Value::Null);
        straight.push(t.elapsed());
    }
    direct.close();
    let (through, straight) = (median(&mut through), median(&mut straight));
    println!(
        "  ping p50                        pool {:>8.1} us   direct          {:>8.1} us   hop {:+7.1} us (target <= 100 us)",
        us(through),
        us(straight),
        us(through) - us(straight)
    );
    sidecar.close();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn command(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("NX_") || key.starts_with("NXOPS_") || key.starts_with("XDG_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", home).env("XDG_RUNTIME_DIR", home.join("run"));
    cmd
}

/// The server spoken to directly: newline-delimited JSON over its stdio.
struct Direct {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Direct {
    fn spawn(server: &Path, memory_file: &Path, home: &Path) -> Direct {
        Direct::launch(command("node", home).arg(server).env("MEMORY_FILE_PATH", memory_file))
    }

    /// Starts `cmd` as an MCP stdio server (an agent's view: stdin and stdout piped, stderr ignored).
    fn launch(cmd: &mut Command) -> Direct {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Direct { stdin: child.stdin.take(), child, stdout, next_id: 0 }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let mut message = json!({"jsonrpc": "2.0", "id": self.next_id, "method": method});
        if !params.is_null() {
            message["params"] = params;
        }
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
        loop {
            let mut line = String::new();
            assert!(self.stdout.read_line(&mut line).unwrap() > 0, "the server closed its stdout");
            let answer: Value = serde_json::from_str(&line).unwrap();
            if answer["id"] == self.next_id {
                return answer;
            }
        }
    }

    /// An agent's opening (`initialize`, `notifications/initialized`, `tools/list`): the time
    /// from `started` until `initialize` was answered, and until the tool list was.
    fn first_tools_list(&mut self, started: Instant) -> (Duration, Duration) {
        let init = self.call(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}),
        );
        let initialized = started.elapsed();
        self.notify("notifications/initialized");
        let tools = self.call("tools/list", json!({}));
        let listed = started.elapsed();
        assert!(init["result"]["serverInfo"].is_object() && tools["result"]["tools"].is_array(), "{init} {tools}");
        (initialized, listed)
    }

    fn notify(&mut self, method: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{}", json!({"jsonrpc": "2.0", "method": method})).unwrap();
        stdin.flush().unwrap();
    }

    fn close(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// `nxops serve --stdio`, initialized, driven over its pipes with LSP framing.
struct Sidecar {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: i64,
    notifications: VecDeque<Value>,
}

impl Sidecar {
    fn start(nxops: &str, home: &Path, ws: &Path) -> Sidecar {
        let mut child = command(nxops, home)
            .args(["serve", "--stdio"])
            .current_dir(ws)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut sidecar =
            Sidecar { stdin: child.stdin.take(), child, stdout, next_id: 0, notifications: VecDeque::new() };
        let params = json!({"processId": null, "rootUri": format!("file://{}", ws.display()), "capabilities": {}});
        sidecar.request("initialize", params);
        sidecar.send(&json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}));
        sidecar
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(&lsp::frame(message)).unwrap();
        stdin.flush().unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let message = self.read().unwrap_or_else(|| panic!("no answer to {method}"));
            if message.get("method").is_some() {
                self.notifications.push_back(message);
            } else if message["id"] == id {
                assert!(message.get("error").is_none(), "{method} failed: {message}");
                return message["result"].clone();
            }
        }
    }

    fn read(&mut self) -> Option<Value> {
        lsp::read_frame(&mut self.stdout)
    }

    /// Waits until `server`'s pool holds `idle` warm connections.
    fn wait_idle(&mut self, server: &str, idle: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let servers = self.request("nxops/mcp/servers", json!({}));
            let pool = servers["servers"].as_array().unwrap().iter().find(|s| s["name"] == server).cloned();
            if pool.is_some_and(|s| s["pool"]["idle"].as_u64().is_some_and(|n| n >= idle)) {
                return;
            }
            assert!(Instant::now() < deadline, "the {server} pool did not warm: {servers}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn close(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
