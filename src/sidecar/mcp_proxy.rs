//! `nxops mcp proxy SERVER`: an MCP stdio server that agents and editors launch
//! in place of the real command (for example in `.mcp.json`).
//!
//! The proxy is a sidecar of its own for the workspace: it follows the owner
//! when one runs (requests are forwarded under a lease named for this proxy),
//! or becomes the owner (and its pools' servers live exactly as long as it
//! does; it warms only the server it was asked for, see `Core::mcp_proxy`).
//! Either way the agent talks to a warm, already initialized connection:
//! `initialize` (or `server/discover`) is answered from the connection's own
//! handshake, everything else is forwarded with `nxops/mcp/request`, and the
//! server's own messages come back. When the agent goes away (stdin closes)
//! the lease is released, and a proxy that owned the workspace stops its
//! servers (stdin EOF, SIGTERM, SIGKILL of the group): nothing is orphaned. SIGTERM, SIGINT and SIGHUP start that same teardown
//! (`Ending`), never skip it; the proxy then exits with 128 + the signal's
//! number (143, 130, 129), or 0 when stdin had closed first.
//!
//! stdout is the MCP channel (one JSON message per line): it is moved to a
//! private descriptor at start, as `serve --stdio` does, and written by one
//! thread of its own, never by a runtime thread.
//!
//! A proxy that follows an owner never decides Nx's cache layout (which may
//! run git): its start is process start, one connection and three round trips.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::environment::Environment;
use crate::rpc::errors::to_jsonrpc;
use crate::sidecar::core::{Core, TransportKind};
use crate::sidecar::methods::{self, CallCtx};
use crate::sidecar::progress::Progress;

/// Runs until the agent closes stdin (returns 0) or a signal ends the proxy
/// (the process exits with 128 + its number); either way after `Ending::run`.
pub fn run(env: Environment, root: &Path, server: &str) -> anyhow::Result<i32> {
    let (input, output) = crate::sidecar::take_stdio().context("failed to take over stdin and stdout")?;
    crate::reaper::become_subreaper().context("failed to become the child subreaper")?;
    if let Err(err) = crate::reaper::raise_fd_limit() {
        tracing::warn!(target: "nxops::sidecar", "cannot raise the limit of open files: {err}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("nxops-proxy")
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    // Registered before any server can start: from here on a signal is only
    // recorded, and the watcher below turns it into the teardown.
    let signals = {
        let _context = runtime.enter();
        Signals::register().context("failed to watch SIGTERM, SIGINT and SIGHUP")?
    };
    let core = Core::mcp_proxy(env, runtime.handle().clone(), server);
    let stop_timeout = crate::config::Settings::resolve(None, core.env(), &core.overrides())?.stop_timeout();
    core.attach(root).map_err(|e| anyhow::anyhow!("{}", to_jsonrpc(e).message))?;
    let session = core.open_session(TransportKind::Stdio);
    core.identify_session(session, Some("nxops mcp proxy".into()), Some(env!("CARGO_PKG_VERSION").into()));
    // One thread writes to the agent, so no runtime thread ever blocks on its
    // pipe: an agent that stops reading stalls only that thread, and the queue
    // (this proxy's memory, no one else's) holds what it has not read.
    let (lines, queued) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::Builder::new()
        .name("nxops-proxy-out".into())
        .spawn(move || {
            let mut output = output;
            for line in queued {
                if output.write_all(&line).and_then(|()| output.flush()).is_err() {
                    return; // the agent closed its end
                }
            }
        })
        .context("failed to start the output thread")?;
    let write = move |message: &Value| {
        let mut line = serde_json::to_vec(message).expect("messages serialize");
        line.push(b'\n');
        let _ = lines.send(line);
    };

    // The server's own messages, for this proxy's lease only.
    let mut events = core.events();
    let relay = write.clone();
    let forwarding = runtime.spawn(async move {
        while let Ok(event) = events.recv().await {
            if event.session == Some(session) && event.name == "mcp/notification" {
                relay(&event.params["message"]);
            }
        }
    });

    let ending = Arc::new(Ending {
        core: core.clone(),
        session,
        forwarding: forwarding.abort_handle(),
        stop_timeout,
        claimed: AtomicBool::new(false),
    });
    runtime.spawn(signals.watch(ending.clone()));

    let in_flight: Arc<Mutex<HashMap<String, tokio::task::JoinHandle<()>>>> = Arc::default();
    let leased = Arc::new(AtomicBool::new(false));
    for line in BufReader::new(input).lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let message: Value = match serde_json::from_str(&line) {
            Ok(message) => message,
            Err(e) => {
                write(
                    &json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("not JSON: {e}")}}),
                );
                continue;
            }
        };
        let (Some(method), id) = (message.get("method").and_then(Value::as_str), message.get("id").cloned()) else {
            continue; // a response to a server request: the pool answers those itself
        };
        let Some(id) = id else {
            match method {
                "notifications/cancelled" => {
                    let key = message.pointer("/params/requestId").map(Value::to_string).unwrap_or_default();
                    if let Some(task) = in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&key) {
                        task.abort(); // dropping the request sends notifications/cancelled to the server
                    }
                }
                other => tracing::debug!(target: "nxops::mcp", "proxy: notification {other} not forwarded"),
            }
            continue;
        };
        let ctx = CallCtx { core: core.clone(), session, progress: Progress::none() };
        let mut params = json!({"workspace": root, "server": server, "method": method,
                            "params": message.get("params").cloned().unwrap_or(Value::Null)});
        if !leased.load(Ordering::Acquire) {
            // Until a connection is leased: the agent's variables, for the `${VAR}`s
            // of the server's entry (see `McpPools::launch_for`).
            params["env"] = json!(core.env().vars());
        }
        let leased = leased.clone();
        let reply = write.clone();
        let key = id.to_string();
        let running = in_flight.clone();
        let task_key = key.clone();
        let task = runtime.spawn(async move {
            let answer = methods::call(&ctx, "nxops/mcp/request", params).await;
            let mut response = json!({"jsonrpc": "2.0", "id": id});
            match answer {
                Ok(mut answer) => {
                    if answer.get("connection").is_some() {
                        leased.store(true, Ordering::Release);
                    }
                    if let Some(result) = answer.get_mut("result").map(Value::take) {
                        response["result"] = result;
                    } else {
                        response["error"] = answer.get_mut("error").map(Value::take).unwrap_or(Value::Null);
                    }
                }
                Err(err) => {
                    let err = to_jsonrpc(err);
                    response["error"] = json!({"code": err.code.code(), "message": err.message});
                }
            }
            reply(&response);
            running.lock().unwrap_or_else(|p| p.into_inner()).remove(&task_key);
        });
        in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(key, task);
    }

    // The agent is gone. If a signal came first, its teardown is running and
    // ends the process; wait for it.
    if ending.run() {
        return Ok(0);
    }
    loop {
        std::thread::park();
    }
}

/// How the proxy ends, once, whoever asks first (stdin closing or a signal):
/// the lease is released, and, if this proxy owned the workspace, every server
/// it started is ended with its whole tree (stdin EOF, grace, SIGTERM of the
/// group, SIGKILL), as `serve --stdio` does at its end.
struct Ending {
    core: Core,
    session: u64,
    forwarding: tokio::task::AbortHandle,
    stop_timeout: Duration,
    claimed: AtomicBool,
}

impl Ending {
    /// Tears down (blocking, bounded like the sidecar's); false when someone else already does.
    /// Not on a runtime thread: it waits for the runtime's shutdown tasks.
    fn run(&self) -> bool {
        if self.claimed.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.forwarding.abort();
        self.core.end_session(self.session, crate::sessions::End::Clean);
        crate::sidecar::shut_down(&self.core, self.stop_timeout);
        true
    }
}

/// SIGTERM, SIGINT and SIGHUP, registered so that none of them ends the process by default.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Must be called inside the runtime's context.
    fn register() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The first signal starts the teardown on a thread of its own, then exits
    /// with 128 + its number. Later signals stay registered and so are ignored:
    /// nothing cuts the teardown short.
    async fn watch(mut self, ending: Arc<Ending>) {
        use rustix::process::Signal;
        let (name, number) = tokio::select! {
            _ = self.term.recv() => ("SIGTERM", Signal::TERM.as_raw()),
            _ = self.int.recv() => ("SIGINT", Signal::INT.as_raw()),
            _ = self.hup.recv() => ("SIGHUP", Signal::HUP.as_raw()),
        };
        tracing::info!(target: "nxops::mcp", "proxy: {name} received, ending the servers");
        let spawned = std::thread::Builder::new().name("nxops-exit".into()).spawn(move || {
            if ending.run() {
                std::process::exit(128 + number);
            }
        });
        if let Err(err) = spawned {
            tracing::error!(target: "nxops::mcp", "proxy: cannot start the teardown: {err}");
        }
        // Keep the handlers (owned by this future) installed for as long as the process lives.
        std::future::pending::<()>().await;
    }
}
