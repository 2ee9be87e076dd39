//! `nxops serve --metrics-addr 127.0.0.1:PORT`: the sidecar's figures in the
//! Prometheus text format (0.0.4), for a scraper on the same machine.
//!
//! Off by default. Loopback addresses only: the figures name workspaces and
//! processes, and nothing here authenticates. Each scrape reads the live state
//! (no cache, no background sampling) and answers `GET /metrics` (anything
//! else: 404).
//!
//! Every metric family is written whole, `# HELP` and `# TYPE` then its
//! samples, as the text format requires (a parser that reads the comments as
//! the start of a family loses the types otherwise).
//!
//! Connections: one thread accepts, and each connection is answered on a
//! thread of its own, at most [`MAX_CONNECTIONS`] at a time (past that a
//! connection gets `503` at once, from one more thread), so an idle or slow client never delays
//! another scrape. A client has [`REQUEST_DEADLINE`] in all to send its request
//! head (a client that sends a byte now and then is cut off then, not at each
//! read's timeout) and [`WRITE_TIMEOUT`] for each write of the answer. These
//! are plain threads, never a tokio runtime's.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::core::Core;
use crate::exposition::{Family, label};

/// Connections answered at once; more get `503 Service Unavailable`.
pub const MAX_CONNECTIONS: usize = 8;
/// The time a client has to send its whole request head.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// The time each write of an answer may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The time a refused client has to send its request head before the `503`.
const REFUSAL_DEADLINE: Duration = Duration::from_millis(200);
/// The longest request head read; a longer one is cut off.
const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Binds `addr` (loopback only) and serves on threads of its own; returns the bound address.
pub fn serve(core: Core, addr: &str) -> anyhow::Result<SocketAddr> {
    let bad = |problem: String| crate::config::ConfigError { location: "--metrics-addr".into(), problem };
    let parsed: SocketAddr = addr.parse().map_err(|_| bad(format!("{addr:?} is not IP:PORT, e.g. 127.0.0.1:9464")))?;
    if !parsed.ip().is_loopback() {
        return Err(bad(format!("{addr}: only a loopback address (127.0.0.1 or ::1) is allowed")).into());
    }
    let listener = TcpListener::bind(parsed).with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("nxops-metrics".into()).spawn(move || accept(core, listener))?;
    tracing::info!(target: "nxops::sidecar", "metrics on http://{bound}/metrics");
    Ok(bound)
}

fn accept(core: Core, listener: TcpListener) {
    let busy = Arc::new(AtomicUsize::new(0));
    let refuse = refuser();
    for stream in listener.incoming().flatten() {
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            busy.fetch_sub(1, Ordering::AcqRel);
            // Full queue (a flood): the connection is just closed.
            let _ = refuse.as_ref().map(|refuse| refuse.try_send(stream));
            continue;
        }
        let (core, done) = (core.clone(), busy.clone());
        let spawned = std::thread::Builder::new().name("nxops-metrics-conn".into()).spawn(move || {
            answer(&core, stream);
            done.fetch_sub(1, Ordering::AcqRel);
        });
        if let Err(err) = spawned {
            busy.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(target: "nxops::sidecar", "metrics: cannot start a thread for a scrape: {err}");
        }
    }
}

/// The thread that answers `503` past the cap. It reads the request first (for at most
/// [`REFUSAL_DEADLINE`]): closing a socket with unread input resets it, and the scraper would see a
/// reset instead of the answer.
fn refuser() -> Option<std::sync::mpsc::SyncSender<TcpStream>> {
    let (send, receive) = std::sync::mpsc::sync_channel::<TcpStream>(MAX_CONNECTIONS);
    let spawned = std::thread::Builder::new().name("nxops-metrics-busy".into()).spawn(move || {
        for mut stream in receive {
            let _ = read_request_head(&mut stream, Instant::now() + REFUSAL_DEADLINE);
            respond(stream, "503 Service Unavailable", &format!("more than {MAX_CONNECTIONS} scrapes at once\n"));
        }
    });
    spawned.ok().map(|_| send)
}

fn answer(core: &Core, mut stream: TcpStream) {
    let Some(request_line) = read_request_head(&mut stream, Instant::now() + REQUEST_DEADLINE) else { return };
    if request_line.starts_with("GET /metrics ") || request_line.starts_with("GET /metrics?") {
        respond(stream, "200 OK", &render(core));
    } else {
        respond(stream, "404 Not Found", "only GET /metrics is served here\n");
    }
}

/// The request line, once the whole head (up to the blank line) arrived before `deadline`.
fn read_request_head(stream: &mut TcpStream, deadline: Instant) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        stream.set_read_timeout(Some(left)).ok()?;
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
        if head.len() > MAX_REQUEST_BYTES {
            return None;
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    Some(String::from_utf8_lossy(line).into_owned())
}

fn respond(mut stream: TcpStream, status: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes()));
}

/// One metric family: its comments and its samples, written together.
/// The exposition text.
pub fn render(core: &Core) -> String {
    let mut up = Family::new("nxops_up", "gauge", "1 while the sidecar runs");
    let mut uptime = Family::new("nxops_uptime_seconds", "gauge", "seconds since the sidecar started");
    let mut memory = Family::new("nxops_resident_memory_bytes", "gauge", "the sidecar's resident memory");
    let mut sessions = Family::new("nxops_sessions", "gauge", "connected client sessions");
    let mut reaped = Family::new("nxops_orphans_reaped_total", "counter", "adopted orphans the sidecar reaped");
    let mut dropped = Family::new(
        "nxops_events_dropped_total",
        "counter",
        "events not sent to clients that read too slowly (each was told how many with nxops/eventsDropped)",
    );
    let mut process_up = Family::new(
        "nxops_process_up",
        "gauge",
        "1 for a supervised process that runs, by workspace, process and state",
    );
    let mut restarts =
        Family::new("nxops_process_restarts", "gauge", "restarts by the policy since the last start by a user");
    let mut mcp_connections = Family::new(
        "nxops_mcp_connections",
        "gauge",
        "pooled MCP connections by workspace, server and use (busy, idle)",
    );
    let mut cold_starts =
        Family::new("nxops_mcp_cold_starts_total", "counter", "MCP server processes started by a pool");
    let mut warm_acquires =
        Family::new("nxops_mcp_warm_acquires_total", "counter", "leases served by an already warm connection");
    let mut runs = Family::new("nxops_task_runs_kept", "gauge", "Nx runs reported by the plugin and kept by the owner");
    let mut ws_sessions =
        Family::new("nxops_workspace_sessions", "gauge", "the workspace's sessions by state (active, disconnected)");
    let mut ended =
        Family::new("nxops_sessions_ended_total", "counter", "sessions that ended, by how (closed, expired)");
    let rss = crate::procfs::stat(std::process::id()).map_or(0, |s| s.rss_bytes);
    up.sample("", 1);
    uptime.sample("", format!("{:.3}", core.uptime().as_secs_f64()));
    memory.sample("", rss);
    sessions.sample("", core.sessions().len());
    reaped.sample("", crate::reaper::orphans_reaped());
    dropped.sample("", crate::rpc::outbox::dropped_events_total());
    for view in core.workspaces() {
        let Some(owned) = core.owned(&view.root) else { continue };
        let ws = label(&view.root.display().to_string());
        for crate::health::ProcessHealth { name, state, .. } in owned.supervisor.states() {
            let labels = format!("workspace=\"{ws}\",process=\"{}\",state=\"{state}\"", label(&name));
            process_up.sample(&labels, u8::from(state == "running"));
        }
        for (name, n) in owned.supervisor.restarts() {
            restarts.sample(&format!("workspace=\"{ws}\",process=\"{}\"", label(&name)), n);
        }
        let (servers, _) = owned.mcp.servers();
        for s in servers {
            let Some(pool) = s.pool else { continue };
            let server = format!("workspace=\"{ws}\",server=\"{}\"", label(&s.name));
            mcp_connections.sample(&format!("{server},use=\"busy\""), pool.busy);
            mcp_connections.sample(&format!("{server},use=\"idle\""), pool.idle);
            cold_starts.sample(&server, pool.cold_starts);
            warm_acquires.sample(&server, pool.warm_acquires);
        }
        runs.sample(&format!("workspace=\"{ws}\""), owned.runs.len());
        let counts = owned.sessions.counts(0);
        for (state, n) in [("active", counts.active), ("disconnected", counts.disconnected)] {
            ws_sessions.sample(&format!("workspace=\"{ws}\",state=\"{state}\""), n);
        }
        for (how, n) in [("closed", counts.closed_total), ("expired", counts.expired_total)] {
            ended.sample(&format!("workspace=\"{ws}\",ending=\"{how}\""), n);
        }
    }
    let families = [
        up,
        uptime,
        memory,
        sessions,
        reaped,
        dropped,
        process_up,
        restarts,
        mcp_connections,
        cold_starts,
        warm_acquires,
        runs,
        ws_sessions,
        ended,
    ];
    crate::exposition::render(&families)
}
