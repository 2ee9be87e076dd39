//! Stalled-subscriber benchmark: what clients that stop reading cost everyone
//! else. A real owner sidecar supervises a process crash-looping every few
//! milliseconds (a steady stream of events); a healthy client on the owner's
//! socket times `nxops/status` round trips, first with nobody stalled (the
//! baseline, same run, same load), then with 16 subscribers that subscribed to
//! every event and stopped reading.
//!
//! Target: p99 with 16 stalled subscribers within 1.5x of the p99 with none.
//! Run: `cargo bench --bench stall` (add `-- --quick` for a short run).

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/lsp.rs"]
mod lsp;
use lsp::{frame, read_frame};

const STALLED: usize = 16;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 1_000 } else { 5_000 };
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let ws = scratch.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("nx.json"), "{}").unwrap();
    let run_dir = scratch.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();

    let mut owner = Owner::start(&ws, &run_dir, scratch.path());
    let socket = owner.socket();
    let mut healthy = Client::connect(&socket);
    healthy.handshake();
    healthy.call(
        "nxops/process/start",
        json!({"name": "flood", "command": "sh", "args": ["-c", "exit 3"],
        "restart": "always", "maxRestarts": 1_000_000, "restartWindow": "1s", "detached": true,
        "backoff": {"initial": "2ms", "factor": 1.0, "max": "2ms"}}),
    );
    std::thread::sleep(Duration::from_millis(500));

    println!(
        "nxops stall benchmark ({rounds} sequential nxops/status round trips on the owner's socket, a process \
         crash-looping every ~2 ms; baseline: the same with nobody stalled, same run)"
    );
    let calm = healthy.time(rounds);
    let stalled: Vec<UnixStream> = (0..STALLED).map(|_| stalled_subscriber(&socket)).collect();
    // Let every stalled peer's buffers fill.
    std::thread::sleep(Duration::from_secs(2));
    let busy = healthy.time(rounds);
    let ratio = busy.p99.as_secs_f64() / calm.p99.as_secs_f64();
    println!("  p50              {STALLED} stalled {:>7.1} us   none {:>7.1} us", us(busy.p50), us(calm.p50));
    println!(
        "  p99              {STALLED} stalled {:>7.1} us   none {:>7.1} us   ratio {ratio:.2}x (target <= 1.5x)",
        us(busy.p99),
        us(calm.p99)
    );
    println!("  max              {STALLED} stalled {:>7.1} us   none {:>7.1} us", us(busy.max), us(calm.max));
    let health = healthy.call("nxops/health", json!({}));
    println!(
        "  events dropped for the stalled subscribers: {}",
        health["figures"]["eventsDropped"].as_u64().map_or("not reported".into(), |n| n.to_string())
    );
    drop(stalled);
    owner.stop();
}

struct Owner {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Owner {
    fn start(ws: &Path, run_dir: &Path, home: &Path) -> Owner {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nxops"))
            .args(["serve", "--stdio"])
            .env("XDG_RUNTIME_DIR", run_dir)
            .env("HOME", home)
            .env("NXOPS_PROCESSES_STOP_TIMEOUT", "1s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nxops serve");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut owner = Owner { child, stdin, stdout };
        let params = json!({"processId": null, "rootUri": format!("file://{}", ws.display()), "capabilities": {}});
        owner.send(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}));
        read_frame(&mut owner.stdout).expect("initialize answered");
        owner.send(&json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}));
        owner
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(&frame(message)).unwrap();
        stdin.flush().unwrap();
    }

    fn socket(&mut self) -> PathBuf {
        self.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "nxops/status", "params": {}}));
        let status = read_frame(&mut self.stdout).expect("status answered");
        PathBuf::from(status["result"]["workspaces"][0]["role"]["socket"].as_str().expect("an owner"))
    }

    fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: i64,
}

impl Client {
    fn connect(socket: &Path) -> Client {
        let stream = UnixStream::connect(socket).expect("connect");
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader, next_id: 0 }
    }

    fn handshake(&mut self) {
        self.call("initialize", json!({"processId": null, "capabilities": {}}));
        self.stream.write_all(&frame(&json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}))).unwrap();
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.stream
            .write_all(&frame(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})))
            .unwrap();
        loop {
            let message = read_frame(&mut self.reader).expect("an answer");
            if message["id"] == id {
                return message["result"].clone();
            }
        }
    }

    fn time(&mut self, rounds: usize) -> Stats {
        let mut times: Vec<Duration> = (0..rounds)
            .map(|_| {
                let started = Instant::now();
                self.call("nxops/status", json!({}));
                started.elapsed()
            })
            .collect();
        times.sort();
        Stats { p50: times[times.len() / 2], p99: times[times.len() * 99 / 100], max: *times.last().unwrap() }
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Connects, subscribes to every event, and never reads.
fn stalled_subscriber(socket: &Path) -> UnixStream {
    let mut stream = UnixStream::connect(socket).expect("connect");
    let events = ["processStarted", "processExited", "processFailure", "processRestarted", "healthCheck"];
    for message in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": null, "capabilities": {}}}),
        json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "nxops/subscribe", "params": {"events": events}}),
    ] {
        stream.write_all(&frame(&message)).unwrap();
    }
    stream
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
