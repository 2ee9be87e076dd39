//! Sidecar protocol benchmark: each figure is printed beside its baseline,
//! measured in the same run on the same machine.
//!
//! - 10,000 sequential `nxops/status` round trips over stdio, against a
//!   hand-rolled blocking JSON-RPC echo loop (this binary run with `--floor`).
//!   Target: p50 within 1.5x of the floor.
//! - A pipelined burst of 2,000 requests: target 40,000 requests/s or more,
//!   responses in request order.
//! - Idle RSS (target at most 10 MB) and time from process start to the
//!   `initialize` answer (target at most 20 ms).
//!
//! Run: `cargo bench --bench rpc` (add `-- --quick` for a short run). The benchmark
//! pins itself and both servers to one CPU (see `pin_to_one_cpu`).

use std::io::{BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/measure.rs"]
mod measure;
use measure::{Scratch, median, ms, rss_kib};
#[path = "support/lsp.rs"]
mod lsp;
use lsp::{frame, read_frame, read_raw_frame};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--floor") {
        return floor_server();
    }
    let quick = args.iter().any(|a| a == "--quick");
    pin_to_one_cpu();
    let rounds = if quick { 2_000 } else { 10_000 };
    let scratch = Scratch::new();
    let (ws, run_dir) = (&scratch.ws, &scratch.run_dir);

    println!("nxops rpc benchmark ({rounds} sequential round trips each; baseline measured in the same run)");
    let mut floor = Peer::floor();
    let mut sidecar = Peer::sidecar(ws, run_dir);
    let (ours, base) = interleaved(&mut sidecar, &mut floor, rounds);
    let ratio = ours.p50.as_secs_f64() / base.p50.as_secs_f64();
    println!(
        "  sequential p50   nxops {:>7.1} us   floor {:>7.1} us   ratio {ratio:.2}x (target <= 1.5x)",
        us(ours.p50),
        us(base.p50)
    );
    println!("  sequential p99   nxops {:>7.1} us   floor {:>7.1} us", us(ours.p99), us(base.p99));
    let (rate, in_order) = burst(&mut sidecar, 2_000);
    let (floor_rate, _) = burst(&mut floor, 2_000);
    println!(
        "  burst of 2000    nxops {rate:>7.0} req/s   floor {floor_rate:>7.0} req/s   in order: {in_order} (target >= 40000 req/s)"
    );
    std::thread::sleep(Duration::from_millis(500));
    let rss = rss_kib(sidecar.child.id());
    println!("  idle RSS         nxops {:>7.1} MB   (target <= 10 MB)", rss as f64 / 1024.0);
    drop(sidecar);
    let starts: Vec<Duration> = (0..if quick { 5 } else { 20 }).map(|_| time_to_initialize(ws, run_dir)).collect();
    println!(
        "  start to initialize p50 {:>6.1} ms   max {:>6.1} ms   (target <= 20 ms)",
        ms(median(&starts)),
        ms(*starts.iter().max().unwrap())
    );
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

/// Round trips to both servers in alternating blocks of 500, so drift in the
/// machine's state (frequency, other load) affects both alike.
fn interleaved(sidecar: &mut Peer, floor: &mut Peer, rounds: usize) -> (Stats, Stats) {
    for i in 0..500 {
        sidecar.round_trip(i, "nxops/status");
        floor.round_trip(i, "echo");
    }
    let (mut ours, mut base) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    let mut id = 1_000;
    while ours.len() < rounds {
        for (peer, method, times) in [(&mut *sidecar, "nxops/status", &mut ours), (&mut *floor, "echo", &mut base)] {
            for _ in 0..500 {
                id += 1;
                let start = Instant::now();
                peer.round_trip(id, method);
                times.push(start.elapsed());
            }
        }
    }
    (stats(ours), stats(base))
}

fn stats(mut times: Vec<Duration>) -> Stats {
    times.sort();
    Stats { p50: times[times.len() / 2], p99: times[times.len() * 99 / 100] }
}

/// Writes `count` requests from another thread while this one reads the answers.
fn burst(peer: &mut Peer, count: i64) -> (f64, bool) {
    let method = if peer.is_floor { "echo" } else { "nxops/status" };
    let mut payload = Vec::new();
    for id in 0..count {
        payload.extend(frame(&json!({"jsonrpc": "2.0", "id": 1_000_000 + id, "method": method, "params": {}})));
    }
    let start = Instant::now();
    let mut stdin = peer.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&payload).unwrap();
        stdin.flush().unwrap();
        stdin
    });
    let mut in_order = true;
    for id in 0..count {
        let answer = read_raw_frame(&mut peer.stdout).expect("a response");
        in_order &= answers(&answer, 1_000_000 + id);
    }
    let elapsed = start.elapsed();
    peer.stdin = Some(writer.join().unwrap());
    (count as f64 / elapsed.as_secs_f64(), in_order)
}

fn time_to_initialize(ws: &Path, run_dir: &Path) -> Duration {
    let start = Instant::now();
    let mut peer = Peer::spawn(
        Command::new(env!("CARGO_BIN_EXE_nxops")).args(["serve", "--stdio"]).env("XDG_RUNTIME_DIR", run_dir),
        false,
    );
    let params = json!({"processId": null, "rootUri": format!("file://{}", ws.display()), "capabilities": {}});
    peer.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}));
    read_frame(&mut peer.stdout).expect("initialize answered");
    start.elapsed()
}

struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    is_floor: bool,
}

impl Peer {
    fn floor() -> Peer {
        Peer::spawn(Command::new(std::env::current_exe().unwrap()).arg("--floor"), true)
    }

    fn sidecar(ws: &Path, run_dir: &Path) -> Peer {
        let mut peer = Peer::spawn(
            Command::new(env!("CARGO_BIN_EXE_nxops")).args(["serve", "--stdio"]).env("XDG_RUNTIME_DIR", run_dir),
            false,
        );
        let params = json!({"processId": null, "rootUri": format!("file://{}", ws.display()), "capabilities": {}});
        peer.send(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}));
        read_frame(&mut peer.stdout).expect("initialize answered");
        peer.send(&json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}));
        peer
    }

    fn spawn(cmd: &mut Command, is_floor: bool) -> Peer {
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Peer { child, stdin, stdout, is_floor }
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(&frame(message)).unwrap();
        stdin.flush().unwrap();
    }

    /// One request and its answer. The client side is kept as cheap as possible for
    /// both servers: the request is formatted by hand and the answer is not parsed,
    /// only checked to carry the request's id.
    fn round_trip(&mut self, id: i64, method: &str) {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{}}}}"#);
        let stdin = self.stdin.as_mut().unwrap();
        write!(stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        stdin.flush().unwrap();
        let answer = read_raw_frame(&mut self.stdout).expect("a response");
        assert!(answers(&answer, id), "{}", String::from_utf8_lossy(&answer));
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The floor: a blocking loop that parses each request and answers it, nothing more.
fn floor_server() {
    let stdin = std::io::stdin();
    let mut input = BufReader::new(stdin.lock());
    let mut output = std::io::stdout().lock();
    while let Some(request) = read_frame(&mut input) {
        let response = json!({"jsonrpc": "2.0", "id": request["id"], "result": request["params"]});
        output.write_all(&frame(&response)).unwrap();
        output.flush().unwrap();
    }
}

/// True when a response body carries `"id":<id>` (compact JSON, as both servers write it).
fn answers(body: &[u8], id: i64) -> bool {
    let text = std::str::from_utf8(body).unwrap_or("");
    text.contains(&format!("\"id\":{id},")) || text.ends_with(&format!("\"id\":{id}}}"))
}

/// Runs this process and its children (both servers) on one CPU, so that a wake-up
/// costs a context switch and not a wake-up of an idle virtual CPU, which on the
/// VMs we measure on varies from 5 to over 100 us and would swamp the figures.
fn pin_to_one_cpu() {
    let mut set = rustix::thread::CpuSet::new();
    set.set(0);
    if let Err(err) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("could not pin to CPU 0 ({err}); figures will be noisier");
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
