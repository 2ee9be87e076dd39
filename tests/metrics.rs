//! `nxops serve --metrics-addr`: the figures in Prometheus text format, scraped
//! over loopback.

mod common;

use std::io::{Read, Write};

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
