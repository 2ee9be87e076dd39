//! Stalled-subscriber benchmark: what clients that stop reading cost everyone
//! else. A real owner sidecar supervises a process crash-looping every few
//! milliseconds (a steady stream of events); a healthy client on the owner's
//! socket times `nxops/status` round trips with 16 other clients subscribed to
//! every event: first while they read everything (the baseline: same run, same
//! load, the same 17 sessions in every status answer), then after all 16 have
//! stopped reading. The figure with no subscriber at all is shown for scale.
//!
//! Target: p99 with 16 stalled subscribers within 1.5x of the p99 with 16 reading.
//! Run: `cargo bench --bench stall` (add `-- --quick` for a short run).

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/measure.rs"]
mod measure;
use measure::Scratch;
#[path = "support/lsp.rs"]
mod lsp;
use lsp::{frame, read_frame};

const STALLED: usize = 16;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 1_000 } else { 5_000 };
    let scratch = Scratch::new();
    let (ws, run_dir) = (&scratch.ws, &scratch.run_dir);

    let mut owner = Owner::start(ws, run_dir, scratch.dir.path());
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
         crash-looping every ~2 ms; baseline: the same 16 subscribers reading, same run)"
    );
    let alone = healthy.time(rounds);
    let reading = Arc::new(AtomicBool::new(true));
    let subscribers: Vec<UnixStream> = (0..STALLED).map(|_| subscriber(&socket, reading.clone())).collect();
    std::thread::sleep(Duration::from_millis(500));
    let calm = healthy.time(rounds);
    // All 16 stop reading; let their buffers and queues fill.
    reading.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    let busy = healthy.time(rounds);
    let ratio = busy.p99.as_secs_f64() / calm.p99.as_secs_f64();
    let row = |name: &str, pick: fn(&Stats) -> Duration| {
        format!(
            "  {name:<5} {STALLED} stalled {:>7.1} us   {STALLED} reading {:>7.1} us   no subscriber {:>7.1} us",
            us(pick(&busy)),
            us(pick(&calm)),
            us(pick(&alone))
        )
    };
    println!("{}", row("p50", |s| s.p50));
    println!("{}   ratio stalled/reading {ratio:.2}x (target <= 1.5x)", row("p99", |s| s.p99));
    println!("{}", row("max", |s| s.max));
    let health = healthy.call("nxops/health", json!({}));
    let sessions = health["components"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "sessions").cloned());
    let reasons = sessions.map(|s| s["reasons"].to_string()).unwrap_or_default();
    println!("  health, sessions component: {reasons}");
    drop(subscribers);
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

/// Connects and subscribes to every event; reads everything while `reading`, then never again.
fn subscriber(socket: &Path, reading: Arc<AtomicBool>) -> UnixStream {
    let mut stream = UnixStream::connect(socket).expect("connect");
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    std::thread::spawn(move || while reading.load(Ordering::Relaxed) && read_frame(&mut reader).is_some() {});
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
