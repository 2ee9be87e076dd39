//! Team-cache benchmark: `nxops cache serve` over a single Garage node on loopback, against the
//! same objects fetched straight from Garage, in one run. Both paths use the same HTTP client
//! (ureq, one agent each, connections kept alive); the direct path fetches presigned URLs made
//! by the AWS SDK, the library the server itself uses, so the only difference is the server.
//!
//! Figures (targets from the team-cache issue):
//! - throughput of 200 downloads of 1 MB and of 50 of 50 MB, through the server vs direct:
//!   at least 0.8x (median of rounds that alternate the two paths);
//! - the server's peak RSS (VmHWM) while 16 clients each upload and download 50 MB artifacts:
//!   at most 32 MB;
//! - p50 of a 1 KB download, through the server vs direct: at most +1 ms.
//!
//! Run: `cargo bench --bench team_cache` (add `-- --quick` for fewer rounds). Needs garage
//! (scripts/setup installs it).

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

#[allow(dead_code)]
#[path = "../tests/common/garage.rs"]
mod garage;

const MB: usize = 1 << 20;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 2 } else { 5 };
    let garage = garage::Garage::single();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &garage);
    let presign = Presigner::new(&garage.endpoint(0));
    let via = ureq::Agent::new_with_defaults();
    let direct = ureq::Agent::new_with_defaults();

    println!(
        "nxops team-cache benchmark: one Garage 2.5 node on loopback; {rounds} rounds alternating the paths; \
         ureq for both (direct: AWS SDK presigned URLs)"
    );
    let small: Vec<String> = (0..200).map(|i| format!("1{i:05}")).collect();
    let large: Vec<String> = (0..50).map(|i| format!("5{i:05}")).collect();
    let tiny = "9000001".to_string();
    for key in &small {
        server.put(key, &pattern(MB, key));
    }
    for key in &large {
        server.put(key, &pattern(50 * MB, key));
    }
    server.put(&tiny, &pattern(1024, &tiny));

    for (label, keys, size) in [("200 x 1 MB", &small, MB), ("50 x 50 MB", &large, 50 * MB)] {
        let urls: Vec<String> = keys.iter().map(|k| presign.url(k)).collect();
        // One read of each path first, so that both find Garage's blocks in the page cache and the
        // server's checked entity tags in place.
        server.download_all(&via, keys);
        download_urls(&direct, &urls);
        let (mut through, mut straight) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let started = Instant::now();
            let bytes = server.download_all(&via, keys);
            through.push(bytes as f64 / started.elapsed().as_secs_f64());
            let started = Instant::now();
            let bytes = download_urls(&direct, &urls);
            straight.push(bytes as f64 / started.elapsed().as_secs_f64());
            assert!(bytes >= (keys.len() * size) as u64);
        }
        let (t, s) = (median(&mut through), median(&mut straight));
        println!(
            "download {label:<11} through nxops {:>7.0} MB/s | direct {:>7.0} MB/s | ratio {:.2}x (target >= 0.80x)",
            t / MB as f64,
            s / MB as f64,
            t / s
        );
    }

    // p50 of a 1 KB artifact.
    let url = presign.url(&tiny);
    let count = if quick { 300 } else { 1000 };
    let (mut through, mut straight) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for _ in 0..count {
        let started = Instant::now();
        server.download(&via, &tiny);
        through.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        fetch(&direct, &url);
        straight.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let (t, s) = (median(&mut through), median(&mut straight));
    println!(
        "download 1 KB p50     through nxops {t:>6.3} ms | direct {s:>6.3} ms | overhead {:+.3} ms (target <= +1 ms)",
        t - s
    );

    // Peak RSS with 16 clients each uploading and downloading 50 MB.
    let before = server.rss_kib("VmRSS");
    std::thread::scope(|scope| {
        for client in 0..16 {
            let server = &server;
            scope.spawn(move || {
                let agent = ureq::Agent::new_with_defaults();
                let key = format!("7{client:05}");
                server.put_with(&agent, &key, &pattern(50 * MB, &key));
                server.download(&agent, &key);
            });
        }
    });
    let peak = server.rss_kib("VmHWM");
    println!(
        "server RSS: {:.1} MB before, peak {:.1} MB with 16 clients each uploading and downloading 50 MB \
         (target <= 32 MB)",
        before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `len` bytes that differ per key (so no two artifacts are alike).
fn pattern(len: usize, key: &str) -> Vec<u8> {
    let seed = key.bytes().fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8).collect()
}

fn fetch(agent: &ureq::Agent, url: &str) -> u64 {
    let mut response = agent.get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    std::io::copy(&mut response.body_mut().as_reader(), &mut std::io::sink()).unwrap()
}

fn download_urls(agent: &ureq::Agent, urls: &[String]) -> u64 {
    urls.iter().map(|u| fetch(agent, u)).sum()
}

/// A release `nxops cache serve` over the Garage bucket.
struct Server {
    child: Child,
    url: String,
    token: String,
}

impl Server {
    fn start(dir: &std::path::Path, garage: &garage::Garage) -> Server {
        let bin = env!("CARGO_BIN_EXE_nxops");
        let out = Command::new(bin)
            .args(["cache", "token", "--name", "bench", "--access", "read-write", "--json"])
            .output()
            .unwrap();
        let token: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let file = dir.join("serve.json");
        let config = json!({"store": garage.store_entry(), "tokens": [token["entry"]], "maxSize": "100GB"});
        std::fs::write(&file, config.to_string()).unwrap();
        let mut child = Command::new(bin)
            .args(["cache", "serve", "--json", "--listen", "127.0.0.1:0", "--config"])
            .arg(&file)
            .env("NXOPS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut text = String::new();
        let mut stdout = child.stdout.take().unwrap();
        let listening = loop {
            let mut byte = [0u8; 1];
            assert_eq!(stdout.read(&mut byte).unwrap(), 1, "cache serve ended: {text}");
            text.push(byte[0] as char);
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
                break value;
            }
        };
        Server {
            child,
            url: listening["url"].as_str().unwrap().to_string(),
            token: token["token"].as_str().unwrap().to_string(),
        }
    }

    fn put(&self, key: &str, body: &[u8]) {
        self.put_with(&ureq::Agent::new_with_defaults(), key, body);
    }

    fn put_with(&self, agent: &ureq::Agent, key: &str, body: &[u8]) {
        let response = agent
            .put(&format!("{}/v1/cache/{key}", self.url))
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/octet-stream")
            .send(body)
            .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
        assert_eq!(response.status().as_u16(), 200);
    }

    fn download(&self, agent: &ureq::Agent, key: &str) -> u64 {
        let mut response = agent
            .get(&format!("{}/v1/cache/{key}", self.url))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .unwrap_or_else(|e| panic!("GET {key}: {e}"));
        std::io::copy(&mut response.body_mut().as_reader(), &mut std::io::sink()).unwrap()
    }

    fn download_all(&self, agent: &ureq::Agent, keys: &[String]) -> u64 {
        keys.iter().map(|k| self.download(agent, k)).sum()
    }

    /// A line of the server's /proc status, in KiB.
    fn rss_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::io::stdout().flush();
    }
}

/// Presigned GET URLs for the bucket, made with the AWS SDK.
struct Presigner {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

impl Presigner {
    fn new(endpoint: &str) -> Presigner {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_sdk_s3::config::Region::new(garage::REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                garage::KEY_ID,
                garage::SECRET,
                None,
                None,
                "bench",
            ))
            .force_path_style(true)
            .build();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Presigner { runtime, client: aws_sdk_s3::Client::from_conf(config) }
    }

    fn url(&self, key: &str) -> String {
        let presigning = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(3600)).unwrap();
        let request =
            self.runtime.block_on(self.client.get_object().bucket(garage::BUCKET).key(key).presigned(presigning));
        request.unwrap().uri().to_string()
    }
}
