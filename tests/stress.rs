//! 64 clients on one owner for 60 s: the owner's own editor, 7 follower
//! sidecars with an editor each (their requests are forwarded), and 56 clients
//! on the owner's socket, all subscribed to every event and calling the
//! read-only methods in turn, while a process crash-loops (a steady stream of
//! events). 8 socket clients stop reading at random moments and never read
//! again.
//!
//! Every request of a healthy client must be answered within its own work plus
//! 100 ms, where "its own work" is the slowest of 10 calls of that method made
//! alone before the storm, times 3 for the two cores 64 clients share. The
//! owner's RSS must stay under 64 MB (idle it is about 10 MB; each connection
//! costs two threads and at most 1,024 queued events).
//!
//! Runs alone (see .config/nextest.toml); `NXOPS_STRESS_SECS` shortens it.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Scratch, Sidecar, SocketClient, owner_socket};
use serde_json::json;

const READ_ONLY: &[&str] = &[
    "nxops/status",
    "nxops/workspace/list",
    "nxops/process/list",
    "nxops/session/list",
    "nxops/health",
    "nxops/tasks/runs",
    "nxops/mcp/servers",
    "nxops/cache/stats",
    "nxops/env/info",
];
const EVENTS: &[&str] = &["processStarted", "processExited", "processFailure", "processRestarted", "healthCheck"];
const RSS_BOUND_KB: u64 = 64 * 1024;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What each method costs alone: the slowest of 10 calls.
fn own_work(client: &mut SocketClient) -> BTreeMap<&'static str, Duration> {
    READ_ONLY
        .iter()
        .map(|method| {
            let slowest = (0..10)
                .map(|_| {
                    let started = Instant::now();
                    let _ = client.request(method, json!({}));
                    started.elapsed()
                })
                .max()
                .unwrap();
            (*method, slowest)
        })
        .collect()
}

#[test]
fn sixty_four_clients_eight_stalling_nobody_waits() {
    let secs: u64 = std::env::var("NXOPS_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let mut owner = Sidecar::start(&scratch, &ws, &[("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")]);
    owner.initialize(&ws);
    owner.request("nxops/subscribe", json!({"events": EVENTS})).unwrap();
    let socket = owner_socket(&owner.request("nxops/status", json!({})).unwrap());
    owner
        .request(
            "nxops/process/start",
            json!({"name": "flood", "command": "sh", "args": ["-c", "sleep 0.02; exit 3"], "restart": "always",
                "maxRestarts": 1_000_000, "restartWindow": "1s", "detached": true,
                "backoff": {"initial": "10ms", "factor": 1.0, "max": "10ms"}}),
        )
        .unwrap();
    let mut probe = SocketClient::connect(&socket, true);
    probe.handshake("probe");
    let budget: BTreeMap<&str, Duration> =
        own_work(&mut probe).into_iter().map(|(m, d)| (m, d * 3 + Duration::from_millis(100))).collect();
    eprintln!("allowed per method: {budget:?}");
    let budget = Arc::new(budget);

    let stop = Arc::new(AtomicBool::new(false));
    let late: Arc<Mutex<Vec<String>>> = Arc::default();
    let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    // 56 socket clients; the first 8 stall at a random moment.
    for n in 0..56usize {
        let (socket, stop, late, budget, answered) =
            (socket.clone(), stop.clone(), late.clone(), budget.clone(), answered.clone());
        workers.push(std::thread::spawn(move || {
            let stalls_at = (n < 8).then(|| Duration::from_millis(500 + fastrand(n as u64) % (secs * 900)));
            let mut client = SocketClient::connect(&socket, stalls_at.is_none());
            if let Some(stalls_at) = stalls_at {
                client.handshake("staller");
                client.send_request("nxops/subscribe", json!({"events": EVENTS}));
                // Reads only until its moment comes, then never again.
                let mut reader = std::io::BufReader::new(client.stream.try_clone().unwrap());
                reader.get_ref().set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let started = Instant::now();
                while started.elapsed() < stalls_at && !stop.load(Ordering::Relaxed) {
                    let _ = common::read_frame(&mut reader);
                }
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                return;
            }
            client.handshake("healthy");
            client.request("nxops/subscribe", json!({"events": EVENTS})).unwrap();
            let mut i = n;
            while !stop.load(Ordering::Relaxed) {
                let method = READ_ONLY[i % READ_ONLY.len()];
                i += 1;
                let allowed = budget[method];
                let started = Instant::now();
                let answer = client.request_within(method, json!({}), Duration::from_secs(10));
                let took = started.elapsed();
                answered.fetch_add(1, Ordering::Relaxed);
                if answer.is_none() || took > allowed {
                    late.lock()
                        .unwrap()
                        .push(format!("socket client {n}: {method} took {took:?} (allowed {allowed:?})"));
                }
                client.notifications.clear();
                std::thread::sleep(Duration::from_millis(100 + fastrand(i as u64) % 200));
            }
        }));
    }
    // 7 follower sidecars, each with its own editor.
    for n in 0..7usize {
        let mut follower = Sidecar::start(&scratch, &ws, &[]);
        follower.initialize(&ws);
        follower.request("nxops/subscribe", json!({"events": EVENTS})).unwrap();
        let (stop, late, budget, answered) = (stop.clone(), late.clone(), budget.clone(), answered.clone());
        workers.push(std::thread::spawn(move || {
            let mut i = n;
            while !stop.load(Ordering::Relaxed) {
                let method = READ_ONLY[i % READ_ONLY.len()];
                i += 1;
                // Forwarding adds a hop: allow one more calm round trip for it.
                let allowed = budget[method] + Duration::from_millis(20);
                let started = Instant::now();
                let answer = follower.request(method, json!({}));
                let took = started.elapsed();
                answered.fetch_add(1, Ordering::Relaxed);
                if took > allowed || answer.as_ref().is_err_and(|e| e["code"] == -32004) {
                    late.lock().unwrap().push(format!("follower {n}: {method} took {took:?} (allowed {allowed:?})"));
                }
                follower.notifications.clear();
                std::thread::sleep(Duration::from_millis(100 + fastrand(i as u64) % 200));
            }
            drop(follower);
        }));
    }
    // The owner's own editor, healthy too; and the owner's memory, sampled.
    let started = Instant::now();
    let mut peak_rss = 0;
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        let method = READ_ONLY[i % READ_ONLY.len()];
        i += 1;
        let asked = Instant::now();
        let _ = owner.request(method, json!({}));
        let took = asked.elapsed();
        if took > budget[method] {
            late.lock().unwrap().push(format!("owner's editor: {method} took {took:?}"));
        }
        owner.notifications.clear();
        peak_rss = peak_rss.max(rss_kb(owner.pid()));
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let late = late.lock().unwrap();
    eprintln!(
        "{} answers in {secs} s; {} late; owner's peak RSS {:.1} MB",
        answered.load(Ordering::Relaxed),
        late.len(),
        peak_rss as f64 / 1024.0
    );
    assert!(late.is_empty(), "{} late answers, first ones: {:#?}", late.len(), &late[..late.len().min(10)]);
    assert!(peak_rss > 0 && peak_rss < RSS_BOUND_KB, "the owner's RSS peaked at {peak_rss} kB");
    assert!(answered.load(Ordering::Relaxed) > secs * 100, "too few requests were made to mean anything");
}

/// A small deterministic scrambler (splitmix64) for the moments and pauses.
fn fastrand(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
