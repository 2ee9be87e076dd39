//! `nxops serve --metrics-addr`: the figures in Prometheus text format, scraped
//! over loopback.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Scratch, Sidecar};
use serde_json::json;

fn scrape(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn the_metrics_endpoint_serves_live_figures_over_loopback() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = scratch.nxops(&ws);
    cmd.args(["serve", "--stdio", "--metrics-addr", &addr]);
    let mut sidecar = Sidecar::from_command(cmd, &scratch);
    sidecar.initialize(&ws);
    sidecar.request("nxops/process/start", json!({"name": "web", "command": "sleep", "args": ["1000"]})).unwrap();

    let answer = scrape(port, "/metrics");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Content-Type: text/plain; version=0.0.4"), "{answer}");
    assert!(answer.contains("\nnxops_up 1\n"), "{answer}");
    assert!(answer.contains("# TYPE nxops_process_up gauge"), "{answer}");
    let line = format!("nxops_process_up{{workspace=\"{}\",process=\"web\",state=\"running\"}} 1", ws.display());
    assert!(answer.contains(&line), "{answer}");
    let line = format!("nxops_workspace_sessions{{workspace=\"{}\",state=\"active\"}} 1", ws.display());
    assert!(answer.contains(&line), "the test's own connection session: {answer}");
    assert!(answer.lines().any(|l| l.starts_with("nxops_resident_memory_bytes ") && !l.ends_with(" 0")), "{answer}");
    assert!(scrape(port, "/other").starts_with("HTTP/1.1 404"), "only /metrics");
    drop(sidecar);

    let refused = scratch.nxops(&ws).args(["serve", "--stdio", "--metrics-addr", "0.0.0.0:9464"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only a loopback address"), "{refused:?}");
}

/// Starts an owner serving metrics on a free loopback port, with one running process "web".
fn metrics_sidecar(scratch: &Scratch, ws: &std::path::Path) -> (Sidecar, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = scratch.nxops(ws);
    cmd.args(["serve", "--stdio", "--metrics-addr", &format!("127.0.0.1:{port}")]);
    let mut sidecar = Sidecar::from_command(cmd, scratch);
    sidecar.initialize(ws);
    sidecar.request("nxops/process/start", json!({"name": "web", "command": "sleep", "args": ["1000"]})).unwrap();
    (sidecar, port)
}

/// The body of a 200 answer.
fn exposition(port: u16) -> String {
    let answer = scrape(port, "/metrics");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    body.to_string()
}

/// Regression: every HELP and TYPE line came first and the samples after them, so
/// prometheus_client's parser lost every type and split nxops_process_up into 7 families.
#[test]
fn the_exposition_is_accepted_by_promtool_and_parsed_per_family_by_prometheus_client() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let (_sidecar, port) = metrics_sidecar(&scratch, &ws);
    let text = exposition(port);

    let families = common::checked_exposition(&text);
    let names: Vec<&str> = families.iter().map(|f| f["name"].as_str().unwrap()).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "each family once: {names:?}");
    assert!(families.iter().all(|f| f["type"] != "unknown"), "every family keeps its type: {families:?}");
    let family =
        |name: &str| families.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("{name}: {names:?}"));
    assert_eq!(family("nxops_up")["type"], "gauge");
    assert_eq!(family("nxops_up")["samples"], json!([["nxops_up", {}, "1.0"]]));
    let up = family("nxops_process_up");
    assert_eq!(up["type"], "gauge");
    let web = json!({"workspace": ws.display().to_string(), "process": "web", "state": "running"});
    assert_eq!(up["samples"], json!([["nxops_process_up", web, "1.0"]]), "{up}");
    // prometheus_client names a counter family without its _total suffix.
    let reaped = family("nxops_orphans_reaped");
    assert_eq!(reaped["type"], "counter");
    assert_eq!(reaped["samples"][0][0], "nxops_orphans_reaped_total");
    let dropped = family("nxops_events_dropped");
    assert_eq!(dropped["type"], "counter");
    assert_eq!(dropped["samples"], json!([["nxops_events_dropped_total", {}, "0.0"]]), "nobody read slowly here");
    let sessions = family("nxops_workspace_sessions");
    let active = json!({"workspace": ws.display().to_string(), "state": "active"});
    assert!(
        sessions["samples"].as_array().unwrap().contains(&json!(["nxops_workspace_sessions", active, "1.0"])),
        "{sessions}"
    );
    assert!(family("nxops_resident_memory_bytes")["samples"][0][2].as_str().unwrap().parse::<f64>().unwrap() > 0.0);
}

/// Regression: one connection at a time, so an idle client delayed every scrape by 5 s and one
/// that sent a byte every 2 s blocked the endpoint for good.
#[test]
fn idle_and_slow_clients_do_not_delay_a_scrape() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let (_sidecar, port) = metrics_sidecar(&scratch, &ws);
    let idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow_stop = stop.clone();
    let slow = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut sent = 0;
        let started = Instant::now();
        while !slow_stop.load(std::sync::atomic::Ordering::Relaxed) && started.elapsed() < Duration::from_secs(8) {
            if stream.write_all(b"G").is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_secs(2));
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let started = Instant::now();
        let scrapes: Vec<_> = (0..4).map(|_| std::thread::spawn(move || exposition(port))).collect();
        for scrape in scrapes {
            assert!(scrape.join().unwrap().contains("\nnxops_up 1\n"));
        }
        assert!(started.elapsed() < Duration::from_secs(1), "4 scrapes took {:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(1200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(slow.join().unwrap() >= 2, "the slow client was still sending while the scrapes ran");
    drop(idle);
}

/// Past the cap a scrape is refused at once (never queued), and clients that send no request
/// are cut off after the request deadline, which frees their places.
#[test]
fn connections_past_the_cap_get_503_at_once_until_silent_ones_are_cut_off() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let (_sidecar, port) = metrics_sidecar(&scratch, &ws);
    let silent: Vec<_> = (0..8).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let refused = scrape(port, "/metrics");
    assert!(refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{refused}");
    assert!(refused.contains("more than 8 scrapes at once"), "{refused}");
    assert!(started.elapsed() < Duration::from_millis(500), "refused at once: {:?}", started.elapsed());
    std::thread::sleep(Duration::from_millis(2300));
    assert!(exposition(port).contains("\nnxops_up 1\n"), "the silent connections were cut off after 2 s");
    drop(silent);
}
