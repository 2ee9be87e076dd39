//! `nxops serve --metrics-addr 127.0.0.1:PORT`: the sidecar's figures in the
//! Prometheus text format (0.0.4), for a scraper on the same machine.
//!
//! Off by default. Loopback addresses only: the figures name workspaces and
//! processes, and nothing here authenticates. One small thread accepts
//! connections and answers `GET /metrics` (anything else: 404); each scrape
//! reads the live state (no cache, no background sampling).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::Context;

use super::core::Core;

/// Binds `addr` (loopback only) and serves on a thread of its own; returns the bound address.
pub fn serve(core: Core, addr: &str) -> anyhow::Result<SocketAddr> {
    let bad = |problem: String| crate::config::ConfigError { location: "--metrics-addr".into(), problem };
    let parsed: SocketAddr = addr.parse().map_err(|_| bad(format!("{addr:?} is not IP:PORT, e.g. 127.0.0.1:9464")))?;
    if !parsed.ip().is_loopback() {
        return Err(bad(format!("{addr}: only a loopback address (127.0.0.1 or ::1) is allowed")).into());
    }
    let listener = TcpListener::bind(parsed).with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("nxops-metrics".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            answer(&core, stream);
        }
    })?;
    tracing::info!(target: "nxops::sidecar", "metrics on http://{bound}/metrics");
    Ok(bound)
}

fn answer(core: &Core, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request_line = String::new();
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let (status, body) = if request_line.starts_with("GET /metrics ") || request_line.starts_with("GET /metrics?") {
        ("200 OK", render(core))
    } else {
        ("404 Not Found", "only GET /metrics is served here\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes()));
}

/// The exposition text.
pub fn render(core: &Core) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family("nxops_up", "gauge", "1 while the sidecar runs");
    family("nxops_uptime_seconds", "gauge", "seconds since the sidecar started");
    family("nxops_resident_memory_bytes", "gauge", "the sidecar's resident memory");
    family("nxops_sessions", "gauge", "connected client sessions");
    family("nxops_orphans_reaped_total", "counter", "adopted orphans the sidecar reaped");
    family("nxops_process_up", "gauge", "1 for a supervised process that runs, by workspace, process and state");
    family("nxops_process_restarts", "gauge", "restarts by the policy since the last start by a user");
    family("nxops_mcp_connections", "gauge", "pooled MCP connections by workspace, server and use (busy, idle)");
    family("nxops_mcp_cold_starts_total", "counter", "MCP server processes started by a pool");
    family("nxops_mcp_warm_acquires_total", "counter", "leases served by an already warm connection");
    family("nxops_task_runs_kept", "gauge", "Nx runs reported by the plugin and kept by the owner");
    family("nxops_workspace_sessions", "gauge", "the workspace's sessions by state (active, disconnected)");
    family("nxops_sessions_ended_total", "counter", "sessions that ended, by how (closed, expired)");
    let mut lines = String::new();
    let rss = crate::procfs::stat(std::process::id()).map_or(0, |s| s.rss_bytes);
    let _ = writeln!(lines, "nxops_up 1");
    let _ = writeln!(lines, "nxops_uptime_seconds {:.3}", core.uptime().as_secs_f64());
    let _ = writeln!(lines, "nxops_resident_memory_bytes {rss}");
    let _ = writeln!(lines, "nxops_sessions {}", core.sessions().len());
    let _ = writeln!(lines, "nxops_orphans_reaped_total {}", crate::reaper::orphans_reaped());
    for view in core.workspaces() {
        let Some(owned) = core.owned(&view.root) else { continue };
        let ws = label(&view.root.display().to_string());
        for crate::health::ProcessHealth { name, state, .. } in owned.supervisor.states() {
            let up = u8::from(state == "running");
            let _ = writeln!(
                lines,
                "nxops_process_up{{workspace=\"{ws}\",process=\"{}\",state=\"{state}\"}} {up}",
                label(&name)
            );
        }
        for (name, restarts) in owned.supervisor.restarts() {
            let _ =
                writeln!(lines, "nxops_process_restarts{{workspace=\"{ws}\",process=\"{}\"}} {restarts}", label(&name));
        }
        let (servers, _) = owned.mcp.servers();
        for s in servers {
            let Some(pool) = s.pool else { continue };
            let server = label(&s.name);
            let _ = writeln!(
                lines,
                "nxops_mcp_connections{{workspace=\"{ws}\",server=\"{server}\",use=\"busy\"}} {}",
                pool.busy
            );
            let _ = writeln!(
                lines,
                "nxops_mcp_connections{{workspace=\"{ws}\",server=\"{server}\",use=\"idle\"}} {}",
                pool.idle
            );
            let _ = writeln!(
                lines,
                "nxops_mcp_cold_starts_total{{workspace=\"{ws}\",server=\"{server}\"}} {}",
                pool.cold_starts
            );
            let _ = writeln!(
                lines,
                "nxops_mcp_warm_acquires_total{{workspace=\"{ws}\",server=\"{server}\"}} {}",
                pool.warm_acquires
            );
        }
        let _ = writeln!(lines, "nxops_task_runs_kept{{workspace=\"{ws}\"}} {}", owned.runs.len());
        let counts = owned.sessions.counts(0);
        for (state, n) in [("active", counts.active), ("disconnected", counts.disconnected)] {
            let _ = writeln!(lines, "nxops_workspace_sessions{{workspace=\"{ws}\",state=\"{state}\"}} {n}");
        }
        for (how, n) in [("closed", counts.closed_total), ("expired", counts.expired_total)] {
            let _ = writeln!(lines, "nxops_sessions_ended_total{{workspace=\"{ws}\",ending=\"{how}\"}} {n}");
        }
    }
    out + &lines
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
