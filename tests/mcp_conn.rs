//! One MCP connection against real servers from the registries (fixtures/mcp):
//! both protocol eras, requests, health, a crash mid-call, and teardown of a
//! server that ignores stdin EOF and SIGTERM.

mod common;

use std::time::{Duration, Instant};

use nxops::mcp::conn::{ConnError, Connection, Era, Launch};
use serde_json::json;

fn mcp(path: &str) -> String {
    common::repo_root().join("fixtures/mcp").join(path).display().to_string()
}

fn require_servers() {
    let marker = common::repo_root().join("fixtures/mcp/.venv/bin/mcp-server-time");
    assert!(marker.exists(), "the MCP fixtures are not installed: run fixtures/mcp/setup.sh (scripts/test does)");
}

fn launch(server: &str, command: &str, args: &[&str], cwd: &std::path::Path) -> Launch {
    Launch {
        server: server.into(),
        command: command.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Default::default(),
        cwd: cwd.to_path_buf(),
    }
}

fn gone(pid: u32) -> bool {
    !common::alive(pid)
}

async fn tool_names(conn: &Connection) -> Vec<String> {
    let answer = conn.forward("tools/list", json!({}), Duration::from_secs(10)).await.unwrap();
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_server_speaks_the_legacy_era_after_refusing_the_probe() {
    require_servers();
    let dir = tempfile::tempdir().unwrap();
    let sup = common::supervisor(&dir);
    let everything = launch(
        "everything",
        "node",
        &[&mcp("node_modules/@modelcontextprotocol/server-everything/dist/index.js"), "stdio"],
        dir.path(),
    );
    let conn = Connection::open(&sup, &everything, None).await.unwrap();
    assert_eq!(conn.era(), Era::Legacy);
    assert_eq!(conn.hello()["serverInfo"]["name"], "mcp-servers/everything", "{}", conn.hello());
    assert!(tool_names(&conn).await.contains(&"echo".to_string()));
    let echo = conn
        .forward("tools/call", json!({"name": "echo", "arguments": {"message": "hello"}}), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(echo["result"]["content"][0]["text"], "Echo: hello", "{echo}");
    assert!(conn.healthy(Duration::from_secs(5)).await);
    let pid = conn.pid;
    conn.close(&sup).await;
    assert!(gone(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_server_speaks_the_modern_era_and_its_legacy_era_on_a_fresh_process() {
    require_servers();
    let dir = tempfile::tempdir().unwrap();
    let sup = common::supervisor(&dir);
    let time = launch("time", &mcp(".venv/bin/mcp-server-time"), &["--local-timezone", "Etc/UTC"], dir.path());
    let conn = Connection::open(&sup, &time, None).await.unwrap();
    assert_eq!(conn.era(), Era::Modern, "{}", conn.hello());
    assert!(conn.hello()["supportedVersions"].as_array().unwrap().contains(&json!("2026-07-28")));
    assert!(tool_names(&conn).await.contains(&"get_current_time".to_string()));
    assert!(conn.healthy(Duration::from_secs(5)).await);
    conn.close(&sup).await;

    // Told it is legacy, the connection skips the probe and initializes a fresh process.
    let legacy = Connection::open(&sup, &time, Some(Era::Legacy)).await.unwrap();
    assert_eq!(legacy.era(), Era::Legacy);
    assert_eq!(legacy.hello()["serverInfo"]["name"], "mcp-time");
    assert!(tool_names(&legacy).await.contains(&"get_current_time".to_string()));
    legacy.close(&sup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_call_is_an_error_and_a_stubborn_tree_is_still_ended() {
    require_servers();
    let dir = tempfile::tempdir().unwrap();
    let sup = common::supervisor(&dir);
    let stubborn = launch("stubborn", &mcp("stubborn.sh"), &[], dir.path());
    let conn = Connection::open(&sup, &stubborn, None).await.unwrap();
    assert_eq!(conn.era(), Era::Legacy);
    let pids =
        conn.forward("tools/call", json!({"name": "pid", "arguments": {}}), Duration::from_secs(10)).await.unwrap();
    let server_pid = pids["result"]["structuredContent"]["pid"].as_u64().unwrap() as u32;
    assert_ne!(server_pid, conn.pid, "behind sh -c");

    // Closing waits for stdin EOF, then SIGTERM, then SIGKILL: the grandchild goes too.
    let started = Instant::now();
    conn.close(&sup).await;
    assert!(gone(conn.pid) && gone(server_pid), "both ended after {:?}", started.elapsed());

    // A server that dies in the middle of a call: the caller learns at once.
    let conn = Connection::open(&sup, &stubborn, Some(Era::Legacy)).await.unwrap();
    let asked = Instant::now();
    let crashed =
        conn.forward("tools/call", json!({"name": "crash", "arguments": {"code": 7}}), Duration::from_secs(10)).await;
    assert!(matches!(crashed, Err(ConnError::Died { .. })), "{crashed:?}");
    assert!(asked.elapsed() < Duration::from_secs(5));
    let again = conn.forward("tools/list", json!({}), Duration::from_secs(5)).await;
    assert!(matches!(again, Err(ConnError::Died { .. })), "{again:?}");
    conn.close(&sup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_is_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let sup = common::supervisor(&dir);
    let nothing = launch("nothing", "/nonexistent/mcp-server", &[], dir.path());
    let err = Connection::open(&sup, &nothing, None).await.err().unwrap();
    assert!(err.to_string().starts_with("cannot start the MCP server \"nothing\": /nonexistent/mcp-server"), "{err}");
}
