//! Garage (Deuxfleurs' distributed S3 store, installed by scripts/setup) on loopback for a test:
//! one node, or a cluster whose every node holds every object (replication factor = nodes). Each
//! node is a real `garage server` with its own folders and ports, the sqlite metadata engine, and
//! one bucket with one key. Every node is killed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BUCKET: &str = "nx-cache";
pub const REGION: &str = "garage";
pub const KEY_ID: &str = "GK0123456789abcdef01234567";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const RPC_SECRET: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/// The garage binary: `NXOPS_GARAGE`, else `garage` on PATH (scripts/setup puts it in ~/.cargo/bin).
pub fn garage_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NXOPS_GARAGE") {
        return bin.into();
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|d| d.join("garage")).find(|f| f.is_file()))
        .unwrap_or_default();
    let home_bin = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/garage"));
    on_path.or(home_bin.filter(|f| f.is_file())).expect("garage is not installed: run scripts/setup")
}

pub struct Garage {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    /// Each node's full id with its address, once the cluster is made.
    ids: Vec<String>,
}

struct Node {
    config: PathBuf,
    s3: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Garage {
    /// One node with replication factor 1.
    pub fn single() -> Garage {
        Garage::cluster(1)
    }

    /// `count` nodes, each in its own zone, with replication factor `count`: every object on all.
    pub fn cluster(count: usize) -> Garage {
        let dir = tempfile::Builder::new().prefix("garage-").tempdir().unwrap();
        let mut nodes = Vec::new();
        for i in 0..count {
            let (rpc, s3) = (free_port(), free_port());
            let base = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&base).unwrap();
            let config = base.join("garage.toml");
            let text = format!(
                "metadata_dir = \"{base}/meta\"\ndata_dir = \"{base}/data\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = {count}\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{RPC_SECRET}\"\n\
                 [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n",
                base = base.display()
            );
            std::fs::write(&config, text).unwrap();
            nodes.push(Node { config, s3, child: None });
        }
        let mut garage = Garage { dir, nodes, ids: Vec::new() };
        for i in 0..count {
            garage.start(i);
        }
        let ids: Vec<String> = (0..count).map(|i| garage.node_id(i)).collect();
        for id in &ids[1..] {
            garage.cli(0, &["node", "connect", id]);
        }
        for (i, id) in ids.iter().enumerate() {
            let short = &id[..16];
            garage.cli(0, &["layout", "assign", "-z", &format!("dc{i}"), "-c", "1G", short]);
        }
        garage.cli(0, &["layout", "apply", "--version", "1"]);
        // Every node learns the layout in its own time; bucket creation needs a quorum of them.
        garage.retry(0, &["bucket", "create", BUCKET]);
        garage.cli(0, &["key", "import", "--yes", "-n", "nxops", KEY_ID, SECRET]);
        garage.cli(0, &["bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "nxops"]);
        garage.ids = ids;
        garage
    }

    /// The S3 endpoint of node `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3)
    }

    /// The `store` entry of `nxops cache serve`'s file for this bucket, through node 0.
    pub fn store_entry(&self) -> serde_json::Value {
        serde_json::json!({"s3": {"endpoint": self.endpoint(0), "bucket": BUCKET, "region": REGION,
            "accessKeyId": KEY_ID, "secretAccessKey": SECRET}})
    }

    /// Starts node `i` (again), and waits until it answers the CLI.
    pub fn start(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "node {i} runs already");
        let log = std::fs::File::create(self.dir.path().join(format!("node{i}.log"))).unwrap();
        let child = Command::new(garage_bin())
            .arg("-c")
            .arg(&self.nodes[i].config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn garage server");
        self.nodes[i].child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.run(i, &["status"]).status.success() {
            assert!(Instant::now() < deadline, "garage node {i} did not start: {}", self.log(i));
            std::thread::sleep(Duration::from_millis(50));
        }
        // A node that returns would find its peers again within about half a minute; told
        // where they are, it connects at once.
        for j in (0..self.ids.len()).filter(|&j| j != i && self.nodes[j].child.is_some()) {
            self.cli(i, &["node", "connect", &self.ids[j]]);
        }
    }

    /// Kills node `i` with SIGKILL (a crash, not a shutdown).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Node `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{i}.log"))).unwrap_or_default()
    }

    fn node_id(&self, i: usize) -> String {
        let out = self.cli(i, &["node", "id", "-q"]);
        out.trim().to_string()
    }

    fn run(&self, i: usize, args: &[&str]) -> std::process::Output {
        Command::new(garage_bin()).arg("-c").arg(&self.nodes[i].config).args(args).output().expect("run garage")
    }

    /// Runs a garage command against node `i`; fails the test unless it succeeds.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = self.run(i, args);
        assert!(
            out.status.success(),
            "garage {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn retry(&self, i: usize, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.run(i, args);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(Instant::now() < deadline, "garage {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// An S3 client of this bucket through node 0, for a test to look at or tamper with objects.
    pub fn client(&self) -> Bucket {
        Bucket::new(&self.endpoint(0))
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Blocking calls on the bucket with the AWS SDK (its own small runtime).
pub struct Bucket {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

impl Bucket {
    pub fn new(endpoint: &str) -> Bucket {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .http_client(http)
            .endpoint_url(endpoint)
            .region(aws_sdk_s3::config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(KEY_ID, SECRET, None, None, "test"))
            .force_path_style(true)
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
            .build();
        Bucket { runtime, client: aws_sdk_s3::Client::from_conf(config) }
    }

    /// Every key in the bucket, sorted (the server's own `.` keys included).
    pub fn keys(&self) -> Vec<String> {
        self.runtime.block_on(async {
            let mut keys = Vec::new();
            let mut pages = self.client.list_objects_v2().bucket(BUCKET).into_paginator().send();
            while let Some(page) = pages.next().await {
                keys.extend(page.unwrap().contents().iter().filter_map(|o| o.key().map(str::to_string)));
            }
            keys.sort();
            keys
        })
    }

    /// The artifacts: keys without the server's own `.` ones.
    pub fn artifacts(&self) -> Vec<String> {
        self.keys().into_iter().filter(|k| !k.starts_with('.')).collect()
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.try_get(key).ok()
    }

    pub fn try_get(&self, key: &str) -> Result<Vec<u8>, String> {
        self.runtime.block_on(async {
            let out = self.client.get_object().bucket(BUCKET).key(key).send().await;
            let out = out.map_err(|e| aws_sdk_s3::error::DisplayErrorContext(&e).to_string())?;
            Ok(out.body.collect().await.map_err(|e| e.to_string())?.into_bytes().to_vec())
        })
    }

    pub fn put(&self, key: &str, bytes: Vec<u8>) {
        self.runtime.block_on(async {
            let body = aws_sdk_s3::primitives::ByteStream::from(bytes);
            self.client.put_object().bucket(BUCKET).key(key).body(body).send().await.unwrap();
        });
    }
}
