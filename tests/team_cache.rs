//! `nxops cache serve` with Nx 24 itself as the client: two checkouts with separate HOMEs stand
//! for CI (a read-write token) and a developer (a read-only token), over the folder store. And the
//! API's answers to bad requests, over plain HTTP/1.1.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use common::garage::{Bucket, Garage};
use common::{Scratch, json_of, run_ok};
use serde_json::{Value, json};

/// A running `nxops cache serve` over a folder store or a Garage bucket, with a CI and a developer
/// token. Killed on drop.
struct Served {
    child: Child,
    address: String,
    url: String,
    /// The folder store's folder (for a bucket: the server's description of it).
    store: PathBuf,
    bucket: Option<Bucket>,
    ci_token: String,
    dev_token: String,
}

impl Served {
    fn start(scratch: &Scratch, extra: Value) -> Served {
        Served::start_with(scratch, json!({"folder": "store"}), None, extra)
    }

    /// Over the bucket of `garage`, through its first node.
    fn on_garage(scratch: &Scratch, garage: &Garage, extra: Value) -> Served {
        Served::start_with(scratch, garage.store_entry(), Some(garage.client()), extra)
    }

    fn start_with(scratch: &Scratch, store: Value, bucket: Option<Bucket>, extra: Value) -> Served {
        let dir = scratch.spaces.path();
        let token = |name: &str, access: &str| {
            json_of(&run_ok(scratch.nxops(dir).args(["cache", "token", "--name", name, "--access", access, "--json"])))
        };
        let (ci, dev) = (token("ci", "read-write"), token("dev", "read"));
        let mut config = json!({"store": store, "tokens": [ci["entry"], dev["entry"]]});
        config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let file = dir.join("serve.json");
        std::fs::write(&file, config.to_string()).unwrap();
        let mut cmd = scratch.nxops(dir);
        cmd.args(["cache", "serve", "--json", "--listen", "127.0.0.1:0", "--config"]).arg(&file);
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn cache serve");
        let listening = read_json(child.stdout.take().unwrap());
        Served {
            child,
            address: listening["listen"].as_str().unwrap().to_string(),
            url: listening["url"].as_str().unwrap().to_string(),
            store: PathBuf::from(listening["store"].as_str().unwrap()),
            bucket,
            ci_token: ci["token"].as_str().unwrap().into(),
            dev_token: dev["token"].as_str().unwrap().into(),
        }
    }

    /// The artifacts in the store (its own folders and keys left out).
    fn artifacts(&self) -> Vec<String> {
        if let Some(bucket) = &self.bucket {
            return bucket.artifacts();
        }
        let mut names: Vec<String> = std::fs::read_dir(&self.store)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// One HTTP/1.1 request on its own connection: the status and the body.
    fn request(&self, head: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.write_all(format!("{head}\r\nHost: {}\r\nConnection: close\r\n\r\n", self.address).as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP head");
        let status = String::from_utf8_lossy(&answer[9..12]).parse().unwrap();
        (status, answer[split + 4..].to_vec())
    }
}

impl Served {
    /// A download of `hash` with the developer's token on a new connection, read up to its 200
    /// status line: the caller reads the rest, or stops.
    fn begin_download(&self, hash: &str) -> BufReader<TcpStream> {
        self.begin_download_on(TcpStream::connect(&self.address).unwrap(), hash)
    }

    /// [`Served::begin_download`] on `stream`, connected earlier.
    fn begin_download_on(&self, mut stream: TcpStream, hash: &str) -> BufReader<TcpStream> {
        let token = &self.dev_token;
        write!(
            stream,
            "GET /v1/cache/{hash} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        reader
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads lines until they make one JSON value (`--json` prints it pretty).
fn read_json(stdout: impl Read) -> Value {
    let mut reader = BufReader::new(stdout);
    let mut text = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "cache serve ended before saying where it listens: {text}");
        text.push_str(&line);
        if let Ok(value) = serde_json::from_str(&text) {
            return value;
        }
    }
}

/// `nx run-many -t build` in `ws` against the server with `token`; returns task id -> cache status.
fn build(scratch: &Scratch, ws: &Path, served: &Served, token: &str) -> BTreeMap<String, String> {
    build_with(scratch, ws, served, token, |cmd| cmd)
}

/// [`build`], with the Nx command adjusted by `adjust` first.
fn build_with(
    scratch: &Scratch,
    ws: &Path,
    served: &Served,
    token: &str,
    adjust: impl Fn(std::process::Command) -> std::process::Command,
) -> BTreeMap<String, String> {
    let mut cmd = adjust(scratch.tool(ws, &ws.join("node_modules/.bin/nx").to_string_lossy()));
    cmd.args(["run-many", "-t", "build", "--outputStyle=static"])
        .env("NX_TUI", "false")
        .env("NX_SELF_HOSTED_REMOTE_CACHE_SERVER", &served.url)
        .env("NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN", token);
    let out = run_ok(&mut cmd);
    // Nx colours its log where it detects CI (CI=true), whatever the terminal.
    let log = without_ansi(&String::from_utf8_lossy(&out.stdout));
    log.lines()
        .filter_map(|line| line.split_once("nx run ").map(|(_, rest)| rest))
        .map(|rest| {
            let (task, status) = rest.split_once("  ").unwrap_or((rest, ""));
            (task.trim().to_string(), status.trim().to_string())
        })
        .collect()
}

/// `text` without its ANSI escape sequences (`ESC [ ... letter`).
fn without_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Two checkouts, each with its own HOME (so its own local cache).
fn checkouts() -> (Scratch, PathBuf, Scratch, PathBuf) {
    let (ci, developer) = (Scratch::new(), Scratch::new());
    let (ci_ws, dev_ws) = (ci.workspace("ci", "none"), developer.workspace("dev", "none"));
    (ci, ci_ws, developer, dev_ws)
}

#[test]
fn what_ci_builds_a_developer_restores_byte_for_byte_as_remote_hits() {
    let (ci, ci_ws, developer, dev_ws) = checkouts();
    let served = Served::start(&ci, json!({}));
    let built = build(&ci, &ci_ws, &served, &served.ci_token);
    assert!(built.values().all(String::is_empty), "CI's first build runs every task: {built:?}");
    assert_eq!(served.artifacts().len(), built.len(), "one artifact per task");

    let restored = build(&developer, &dev_ws, &served, &served.dev_token);
    assert_eq!(restored.keys().collect::<Vec<_>>(), built.keys().collect::<Vec<_>>());
    assert!(restored.values().all(|s| s == "[remote cache]"), "{restored:?}");
    assert_eq!(common::snapshot(&dev_ws.join("dist")), common::snapshot(&ci_ws.join("dist")));

    // The figures, asked the way Nx is pointed at the server, tied to this checkout's tasks.
    let mut cmd = developer.nxops(&dev_ws);
    cmd.args(["cache", "stats", "--remote", "--json"])
        .env("NX_SELF_HOSTED_REMOTE_CACHE_SERVER", &served.url)
        .env("NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN", &served.dev_token);
    let stats = json_of(&run_ok(&mut cmd));
    assert_eq!(stats["artifacts"], built.len(), "{stats}");
    let dev = stats["tokens"].as_array().unwrap().iter().find(|t| t["name"] == "dev").unwrap();
    assert_eq!(dev["hits"], built.len(), "{stats}");
    let ci_figures = stats["tokens"].as_array().unwrap().iter().find(|t| t["name"] == "ci").unwrap();
    assert_eq!(ci_figures["uploads"], built.len(), "{stats}");
    let mut tasks: Vec<&str> = stats["largest"].as_array().unwrap().iter().filter_map(|a| a["task"].as_str()).collect();
    tasks.sort();
    let mut expected: Vec<&str> = built.keys().map(String::as_str).collect();
    expected.sort();
    assert_eq!(tasks, expected, "each artifact tied to its task: {stats}");
}

#[test]
fn remote_stats_without_nx_variables_name_the_missing_one() {
    let scratch = Scratch::new();
    let out = scratch.nxops(scratch.spaces.path()).args(["cache", "stats", "--remote"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NX_SELF_HOSTED_REMOTE_CACHE_SERVER: is not set"), "{stderr}");
}

#[test]
fn a_read_only_token_uploads_nothing_and_nx_carries_on() {
    let (ci, ci_ws, developer, dev_ws) = checkouts();
    let served = Served::start(&ci, json!({}));
    build(&ci, &ci_ws, &served, &served.ci_token);
    let before = served.artifacts();
    std::fs::write(dev_ws.join("packages/alpha/src.txt"), "changed on a developer's machine\n").unwrap();
    let ran = build(&developer, &dev_ws, &served, &served.dev_token);
    assert!(ran.values().any(String::is_empty), "the changed project runs: {ran:?}");
    assert_eq!(served.artifacts(), before, "a read-only token's uploads are refused");
    let (status, body) = served.request(
        &format!("PUT /v1/cache/123 HTTP/1.1\r\nAuthorization: Bearer {}\r\nContent-Length: 3", served.dev_token),
        b"abc",
    );
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("\"dev\" may only read"));
}

#[test]
fn a_damaged_artifact_is_a_clean_miss_and_a_rebuild_never_a_wrong_hit() {
    let (ci, ci_ws, developer, dev_ws) = checkouts();
    let served = Served::start(&ci, json!({}));
    build(&ci, &ci_ws, &served, &served.ci_token);
    let artifacts = served.artifacts();
    // One flipped byte in the middle, one object cut short.
    let flipped = served.store.join(&artifacts[0]);
    let mut bytes = std::fs::read(&flipped).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&flipped, bytes).unwrap();
    let cut = served.store.join(&artifacts[1]);
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();

    let result = build(&developer, &dev_ws, &served, &served.dev_token);
    let hits = result.values().filter(|s| *s == "[remote cache]").count();
    assert_eq!(hits, artifacts.len() - 2, "the two damaged ones run, the rest are hits: {result:?}");
    assert_eq!(common::snapshot(&dev_ws.join("dist")), common::snapshot(&ci_ws.join("dist")));
    let aside: Vec<_> = std::fs::read_dir(served.store.join(".damaged")).unwrap().flatten().collect();
    assert_eq!(aside.len(), 2, "both moved aside");
    assert_eq!(served.artifacts().len(), artifacts.len() - 2, "and a later request for them is a plain miss");
}

#[test]
fn bad_requests_get_the_status_the_spec_gives_and_leave_nothing_behind() {
    let scratch = Scratch::new();
    let served = Served::start(&scratch, json!({"maxArtifactSize": "1KB"}));
    let ci = format!("Authorization: Bearer {}", served.ci_token);
    let cases: Vec<(String, &[u8], u16)> = vec![
        ("GET /v1/cache/123 HTTP/1.1".into(), b"", 401),
        ("GET /v1/cache/123 HTTP/1.1\r\nAuthorization: Bearer nxc_wrong".into(), b"", 401),
        (format!("GET /v1/cache/123 HTTP/1.1\r\n{ci}"), b"", 404),
        (format!("GET /v1/cache/12..3 HTTP/1.1\r\n{ci}"), b"", 400),
        (format!("PUT /v1/cache/123 HTTP/1.1\r\n{ci}"), b"", 411),
        (format!("PUT /v1/cache/123 HTTP/1.1\r\n{ci}\r\nContent-Length: 2048"), &[0; 2048], 413),
        (format!("PUT /v1/cache/123 HTTP/1.1\r\n{ci}\r\nContent-Length: 5"), b"hello", 200),
        (format!("PUT /v1/cache/123 HTTP/1.1\r\n{ci}\r\nContent-Length: 5"), b"world", 409),
    ];
    for (head, body, expected) in cases {
        let (status, answer) = served.request(&head, body);
        assert_eq!(status, expected, "{head}: {}", String::from_utf8_lossy(&answer));
    }
    // An upload cut off: 3 of its 10 bytes, then the connection closes.
    let mut stream = TcpStream::connect(&served.address).unwrap();
    write!(stream, "PUT /v1/cache/456 HTTP/1.1\r\nHost: x\r\n{ci}\r\nContent-Length: 10\r\n\r\ncut").unwrap();
    drop(stream);
    let incoming = served.store.join(".incoming");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir(&incoming).unwrap().count() > 0 {
        assert!(std::time::Instant::now() < deadline, "the cut upload's temporary file is removed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (status, body) =
        served.request(&format!("GET /v1/cache/123 HTTP/1.1\r\nAuthorization: Bearer {}", served.dev_token), b"");
    assert_eq!((status, body.as_slice()), (200, b"hello".as_slice()), "the first upload stands, read by any token");
    assert_eq!(served.artifacts(), ["123"], "the cut upload never appears");
    let counted = |families: &[Value], name: &str, token: &str| -> f64 {
        let family = families.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("{name}"));
        let sample = family["samples"].as_array().unwrap().iter().find(|s| s[1]["token"] == token || token.is_empty());
        sample.and_then(|s| s[2].as_str()).unwrap_or("0").parse().unwrap()
    };
    // The cut upload's refusal is counted as its handler ends: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let families = loop {
        let (status, text) = served.request("GET /metrics HTTP/1.1", b"");
        assert_eq!(status, 200);
        let families = common::checked_exposition(&String::from_utf8(text).unwrap());
        if counted(&families, "nxops_cache_serve_refused", "ci") >= 5.0 || std::time::Instant::now() > deadline {
            break families;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let figures = [
        ("nxops_cache_serve_unauthorized", "", 2.0),
        ("nxops_cache_serve_misses", "ci", 1.0),
        ("nxops_cache_serve_refused", "ci", 5.0),
        ("nxops_cache_serve_uploads", "ci", 1.0),
        ("nxops_cache_serve_stored_bytes", "ci", 5.0),
        ("nxops_cache_serve_hits", "dev", 1.0),
        ("nxops_cache_serve_served_bytes", "dev", 5.0),
        ("nxops_cache_serve_hits", "ci", 0.0),
    ];
    for (name, token, expected) in figures {
        assert_eq!(counted(&families, name, token), expected, "{name}{{token={token:?}}}");
    }
}

#[test]
fn check_says_whether_the_file_and_the_store_are_sound() {
    let scratch = Scratch::new();
    let dir = scratch.spaces.path();
    let file = dir.join("serve.json");
    std::fs::write(&file, r#"{"store": {"folder": "store"}, "tokens": []}"#).unwrap();
    let out = scratch.nxops(dir).args(["cache", "serve", "--check", "--config"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("serve.json: tokens: is empty"), "{stderr}");

    let entry =
        json_of(&run_ok(scratch.nxops(dir).args(["cache", "token", "--name", "ci", "--json"])))["entry"].clone();
    std::fs::write(&file, json!({"store": {"folder": "store"}, "tokens": [entry]}).to_string()).unwrap();
    let out = run_ok(scratch.nxops(dir).args(["cache", "serve", "--check", "--config"]).arg(&file));
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration sound"));
    assert!(dir.join("store/.incoming").is_dir(), "the store was opened");
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish_then_stops() {
    let scratch = Scratch::new();
    let mut served = Served::start(&scratch, json!({}));
    let mut stream = TcpStream::connect(&served.address).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let head = format!(
        "PUT /v1/cache/789 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 10\r\n\r\n",
        served.ci_token
    );
    stream.write_all(format!("{head}first").as_bytes()).unwrap();
    // The upload has begun once its temporary file exists.
    let incoming = served.store.join(".incoming");
    while std::fs::read_dir(&incoming).unwrap().count() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    rustix::process::kill_process(rustix::process::Pid::from_child(&served.child), rustix::process::Signal::TERM)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(served.child.try_wait().unwrap().is_none(), "the server waits for the upload in flight");
    stream.write_all(b"-half").unwrap();
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(stream);
    let status = served.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(served.artifacts(), ["789"]);
    assert!(TcpStream::connect(&served.address).is_err(), "and listens no more");
}

#[test]
fn an_upload_that_stalls_is_refused_after_the_client_timeout_and_leaves_nothing() {
    let scratch = Scratch::new();
    let served = Served::start(&scratch, json!({"clientTimeout": "1s"}));
    let started = std::time::Instant::now();
    let (status, body) = served.request(
        &format!("PUT /v1/cache/321 HTTP/1.1\r\nAuthorization: Bearer {}\r\nContent-Length: 10", served.ci_token),
        b"half",
    );
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(served.artifacts().is_empty());
    assert_eq!(std::fs::read_dir(served.store.join(".incoming")).unwrap().count(), 0);
}

#[test]
fn a_download_nobody_reads_is_cut_after_the_client_timeout_and_frees_its_artifact() {
    let scratch = Scratch::new();
    let served = Served::start(&scratch, json!({"clientTimeout": "1s", "maxSize": "1MB", "evictInterval": "200ms"}));
    // Larger than what loopback's socket buffers hold, so the server's writes must wait.
    let body: Vec<u8> = (0..32 << 20).map(|i: u32| (i % 253) as u8).collect();
    upload(&served, "55", &body);
    let mut reader = served.begin_download("55");
    // The reader stops; its download holds the 32 MB artifact past maxSize only until it is cut.
    eventually("the stalled download is cut and the artifact evicted", || served.artifacts().is_empty());
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(rest.len() < body.len(), "the connection ended before the artifact ({} bytes)", rest.len());
    let (_, text) = served.request("GET /metrics HTTP/1.1", b"");
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("nxops_cache_serve_stalled_total 1\n"), "{text}");
}

#[test]
fn a_workspace_that_uses_a_team_cache_has_it_in_its_health_report() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let mut served = Served::start(&scratch, json!({}));
    let check = || {
        let out = scratch.nxops(&ws).args(["--json", "monitor", "check"]).output().unwrap();
        let report = json_of(&out);
        let remote = report["components"].as_array().unwrap().iter().find(|c| c["name"] == "remoteCache").cloned();
        (report, remote)
    };
    let (report, remote) = check();
    assert_eq!(remote, None, "no team cache configured, none judged: {report}");
    // Nx's own variables in the root's .env, as Nx loads them.
    std::fs::write(
        ws.join(".env"),
        format!(
            "NX_SELF_HOSTED_REMOTE_CACHE_SERVER={}\nNX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN={}\n",
            served.url, served.dev_token
        ),
    )
    .unwrap();
    let (report, remote) = check();
    let remote = remote.unwrap_or_else(|| panic!("{report}"));
    assert_eq!(remote["score"], 100, "{report}");
    // .env.local comes first in Nx's order: its token wins, and the server refuses it.
    std::fs::write(ws.join(".env.local"), "NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN=not-a-token\n").unwrap();
    let (report, remote) = check();
    let remote = remote.unwrap();
    assert_eq!(remote["score"], 10, "{report}");
    let reason = remote["reasons"][0].as_str().unwrap();
    assert!(reason.contains(&served.url) && reason.contains("ACCESS_TOKEN refused (401"), "{reason}");
    assert_eq!(report["rating"], "Critical", "Nx 24 fails its runs so: {report}");
    std::fs::remove_file(ws.join(".env.local")).unwrap();
    // The server goes away.
    let _ = served.child.kill();
    let _ = served.child.wait();
    let (report, remote) = check();
    let remote = remote.unwrap();
    assert_eq!(remote["score"], 10, "{report}");
    let reason = remote["reasons"][0].as_str().unwrap();
    assert!(reason.contains(&served.url) && reason.contains("cannot be used"), "{reason}");
    // What the rating stands for: Nx, reading the same .env, fails its run.
    let nx = ws.join("node_modules/.bin/nx");
    let out = scratch
        .tool(&ws, &nx.to_string_lossy())
        .args(["run-many", "-t", "build", "--outputStyle=static"])
        .env("NX_TUI", "false")
        .output()
        .unwrap();
    let log =
        without_ansi(&format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    assert!(!out.status.success() && log.contains("Failed to send request"), "{log}");
}

#[test]
fn over_https_nx_restores_what_ci_stored() {
    let (ci, ci_ws, developer, dev_ws) = checkouts();
    let dir = ci.spaces.path();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    let served = Served::start(&ci, json!({"tls": {"cert": "cert.pem", "key": "key.pem"}}));
    assert!(served.url.starts_with("https://127.0.0.1:"), "{}", served.url);
    // The certificate is self-signed: Nx's client is told to accept it the way Node is.
    let trusting = |mut cmd: std::process::Command| {
        cmd.env("NODE_TLS_REJECT_UNAUTHORIZED", "0");
        cmd
    };
    let built = build_with(&ci, &ci_ws, &served, &served.ci_token, trusting);
    assert_eq!(served.artifacts().len(), built.len());
    let restored = build_with(&developer, &dev_ws, &served, &served.dev_token, trusting);
    assert!(restored.values().all(|s| s == "[remote cache]"), "{restored:?}");
    assert_eq!(common::snapshot(&dev_ws.join("dist")), common::snapshot(&ci_ws.join("dist")));
}

#[test]
fn a_missing_certificate_is_bad_input_named_in_check() {
    let scratch = Scratch::new();
    let dir = scratch.spaces.path();
    let entry =
        json_of(&run_ok(scratch.nxops(dir).args(["cache", "token", "--name", "ci", "--json"])))["entry"].clone();
    let file = dir.join("serve.json");
    let config =
        json!({"store": {"folder": "store"}, "tls": {"cert": "nope.pem", "key": "nope.key"}, "tokens": [entry]});
    std::fs::write(&file, config.to_string()).unwrap();
    let out = scratch.nxops(dir).args(["cache", "serve", "--check", "--config"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("serve.json: tls:") && stderr.contains("nope.pem"), "{stderr}");
}

#[test]
fn a_hash_named_like_another_tokens_prefix_is_a_plain_miss_and_touches_its_folder_not() {
    let scratch = Scratch::new();
    let served = Served::start(&scratch, json!({}));
    let ci = format!("Authorization: Bearer {}", served.ci_token);
    // What a token with the prefix team/ has stored.
    std::fs::create_dir_all(served.store.join("team")).unwrap();
    std::fs::write(served.store.join("team/42"), b"a prefixed artifact").unwrap();
    let (status, _) = served.request(&format!("GET /v1/cache/team HTTP/1.1\r\n{ci}"), b"");
    assert_eq!(status, 404);
    assert!(served.store.join("team/42").exists(), "the prefix folder is left alone");
    assert_eq!(std::fs::read_dir(served.store.join(".damaged")).unwrap().count(), 0);
}

/// Uploads `body` under `hash` with the CI token; fails the test unless stored.
fn upload(served: &Served, hash: &str, body: &[u8]) {
    let head = format!(
        "PUT /v1/cache/{hash} HTTP/1.1\r\nAuthorization: Bearer {}\r\nContent-Length: {}",
        served.ci_token,
        body.len()
    );
    let (status, answer) = served.request(&head, body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
}

/// Waits until `done` holds (the policy thread runs on its own clock).
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn past_max_size_the_least_recently_read_are_evicted_down_to_ninety_percent() {
    let scratch = Scratch::new();
    evicts_the_least_recently_read(Served::start(&scratch, json!({"maxSize": "100B", "evictInterval": "300ms"})));
}

#[test]
fn over_garage_past_max_size_the_least_recently_read_are_evicted_down_to_ninety_percent() {
    let (scratch, garage) = (Scratch::new(), Garage::single());
    evicts_the_least_recently_read(Served::on_garage(
        &scratch,
        &garage,
        json!({"maxSize": "100B", "evictInterval": "300ms"}),
    ));
}

fn evicts_the_least_recently_read(served: Served) {
    for hash in ["1", "2", "3"] {
        upload(&served, hash, &[b'x'; 40]);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // 1 is read last: 2 is now the least recently read.
    let (status, _) =
        served.request(&format!("GET /v1/cache/1 HTTP/1.1\r\nAuthorization: Bearer {}", served.dev_token), b"");
    assert_eq!(status, 200);
    eventually("2 is evicted", || served.artifacts() == ["1", "3"]);
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert_eq!(served.artifacts(), ["1", "3"], "80 bytes are under 90% of 100: nothing more goes");
    let (_, text) = served.request("GET /metrics HTTP/1.1", b"");
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("nxops_cache_serve_evicted_total 1\n"), "{text}");
    assert!(text.contains("nxops_cache_serve_bytes 80\n"), "{text}");
}

#[test]
fn an_eviction_never_removes_an_artifact_being_downloaded() {
    let scratch = Scratch::new();
    eviction_waits_for_a_download(Served::start(&scratch, json!({"maxSize": "1MB", "evictInterval": "200ms"})));
}

#[test]
fn over_garage_an_eviction_never_removes_an_artifact_being_downloaded() {
    let (scratch, garage) = (Scratch::new(), Garage::single());
    eviction_waits_for_a_download(Served::on_garage(
        &scratch,
        &garage,
        json!({"maxSize": "1MB", "evictInterval": "200ms"}),
    ));
}

fn eviction_waits_for_a_download(served: Served) {
    let body: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let stream = TcpStream::connect(&served.address).unwrap();
    upload(&served, "77", &body);
    // A download begins, and its reader stops after the head while evictions run.
    let mut reader = served.begin_download_on(stream, "77");
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert_eq!(served.artifacts(), ["77"], "five eviction rounds passed over the artifact being read");
    let mut answer = Vec::new();
    reader.read_to_end(&mut answer).unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        answer[split + 4..] == body[..],
        "the download finished whole ({} of {} bytes)",
        answer.len() - split - 4,
        body.len()
    );
    eventually("once read, the 8 MB artifact is evicted past 1 MB", || served.artifacts().is_empty());
}

#[test]
fn over_garage_what_ci_builds_a_developer_restores_and_a_read_only_token_stores_nothing() {
    let garage = Garage::single();
    let (ci, ci_ws, developer, dev_ws) = checkouts();
    let served = Served::on_garage(&ci, &garage, json!({}));
    let built = build(&ci, &ci_ws, &served, &served.ci_token);
    assert!(built.values().all(String::is_empty), "CI's first build runs every task: {built:?}");
    assert_eq!(served.artifacts().len(), built.len(), "one object per task in the bucket");

    std::fs::write(dev_ws.join("packages/alpha/src.txt"), "changed on a developer's machine\n").unwrap();
    let restored = build(&developer, &dev_ws, &served, &served.dev_token);
    let ran: Vec<_> = restored.iter().filter(|(_, s)| s.is_empty()).map(|(t, _)| t.as_str()).collect();
    assert!(ran.contains(&"alpha:build"), "the changed project (and what depends on it) runs: {restored:?}");
    assert_eq!(served.artifacts().len(), built.len(), "the read-only token's uploads are refused");
    let (status, _) = served.request(
        &format!("PUT /v1/cache/123 HTTP/1.1\r\nAuthorization: Bearer {}\r\nContent-Length: 3", served.dev_token),
        b"abc",
    );
    assert_eq!(status, 403);

    // A third checkout, unchanged, restores every task byte for byte.
    let (third, third_ws) = {
        let scratch = Scratch::new();
        let ws = scratch.workspace("third", "none");
        (scratch, ws)
    };
    let all = build(&third, &third_ws, &served, &served.dev_token);
    assert!(all.values().all(|s| s == "[remote cache]"), "{all:?}");
    assert_eq!(common::snapshot(&third_ws.join("dist")), common::snapshot(&ci_ws.join("dist")));
}

#[test]
fn over_garage_a_damaged_object_is_a_clean_miss_and_a_rebuild_never_a_wrong_hit() {
    let garage = Garage::single();
    let (ci, ci_ws, developer, dev_ws) = checkouts();
    let served = Served::on_garage(&ci, &garage, json!({}));
    build(&ci, &ci_ws, &served, &served.ci_token);
    let artifacts = served.artifacts();
    // Behind the server's back, straight in the bucket: one flipped byte, one object cut short.
    let bucket = garage.client();
    let mut bytes = bucket.get(&artifacts[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    bucket.put(&artifacts[0], bytes);
    let bytes = bucket.get(&artifacts[1]).unwrap();
    bucket.put(&artifacts[1], bytes[..bytes.len() - 10].to_vec());

    let result = build(&developer, &dev_ws, &served, &served.dev_token);
    let hits = result.values().filter(|s| *s == "[remote cache]").count();
    assert_eq!(hits, artifacts.len() - 2, "the two damaged ones run, the rest are hits: {result:?}");
    assert_eq!(common::snapshot(&dev_ws.join("dist")), common::snapshot(&ci_ws.join("dist")));
    let aside: Vec<_> = bucket.keys().into_iter().filter(|k| k.starts_with(".damaged/")).collect();
    assert_eq!(aside.len(), 2, "both kept aside: {aside:?}");
    assert_eq!(served.artifacts().len(), artifacts.len() - 2, "and a later request for them is a plain miss");
}

#[test]
fn over_garage_a_lost_index_is_rebuilt_and_what_the_server_never_checked_is_checked_in_full() {
    let garage = Garage::single();
    let scratch = Scratch::new();
    let small = b"a small artifact".to_vec();
    let large: Vec<u8> = (0..3u32 << 20).map(|i| (i % 253) as u8).collect();
    let mut served = Served::on_garage(&scratch, &garage, json!({}));
    upload(&served, "1", &small);
    upload(&served, "2", &large);
    upload(&served, "3", &large[..2 << 20]);
    let _ = served.child.kill();
    let _ = served.child.wait();
    let index = scratch.spaces.path().join(format!("{}.index.db", common::garage::BUCKET));
    assert!(index.exists(), "the index lives beside the server's file");
    std::fs::remove_file(&index).unwrap();
    // A large object damaged while no server ran.
    let bucket = garage.client();
    let mut bytes = bucket.get("3").unwrap();
    bytes[1000] ^= 1;
    bucket.put("3", bytes);

    let served = Served::on_garage(&scratch, &garage, json!({}));
    let get = |hash: &str| {
        served.request(&format!("GET /v1/cache/{hash} HTTP/1.1\r\nAuthorization: Bearer {}", served.dev_token), b"")
    };
    assert_eq!(get("1"), (200, small.clone()), "small: read once, checked, served from memory");
    let (status, body) = get("2");
    assert!(status == 200 && body == large, "large: checked, then streamed ({status}, {} bytes)", body.len());
    assert_eq!(get("3").0, 404, "a damaged object no server had checked is a miss");
    assert_eq!(get("2"), (200, large.clone()), "and again, by its checked entity tag");
    let (status, text) =
        served.request(&format!("GET /v1/stats HTTP/1.1\r\nAuthorization: Bearer {}", served.dev_token), b"");
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(stats["artifacts"], 2, "the rebuilt index holds what the bucket lists, less the damaged: {stats}");
    assert_eq!(stats["bytes"], small.len() + large.len(), "{stats}");
}

#[test]
fn over_three_garage_nodes_a_node_killed_mid_run_costs_no_wrong_hit_and_the_cache_is_complete_after() {
    let mut garage = Garage::cluster(3);
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let served = Served::on_garage(&scratch, &garage, json!({}));
    let body = |i: usize| -> Vec<u8> { (0..(16 << 10) + i * 997).map(|j| ((i * 31 + j) % 251) as u8).collect() };
    let ci = format!("Authorization: Bearer {}", served.ci_token);
    let dev = format!("Authorization: Bearer {}", served.dev_token);
    let mut stored = Vec::new();
    let mut statuses = BTreeMap::<String, usize>::new();
    let clock = std::time::Instant::now();
    for i in 0..200 {
        // One node of three down (not the server's): writes and reads still reach a quorum.
        if i == 40 {
            garage.kill(1);
        }
        if i == 80 {
            garage.start(1);
        }
        // The server's own node down: every request fails, cleanly and at once.
        if i == 120 {
            garage.kill(0);
        }
        if i == 130 {
            // Nx itself, while the store is out of reach: every download a miss, every upload
            // refused the way Nx carries on from, and the build succeeds.
            let built = build(&scratch, &ws, &served, &served.ci_token);
            assert!(!built.is_empty() && built.values().all(String::is_empty), "{built:?}");
        }
        if i == 160 {
            garage.start(0);
        }
        let expected = body(i);
        let (status, answer) = served.request(
            &format!("PUT /v1/cache/{} HTTP/1.1\r\n{ci}\r\nContent-Length: {}", 1000 + i, expected.len()),
            &expected,
        );
        assert!(
            status == 200 || status == 403,
            "an upload succeeds or fails cleanly: {status} {}",
            String::from_utf8_lossy(&answer)
        );
        *statuses.entry(format!("PUT {status}")).or_default() += 1;
        if status == 200 {
            stored.push(i);
        }
        // A download of an earlier artifact beside each upload.
        let j = i / 2;
        let (status, answer) = served.request(&format!("GET /v1/cache/{} HTTP/1.1\r\n{dev}", 1000 + j), b"");
        assert!(status == 200 || status == 404, "a download is a hit or a miss: {status}");
        if status == 200 {
            assert!(answer == body(j), "never a wrong or half-written hit ({} bytes for {})", answer.len(), 1000 + j);
        }
        *statuses.entry(format!("GET {status}")).or_default() += 1;
    }
    assert!(stored.len() >= 150, "only the server's own node being down loses uploads: {statuses:?}");
    assert!(statuses.get("PUT 403").is_some_and(|&n| n >= 30), "{statuses:?}");
    // Complete after the node returns: every stored artifact, through the server and straight from
    // the returned node.
    let returned = Bucket::new(&garage.endpoint(1));
    // The returned node reconnects to its peers in its own time (seconds).
    let first = format!("{}", 1000 + stored.last().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Err(err) = returned.try_get(&first) {
        assert!(std::time::Instant::now() < deadline, "the returned node never served again: {err}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for &i in &stored {
        let (status, answer) = served.request(&format!("GET /v1/cache/{} HTTP/1.1\r\n{dev}", 1000 + i), b"");
        assert!(status == 200 && answer == body(i), "{} after the node returned: {status}", 1000 + i);
        let direct = returned.try_get(&format!("{}", 1000 + i)).unwrap_or_else(|e| panic!("on the returned node: {e}"));
        assert_eq!(&direct[..direct.len() - 48], &body(i)[..]);
    }
    eprintln!("fault run: {statuses:?} {:?}", clock.elapsed());
}

#[test]
fn over_garage_check_names_a_wrong_bucket_wrong_credentials_and_missing_ones() {
    let garage = Garage::single();
    let scratch = Scratch::new();
    let dir = scratch.spaces.path();
    let entry =
        json_of(&run_ok(scratch.nxops(dir).args(["cache", "token", "--name", "ci", "--json"])))["entry"].clone();
    let file = dir.join("serve.json");
    let check = |store: Value, env: &[(&str, &str)]| {
        std::fs::write(&file, json!({"store": store, "tokens": [entry]}).to_string()).unwrap();
        let mut cmd = scratch.nxops(dir);
        cmd.args(["cache", "serve", "--check", "--config"]).arg(&file);
        for (name, value) in env {
            cmd.env(name, value);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, text) = check(garage.store_entry(), &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("configuration sound") && text.contains("bucket nx-cache"), "{text}");

    let mut wrong_bucket = garage.store_entry();
    wrong_bucket["s3"]["bucket"] = json!("no-such-bucket");
    let (code, text) = check(wrong_bucket, &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("serve.json: store:") && text.contains("bucket no-such-bucket"), "{text}");
    assert!(text.contains("NoSuchBucket"), "the service's own reason: {text}");

    let mut wrong_secret = garage.store_entry();
    wrong_secret["s3"]["secretAccessKey"] = json!("0".repeat(64));
    let (code, text) = check(wrong_secret, &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("serve.json: store:"), "{text}");
    assert!(!text.contains(&"0".repeat(64)), "the secret is never printed: {text}");

    // Credentials from the environment: missing ones are named, present ones win over the file's.
    let mut no_credentials = garage.store_entry();
    let object = no_credentials["s3"].as_object_mut().unwrap();
    object.remove("accessKeyId");
    object.remove("secretAccessKey");
    let (code, text) = check(no_credentials.clone(), &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("store.s3.accessKeyId: is missing") && text.contains("NXOPS_S3_ACCESS_KEY_ID"), "{text}");
    let env =
        [("NXOPS_S3_ACCESS_KEY_ID", common::garage::KEY_ID), ("NXOPS_S3_SECRET_ACCESS_KEY", common::garage::SECRET)];
    let (code, text) = check(no_credentials, &env);
    assert_eq!(code, Some(0), "{text}");

    let (code, text) = check(json!({"s3": {"endpoint": "127.0.0.1:3900", "bucket": "nx-cache"}}), &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("store.s3.endpoint: \"127.0.0.1:3900\" is not a URL"), "{text}");
    // Nothing listens on a port that was just free: the store cannot be reached, said quickly.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut unreachable = garage.store_entry();
    unreachable["s3"]["endpoint"] = json!(format!("http://127.0.0.1:{port}"));
    let started = std::time::Instant::now();
    let (code, text) = check(unreachable, &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "{:?}", started.elapsed());
}
