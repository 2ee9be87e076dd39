//! docs/protocol.md and the code agree: the same methods and notifications (in
//! the code and as a real sidecar advertises them), each documented example
//! answered by a real sidecar with the documented shape, and every `nxops/...`
//! name any other doc mentions is one of them.

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

fn protocol_doc() -> String {
    std::fs::read_to_string(common::repo_root().join("docs/protocol.md")).unwrap()
}

/// The names of the `### \`name\`` sections under `## {heading}`.
fn documented(doc: &str, heading: &str) -> BTreeSet<String> {
    sections(doc, heading).into_iter().map(|s| s.name).collect()
}

/// Every notification the code sends: the broadcast events, the targeted ones, the outbox's
/// notice of dropped events, and LSP's progress.
fn code_notifications() -> BTreeSet<String> {
    let mut code: BTreeSet<String> = nxops::sidecar::core::EVENTS
        .iter()
        .chain(nxops::sidecar::core::TARGETED)
        .map(|e| format!("nxops/{e}"))
        .collect();
    code.insert(nxops::rpc::outbox::EVENTS_DROPPED.into());
    code.insert("$/progress".into());
    code
}

/// Notifications no subscription asks for (sent to one lessee, to a connection that fell behind,
/// or for a request's progress), which initialize does not advertise.
fn not_subscribable() -> BTreeSet<String> {
    let targeted = nxops::sidecar::core::TARGETED.iter().map(|e| format!("nxops/{e}"));
    targeted.chain([nxops::rpc::outbox::EVENTS_DROPPED.to_string(), "$/progress".to_string()]).collect()
}

#[test]
fn every_method_and_event_is_documented_and_nothing_else() {
    let doc = protocol_doc();
    let code: BTreeSet<String> = nxops::sidecar::methods::METHODS.iter().map(|m| m.name.to_string()).collect();
    assert_eq!(documented(&doc, "Methods"), code, "methods in docs/protocol.md vs the code");
    assert_eq!(
        documented(&doc, "Notifications"),
        code_notifications(),
        "notifications in docs/protocol.md vs the code"
    );
}

#[test]
fn the_sidecar_advertises_exactly_the_documented_methods_and_events() {
    let doc = protocol_doc();
    let s = Scratch::new();
    let ws = s.spaces.path().join("plain");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("nx.json"), "{}").unwrap();
    let mut sidecar = Sidecar::start(&s, &ws, &[]);
    let advertised = &sidecar.initialize(&ws)["capabilities"]["experimental"]["nxops"];
    let names = |key: &str, prefix: &str| -> BTreeSet<String> {
        let list = advertised[key].as_array().unwrap_or_else(|| panic!("no {key} in {advertised}"));
        list.iter().map(|n| format!("{prefix}{}", n.as_str().unwrap())).collect()
    };
    assert_eq!(names("methods", ""), documented(&doc, "Methods"), "initialize's methods vs docs/protocol.md");
    // Subscribable events are advertised; the others are documented besides.
    let mut expected = documented(&doc, "Notifications");
    expected.retain(|n| !not_subscribable().contains(n));
    assert_eq!(names("events", "nxops/"), expected, "initialize's events vs docs/protocol.md");
    sidecar.request("shutdown", Value::Null).unwrap();
    sidecar.notify("exit", Value::Null);
    assert!(sidecar.wait().success());
}

/// The `nxops/...` names a doc mentions, with their line (`@nxops/nx-plugin` and paths such as
/// `state/nxops/workspaces` are not names: the character before must not be `@`, `/`, `.`, `-`
/// or a letter).
fn mentioned_names(doc: &str) -> Vec<(usize, String)> {
    let mut names = Vec::new();
    for (i, line) in doc.lines().enumerate() {
        for (at, _) in line.match_indices("nxops/") {
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || "@/.-_".contains(c)) {
                continue;
            }
            let name: String =
                line[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || "/*|".contains(*c)).collect();
            // `nxops/` alone is the prefix, no name.
            if name != "nxops/" {
                names.push((i + 1, name.trim_end_matches(['/', '|']).to_string()));
            }
        }
    }
    names
}

/// Whether `name` is a method or notification of `known`: `nxops/cache/*` names a family that must
/// exist, `nxops/mcp/servers|request|release` each of its alternatives.
fn names_known(name: &str, known: &BTreeSet<String>) -> bool {
    if let Some(prefix) = name.strip_suffix('*') {
        return known.iter().any(|k| k.starts_with(prefix));
    }
    let (stem, last) = name.rsplit_once('/').unwrap_or(("", name));
    last.split('|').all(|alternative| known.contains(&format!("{stem}/{alternative}")))
}

/// The names each Markdown file mentions that are neither a method nor a notification.
fn unknown_names(files: &[(String, String)], known: &BTreeSet<String>) -> Vec<String> {
    let mut unknown = Vec::new();
    for (file, doc) in files {
        for (line, name) in mentioned_names(doc) {
            if !names_known(&name, known) {
                unknown.push(format!("{file}:{line}: {name}"));
            }
        }
    }
    unknown
}

fn known_names() -> BTreeSet<String> {
    let methods = nxops::sidecar::methods::METHODS.iter().map(|m| m.name.to_string());
    methods.chain(code_notifications()).collect()
}

#[test]
fn every_method_or_event_any_doc_names_exists() {
    let out = std::process::Command::new("git")
        .args(["ls-files", "-z", "--", "*.md"])
        .current_dir(common::repo_root())
        .output()
        .unwrap();
    let files: Vec<(String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(|f| (f.to_string(), std::fs::read_to_string(common::repo_root().join(f)).unwrap()))
        .collect();
    let mentioned: usize = files.iter().map(|(_, d)| mentioned_names(d).len()).sum();
    assert!(mentioned > 100, "only {mentioned} nxops/ names found in the docs: the scan broke");
    let unknown = unknown_names(&files, &known_names());
    assert!(unknown.is_empty(), "the docs name methods or events that do not exist:\n{}", unknown.join("\n"));
}

#[test]
fn a_method_or_event_that_is_gone_is_reported() {
    let doc = "Call `nxops/cache/stats` or `nxops/cache/purge` (see `nxops/cache/*`, `nxops/gone/*`),\n\
               `nxops/mcp/servers|request|lease`, `@nxops/nx-plugin`, `~/.local/state/nxops/workspaces` \
               and `nxops/processVanished`.";
    let unknown = unknown_names(&[("doc.md".into(), doc.into())], &known_names());
    assert_eq!(
        unknown,
        [
            "doc.md:1: nxops/cache/purge",
            "doc.md:1: nxops/gone/*",
            "doc.md:2: nxops/mcp/servers|request|lease",
            "doc.md:2: nxops/processVanished"
        ]
    );
}

#[test]
fn documented_examples_get_documented_answers() {
    let doc = protocol_doc();
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
    // nxops/eventsDropped takes a client that stops reading while 1,024 events queue; the
    // outbox's own tests provoke it.
    let provoked = |name: &str| name.starts_with("nxops/") && name != nxops::rpc::outbox::EVENTS_DROPPED;
    for section in sections(&doc, "Notifications").iter().filter(|s| provoked(&s.name)) {
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
