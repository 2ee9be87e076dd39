//! Faults that used to freeze a workspace's owner, run against a real owner
//! with real followers, socket clients and crash-looping processes: clients
//! that subscribe and stop reading (1 to 16, the owner's own stdio client among
//! them), a client that reads a byte a second, a session restarted or closed
//! that is not open, an owner stopped with SIGSTOP, and an owner that detaches
//! with followers waiting. In every case each request of a healthy client is
//! answered within 2 s, crashed processes keep being restarted, and SIGTERM
//! ends the owner within its stop timeout plus 1 s.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, Sidecar, SocketClient, owner_socket};
use serde_json::{Value, json};

/// Every answer a healthy client waits for must come within this.
const ANSWER_LIMIT: Duration = Duration::from_secs(2);
/// The owner's process stop timeout in these tests (`processes.stopTimeout`).
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// A crash-looping process that floods subscribers with events (2 ms of backoff).
fn flood(name: &str) -> Value {
    json!({"name": name, "command": "sh", "args": ["-c", "exit 3"], "restart": "always",
        "maxRestarts": 1_000_000, "restartWindow": "1s", "detached": true,
        "backoff": {"initial": "2ms", "factor": 1.0, "max": "2ms"}})
}

/// A crash-looping process on a steady schedule: a run of 50 ms, then 50 ms of backoff.
fn steady() -> Value {
    json!({"name": "steady", "command": "sh", "args": ["-c", "sleep 0.05; exit 3"], "restart": "always",
        "maxRestarts": 1_000_000, "restartWindow": "1s", "detached": true,
        "backoff": {"initial": "50ms", "factor": 1.0, "max": "50ms"}})
}

/// An owner started as a raw process: we write to its stdin, and its stdout is
/// read only when `read` (else it is the owner's own stalled client).
struct RawOwner {
    child: Child,
    stdin: std::process::ChildStdin,
    home: PathBuf,
}

impl RawOwner {
    fn start(scratch: &Scratch, ws: &Path) -> RawOwner {
        let mut cmd = scratch.nxops(ws);
        cmd.args(["serve", "--stdio"])
            .env("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        RawOwner { child, stdin, home: scratch.home().to_path_buf() }
    }

    fn send(&mut self, message: Value) {
        let body = serde_json::to_vec(&message).unwrap();
        let mut bytes = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        bytes.extend(body);
        self.stdin.write_all(&bytes).unwrap();
    }

    /// Initializes on `ws` (and never reads an answer).
    fn initialize(&mut self, ws: &Path) {
        self.send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": null,
            "rootUri": format!("file://{}", ws.display()), "capabilities": {}, "clientInfo": {"name": "stalled-editor"}}}));
        self.send(json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}));
    }

    /// Subscribes to every event, still never reading.
    fn subscribe(&mut self) {
        self.send(json!({"jsonrpc": "2.0", "id": 2, "method": "nxops/subscribe", "params": {"events": events()}}));
    }

    /// SIGTERM, then the time until it exited (None: not within 10 s).
    fn terminate(&mut self) -> Option<Duration> {
        signal(self.child.id(), "TERM");
        let sent = Instant::now();
        while sent.elapsed() < Duration::from_secs(10) {
            if self.child.try_wait().unwrap().is_some() {
                return Some(sent.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

impl Drop for RawOwner {
    fn drop(&mut self) {
        signal(self.child.id(), "CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
        common::kill_supervised(&self.home);
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).stderr(Stdio::null()).status();
}

fn events() -> Value {
    json!([
        "processStarted",
        "processExited",
        "processFailure",
        "processRestarted",
        "healthCheck",
        "sessionOpened",
        "sessionClosed",
        "ownershipChanged",
        "maintenance"
    ])
}

/// Waits until the workspace has an owner answering on its socket; returns the socket.
fn wait_for_owner(scratch: &Scratch, ws: &Path) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = scratch.nxops(ws).args(["--json", "call", "nxops/status"]).output().unwrap();
        if out.status.success() {
            let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if let Some(socket) = status["workspaces"][0]["role"]["socket"].as_str() {
                return PathBuf::from(socket);
            }
        }
        assert!(Instant::now() < deadline, "no owner answered for {}", ws.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A socket client that subscribes to everything and then never reads.
fn stalled_subscriber(socket: &Path) -> SocketClient {
    let mut client = SocketClient::connect(socket, false);
    client.handshake("stalled-subscriber");
    client.send_request("nxops/subscribe", json!({"events": events()}));
    client
}

fn restarts_of(list: &Value, name: &str) -> u64 {
    let process = list["processes"].as_array().unwrap().iter().find(|p| p["name"] == name);
    process.and_then(|p| p["restarts"].as_u64()).unwrap_or_else(|| panic!("no restarts for {name} in {list}"))
}

/// Asks `method` every 50 ms for `span`; returns the slowest answer. Fails on an error or a late answer.
fn slowest_answer(client: &mut SocketClient, method: &str, span: Duration) -> Duration {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    while started.elapsed() < span {
        let asked = Instant::now();
        let answer = client.request_within(method, json!({}), ANSWER_LIMIT);
        let took = asked.elapsed();
        match answer {
            Some(Ok(_)) => {}
            Some(Err(err)) => panic!("{method} failed: {err}"),
            None => panic!("{method} not answered within {ANSWER_LIMIT:?}"),
        }
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(50));
    }
    slowest
}

/// The owner's own stdio client and `stalled - 1` socket clients subscribe and stop
/// reading while two processes crash-loop with no backoff.
fn stalled_readers_cost_only_themselves(stalled: usize) {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let mut owner = RawOwner::start(&scratch, &ws);
    owner.initialize(&ws);
    let socket = wait_for_owner(&scratch, &ws);
    let mut healthy = SocketClient::connect(&socket, true);
    healthy.handshake("healthy");
    for spec in [flood("flood-a"), flood("flood-b"), steady()] {
        healthy.request("nxops/process/start", spec).expect("start");
    }
    // A follower sidecar with an editor of its own, which also relays every event.
    let mut follower = Sidecar::start(&scratch, &ws, &[]);
    follower.initialize(&ws);
    follower.request("nxops/subscribe", json!({"events": ["processRestarted"]})).unwrap();
    let restarts =
        |healthy: &mut SocketClient| restarts_of(&healthy.request("nxops/process/list", json!({})).unwrap(), "steady");

    // The schedule with the same load and nobody stalled, for comparison.
    std::thread::sleep(Duration::from_millis(500));
    let start = restarts(&mut healthy);
    let calm = slowest_answer(&mut healthy, "nxops/status", Duration::from_secs(3));
    let unstalled = restarts(&mut healthy) - start;

    owner.subscribe();
    let _stallers: Vec<SocketClient> = (1..stalled).map(|_| stalled_subscriber(&socket)).collect();
    // Long enough for every stalled peer's buffers to fill many times over.
    std::thread::sleep(Duration::from_secs(1));
    let before = restarts(&mut healthy);
    let slowest = slowest_answer(&mut healthy, "nxops/status", Duration::from_secs(3));
    let asked = Instant::now();
    let forwarded = follower.request("nxops/process/list", json!({})).expect("forwarded list");
    assert!(asked.elapsed() < ANSWER_LIMIT, "a forwarded request took {:?}", asked.elapsed());
    let during = restarts_of(&forwarded, "steady") - before;
    eprintln!(
        "{stalled} stalled: slowest nxops/status {slowest:?} ({calm:?} before); steady restarted {during} times in 3 s \
         ({unstalled} before); health: {}",
        sessions_reasons(&healthy.request("nxops/health", json!({})).unwrap())
    );
    // On schedule: as often as with nobody stalled, give or take the machine's noise.
    assert!(during * 2 >= unstalled && during >= 3, "steady restarted {during} times in 3 s, {unstalled} before");

    let exited = owner.terminate().expect("the owner exits after SIGTERM");
    assert!(exited <= STOP_TIMEOUT + Duration::from_secs(1), "SIGTERM took {exited:?} with {stalled} stalled readers");
}

#[test]
fn one_stalled_reader_costs_only_itself() {
    stalled_readers_cost_only_themselves(1);
}

#[test]
fn two_stalled_readers_cost_only_themselves() {
    stalled_readers_cost_only_themselves(2);
}

#[test]
fn four_stalled_readers_cost_only_themselves() {
    stalled_readers_cost_only_themselves(4);
}

#[test]
fn eight_stalled_readers_cost_only_themselves() {
    stalled_readers_cost_only_themselves(8);
}

#[test]
fn sixteen_stalled_readers_cost_only_themselves() {
    stalled_readers_cost_only_themselves(16);
}

/// A subscriber that reads one byte a second loses events and is told how
/// many, once it catches up; the others are not slowed down.
#[test]
fn a_slow_reader_loses_events_and_is_told() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let mut owner = Sidecar::start(&scratch, &ws, &[("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")]);
    owner.initialize(&ws);
    let socket = owner_socket(&owner.request("nxops/status", json!({})).unwrap());
    let mut slow = SocketClient::connect(&socket, false);
    slow.handshake("slow");
    slow.send_request("nxops/subscribe", json!({"events": events()}));
    owner.request("nxops/process/start", flood("flood")).unwrap();
    let mut healthy = SocketClient::connect(&socket, true);
    healthy.handshake("healthy");
    // One byte a second for 4 s, while the flood goes on.
    let mut reader = slow.stream.try_clone().unwrap();
    let mut first = Vec::new();
    for _ in 0..4 {
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut reader, &mut byte).unwrap();
        first.push(byte[0]);
        let slowest = slowest_answer(&mut healthy, "nxops/status", Duration::from_secs(1));
        assert!(slowest < ANSWER_LIMIT);
    }
    owner.request("nxops/process/stop", json!({"name": "flood"})).unwrap();
    // Now it reads everything: the rest of the first frame, then frames until
    // the count of what it lost.
    reader.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buffered = std::io::BufReader::new(reader);
    while !first.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut buffered, &mut byte).unwrap();
        first.push(byte[0]);
    }
    let header = String::from_utf8(first).unwrap();
    let length: usize = header.trim().strip_prefix("Content-Length:").unwrap().trim().parse().unwrap();
    std::io::Read::read_exact(&mut buffered, &mut vec![0; length]).unwrap();
    let told = loop {
        let Some(message) = common::read_frame(&mut buffered) else { panic!("no nxops/eventsDropped") };
        if message["method"] == "nxops/eventsDropped" {
            break message;
        }
    };
    assert!(told["params"]["dropped"].as_u64().unwrap() > 0, "{told}");
    assert!(told["params"]["total"].as_u64().unwrap() >= told["params"]["dropped"].as_u64().unwrap());
    // The loss is counted in health.
    let reasons = sessions_reasons(&owner.request("nxops/health", json!({})).unwrap());
    assert!(reasons.contains("dropped for clients that read too slowly"), "{reasons}");
}

/// The health report's reasons for the sessions component, as one line.
fn sessions_reasons(report: &Value) -> String {
    let components = report["components"].as_array().expect("components");
    let sessions = components.iter().find(|c| c["name"] == "sessions").expect("a sessions component");
    sessions["reasons"].as_array().unwrap().iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; ")
}

/// Restart and close of sessions that are not open (never were, being closed,
/// already closed) answer -32602 naming the session, and nothing hangs after.
#[test]
fn unknown_sessions_are_refused_and_freeze_nothing() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let mut owner = Sidecar::start(&scratch, &ws, &[("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")]);
    owner.initialize(&ws);
    // A typo of a session that does exist.
    owner.request("nxops/session/open", json!({"name": "e2e"})).unwrap();
    for method in ["nxops/session/restart", "nxops/session/close", "nxops/session/heartbeat"] {
        let err = owner.request(method, json!({"session": "e2f"})).unwrap_err();
        assert_eq!(err["code"], -32602, "{method}: {err}");
        assert!(err["message"].as_str().unwrap().contains("\"e2f\""), "{method}: {err}");
    }
    // Closed, then restarted and closed again.
    owner.request("nxops/session/close", json!({"session": "e2e"})).unwrap();
    assert_eq!(owner.request("nxops/session/restart", json!({"session": "e2e"})).unwrap_err()["code"], -32602);
    assert_eq!(owner.request("nxops/session/close", json!({"session": "e2e"})).unwrap_err()["code"], -32602);
    // Being closed: a session whose process ignores SIGTERM takes its stop timeout to close.
    owner.request("nxops/session/open", json!({"name": "slow"})).unwrap();
    owner
        .request(
            "nxops/process/start",
            json!({"name": "stubborn", "session": "slow", "command": "sh",
                "args": ["-c", "trap '' TERM; sleep 1000"], "stopTimeout": "1s"}),
        )
        .unwrap();
    let mut other = SocketClient::connect(&owner_socket(&owner.request("nxops/status", json!({})).unwrap()), true);
    other.handshake("other");
    let closing = other.send_request("nxops/session/close", json!({"session": "slow"}));
    std::thread::sleep(Duration::from_millis(100));
    let during = owner.request("nxops/session/restart", json!({"session": "slow"})).unwrap_err();
    assert_eq!(during["code"], -32602, "{during}");
    // Every client is still answered, and the CLI too.
    let list = other.request_within("nxops/session/list", json!({}), ANSWER_LIMIT).expect("list answered");
    assert!(list.is_ok());
    let _ = closing;
    let out = scratch.nxops(&ws).args(["--json", "session", "list"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A client that restarts its own session and then ends its input leaves a working owner.
    let mut own = SocketClient::connect(&owner_socket(&owner.request("nxops/status", json!({})).unwrap()), true);
    own.handshake("own");
    let _ = own.request("nxops/session/restart", json!({}));
    drop(own);
    assert!(owner.request("nxops/session/list", json!({})).is_ok());
    let status = owner.request("nxops/status", json!({})).unwrap();
    assert_eq!(status["workspaces"][0]["role"]["kind"], "owner");
}

/// A SIGSTOPped owner: a follower's forwarded request fails with -32004 within
/// the liveness bound, the follower reports the owner unresponsive, and after
/// SIGCONT everything answers again.
#[test]
fn a_stopped_owner_is_reported_and_requests_fail_fast() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let owner = Sidecar::started(&scratch, &ws);
    let mut follower = Sidecar::started(&scratch, &ws);
    let view = follower.request("nxops/status", json!({})).unwrap();
    assert_eq!(view["workspaces"][0]["role"]["kind"], "follower");
    follower.request("nxops/process/list", json!({})).expect("forwarded before the stop");

    signal(owner.pid(), "STOP");
    let asked = Instant::now();
    let err = follower.request("nxops/process/list", json!({})).unwrap_err();
    let took = asked.elapsed();
    assert_eq!(err["code"], -32004, "{err}");
    assert!(took < Duration::from_secs(5), "-32004 after {took:?}");
    let role = follower.request("nxops/status", json!({})).unwrap()["workspaces"][0]["role"].clone();
    assert_eq!(role["responsive"], false, "{role}");
    // Failing fast now, not after another wait.
    let asked = Instant::now();
    assert_eq!(follower.request("nxops/cache/stats", json!({})).unwrap_err()["code"], -32004);
    assert!(asked.elapsed() < Duration::from_millis(500));

    // The CLI says so too, instead of hanging.
    let asked = Instant::now();
    let out = scratch.nxops(&ws).args(["proc", "list"]).output().unwrap();
    assert!(!out.status.success(), "the CLI succeeded against a stopped owner");
    assert!(asked.elapsed() < Duration::from_secs(8), "the CLI took {:?}", asked.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did not answer") || stderr.contains("stopped answering"), "{stderr}");

    signal(owner.pid(), "CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if follower.request("nxops/process/list", json!({})).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the follower never used the owner again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let role = follower.request("nxops/status", json!({})).unwrap()["workspaces"][0]["role"].clone();
    assert_eq!(role["responsive"], true, "{role}");
}

/// An owner that detaches the workspace (by request, or with the folder removed
/// from the editor) hands it to a waiting follower, which owns it within a
/// moment of the old owner's processes stopping.
#[test]
fn a_detaching_owner_hands_over_to_a_follower() {
    for how in ["detach", "folders"] {
        let scratch = Scratch::new();
        let ws = scratch.workspace("ws", "none");
        let mut owner = Sidecar::start(&scratch, &ws, &[("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")]);
        owner.initialize(&ws);
        owner
            .request(
                "nxops/process/start",
                json!({"name": "sleeper", "command": "sleep", "args": ["1000"],
                "detached": true}),
            )
            .unwrap();
        let mut followers: Vec<Sidecar> = (0..2).map(|_| Sidecar::started(&scratch, &ws)).collect();
        for follower in &mut followers {
            let role = &follower.request("nxops/status", json!({})).unwrap()["workspaces"][0]["role"];
            assert_eq!(role["kind"], "follower");
        }
        let detached_at = Instant::now();
        if how == "detach" {
            owner.request("nxops/workspace/detach", json!({"path": ws})).unwrap();
        } else {
            let uri = format!("file://{}", ws.display());
            owner.notify(
                "workspace/didChangeWorkspaceFolders",
                json!({"event": {"added": [], "removed": [{"uri": uri, "name": "ws"}]}}),
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let new_owner = loop {
            let owners: Vec<usize> = (0..followers.len())
                .filter(|i| {
                    let status = followers[*i].request("nxops/status", json!({})).unwrap();
                    status["workspaces"][0]["role"]["kind"] == "owner"
                })
                .collect();
            if let [one] = owners.as_slice() {
                break *one;
            }
            assert!(owners.len() <= 1, "two owners");
            assert!(Instant::now() < deadline, "{how}: no follower took over");
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = detached_at.elapsed();
        eprintln!("{how}: a follower owns the workspace {took:?} after the detach");
        // The other follower follows the new owner, and its requests work.
        let other = 1 - new_owner;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let status = followers[other].request("nxops/status", json!({})).unwrap();
            let role = &status["workspaces"][0]["role"];
            if role["kind"] == "follower" && role["connected"] == true {
                assert_eq!(role["ownerPid"], followers[new_owner].pid());
                break;
            }
            assert!(Instant::now() < deadline, "{how}: the other follower never reconnected: {role}");
            std::thread::sleep(Duration::from_millis(20));
        }
        followers[other].request("nxops/process/list", json!({})).expect("forwarded to the new owner");
        // The detached process was stopped with its owner's workspace, not left behind.
        assert!(owner.request("nxops/status", json!({})).unwrap()["workspaces"].as_array().unwrap().is_empty());
    }
}

/// A client that takes no answers is cut off after the outbox's deadline (10 s
/// with an answer waiting and no byte accepted): on a socket its connection is
/// closed and its session is left to expire like a vanished client's; the
/// sidecar's own stdio client is treated as gone and the sidecar shuts down.
#[test]
fn a_client_that_takes_no_answers_is_disconnected() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    // The owner's own editor sends requests and never reads an answer.
    let mut owner = RawOwner::start(&scratch, &ws);
    owner.initialize(&ws);
    let socket = wait_for_owner(&scratch, &ws);
    let mut watcher = SocketClient::connect(&socket, true);
    watcher.handshake("watcher");
    let mut greedy = SocketClient::connect(&socket, false);
    greedy.handshake("greedy");
    let flood_started = Instant::now();
    // Far more answers than the socket and the pipe hold; sending stops when
    // the sidecar stops reading (it is busy waiting for us) or cuts us off.
    let mut asking = greedy.stream.try_clone().unwrap();
    let asker = std::thread::spawn(move || {
        for n in 0..3000 {
            let request = json!({"jsonrpc": "2.0", "id": n, "method": "nxops/session/list", "params": {}});
            if asking.write_all(&lsp_frame(&request)).is_err() {
                return;
            }
        }
    });
    let mut editor = owner.stdin.try_clone_pipe();
    let editor_asker = std::thread::spawn(move || {
        for n in 0..300 {
            let request = json!({"jsonrpc": "2.0", "id": 100 + n, "method": "nxops/status", "params": {}});
            if editor.write_all(&lsp_frame(&request)).is_err() {
                return;
            }
        }
    });
    // Meanwhile everyone else is answered at once.
    let slowest = slowest_answer(&mut watcher, "nxops/status", Duration::from_secs(3));
    assert!(slowest < ANSWER_LIMIT);
    // The socket client is cut off: reading it now drains what was sent, then ends.
    greedy.stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut drained = std::io::BufReader::new(greedy.stream.try_clone().unwrap());
    while common::read_frame(&mut drained).is_some() {}
    let cut_after = flood_started.elapsed();
    assert!(cut_after >= Duration::from_secs(9), "cut off after {cut_after:?}, before the deadline");
    // The sidecar whose own stdio client took no answers has shut down.
    let deadline = Instant::now() + Duration::from_secs(20);
    while owner.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the owner still runs though its editor takes no answers");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("socket client cut off after {cut_after:?}; the owner ended after {:?}", flood_started.elapsed());
    asker.join().unwrap();
    editor_asker.join().unwrap();
}

fn lsp_frame(message: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(message).unwrap();
    let mut bytes = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    bytes.extend(body);
    bytes
}

trait ClonePipe {
    fn try_clone_pipe(&self) -> std::fs::File;
}

impl ClonePipe for std::process::ChildStdin {
    /// A second handle on the same pipe, for a writer thread.
    fn try_clone_pipe(&self) -> std::fs::File {
        use std::os::fd::AsFd;
        std::fs::File::from(self.as_fd().try_clone_to_owned().unwrap())
    }
}

/// At most 256 socket connections are served at once: one more is told why
/// with -32005 and closed, and a slot that frees up is used again.
#[test]
fn connections_past_the_cap_are_refused_clearly() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let mut owner = Sidecar::started(&scratch, &ws);
    let socket = owner_socket(&owner.request("nxops/status", json!({})).unwrap());
    let mut idle: Vec<std::os::unix::net::UnixStream> =
        (0..256).map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap()).collect();
    // Every one of them is served: wait until the owner counts them all.
    let deadline = Instant::now() + Duration::from_secs(10);
    while owner.request("nxops/status", json!({})).unwrap()["sessions"].as_array().unwrap().len() < 257 {
        assert!(Instant::now() < deadline, "the owner never served 256 connections");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", owner.pid())).unwrap();
    let rss = status.lines().find(|l| l.starts_with("VmRSS")).unwrap_or("").to_string();
    eprintln!("the owner with 256 idle connections: {rss}");
    // The refusal is the first (and only) thing the 257th connection reads.
    let mut raw = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = std::io::BufReader::new(&mut raw);
    let error = common::read_frame(&mut reader).expect("an error before the close");
    assert_eq!(error["error"]["code"], -32005, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("256"), "{error}");
    assert!(common::read_frame(&mut reader).is_none(), "the refused connection is closed");
    // The owner's own client is not affected, and a freed slot is served again.
    assert!(owner.request("nxops/status", json!({})).is_ok());
    idle.truncate(250);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Until the closed connections' threads have ended, a new one may still be
        // refused and closed before the request is written: that try is repeated.
        let mut again = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"processId": null, "capabilities": {}}});
        again.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        if again.write_all(&lsp_frame(&initialize)).is_ok() {
            let answer = common::read_frame(&mut std::io::BufReader::new(&mut again));
            if answer.is_some_and(|a| a["id"] == 1 && a.get("result").is_some()) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no connection was served after some closed");
        std::thread::sleep(Duration::from_millis(50));
    }
}
