//! One connection to a stdio MCP server: its process, the protocol era it
//! speaks, and request/response matching with our own ids.
//!
//! Both eras are live (see /work/shared/research/mcp.md and fixtures/mcp/README.md):
//! - modern (2026-07-28): no handshake; every request carries the `_meta`
//!   envelope (protocol version, client capabilities); health is `server/discover`;
//! - legacy (2024-11-05 .. 2025-11-25): `initialize`, then
//!   `notifications/initialized`; health is `ping`.
//!
//! The era is found by probing `server/discover` with the envelope. Node SDK
//! servers answer -32601 and then accept `initialize` on the same process;
//! Python SDK servers fix a process's era with its first request, so any probe
//! answer other than a modern result, or a failed `initialize` after it, means
//! a fresh process that goes straight to `initialize`. The era found is
//! remembered per server, so later connections skip the probe.
//!
//! stdio framing: one JSON message per line, UTF-8; stdout carries only
//! protocol messages, stderr is kept (last lines) for diagnostics.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::supervisor::Supervisor;
use crate::supervisor::logs::LogStream;

pub const MODERN_VERSION: &str = "2026-07-28";
pub const LEGACY_VERSION: &str = "2025-06-18";
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// How long a handshake step may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server gets to exit after its stdin closes, before SIGTERM.
const STDIN_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Era {
    Modern,
    Legacy,
}

/// How to start a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub server: String,
    pub command: String,
    pub args: Vec<String>,
    pub env: std::collections::BTreeMap<String, String>,
    pub cwd: std::path::PathBuf,
}

/// Something the server sent on its own: a notification or a request to the client.
pub type Incoming = Value;

/// A live connection.
pub struct Connection {
    pub id: u64,
    pub server: String,
    pub pid: u32,
    /// The era and the `initialize` result (legacy) or `server/discover` result
    /// (modern), once the handshake is done.
    hello: std::sync::OnceLock<(Era, Value)>,
    /// The `initialize` params the connection was opened with (legacy), else Null.
    asked: std::sync::OnceLock<Value>,
    pub started: Instant,
    pub stderr: Arc<LogStream>,
    run: u64,
    exit: crate::reaper::ExitWatch,
    writer: tokio::sync::Mutex<Option<tokio::net::unix::pipe::Sender>>,
    pending: Mutex<HashMap<u64, Waiter>>,
    /// Requests cancelled (`notifications/cancelled` sent) that the server has
    /// not answered yet: the connection is busy with them until it does.
    cancelled: Mutex<HashMap<u64, By>>,
    next_id: AtomicU64,
    dead: AtomicBool,
    /// Where the server's own messages go (the current lessee), if anywhere.
    sink: Mutex<Option<mpsc::UnboundedSender<Incoming>>>,
}

/// A request that could not be answered by the server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnError {
    #[error("the MCP server {server:?} (pid {pid}) exited{}", .stderr.as_ref().map(|s| format!("; its last stderr line: {s}")).unwrap_or_default())]
    Died { server: String, pid: u32, stderr: Option<String> },
    #[error("the MCP server {server:?} did not answer {method} within {secs} s")]
    TimedOut { server: String, method: String, secs: u64 },
    #[error("cannot start the MCP server {server:?}: {problem}")]
    Start { server: String, problem: String },
    #[error("the request to the MCP server {server:?} was cancelled")]
    Cancelled { server: String },
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

impl Connection {
    /// Starts the server and completes the handshake of its era (`known` skips the probe).
    pub async fn open(sup: &Supervisor, launch: &Launch, known: Option<Era>) -> Result<Arc<Connection>, ConnError> {
        if known != Some(Era::Legacy) {
            let conn = Connection::spawn(sup, launch).await?;
            match conn.probe_modern().await {
                Ok(hello) => return Ok(conn.with_hello(Era::Modern, hello)),
                Err(ProbeFailed::NotModern) => match conn.initialize(default_initialize()).await {
                    Ok(hello) => {
                        let _ = conn.asked.set(default_initialize());
                        return Ok(conn.with_hello(Era::Legacy, hello));
                    }
                    Err(_) => conn.close(sup).await, // the probe fixed this process's era: start afresh
                },
                Err(ProbeFailed::Conn(err)) => {
                    conn.close(sup).await;
                    if matches!(err, ConnError::Died { .. } | ConnError::Start { .. }) {
                        return Err(err);
                    }
                }
            }
        }
        Connection::open_legacy(sup, launch, default_initialize()).await
    }

    /// Starts the server and opens it with `initialize` sent with `params` (a
    /// client's own: the server negotiates the protocol version with them).
    pub async fn open_legacy(sup: &Supervisor, launch: &Launch, params: Value) -> Result<Arc<Connection>, ConnError> {
        let conn = Connection::spawn(sup, launch).await?;
        match conn.initialize(params.clone()).await {
            Ok(hello) => {
                let _ = conn.asked.set(params);
                Ok(conn.with_hello(Era::Legacy, hello))
            }
            Err(err) => {
                conn.close(sup).await;
                Err(err)
            }
        }
    }

    fn with_hello(self: Arc<Self>, era: Era, hello: Value) -> Arc<Connection> {
        let _ = self.hello.set((era, hello));
        self
    }

    pub fn era(&self) -> Era {
        self.hello.get().map_or(Era::Legacy, |(era, _)| *era)
    }

    /// The `initialize` params this (legacy) connection was opened with; Null for a modern one.
    pub fn asked(&self) -> &Value {
        static NONE: Value = Value::Null;
        self.asked.get().unwrap_or(&NONE)
    }

    /// The server's `initialize` or `server/discover` result.
    pub fn hello(&self) -> &Value {
        static NONE: Value = Value::Null;
        self.hello.get().map_or(&NONE, |(_, hello)| hello)
    }

    async fn spawn(sup: &Supervisor, launch: &Launch) -> Result<Arc<Connection>, ConnError> {
        let start_error = |problem: String| ConnError::Start { server: launch.server.clone(), problem };
        let mut command = Command::new(&launch.command);
        command
            .args(&launch.args)
            .envs(&launch.env)
            .current_dir(&launch.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let name = format!("mcp.{}", launch.server);
        let managed = sup
            .spawn_managed(&name, &mut command)
            .await
            .map_err(|e| start_error(format!("{}: {e}", launch.command)))?;
        let mut child = managed.child;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(start_error("no pipes".into()));
        };
        let writer = tokio::net::unix::pipe::Sender::from_owned_fd(OwnedFd::from(stdin))
            .map_err(|e| start_error(format!("stdin: {e}")))?;
        let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(stdout))
            .map_err(|e| start_error(format!("stdout: {e}")))?;
        let stderr_log = LogStream::new(None);
        sup.runtime().spawn(crate::supervisor::logs::pump(OwnedFd::from(stderr), stderr_log.clone()));
        let conn = Arc::new(Connection {
            id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            server: launch.server.clone(),
            pid: child.pid,
            hello: std::sync::OnceLock::new(),
            asked: std::sync::OnceLock::new(),
            started: Instant::now(),
            stderr: stderr_log,
            run: managed.run,
            exit: child.exit,
            writer: tokio::sync::Mutex::new(Some(writer)),
            pending: Mutex::default(),
            cancelled: Mutex::default(),
            next_id: AtomicU64::new(1),
            dead: AtomicBool::new(false),
            sink: Mutex::default(),
        });
        sup.runtime().spawn(read_loop(Arc::downgrade(&conn), reader));
        let watcher = Arc::downgrade(&conn);
        let exit = conn.exit.clone();
        sup.runtime().spawn(async move {
            exit.exited().await;
            if let Some(conn) = watcher.upgrade() {
                conn.mark_dead();
            }
        });
        Ok(conn)
    }

    async fn probe_modern(&self) -> Result<Value, ProbeFailed> {
        let params = json!({"_meta": envelope()});
        let answer = self.call("server/discover", params, HANDSHAKE_TIMEOUT).await.map_err(ProbeFailed::Conn)?;
        let result = answer.get("result").filter(|r| r.get("supportedVersions").is_some());
        match result {
            Some(result) => Ok(result.clone()),
            None => Err(ProbeFailed::NotModern),
        }
    }

    async fn initialize(&self, params: Value) -> Result<Value, ConnError> {
        let answer = self.call("initialize", params, HANDSHAKE_TIMEOUT).await?;
        let Some(result) = answer.get("result") else {
            return Err(ConnError::Start {
                server: self.server.clone(),
                problem: format!("initialize was refused: {}", answer.get("error").unwrap_or(&Value::Null)),
            });
        };
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
        Ok(result.clone())
    }

    /// Asks a fresh connection for its tool list once and forgets the answer, when
    /// the server has tools: a server's first `tools/list` is its slowest (a Node
    /// SDK server builds its JSON schemas then: 12 ms against 2 ms for the next
    /// with server-memory), and every session's first request is usually that.
    /// Listing changes no server state an agent could see.
    pub async fn prime(&self) {
        if self.hello().get("capabilities").and_then(|c| c.get("tools")).is_none() {
            return;
        }
        let params = match self.era() {
            Era::Legacy => json!({}),
            Era::Modern => with_envelope(json!({})),
        };
        if let Err(err) = self.call("tools/list", params, Duration::from_secs(5)).await {
            tracing::debug!(target: "nxops::mcp", "{}: priming tools/list failed: {err}", self.server);
        }
    }

    /// Sends a request and returns the server's whole response message (`result` or
    /// `error`), with our id. Dropping the future sends `notifications/cancelled`.
    async fn call(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, ConnError> {
        self.request(By::Pool, method, params, timeout).await
    }

    /// `call` for `by`: a client's requests make the connection busy (see
    /// `outstanding`); the pool's own (handshake, priming, health checks) never do.
    async fn request(&self, by: By, method: &str, params: Value, timeout: Duration) -> Result<Value, ConnError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id, Waiter { tx, by });
        let mut guard = CancelGuard { conn: self, id, armed: true };
        let mut message = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if !params.is_null() {
            message["params"] = params;
        }
        self.send(&message).await?;
        let answer = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => {
                guard.armed = false;
                if self.is_dead() {
                    return Err(self.died());
                }
                return Err(ConnError::Cancelled { server: self.server.clone() });
            }
            Err(_) => {
                return Err(ConnError::TimedOut {
                    server: self.server.clone(),
                    method: method.to_string(),
                    secs: timeout.as_secs(),
                });
            }
        };
        guard.armed = false;
        Ok(answer)
    }

    /// Forwards a client's request: adds the modern envelope when this
    /// connection speaks the modern era, and returns the response message.
    pub async fn forward(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, ConnError> {
        let params = if self.era() == Era::Modern { with_envelope(params) } else { params };
        self.request(By::Client, method, params, timeout).await
    }

    /// A client's notification, passed on (`notifications/cancelled` ids are the caller's to map).
    pub async fn notify(&self, method: &str, params: Value) -> Result<(), ConnError> {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if !params.is_null() {
            message["params"] = params;
        }
        self.send(&message).await
    }

    /// Clients' requests sent and not answered yet, cancelled ones included.
    /// The pool's own (a health check racing a lease) do not count: a
    /// connection released during one goes straight back to the idle set.
    pub fn outstanding(&self) -> usize {
        let pending = self.pending().values().filter(|w| w.by == By::Client).count();
        pending + self.cancelled().values().filter(|by| **by == By::Client).count()
    }

    /// Cancels every client's request still waiting (its caller went away): the
    /// server gets `notifications/cancelled` for each, and the callers `Cancelled`.
    /// The pool's own requests run on.
    pub async fn cancel_all(&self, reason: &str) {
        let ids: Vec<u64> = self.pending().extract_if(|_, w| w.by == By::Client).map(|(id, _)| id).collect();
        for id in ids {
            self.cancelled().insert(id, By::Client);
            let _ = self.send(&cancelled_notification(id, reason)).await;
        }
    }

    /// `ping` (legacy) or `server/discover` (modern) within `timeout`.
    pub async fn healthy(&self, timeout: Duration) -> bool {
        if self.is_dead() {
            return false;
        }
        let answer = match self.era() {
            Era::Legacy => self.call("ping", Value::Null, timeout).await,
            Era::Modern => self.call("server/discover", json!({"_meta": envelope()}), timeout).await,
        };
        answer.is_ok_and(|a| a.get("result").is_some())
    }

    /// Where the server's own messages go from now on (None: dropped).
    pub fn set_sink(&self, sink: Option<mpsc::UnboundedSender<Incoming>>) {
        *self.sink.lock().unwrap_or_else(|p| p.into_inner()) = sink;
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// Closes stdin, gives the server `STDIN_GRACE` to exit, then ends its tree
    /// (SIGTERM, SIGKILL after `stop_timeout`).
    pub async fn close(&self, sup: &Supervisor) {
        self.writer.lock().await.take();
        let exited = tokio::time::timeout(STDIN_GRACE, self.exit.exited()).await.is_ok();
        let timeout = if exited { Duration::from_millis(200) } else { Duration::from_secs(2) };
        sup.end_managed(&format!("mcp.{}", self.server), self.run, self.pid, self.exit.clone(), timeout).await;
        self.mark_dead();
    }

    async fn send(&self, message: &Value) -> Result<(), ConnError> {
        let mut line = serde_json::to_vec(message).expect("messages serialize");
        line.push(b'\n');
        let mut writer = self.writer.lock().await;
        let Some(pipe) = writer.as_mut() else { return Err(self.died()) };
        if pipe.write_all(&line).await.is_err() {
            writer.take();
            self.mark_dead();
            return Err(self.died());
        }
        Ok(())
    }

    fn died(&self) -> ConnError {
        ConnError::Died { server: self.server.clone(), pid: self.pid, stderr: self.stderr.tail(1).pop() }
    }

    fn mark_dead(&self) {
        self.dead.store(true, Ordering::Relaxed);
        // Every waiting request learns at once (their senders drop).
        self.pending().clear();
        self.cancelled().clear();
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<u64, Waiter>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cancelled(&self) -> MutexGuard<'_, HashMap<u64, By>> {
        self.cancelled.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Who sent a request to the server.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum By {
    /// A client, through `forward`.
    Client,
    /// The pool itself: the handshake, priming, health checks.
    Pool,
}

/// A request waiting for its answer.
struct Waiter {
    tx: oneshot::Sender<Value>,
    by: By,
}

enum ProbeFailed {
    NotModern,
    Conn(ConnError),
}

/// Sends `notifications/cancelled` for a request whose caller went away.
struct CancelGuard<'a> {
    conn: &'a Connection,
    id: u64,
    armed: bool,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Some(waiter) = self.conn.pending().remove(&self.id) else {
            return; // answered, or cancelled already
        };
        self.conn.cancelled().insert(self.id, waiter.by);
        let message = cancelled_notification(self.id, "the client cancelled the request");
        let mut line = serde_json::to_vec(&message).expect("messages serialize");
        line.push(b'\n');
        if let Ok(mut writer) = self.conn.writer.try_lock()
            && let Some(pipe) = writer.as_mut()
        {
            let _ = pipe.try_write(&line);
        }
    }
}

fn cancelled_notification(id: u64, reason: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id, "reason": reason}})
}

/// The `initialize` params of a connection no client asked for (a warm one).
pub fn default_initialize() -> Value {
    json!({
        "protocolVersion": LEGACY_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "nxops", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// The modern era's `_meta` envelope.
fn envelope() -> Value {
    json!({META_VERSION: MODERN_VERSION, META_CAPABILITIES: {}})
}

/// `params` with the envelope merged into its `_meta` (the caller's keys win).
fn with_envelope(params: Value) -> Value {
    let mut params = match params {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => return other,
    };
    let meta = params.entry("_meta").or_insert_with(|| json!({}));
    if let (Value::Object(meta), Value::Object(base)) = (meta, envelope()) {
        for (k, v) in base {
            meta.entry(k).or_insert(v);
        }
    }
    Value::Object(params)
}

/// Reads the server's stdout: responses complete their requests, anything else
/// goes to the lessee's sink; requests from the server nobody can answer get -32601.
async fn read_loop(conn: std::sync::Weak<Connection>, reader: tokio::net::unix::pipe::Receiver) {
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Some(conn) = conn.upgrade() else { return };
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            tracing::debug!(target: "nxops::mcp", "{}: not JSON on stdout: {line}", conn.server);
            continue;
        };
        let is_response = message.get("method").is_none() && message.get("id").is_some();
        if is_response {
            let id = message.get("id").and_then(Value::as_u64);
            if id.is_some_and(|id| conn.cancelled().remove(&id).is_some()) {
                continue; // a late answer to a cancelled request: nobody waits for it
            }
            let waiter = id.and_then(|id| conn.pending().remove(&id));
            if let Some(waiter) = waiter {
                let _ = waiter.tx.send(message);
            }
            continue;
        }
        let sink = conn.sink.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let delivered = sink.is_some_and(|s| s.send(message.clone()).is_ok());
        if !delivered && let Some(id) = message.get("id").filter(|_| message.get("method").is_some()) {
            let refusal = json!({"jsonrpc": "2.0", "id": id,
                                 "error": {"code": -32601, "message": "nxops has no client to answer this request"}});
            let _ = conn.send(&refusal).await;
        }
    }
    if let Some(conn) = conn.upgrade() {
        conn.mark_dead();
    }
}
