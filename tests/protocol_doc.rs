//! docs/protocol.md and the code agree: the same methods and notifications, and
//! each documented example answered by a real sidecar with the documented shape.

mod common;

use std::collections::BTreeSet;

use common::{Scratch, Sidecar, run_ok};
use serde_json::{Value, json};

struct Section {
    name: String,
    blocks: Vec<(String, String)>,
}

/// The `### \`name\`` sections under `## {heading}`, with their fenced blocks by info string.
fn sections(doc: &str, heading: &str) -> Vec<Section> {
    let start = doc.find(&format!("\n## {heading}\n")).unwrap_or_else(|| panic!("no ## {heading}"));
    let body = &doc[start + heading.len() + 5..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let mut out: Vec<Section> = Vec::new();
    let mut lines = body.lines();
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("### `").and_then(|l| l.strip_suffix('`')) {
            out.push(Section { name: name.to_string(), blocks: Vec::new() });
        } else if let Some(info) = line.strip_prefix("```json ") {
            let text: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            out.last_mut().expect("a block inside a section").blocks.push((info.to_string(), text.join("\n")));
        }
    }
    out
}

fn block<'a>(section: &'a Section, kind: &str) -> &'a str {
    section
        .blocks
        .iter()
        .find(|(k, _)| k == kind)
        .map(|(_, t)| t.as_str())
        .unwrap_or_else(|| panic!("{} has no `json {kind}` block", section.name))
}

/// Compares shapes: the same object keys (recursively), arrays by their first
/// element, scalars by type; a null or an empty array on either side matches anything.
fn same_shape(doc: &Value, real: &Value, path: &str) -> Result<(), String> {
    match (doc, real) {
        (Value::Null, _) | (_, Value::Null) => Ok(()),
        (Value::Object(d), Value::Object(r)) => {
            let dk: BTreeSet<&String> = d.keys().collect();
            let rk: BTreeSet<&String> = r.keys().collect();
            if dk != rk {
                return Err(format!("{path}: documented keys {dk:?}, real keys {rk:?}"));
            }
            d.iter().try_for_each(|(k, v)| same_shape(v, &r[k], &format!("{path}.{k}")))
        }
        (Value::Array(d), Value::Array(r)) => match (d.first(), r.first()) {
            (Some(d0), Some(r0)) => same_shape(d0, r0, &format!("{path}[0]")),
            _ => Ok(()),
        },
        (d, r) if std::mem::discriminant(d) == std::mem::discriminant(r) => Ok(()),
        (d, r) => Err(format!("{path}: documented {d}, real {r}")),
    }
}

#[test]
fn every_method_and_event_is_documented_and_nothing_else() {
    let doc = std::fs::read_to_string(common::repo_root().join("docs/protocol.md")).unwrap();
    let documented: BTreeSet<String> = sections(&doc, "Methods").into_iter().map(|s| s.name).collect();
    let code: BTreeSet<String> = nxops::sidecar::methods::METHODS.iter().map(|m| m.name.to_string()).collect();
    assert_eq!(documented, code, "methods in docs/protocol.md vs the code");
    let documented: BTreeSet<String> = sections(&doc, "Notifications").into_iter().map(|s| s.name).collect();
    let mut code: BTreeSet<String> = nxops::sidecar::core::EVENTS
        .iter()
        .chain(nxops::sidecar::core::TARGETED)
        .map(|e| format!("nxops/{e}"))
        .collect();
    code.insert("$/progress".into());
    assert_eq!(documented, code, "notifications in docs/protocol.md vs the code");
}

#[test]
fn documented_examples_get_documented_answers() {
    let doc = std::fs::read_to_string(common::repo_root().join("docs/protocol.md")).unwrap();
    let s = Scratch::new();
    let ws = s.workspace("doc", "none");
    run_ok(
        std::process::Command::new(common::repo_root().join("fixtures/fill-cache.sh")).arg(&ws).env("HOME", s.home()),
    );
    let other = s.workspace("other", "none");
    // An allowed .mcp.json with the stubborn fake, for the nxops/mcp/* examples.
    let stubborn = common::repo_root().join("fixtures/mcp/stubborn.sh");
    let mcp = json!({"mcpServers": {"stubborn": {"command": stubborn}}});
    std::fs::write(ws.join(".mcp.json"), serde_json::to_vec(&mcp).unwrap()).unwrap();
    run_ok(s.nxops(&ws).args(["trust"]));
    // Health and maintenance checks often enough for their examples to arrive.
    let quick = [("NXOPS_HEALTH_INTERVAL", "200ms"), ("NXOPS_CACHE_CHECK_INTERVAL", "200ms")];
    let mut sidecar = Sidecar::start(&s, &ws, &quick);
    sidecar.initialize(&ws);
    sidecar.request("nxops/subscribe", json!({"events": nxops::sidecar::core::EVENTS})).unwrap();
    for section in sections(&doc, "Methods") {
        let request = block(&section, "request")
            .replace("$WORKSPACE", ws.to_str().unwrap())
            .replace("$OTHER", other.to_str().unwrap());
        let request: Value =
            serde_json::from_str(&request).unwrap_or_else(|e| panic!("{}: bad request JSON: {e}", section.name));
        assert_eq!(request["method"], section.name.as_str());
        let documented: Value = serde_json::from_str(block(&section, "response"))
            .unwrap_or_else(|e| panic!("{}: bad response JSON: {e}", section.name));
        sidecar.send(&request);
        let real = sidecar.response_to(&request["id"]);
        assert!(real.get("error").is_none(), "{}: the documented request failed: {real}", section.name);
        if let Err(diff) = same_shape(&documented, &real, &section.name) {
            panic!("docs/protocol.md disagrees with the code: {diff}\nreal answer: {real:#}");
        }
    }
    // The failure and leak events need processes that fail and leak.
    let crash = json!({"name": "crash", "command": "sh", "args": ["-c", "exit 1"], "restart": "never"});
    sidecar.request("nxops/process/start", crash).unwrap();
    let grow = common::repo_root().join("fixtures/procs/grow.py");
    let leaky = json!({"name": "leaky", "command": "python3", "args": [grow], "env": {"STEP_MB": "4"},
        "health": {"command": ["true"], "interval": "100ms"}, "leak": {"window": "1s", "minGrowth": "8MB"}});
    sidecar.request("nxops/process/start", leaky).unwrap();
    // A daemon record pointing at a process that is no Nx daemon, for the maintenance example
    // (written now, so that no example before has tidied it first).
    let mut impostor = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::create_dir_all(ws.join(".nx/workspace-data/d")).unwrap();
    std::fs::write(
        ws.join(".nx/workspace-data/d/server-process.json"),
        format!(r#"{{"processId": {}}}"#, impostor.id()),
    )
    .unwrap();
    for section in sections(&doc, "Notifications").iter().filter(|s| s.name.starts_with("nxops/")) {
        let documented: Value = serde_json::from_str(block(section, "notification")).unwrap();
        let real = sidecar.notification(&section.name);
        if let Err(diff) = same_shape(&documented, &real, &section.name) {
            panic!("docs/protocol.md disagrees with the code: {diff}\nreal notification: {real:#}");
        }
    }
    assert!(impostor.try_wait().unwrap().is_none(), "maintenance removes a stale record, never the process");
    let _ = impostor.kill();
    let _ = impostor.wait();
}
