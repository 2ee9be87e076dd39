//! Human renderings of the process answers, for the CLI (which may get them
//! from a sidecar of another version, so they are read as JSON, leniently).

use serde_json::Value;

use crate::config::units::{format_duration, format_size};
use crate::output::Section;

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// "850ms", "12.5s", then whole seconds ("2m5s").
fn millis(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_u64) {
        None => "-".into(),
        Some(ms) if ms < 1000 => format!("{ms}ms"),
        Some(ms) if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        Some(ms) => format_duration(std::time::Duration::from_secs(ms / 1000)),
    }
}

/// `nxops proc list`: one table row per process, then the config's state.
pub fn list(answer: &Value) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "STATE".into(),
        "PID".into(),
        "UPTIME".into(),
        "RESTARTS".into(),
        "MEMORY".into(),
        "CPU".into(),
        "LAST EXIT".into(),
    ]];
    for p in answer.get("processes").and_then(Value::as_array).into_iter().flatten() {
        let memory = p.get("rssBytes").and_then(Value::as_u64).filter(|b| *b > 0).map_or("-".into(), format_size);
        let cpu = p.get("cpuPercent").and_then(Value::as_f64).map_or("-".into(), |c| format!("{c:.1}%"));
        let last = p.get("lastExit").filter(|l| !l.is_null()).map_or("-".into(), |l| text(l, "reason"));
        rows.push([
            text(p, "name"),
            text(p, "state"),
            text(p, "pid"),
            millis(p, "uptimeMs"),
            p.get("restarts").and_then(Value::as_u64).map_or("-".into(), |r| r.to_string()),
            memory,
            cpu,
            last,
        ]);
    }
    let mut out = String::new();
    if rows.len() == 1 {
        out.push_str("No supervised processes.\n");
    } else {
        let widths: Vec<usize> = (0..8).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
        for row in &rows {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
    }
    if let Some(config) = answer.get("config") {
        let mut section = Section::new("nxops.json");
        section.push("file", text(config, "path"));
        let exists = config.get("exists").and_then(Value::as_bool).unwrap_or(false);
        section.push("trust", if exists { text(config, "trust") } else { "no file".into() });
        if let Some(problem) = config.get("problem").and_then(Value::as_str) {
            section.push("problem", problem);
        }
        section.render(&mut out);
    }
    if answer.get("sidecar").and_then(Value::as_bool) == Some(false) {
        out.push_str("\nNo sidecar runs for this workspace, so nothing is running.\n");
    }
    if let Some(extra) = answer.get("unattributed").and_then(Value::as_array).filter(|a| !a.is_empty()) {
        let mut section = Section::new("Children of the sidecar that belong to no process");
        for p in extra {
            section.push(&text(p, "pid"), text(p, "command"));
        }
        section.render(&mut out);
    }
    out
}

/// `nxops proc start|stop|restart`: the process's new state.
pub fn one(p: &Value) -> String {
    let mut section = Section::new(&format!("{} is {}", text(p, "name"), text(p, "state")));
    section.push("command", text(p, "command"));
    if p.get("pid").is_some_and(|v| !v.is_null()) {
        section.push("pid", text(p, "pid"));
    }
    if let Some(last) = p.get("lastExit").filter(|l| !l.is_null()) {
        section.push("last exit", text(last, "reason"));
    }
    if let Some(given_up) = p.get("givenUp").and_then(Value::as_str) {
        section.push("given up", given_up);
    }
    let mut out = String::new();
    section.render(&mut out);
    out
}

/// `nxops proc logs`: both streams, each headed by its file.
pub fn logs(answer: &Value) -> String {
    let mut out = String::new();
    for stream in ["stdout", "stderr"] {
        let file = answer.pointer(&format!("/files/{stream}")).and_then(Value::as_str).unwrap_or("not kept");
        out.push_str(&format!("==> {stream} ({file}) <==\n"));
        for line in answer.get(stream).and_then(Value::as_array).into_iter().flatten() {
            out.push_str(line.as_str().unwrap_or_default());
            out.push('\n');
        }
    }
    out
}

/// `nxops trust`: what the workspace's files run and what changed.
pub fn trust(answer: &Value, action: &str) -> String {
    let mut out = String::new();
    let mcp = answer.get("mcp").and_then(Value::as_array).cloned().unwrap_or_default();
    let has_nxops = answer.get("exists").and_then(Value::as_bool) == Some(true);
    if !has_nxops && mcp.is_empty() {
        out.push_str(&format!(
            "{} does not exist and no MCP file names a server: nothing to allow.\n",
            text(answer, "file")
        ));
        return out;
    }
    let headline = |trust: &str| match (action, trust) {
        ("allow", _) => "Allowed: nxops may run these commands",
        ("revoke", _) => "Revoked: nxops will not start these commands",
        (_, "allowed") => "Allowed",
        (_, "changed") => "Changed since it was allowed: run `nxops trust` after reviewing it",
        _ => "Not allowed: review it, then run `nxops trust`",
    };
    if has_nxops {
        let mut section = Section::new(headline(&text(answer, "trust")));
        section.push("file", text(answer, "file"));
        section.push("sha256", text(answer, "sha256"));
        for p in answer.get("processes").and_then(Value::as_array).into_iter().flatten() {
            section.push(&text(p, "name"), format!("{}  (in {})", text(p, "command"), text(p, "cwd")));
        }
        section.render(&mut out);
    }
    for file in &mcp {
        let mut section =
            Section::new(&format!("{} ({} MCP servers)", headline(&text(file, "trust")), text(file, "kind")));
        section.push("file", text(file, "file"));
        section.push("sha256", text(file, "sha256"));
        for s in file.get("servers").and_then(Value::as_array).into_iter().flatten() {
            let what = if s.get("url").is_some_and(|u| !u.is_null()) { text(s, "url") } else { text(s, "command") };
            section.push(&text(s, "name"), what);
        }
        section.render(&mut out);
    }
    out
}

/// `nxops mcp list`: one row per server, then the problems.
pub fn mcp_servers(answer: &Value) -> String {
    let mut rows =
        vec![["NAME", "TRANSPORT", "POOLED", "BUSY", "IDLE", "COLD", "WARM", "ACQUIRE", "SOURCE"].map(String::from)];
    let servers = answer.get("servers").and_then(Value::as_array).cloned().unwrap_or_default();
    for s in &servers {
        let pool = s.get("pool").filter(|p| !p.is_null());
        let figure = |key: &str| pool.map_or("-".to_string(), |p| text(p, key));
        let acquire =
            pool.and_then(|p| p.get("medianAcquireUs").and_then(Value::as_u64)).map_or("-".to_string(), |us| {
                if us < 1000 { format!("{us}us") } else { format!("{:.1}ms", us as f64 / 1000.0) }
            });
        rows.push([
            text(s, "name"),
            text(s, "transport"),
            if s.get("pooled").and_then(Value::as_bool) == Some(true) { "yes".into() } else { "no".into() },
            figure("busy"),
            figure("idle"),
            figure("coldStarts"),
            figure("warmAcquires"),
            acquire,
            text(s, "sourceKind"),
        ]);
    }
    let mut out = String::new();
    if servers.is_empty() {
        out.push_str("No MCP servers in .mcp.json, .vscode/mcp.json, .cursor/mcp.json or Claude Desktop's config.\n");
    } else {
        let widths: Vec<usize> = (0..9).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
        for row in &rows {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
    }
    for s in &servers {
        if let Some(reason) = s.get("reason").and_then(Value::as_str) {
            out.push_str(&format!("{}: {reason}\n", text(s, "name")));
        }
    }
    for problem in answer.get("problems").and_then(Value::as_array).into_iter().flatten() {
        out.push_str(&format!("problem: {}\n", problem.as_str().unwrap_or_default()));
    }
    out
}
