//! The MCP pool against a real server (@modelcontextprotocol/server-memory from
//! npm): warm connections, affinity, growth to max with queueing, idle shrink,
//! replacement of a dead connection, and no process left after shutdown.

mod common;

use std::time::{Duration, Instant};

use nxops::mcp::config::{PoolSettings, Sharing};
use nxops::mcp::conn::Launch;
use nxops::mcp::pool::{Pool, PoolError};
use serde_json::json;

fn memory(dir: &tempfile::TempDir) -> Launch {
    let server =
        common::repo_root().join("fixtures/mcp/node_modules/@modelcontextprotocol/server-memory/dist/index.js");
    assert!(server.exists(), "the MCP fixtures are not installed: run fixtures/mcp/setup.sh (scripts/test does)");
    Launch {
        server: "memory".into(),
        command: "node".into(),
        args: vec![server.display().to_string()],
        env: [("MEMORY_FILE_PATH".to_string(), dir.path().join("memory.jsonl").display().to_string())].into(),
        cwd: dir.path().to_path_buf(),
    }
}

fn settings(min_idle: usize, max: usize, idle_timeout_ms: u64, acquire_timeout_ms: u64) -> PoolSettings {
    PoolSettings {
        min_idle,
        max,
        idle_timeout: Duration::from_millis(idle_timeout_ms),
        acquire_timeout: Duration::from_millis(acquire_timeout_ms),
        health_interval: Duration::from_millis(200),
        sharing: Sharing::Stateless,
    }
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_connections_affinity_and_queueing() {
    let dir = tempfile::tempdir().unwrap();
    let sup = common::supervisor(&dir);
    let pool = Pool::start(sup, memory(&dir), settings(1, 2, 60_000, 600));
    until("one connection is warm", || pool.view().idle == 1).await;

    // A new session gets the warm connection at once, and keeps it.
    let asked = Instant::now();
    let a = pool.acquire("session-a").await.unwrap();
    assert!(asked.elapsed() < Duration::from_millis(50), "warm: {:?}", asked.elapsed());
    let tools = a.forward("tools/list", json!({}), Duration::from_secs(10)).await.unwrap();
    assert!(tools["result"]["tools"].as_array().unwrap().iter().any(|t| t["name"] == "create_entities"), "{tools}");
    assert_eq!(pool.acquire("session-a").await.unwrap().id, a.id, "affinity");

    // A second session never shares a's connection: the pool grows to max.
    let b = pool.acquire("session-b").await.unwrap();
    assert_ne!(b.id, a.id);
    let view = pool.view();
    assert_eq!((view.busy, view.warm_acquires), (2, 1), "{view:?}");

    // At max, a third session waits: it gets the connection a releases, else a clear error.
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire("session-c").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    pool.release("session-a");
    let c = waiting.await.unwrap().unwrap();
    assert_eq!(c.id, a.id, "the freed connection, warm");
    let busy = pool.acquire("session-d").await.err().unwrap();
    assert!(matches!(busy, PoolError::Busy { max: 2, .. }), "{busy}");
    assert_eq!(busy.to_string(), "all 2 connections of the MCP server \"memory\" are busy; waited 600ms");

    let pids: Vec<u32> = [b.pid, c.pid].into();
    pool.shutdown().await;
    assert!(pids.iter().all(|p| !common::alive(*p)), "no server process left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_shrink_and_dead_ones_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let sup = common::supervisor(&dir);
    let pool = Pool::start(sup, memory(&dir), settings(1, 3, 300, 5_000));
    until("one connection is warm", || pool.view().idle == 1).await;
    let a = pool.acquire("a").await.unwrap();
    let b = pool.acquire("b").await.unwrap();
    pool.release("a");
    pool.release("b");
    assert_eq!(pool.view().idle, 2);
    until("idle connections shrink back to min_idle", || pool.view().idle == 1).await;
    until("the expired connection's process is gone", || !common::alive(a.pid) || !common::alive(b.pid)).await;
    assert!(common::alive(a.pid) || common::alive(b.pid), "min_idle stays warm");

    // A warm connection whose server dies is replaced by a fresh one.
    let warm = pool.acquire("c").await.unwrap();
    pool.release("c");
    // A signal, not a `kill` process: the in-process supervisor reaps every child of this test
    // process, so `Command::status` on one can fail with ECHILD (what made this test flaky).
    let pid = rustix::process::Pid::from_raw(warm.pid as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill -KILL the warm server");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view = pool.view();
        if view.replaced >= 1 && view.idle == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the dead connection {} is not replaced: {view:?}", warm.id);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fresh = pool.acquire("d").await.unwrap();
    assert_ne!(fresh.id, warm.id);
    assert!(fresh.forward("tools/list", json!({}), Duration::from_secs(10)).await.unwrap()["result"].is_object());
    pool.shutdown().await;
    assert!(!common::alive(fresh.pid));
}

/// The pool's health check in flight while a client takes and returns the
/// connection: the client's release neither cancels the check nor holds the
/// connection back as busy, and when the server then dies the pool counts the
/// replacement (a CI run once lost it: the connection was "draining" for the
/// check's ping and left the pool uncounted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_during_a_health_check_returns_the_connection_and_a_death_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::repo_root().join("fixtures/mcp/stubborn-server.py");
    let launch = Launch {
        server: "stubborn".into(),
        command: "python3".into(),
        args: vec![server.display().to_string()],
        env: [("STUBBORN_PING_MS".to_string(), "700".to_string())].into(),
        cwd: dir.path().to_path_buf(),
    };
    let settings = PoolSettings { health_interval: Duration::from_millis(1_500), ..settings(1, 2, 60_000, 5_000) };
    let pool = Pool::start(common::supervisor(&dir), launch, settings);
    let conn = pool.acquire("a").await.unwrap();
    pool.release("a");
    let pinged =
        |conn: &nxops::mcp::conn::Connection, what: &str| conn.stderr.tail(50).iter().any(|l| l.contains(what));
    until("the pool's health check is in flight", || pinged(&conn, "received")).await;

    let again = pool.acquire("b").await.unwrap();
    assert_eq!(again.id, conn.id, "the idle connection, though its health check is running");
    pool.release("b");
    let view = pool.view();
    assert_eq!((view.idle, view.busy), (1, 0), "released straight back to idle: {view:?}");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!pinged(&conn, "cancelled"), "the release cancelled the pool's own ping: {:?}", conn.stderr.tail(50));
    assert_eq!(pool.view().replaced, 0, "a slow ping within its time is healthy");

    let pid = rustix::process::Pid::from_raw(conn.pid as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill -KILL the server");
    until("the dead connection is counted and replaced", || {
        let view = pool.view();
        view.replaced == 1 && view.idle == 1
    })
    .await;
    pool.shutdown().await;
}

/// Live processes whose environment names this test's memory file.
fn servers_of(dir: &tempfile::TempDir) -> Vec<u32> {
    let marker = format!("MEMORY_FILE_PATH={}", dir.path().join("memory.jsonl").display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| common::alive(*pid))
        .filter(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            environ.split(|b| *b == 0).any(|v| v == marker.as_bytes())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_warm_up_leaves_no_server_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::start(common::supervisor(&dir), memory(&dir), settings(2, 4, 60_000, 5_000));
    until("a warm-up has started", || pool.view().opening > 0).await;
    pool.shutdown().await;
    // At once: a sidecar exits right after its pools' shutdown returns.
    assert!(servers_of(&dir).is_empty(), "left: {:?}", servers_of(&dir));
}

/// By default (one session per server process) a released connection is
/// parked for its own key: the same key gets it back, another key never does,
/// and it ends after `idle_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_connection_serves_only_its_own_session_again() {
    let dir = tempfile::tempdir().unwrap();
    let sup = common::supervisor(&dir);
    let one_session = PoolSettings { sharing: Sharing::OneSession, ..settings(1, 3, 1_000, 5_000) };
    let pool = Pool::start(sup, memory(&dir), one_session);
    until("one connection is warm", || pool.view().idle == 1).await;
    let a = pool.acquire("a").await.unwrap();
    pool.release("a");
    assert_eq!((pool.view().parked, pool.view().busy), (1, 0));
    let b = pool.acquire("b").await.unwrap();
    assert_ne!(b.id, a.id, "another session got a used connection");
    assert_eq!(pool.acquire("a").await.unwrap().id, a.id, "the session's own connection, back");
    pool.release("a");
    until("the parked connection ends after idle_timeout", || !common::alive(a.pid)).await;
    pool.shutdown().await;
    assert!(!common::alive(b.pid));
}

/// A cold start slower than `acquireTimeout` says so; it does not claim that
/// every connection is busy when none is leased (issue 19, item 7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_cold_start_is_not_reported_as_busy() {
    let dir = tempfile::tempdir().unwrap();
    let mcp = common::repo_root().join("fixtures/mcp");
    let launch = Launch {
        server: "stateful".into(),
        command: mcp.join(".venv/bin/python").display().to_string(),
        args: vec![mcp.join("stateful_server.py").display().to_string()],
        env: Default::default(),
        cwd: dir.path().to_path_buf(),
    };
    // A Python SDK server takes hundreds of milliseconds to start; the caller waits 20 ms.
    let pool = Pool::start(common::supervisor(&dir), launch, settings(1, 4, 60_000, 20));
    until("the warm-up has started", || pool.view().opening == 1).await;
    let err = pool.acquire("a").await.err().expect("no connection within 20 ms");
    assert!(matches!(err, PoolError::Starting { opening: 1, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "the MCP server \"stateful\" is still starting (1 connection(s) opening, none free); waited 20ms"
    );
    until("the warm-up finishes", || pool.view().idle == 1).await;
    pool.shutdown().await;
}
