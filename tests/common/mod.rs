//! Shared helpers for integration tests: real Nx 24 fixture workspaces, a private
//! HOME per test, and the real nxops binary.
#![allow(dead_code)]

pub mod garage;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn nxops_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nxops"))
}

/// Fails with instructions when the fixture's node_modules are missing.
pub fn require_fixture() {
    let nx = repo_root().join("fixtures/nx24/node_modules/nx/package.json");
    assert!(nx.exists(), "the Nx fixture is not installed: run fixtures/setup.sh (scripts/test does it for you)");
}

/// A scratch folder for one test: a HOME outside /tmp (Nx refuses a ~/.nx under /tmp)
/// and a place for workspaces outside any git repository. Removed on drop.
pub struct Scratch {
    pub home: tempfile::TempDir,
    pub spaces: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let base = home_base();
        let home = tempfile::Builder::new().prefix("home-").tempdir_in(&base).unwrap();
        std::fs::create_dir(home.path().join("run")).unwrap();
        let spaces = tempfile::Builder::new().prefix("nxops-ws-").tempdir().unwrap();
        Scratch { home, spaces }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A fresh fixture workspace at `<spaces>/<name>` made by fixtures/make-workspace.sh.
    pub fn workspace(&self, name: &str, git: &str) -> PathBuf {
        require_fixture();
        let dest = self.spaces.path().join(name);
        let out = Command::new(repo_root().join("fixtures/make-workspace.sh"))
            .arg(&dest)
            .args(["--git", git])
            .env("HOME", self.home())
            .stdin(Stdio::null())
            .output()
            .expect("run make-workspace.sh");
        assert!(out.status.success(), "make-workspace.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::canonicalize(dest).unwrap()
    }

    /// A fresh workspace `ws` (no git) whose cache fixtures/fill-cache.sh filled with real Nx tasks.
    pub fn filled_workspace(&self) -> PathBuf {
        let ws = self.workspace("ws", "none");
        run_ok(Command::new(repo_root().join("fixtures/fill-cache.sh")).arg(&ws).env("HOME", self.home()));
        ws
    }

    /// A command for the nxops binary with this scratch HOME and a clean NX_/NXOPS_ environment.
    pub fn nxops(&self, cwd: &Path) -> Command {
        let mut cmd = Command::new(nxops_bin());
        cmd.current_dir(cwd).stdin(Stdio::null());
        scrub_env(&mut cmd, self.home());
        cmd
    }

    /// Any program (npm, npx, strip) run in `cwd` with the same environment; npm
    /// keeps using the real user's cache, so installs work offline from it.
    pub fn tool(&self, cwd: &Path, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd).stdin(Stdio::null());
        scrub_env(&mut cmd, self.home());
        if let Some(home) = std::env::var_os("HOME") {
            cmd.env("npm_config_cache", Path::new(&home).join(".npm"));
        }
        cmd.env("npm_config_update_notifier", "false").env("npm_config_fund", "false").env("npm_config_audit", "false");
        cmd
    }

    /// A `node -e SCRIPT` command run in `cwd` with the same environment.
    pub fn node(&self, cwd: &Path, script: &str) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg("-e").arg(script).current_dir(cwd).stdin(Stdio::null());
        scrub_env(&mut cmd, self.home());
        cmd
    }
}

/// Where test HOMEs go: the target's temp folder, unless the checkout itself is
/// under /tmp (CI may clone there), in which case /var/tmp, which Nx accepts.
fn home_base() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&target).unwrap();
    let tmp = std::fs::canonicalize("/tmp").unwrap_or_else(|_| PathBuf::from("/tmp"));
    if !std::fs::canonicalize(&target).unwrap().starts_with(&tmp) {
        return target;
    }
    let fallback = PathBuf::from("/var/tmp/nxops-tests");
    std::fs::create_dir_all(&fallback).unwrap();
    fallback
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

fn scrub_env(cmd: &mut Command, home: &Path) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("NX_") || key.starts_with("NXOPS_") || key.starts_with("XDG_") {
            cmd.env_remove(&key);
        }
    }
    // A private runtime folder, so sockets and locks of one test never meet another's.
    cmd.env("HOME", home).env("XDG_RUNTIME_DIR", home.join("run")).env("NX_DAEMON", "false").env("NX_NO_CLOUD", "true");
}

/// Runs and returns the output, failing the test with stderr when it does not succeed.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed with {}:\nstdout: {}\nstderr: {}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// A running `nxops serve --stdio`, driven over its real pipes. Killed on drop.
pub struct Sidecar {
    pub child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    incoming: std::sync::mpsc::Receiver<serde_json::Value>,
    next_id: i64,
    /// Notifications received while waiting for responses.
    pub notifications: Vec<serde_json::Value>,
    /// The scratch HOME, which every process it supervises inherits.
    home: PathBuf,
}

pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

impl Sidecar {
    /// Starts the sidecar (not initialized) with this scratch's environment.
    pub fn start(scratch: &Scratch, cwd: &Path, extra_env: &[(&str, &str)]) -> Sidecar {
        let mut cmd = scratch.nxops(cwd);
        cmd.args(["serve", "--stdio"]);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Sidecar::from_command(cmd, scratch)
    }

    /// Starts the sidecar from a prepared `nxops serve` command (not initialized).
    pub fn from_command(mut cmd: Command, scratch: &Scratch) -> Sidecar {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn nxops serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, incoming) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stdout);
            while let Some(message) = read_frame(&mut reader) {
                if tx.send(message).is_err() {
                    break;
                }
            }
        });
        Sidecar {
            stdin: child.stdin.take(),
            child,
            incoming,
            next_id: 1000,
            notifications: Vec::new(),
            home: scratch.home().to_path_buf(),
        }
    }

    /// Starts and initializes with `rootUri` = `workspace`.
    pub fn started(scratch: &Scratch, workspace: &Path) -> Sidecar {
        let mut sidecar = Sidecar::start(scratch, workspace, &[]);
        sidecar.initialize(workspace);
        sidecar
    }

    pub fn initialize(&mut self, workspace: &Path) -> serde_json::Value {
        let params = serde_json::json!({
            "processId": null,
            "rootUri": format!("file://{}", workspace.display()),
            "capabilities": {},
            "clientInfo": {"name": "nxops-tests", "version": "1"},
        });
        let result = self.request("initialize", params).expect("initialize succeeds");
        self.notify("initialized", serde_json::json!({}));
        result
    }

    pub fn write_raw(&mut self, bytes: &[u8]) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    pub fn send(&mut self, message: &serde_json::Value) {
        let body = serde_json::to_vec(message).unwrap();
        let mut bytes = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        bytes.extend(body);
        self.write_raw(&bytes);
    }

    pub fn notify(&mut self, method: &str, params: serde_json::Value) {
        self.send(&serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and returns its result, or its error object as `Err`.
    pub fn request(&mut self, method: &str, params: serde_json::Value) -> Result<serde_json::Value, serde_json::Value> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let response = self.response_to(&serde_json::json!(id));
        match response.get("error") {
            Some(err) => Err(err.clone()),
            None => Ok(response["result"].clone()),
        }
    }

    /// The next message answering `id`, keeping notifications aside.
    pub fn response_to(&mut self, id: &serde_json::Value) -> serde_json::Value {
        loop {
            let message = self.next_message().unwrap_or_else(|| panic!("no response to request {id}"));
            if message.get("method").is_some() {
                self.notifications.push(message);
                continue;
            }
            if &message["id"] == id {
                return message;
            }
            panic!("unexpected message while waiting for {id}: {message}");
        }
    }

    /// The next message of any kind, or None after TIMEOUT / when stdout closed.
    pub fn next_message(&mut self) -> Option<serde_json::Value> {
        self.incoming.recv_timeout(TIMEOUT).ok()
    }

    /// Waits for a notification with this method (already received ones count).
    pub fn notification(&mut self, method: &str) -> serde_json::Value {
        if let Some(pos) = self.notifications.iter().position(|n| n["method"] == method) {
            return self.notifications.remove(pos);
        }
        loop {
            let message = self.next_message().unwrap_or_else(|| panic!("no {method} notification"));
            if message["method"] == method {
                return message;
            }
            self.notifications.push(message);
        }
    }

    /// Like `notification`, waiting up to `limit` in all; `None` when none came.
    pub fn notification_within(&mut self, method: &str, limit: std::time::Duration) -> Option<serde_json::Value> {
        if let Some(pos) = self.notifications.iter().position(|n| n["method"] == method) {
            return Some(self.notifications.remove(pos));
        }
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let message = self.incoming.recv_timeout(left).ok()?;
            if message["method"] == method {
                return Some(message);
            }
            self.notifications.push(message);
        }
    }

    /// Closes stdin and waits for the process to exit.
    pub fn close_stdin_and_wait(&mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        self.wait()
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "sidecar {} did not exit", self.child.id());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sidecar {
    /// A graceful end first (end of input stops every supervised process). A
    /// sidecar that does not exit in time is SIGKILLed, and what it supervised is
    /// killed too (a graceful one stops its own; tests check that it did).
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::time::Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            kill_supervised(&self.home);
        }
    }
}

/// Pids of live processes that an nxops supervisor started for a sidecar with this HOME.
pub fn supervised_by(home: &Path) -> Vec<u32> {
    let home_entry = format!("HOME={}", home.display());
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| alive(*pid))
        .filter(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
            vars.iter().any(|v| v.starts_with(b"NXOPS_SUPERVISED=")) && vars.contains(&home_entry.as_bytes())
        })
        .collect()
}

/// SIGKILLs every process `supervised_by(home)`.
pub fn kill_supervised(home: &Path) {
    for pid in supervised_by(home) {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
}

/// Reads one LSP frame; None at end of stream.
pub fn read_frame(reader: &mut impl std::io::BufRead) -> Option<serde_json::Value> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0; length?];
    std::io::Read::read_exact(reader, &mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

/// True while a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// A process supervisor for a scratch workspace under `dir`, as an owner sidecar has
/// one (for tests that drive the library's MCP connections and pools directly).
pub fn supervisor(dir: &tempfile::TempDir) -> nxops::supervisor::Supervisor {
    let root = dir.path().join("ws");
    std::fs::create_dir_all(&root).unwrap();
    let env = nxops::environment::Environment::from_pairs([("HOME", dir.path().to_str().unwrap())]);
    nxops::supervisor::Supervisor::launch(
        root,
        Some(dir.path().join("state")),
        nxops::config::Settings::defaults(),
        env,
        tokio::runtime::Handle::current(),
        std::sync::Arc::new(|_, _| {}),
    )
}

/// A fresh workspace `ws` whose allowed .mcp.json has the real memory server
/// (@modelcontextprotocol/server-memory from fixtures/mcp), with `nxops_json`
/// as its nxops.json (the pool settings).
pub fn memory_mcp_workspace(scratch: &Scratch, nxops_json: &str) -> PathBuf {
    let server = repo_root().join("fixtures/mcp/node_modules/@modelcontextprotocol/server-memory/dist/index.js");
    assert!(server.exists(), "the MCP fixtures are not installed: run fixtures/mcp/setup.sh (scripts/test does)");
    let ws = scratch.workspace("ws", "none");
    let servers = serde_json::json!({"mcpServers": {"memory": {"command": "node", "args": [server],
        "env": {"MEMORY_FILE_PATH": scratch.home().join("memory.jsonl")}}}});
    std::fs::write(ws.join(".mcp.json"), serde_json::to_vec_pretty(&servers).unwrap()).unwrap();
    std::fs::write(ws.join("nxops.json"), nxops_json).unwrap();
    run_ok(scratch.nxops(&ws).args(["trust"]));
    ws
}

/// A raw client on a sidecar's socket: requests with our own ids, every message
/// read by a thread into a channel (or, for a stalled reader, never read).
pub struct SocketClient {
    pub stream: std::os::unix::net::UnixStream,
    incoming: Option<std::sync::mpsc::Receiver<serde_json::Value>>,
    next_id: i64,
    pub notifications: Vec<serde_json::Value>,
}

impl SocketClient {
    /// Connects and, with `read`, starts reading everything the sidecar sends.
    pub fn connect(socket: &Path, read: bool) -> SocketClient {
        let stream = std::os::unix::net::UnixStream::connect(socket).expect("connect to the owner's socket");
        let incoming = read.then(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let reader = stream.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(reader);
                while let Some(message) = read_frame(&mut reader) {
                    if tx.send(message).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        SocketClient { stream, incoming, next_id: 0, notifications: Vec::new() }
    }

    pub fn send(&mut self, message: &serde_json::Value) {
        use std::io::Write;
        let body = serde_json::to_vec(message).unwrap();
        let mut bytes = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        bytes.extend(body);
        self.stream.write_all(&bytes).unwrap();
    }

    /// Sends a request without waiting; returns its id.
    pub fn send_request(&mut self, method: &str, params: serde_json::Value) -> i64 {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// Sends a request and waits (up to `limit`) for its answer: result or error object.
    pub fn request_within(
        &mut self,
        method: &str,
        params: serde_json::Value,
        limit: std::time::Duration,
    ) -> Option<Result<serde_json::Value, serde_json::Value>> {
        let id = self.send_request(method, params);
        let deadline = std::time::Instant::now() + limit;
        let incoming = self.incoming.as_ref().expect("a reading client");
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let message = incoming.recv_timeout(left).ok()?;
            if message.get("method").is_some() && message.get("id").is_none() {
                self.notifications.push(message);
                continue;
            }
            if message["id"] == id {
                return Some(match message.get("error") {
                    Some(err) => Err(err.clone()),
                    None => Ok(message["result"].clone()),
                });
            }
        }
    }

    pub fn request(&mut self, method: &str, params: serde_json::Value) -> Result<serde_json::Value, serde_json::Value> {
        self.request_within(method, params, TIMEOUT).unwrap_or_else(|| panic!("no answer to {method}"))
    }

    /// `initialize` and `initialized` (a reading client waits for the answer).
    pub fn handshake(&mut self, name: &str) {
        let params = serde_json::json!({"processId": null, "capabilities": {}, "clientInfo": {"name": name}});
        if self.incoming.is_some() {
            self.request("initialize", params).expect("initialize");
        } else {
            self.send_request("initialize", params);
        }
        self.send(&serde_json::json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}));
    }
}

/// The owner's socket of the only workspace a sidecar reports in `nxops/status`.
pub fn owner_socket(status: &serde_json::Value) -> PathBuf {
    let socket = status["workspaces"][0]["role"]["socket"].as_str().expect("an owner's status names its socket");
    PathBuf::from(socket)
}

/// Checks a Prometheus exposition with promtool and parses it with prometheus_client (both
/// installed by scripts/setup): its families as `{name, type, samples: [[name, labels, value]]}`.
pub fn checked_exposition(text: &str) -> Vec<serde_json::Value> {
    use std::io::Write;
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/setup installs Debian's prometheus package)");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(checked.status.success(), "promtool: {checked:?}\n{text}");

    let python = repo_root().join("scripts/tools/.venv/bin/python");
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = [{"name": f.name, "type": f.type, "samples": [[s.name, s.labels, repr(float(s.value))] for s in f.samples]}
       for f in text_string_to_metric_families(sys.stdin.read())]
print(json.dumps(out))
"#;
    let mut parser = std::process::Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} ({e}): run scripts/tools/setup.sh", python.display()));
    parser.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let parsed = parser.wait_with_output().unwrap();
    assert!(parsed.status.success(), "prometheus_client: {parsed:?}");
    serde_json::from_slice(&parsed.stdout).unwrap()
}

/// Every file under `dir` with its bytes.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for item in std::fs::read_dir(&d).unwrap().flatten() {
            if item.file_type().unwrap().is_dir() {
                stack.push(item.path());
            } else {
                out.insert(item.path().strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(item.path()).unwrap());
            }
        }
    }
    out
}
