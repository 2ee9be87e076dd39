//! A supervised process's output: the last lines in memory, everything in
//! rotated files under the workspace's state folder.
//!
//! Each stream (stdout, stderr) is a pipe read by one task. Complete lines go
//! to a ring of at most `RING_LINES` lines and `RING_BYTES` bytes, and every
//! chunk is appended to `<state>/logs/<name>.<stream>.log` as it arrives (no
//! buffering, so a crash loses nothing). At `FILE_LIMIT` bytes the file is
//! renamed to `.1` (the old `.1` to `.2`, and `.2` is dropped).
//!
//! A run's header (`--- run N, pid P ---`) is written by the same task that
//! then reads the run's pipe ([`pump_run`]), so it always comes before the
//! run's first output: the child may write before its pump is scheduled, but
//! what it wrote waits in the pipe until the header is down.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;

pub const RING_LINES: usize = 200;
pub const RING_BYTES: usize = 16 * 1024;
pub const FILE_LIMIT: u64 = 5 << 20;
const KEEP: usize = 2;
const LINE_CAP: usize = 4096;

/// One stream of one process, shared by its pump and by readers.
pub struct LogStream {
    inner: Mutex<Inner>,
}

struct Inner {
    lines: VecDeque<String>,
    bytes: usize,
    partial: Vec<u8>,
    file: Option<Rotating>,
}

struct Rotating {
    path: PathBuf,
    file: File,
    size: u64,
}

impl LogStream {
    /// A stream that also writes to `path` (when given and writable).
    pub fn new(path: Option<PathBuf>) -> Arc<LogStream> {
        let file =
            path.and_then(|p| Rotating::open(p).map_err(|e| tracing::warn!(target: "nxops::supervisor", "{e}")).ok());
        Arc::new(LogStream { inner: Mutex::new(Inner { lines: VecDeque::new(), bytes: 0, partial: Vec::new(), file }) })
    }

    /// The last `n` complete lines (and a trailing partial line, if any).
    pub fn tail(&self, n: usize) -> Vec<String> {
        let inner = self.lock();
        let mut out: Vec<String> = inner.lines.iter().rev().take(n).rev().cloned().collect();
        if !inner.partial.is_empty() {
            if out.len() == n && n > 0 {
                out.remove(0);
            }
            out.push(String::from_utf8_lossy(&inner.partial).into_owned());
        }
        out
    }

    pub fn file(&self) -> Option<PathBuf> {
        self.lock().file.as_ref().map(|f| f.path.clone())
    }

    /// Takes a chunk of output.
    pub fn push(&self, chunk: &[u8]) {
        let mut inner = self.lock();
        if let Some(file) = inner.file.as_mut() {
            file.write(chunk);
        }
        for byte in chunk {
            if *byte == b'\n' {
                let line = String::from_utf8_lossy(&inner.partial).into_owned();
                inner.partial.clear();
                inner.add_line(line);
            } else if inner.partial.len() < LINE_CAP {
                inner.partial.push(*byte);
            }
        }
    }

    /// Marks a boundary between two runs of the process, in the ring and the file.
    pub fn mark(&self, text: &str) {
        let mut inner = self.lock();
        if !inner.partial.is_empty() {
            let line = String::from_utf8_lossy(&inner.partial).into_owned();
            inner.partial.clear();
            inner.add_line(line);
        }
        let line = format!("--- {text} ---");
        if let Some(file) = inner.file.as_mut() {
            file.write(format!("{line}\n").as_bytes());
        }
        inner.add_line(line);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn add_line(&mut self, line: String) {
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > RING_LINES || (self.bytes > RING_BYTES && self.lines.len() > 1) {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len();
            }
        }
    }
}

impl Rotating {
    fn open(path: PathBuf) -> Result<Rotating, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        use std::os::unix::fs::OpenOptionsExt;
        // Output may hold secrets: only the user reads it.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Rotating { path, file, size })
    }

    fn write(&mut self, chunk: &[u8]) {
        if self.size + chunk.len() as u64 > FILE_LIMIT && self.size > 0 {
            self.rotate();
        }
        if self.file.write_all(chunk).is_ok() {
            self.size += chunk.len() as u64;
        }
    }

    fn rotate(&mut self) {
        for i in (1..KEEP).rev() {
            let _ = std::fs::rename(numbered(&self.path, i), numbered(&self.path, i + 1));
        }
        let _ = std::fs::rename(&self.path, numbered(&self.path, 1));
        if let Ok(fresh) = Rotating::open(self.path.clone()) {
            *self = fresh;
        }
    }
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Marks `header` in `stream`, then reads a child's pipe into it: the one
/// writer of this run owns both, so the header is never after the run's output.
pub async fn pump_run(pipe: std::os::fd::OwnedFd, stream: Arc<LogStream>, header: String) {
    stream.mark(&header);
    pump(pipe, stream).await;
}

/// Reads a child's pipe into `stream` until the pipe closes (every writer exited).
pub async fn pump(pipe: std::os::fd::OwnedFd, stream: Arc<LogStream>) {
    let Ok(mut reader) = tokio::net::unix::pipe::Receiver::from_owned_fd(pipe) else { return };
    let mut buf = vec![0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => stream.push(&buf[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_up_to_the_caps() {
        let stream = LogStream::new(None);
        for i in 0..500 {
            stream.push(format!("line {i}\n").as_bytes());
        }
        stream.push(b"partial");
        let tail = stream.tail(3);
        assert_eq!(tail, vec!["line 498", "line 499", "partial"]);
        assert_eq!(stream.tail(1000).len(), RING_LINES + 1, "the ring and the partial line");
        for _ in 0..5 {
            stream.push(&vec![b'x'; 40_000]);
            stream.push(b"\n");
        }
        let tail = stream.tail(1000);
        assert_eq!(tail.iter().map(String::len).sum::<usize>(), 4 * LINE_CAP, "long lines push out the rest");
        assert!(tail.iter().all(|l| l.len() == LINE_CAP), "lines are cut at the cap");
    }

    #[test]
    fn files_rotate_and_keep_two() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/api.stdout.log");
        let stream = LogStream::new(Some(path.clone()));
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..12 {
            stream.push(&chunk);
        }
        stream.mark("restarted");
        assert!(std::fs::metadata(&path).unwrap().len() <= FILE_LIMIT);
        assert_eq!(std::fs::metadata(numbered(&path, 1)).unwrap().len(), FILE_LIMIT);
        assert!(numbered(&path, 2).exists());
        assert!(!numbered(&path, 3).exists());
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("--- restarted ---\n"));
    }

    /// A real child that writes and exits before its pump even starts: its
    /// output still comes after the run's header, in the file and the ring.
    #[tokio::test]
    async fn a_runs_header_comes_before_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/api.stdout.log");
        let stream = LogStream::new(Some(path.clone()));
        for run in 1..=3 {
            let mut child = std::process::Command::new("sh")
                .args(["-c", &format!("echo first of {run}; echo second of {run}")])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let pipe = std::os::fd::OwnedFd::from(child.stdout.take().unwrap());
            assert!(child.wait().unwrap().success(), "the child wrote and exited before the pump started");
            pump_run(pipe, stream.clone(), format!("run {run}, pid {}", child.id())).await;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 9, "{text}");
        for (i, chunk) in lines.chunks(3).enumerate() {
            let run = i + 1;
            assert!(chunk[0].starts_with(&format!("--- run {run}, pid ")), "{text}");
            assert_eq!(chunk[1..], [format!("first of {run}"), format!("second of {run}")], "{text}");
        }
        assert_eq!(stream.tail(9), lines, "the ring keeps the same order");
    }
}
