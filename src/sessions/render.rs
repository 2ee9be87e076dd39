//! Human renderings of the session answers, for the CLI (read as JSON,
//! leniently: the sidecar may be of another version).

use serde_json::Value;

use crate::output::Section;

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// "in 42s", "in 59m", "-" for never.
fn expiry(v: &Value, now_ms: u64) -> String {
    match v.get("expiresAt").and_then(Value::as_u64) {
        None => "-".into(),
        Some(at) if at <= now_ms => "now".into(),
        Some(at) => {
            let secs = (at - now_ms).div_ceil(1000);
            format!("in {}", crate::config::units::format_duration(std::time::Duration::from_secs(secs)))
        }
    }
}

fn client(v: &Value) -> String {
    match (v.get("clientName").and_then(Value::as_str), v.get("clientVersion").and_then(Value::as_str)) {
        (Some(name), Some(version)) => format!("{name} {version}"),
        (Some(name), None) => name.to_string(),
        _ => "-".into(),
    }
}

fn keys(v: &Value, key: &str) -> String {
    let names: Vec<String> = match v.get(key) {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    if names.is_empty() { "-".into() } else { names.join(",") }
}

/// `nxops session list`: one row per session.
pub fn list(answer: &Value) -> String {
    let now = crate::sessions::now_ms();
    let mut rows = vec![["ID", "KIND", "STATE", "CLIENT", "PROCESSES", "MCP", "EXPIRES"].map(String::from)];
    for s in answer.get("sessions").and_then(Value::as_array).into_iter().flatten() {
        rows.push([
            text(s, "id"),
            text(s, "kind"),
            text(s, "state"),
            client(s),
            keys(s, "processes"),
            keys(s, "mcp"),
            expiry(s, now),
        ]);
    }
    let mut out = String::new();
    if rows.len() == 1 {
        out.push_str("No sessions.\n");
    } else {
        let widths: Vec<usize> = (0..7).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
        for row in &rows {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
    }
    if answer.get("sidecar").and_then(Value::as_bool) == Some(false) {
        out.push_str(&format!(
            "\nNo sidecar runs for this workspace: these are the sessions saved in {}; the next sidecar \
             restores them (or expires those whose time ran out).\n",
            text(answer, "file")
        ));
        return out;
    }
    if let Some(counts) = answer.get("counts") {
        out.push_str(&format!(
            "\n{} expired in the last hour, {} closed since the sidecar started.\n",
            counts.get("expiredRecently").and_then(Value::as_u64).unwrap_or(0),
            counts.get("closedTotal").and_then(Value::as_u64).unwrap_or(0),
        ));
    }
    out
}

/// `nxops session open|restart|heartbeat`: one session.
pub fn one(s: &Value) -> String {
    let mut section = Section::new(&format!("session {} is {}", text(s, "id"), text(s, "state")));
    section.push("kind", text(s, "kind"));
    section.push("processes", keys(s, "processes"));
    section.push("mcp", keys(s, "mcp"));
    section.push("expires", expiry(s, crate::sessions::now_ms()));
    section.push("restarts", text(s, "restarts"));
    let mut out = String::new();
    section.render(&mut out);
    out
}

/// `nxops session close`: what closing it did.
pub fn closed(c: &Value) -> String {
    let mut section = Section::new(&format!("session {} {}", text(c, "session"), text(c, "ending")));
    section.push("processes stopped", keys(c, "processes"));
    section.push("mcp leases ended", keys(c, "mcp"));
    section.push("took", format!("{} ms", text(c, "elapsedMs")));
    let mut out = String::new();
    section.render(&mut out);
    out
}
