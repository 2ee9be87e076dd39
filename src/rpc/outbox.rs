//! The outbound side of one connection: a bounded queue and one writer, so no
//! sender ever waits on the peer.
//!
//! Every message is framed by its sender and handed over without blocking:
//! - *reliable* messages (responses, requests, the client's own notifications)
//!   are always queued;
//! - *events* (`nxops/<event>` notifications) are dropped once
//!   `EVENT_QUEUE_LIMIT` of them wait; the peer is told how many with an
//!   `nxops/eventsDropped` notification as soon as its queue has drained to half,
//!   and the loss is counted (`dropped_events_total`).
//!
//! The connection's writer thread drains the queue. Writes never block: sockets
//! are sent with `MSG_DONTWAIT`, a pipe of our own is made non-blocking, and
//! anything else is asked with `poll` first (see `Mode`); a full peer is waited
//! for in `poll` slices, so a peer that stops reading is noticed: when a reliable message has waited `RESPONSE_DEADLINE`
//! with no byte accepted, the connection is cut (`disconnect`: a socket is shut
//! down, so its reader sees the end and the session ends as a vanished client's).
//!
//! Fast path: the connection's own reader thread answers cheap requests inline;
//! when nothing is queued it writes the answer itself instead of waking the
//! writer (the `busy` flag, taken with a compare-and-swap and never waited on,
//! keeps the two from writing at once). Only that connection's threads ever
//! write to its descriptor; runtime threads only queue.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::frame;

/// Events that may wait for one slow reader before more are dropped.
pub const EVENT_QUEUE_LIMIT: usize = 1024;
/// How long a reliable message may wait with no byte accepted before the connection is cut.
pub const RESPONSE_DEADLINE: Duration = Duration::from_secs(10);
/// The notification that tells a peer how many events it missed (documented in docs/protocol.md,
/// whose drift test lists it with the events).
pub const EVENTS_DROPPED: &str = "nxops/eventsDropped";
/// How often a waiting write looks at the deadline.
const POLL_SLICE: Duration = Duration::from_millis(200);
/// A pipe accepts this much without blocking once `poll` says it is writable.
const PIPE_CHUNK: usize = 4096;
const SOCKET_CHUNK: usize = 64 * 1024;

static DROPPED_EVENTS: AtomicU64 = AtomicU64::new(0);
static LAST_DROP_MS: AtomicU64 = AtomicU64::new(0);

/// Events this process dropped for slow readers, over all its connections.
pub fn dropped_events_total() -> u64 {
    DROPPED_EVENTS.load(Ordering::Relaxed)
}

/// When this process last dropped an event (`clock::now_ms`), if ever.
pub fn last_drop_ms() -> Option<u64> {
    Some(LAST_DROP_MS.load(Ordering::Relaxed)).filter(|ms| *ms > 0)
}

/// How a descriptor is written without ever blocking on the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A socket: `send` with `MSG_DONTWAIT`.
    Socket,
    /// A pipe of our own made non-blocking, or a regular file: plain `write`.
    NonBlocking,
    /// Anything else (a terminal, a pipe shared with stderr): `poll`, then at
    /// most `PIPE_CHUNK` bytes, which a pipe with room takes without blocking.
    Blocking,
}

impl Mode {
    fn of(fd: &OwnedFd) -> Mode {
        use rustix::fs::{FileType, fstat};
        let Ok(stat) = fstat(fd) else { return Mode::Blocking };
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Socket => Mode::Socket,
            FileType::RegularFile => Mode::NonBlocking,
            // Non-blocking is a property of the pipe's open file, which stderr may share
            // (`2>&1`): only a pipe that stderr does not write to is made non-blocking.
            FileType::Fifo if !same_file(&stat, rustix::stdio::stderr()) && set_nonblocking(fd) => Mode::NonBlocking,
            _ => Mode::Blocking,
        }
    }
}

fn same_file(stat: &rustix::fs::Stat, other: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(other).is_ok_and(|o| o.st_dev == stat.st_dev && o.st_ino == stat.st_ino)
}

fn set_nonblocking(fd: &OwnedFd) -> bool {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    fcntl_getfl(fd).and_then(|flags| fcntl_setfl(fd, flags | OFlags::NONBLOCK)).is_ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Reliable,
    Event,
}

struct Item {
    class: Class,
    bytes: Arc<[u8]>,
}

/// An event framed once, to be queued on many connections.
#[derive(Clone)]
pub struct Frame(Arc<[u8]>);

impl Frame {
    /// The notification `{method, params}`, framed.
    pub fn event(method: &str, params: Value) -> Option<Frame> {
        encode(&json!({"jsonrpc": "2.0", "method": method, "params": params})).map(|bytes| Frame(bytes.into()))
    }
}

#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Item>,
    shared: Arc<Shared>,
}

struct Shared {
    fd: OwnedFd,
    mode: Mode,
    /// Items sent and not yet written, by class (the writer decrements after writing).
    events_queued: AtomicUsize,
    reliable_queued: AtomicUsize,
    /// Milliseconds since `epoch` when `reliable_queued` last rose from zero.
    reliable_since_ms: AtomicU64,
    /// Milliseconds since `epoch` of the last byte the peer accepted.
    progress_ms: AtomicU64,
    epoch: Instant,
    dropped_unreported: AtomicU64,
    dropped: AtomicU64,
    /// Someone is writing to `fd` now.
    busy: AtomicBool,
    /// The writer found `busy` taken and waits to be woken.
    writer_waiting: AtomicBool,
    /// The peer is gone (a write failed) or was cut off.
    gone: AtomicBool,
    writer: OnceLock<std::thread::Thread>,
    deadline: Duration,
    disconnect: Box<dyn Fn() + Send + Sync>,
}

impl Outbox {
    /// An outbox writing to `fd`. `disconnect` cuts the connection off (called
    /// at most once, from the thread that saw the deadline pass).
    pub fn new(fd: impl Into<OwnedFd>, disconnect: impl Fn() + Send + Sync + 'static) -> Outbox {
        Outbox::with_deadline(fd, RESPONSE_DEADLINE, disconnect)
    }

    /// `new` with another deadline for reliable messages.
    pub fn with_deadline(
        fd: impl Into<OwnedFd>,
        deadline: Duration,
        disconnect: impl Fn() + Send + Sync + 'static,
    ) -> Outbox {
        let fd: OwnedFd = fd.into();
        let mode = Mode::of(&fd);
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            fd,
            mode,
            events_queued: AtomicUsize::new(0),
            reliable_queued: AtomicUsize::new(0),
            reliable_since_ms: AtomicU64::new(0),
            progress_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            dropped_unreported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            writer_waiting: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            writer: OnceLock::new(),
            deadline,
            disconnect: Box::new(disconnect),
        });
        let for_writer = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("nxops-out".into())
            .stack_size(128 * 1024)
            .spawn(move || writer_loop(&for_writer, &rx));
        match spawned {
            Ok(handle) => {
                let _ = shared.writer.set(handle.thread().clone());
            }
            Err(err) => {
                tracing::error!(target: "nxops::rpc", "cannot start a connection's writer: {err}");
                shared.gone.store(true, Ordering::Relaxed);
            }
        }
        Outbox { tx, shared }
    }

    /// Queues a reliable message (response, request, or a notification the peer must get).
    /// Returns false when the peer is gone.
    pub fn send(&self, message: &impl Serialize) -> bool {
        match encode(message) {
            Some(bytes) => self.push(Class::Reliable, bytes.into()),
            None => !self.is_broken(),
        }
    }

    /// Sends a reliable notification `{method, params}`.
    pub fn notify(&self, method: &str, params: Value) -> bool {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
    }

    /// Queues an event (framed once by its publisher for every connection): dropped,
    /// and counted, when the peer has `EVENT_QUEUE_LIMIT` events waiting. Returns
    /// false when the peer is gone.
    pub fn event_frame(&self, frame: &Frame) -> bool {
        if self.is_broken() {
            return false;
        }
        self.drop_event() || self.push(Class::Event, frame.0.clone())
    }

    /// True (and counted) when the queue already holds `EVENT_QUEUE_LIMIT` events.
    fn drop_event(&self) -> bool {
        if self.shared.events_queued.load(Ordering::Relaxed) < EVENT_QUEUE_LIMIT {
            return false;
        }
        self.shared.dropped_unreported.fetch_add(1, Ordering::Relaxed);
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        DROPPED_EVENTS.fetch_add(1, Ordering::Relaxed);
        LAST_DROP_MS.store(crate::clock::now_ms(), Ordering::Relaxed);
        true
    }

    /// Writes a reliable message from the calling thread when nothing is queued
    /// (the reader's fast path; it may wait for the peer, which costs only this
    /// connection), else queues it.
    pub fn send_now(&self, message: &impl Serialize) -> bool {
        let Some(bytes) = encode(message) else { return !self.is_broken() };
        let shared = &*self.shared;
        if shared.queued() == 0 && shared.take_busy() {
            let written = shared.write_all(&bytes, true);
            shared.release_busy();
            return written;
        }
        self.push(Class::Reliable, bytes.into())
    }

    fn push(&self, class: Class, bytes: Arc<[u8]>) -> bool {
        let shared = &*self.shared;
        if shared.gone.load(Ordering::Relaxed) {
            return false;
        }
        match class {
            Class::Event => {
                shared.events_queued.fetch_add(1, Ordering::AcqRel);
            }
            Class::Reliable => {
                if shared.reliable_queued.fetch_add(1, Ordering::AcqRel) == 0 {
                    shared.reliable_since_ms.store(shared.now_ms(), Ordering::Relaxed);
                }
            }
        }
        if self.tx.send(Item { class, bytes }).is_err() {
            return false;
        }
        if let Some(writer) = shared.writer.get() {
            writer.unpark();
        }
        true
    }

    pub fn is_broken(&self) -> bool {
        self.shared.gone.load(Ordering::Relaxed)
    }

    /// Events dropped on this connection so far.
    pub fn dropped_events(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until everything queued has been written or the peer is gone.
    pub fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while (self.shared.queued() > 0 || self.shared.busy.load(Ordering::Acquire))
            && !self.is_broken()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Shared {
    /// Items sent and not yet written.
    fn queued(&self) -> usize {
        self.events_queued.load(Ordering::Acquire) + self.reliable_queued.load(Ordering::Acquire)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn take_busy(&self) -> bool {
        self.busy.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    fn release_busy(&self) {
        self.busy.store(false, Ordering::Release);
        if self.writer_waiting.load(Ordering::Acquire)
            && let Some(writer) = self.writer.get()
        {
            writer.unpark();
        }
    }

    /// Writes `bytes` whole, waiting for the peer in slices. Returns false (and
    /// cuts the connection off when the deadline passed) if it cannot.
    fn write_all(&self, bytes: &[u8], reliable: bool) -> bool {
        let mut rest = bytes;
        self.progress_ms.store(self.now_ms(), Ordering::Relaxed);
        // Descriptors that can say "full" without blocking are tried first; the
        // others are asked with `poll` before every write.
        let mut wait = self.mode == Mode::Blocking;
        while !rest.is_empty() {
            if self.gone.load(Ordering::Relaxed) {
                return false;
            }
            if wait {
                match self.wait_writable() {
                    Ok(true) => {}
                    Ok(false) => {
                        if self.stalled(reliable) {
                            tracing::warn!(
                                target: "nxops::rpc",
                                "the peer accepted nothing for {:?} with an answer waiting; disconnecting it",
                                self.deadline
                            );
                            self.cut_off();
                            return false;
                        }
                        continue;
                    }
                    Err(err) => {
                        tracing::debug!(target: "nxops::rpc", "peer stopped reading: {err}");
                        self.gone.store(true, Ordering::Relaxed);
                        return false;
                    }
                }
            }
            match self.try_write(rest) {
                Ok(Some(n)) => {
                    rest = &rest[n..];
                    self.progress_ms.store(self.now_ms(), Ordering::Relaxed);
                    wait = self.mode == Mode::Blocking;
                }
                Ok(None) => wait = true,
                Err(err) => {
                    tracing::debug!(target: "nxops::rpc", "peer stopped reading: {err}");
                    self.gone.store(true, Ordering::Relaxed);
                    return false;
                }
            }
        }
        true
    }

    /// Waits up to `POLL_SLICE` for room. `Ok(false)`: none yet.
    fn wait_writable(&self) -> std::io::Result<bool> {
        use rustix::event::{PollFd, PollFlags, poll};
        let fd: BorrowedFd<'_> = self.fd.as_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
        let timeout = rustix::event::Timespec { tv_sec: 0, tv_nsec: POLL_SLICE.as_nanos() as i64 };
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => Ok(false),
            Ok(_) => {
                let revents = fds[0].revents();
                if revents.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL)
                    && !revents.contains(PollFlags::OUT)
                {
                    return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
                }
                Ok(true)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Writes what fits without blocking. `Ok(None)`: no room.
    fn try_write(&self, bytes: &[u8]) -> std::io::Result<Option<usize>> {
        let fd: BorrowedFd<'_> = self.fd.as_fd();
        let written = match self.mode {
            Mode::Socket => {
                use rustix::net::{SendFlags, send};
                send(fd, &bytes[..bytes.len().min(SOCKET_CHUNK)], SendFlags::DONTWAIT | SendFlags::NOSIGNAL)
            }
            Mode::NonBlocking => rustix::io::write(fd, &bytes[..bytes.len().min(SOCKET_CHUNK)]),
            // Only after `poll` said there is room: a pipe takes this much without blocking.
            Mode::Blocking => rustix::io::write(fd, &bytes[..bytes.len().min(PIPE_CHUNK)]),
        };
        match written {
            Ok(0) => Err(std::io::Error::from(std::io::ErrorKind::WriteZero)),
            Ok(n) => Ok(Some(n)),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// A reliable message has waited `RESPONSE_DEADLINE` with no byte accepted.
    fn stalled(&self, writing_reliable: bool) -> bool {
        let now = self.now_ms();
        let progress = self.progress_ms.load(Ordering::Relaxed);
        let since = if writing_reliable {
            progress
        } else if self.reliable_queued.load(Ordering::Acquire) > 0 {
            progress.max(self.reliable_since_ms.load(Ordering::Relaxed))
        } else {
            return false;
        };
        now.saturating_sub(since) >= self.deadline.as_millis() as u64
    }

    fn cut_off(&self) {
        if !self.gone.swap(true, Ordering::AcqRel) {
            (self.disconnect)();
        }
    }
}

/// The writer thread: drains the queue until every sender is gone.
fn writer_loop(shared: &Shared, rx: &mpsc::Receiver<Item>) {
    loop {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(mpsc::TryRecvError::Disconnected) => return,
            Err(mpsc::TryRecvError::Empty) => {
                std::thread::park_timeout(Duration::from_secs(1));
                continue;
            }
        };
        // The reader may be writing an inline answer: wait for it to finish (it wakes us).
        loop {
            if shared.take_busy() {
                break;
            }
            shared.writer_waiting.store(true, Ordering::Release);
            if shared.take_busy() {
                break;
            }
            std::thread::park_timeout(Duration::from_millis(5));
        }
        shared.writer_waiting.store(false, Ordering::Release);
        let unreported = shared.dropped_unreported.load(Ordering::Relaxed);
        if unreported > 0
            && shared.events_queued.load(Ordering::Relaxed) <= EVENT_QUEUE_LIMIT / 2
            && !shared.gone.load(Ordering::Relaxed)
        {
            shared.dropped_unreported.fetch_sub(unreported, Ordering::Relaxed);
            let total = shared.dropped.load(Ordering::Relaxed);
            let notice = json!({"jsonrpc": "2.0", "method": EVENTS_DROPPED,
                "params": {"dropped": unreported, "total": total}});
            if let Some(bytes) = encode(&notice) {
                shared.write_all(&bytes, false);
            }
        }
        let reliable = item.class == Class::Reliable;
        if !shared.gone.load(Ordering::Relaxed) {
            shared.write_all(&item.bytes, reliable);
        }
        match item.class {
            Class::Event => {
                shared.events_queued.fetch_sub(1, Ordering::AcqRel);
            }
            Class::Reliable => {
                shared.reliable_queued.fetch_sub(1, Ordering::AcqRel);
            }
        }
        shared.release_busy();
    }
}

fn encode(message: &impl Serialize) -> Option<Vec<u8>> {
    match serde_json::to_vec(message) {
        Ok(body) => {
            let mut bytes = Vec::with_capacity(body.len() + 32);
            frame::encode(&body, &mut bytes);
            Some(bytes)
        }
        Err(err) => {
            tracing::error!(target: "nxops::rpc", "cannot serialize an outgoing message: {err}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    use super::*;

    /// Queues an event the way `Core::publish` does.
    fn tick(outbox: &Outbox, params: Value) -> bool {
        outbox.event_frame(&Frame::event("nxops/tick", params).unwrap())
    }

    fn read_messages(stream: &mut UnixStream, count: usize) -> Vec<Value> {
        let mut reader = frame::FrameReader::new(stream);
        (0..count).map(|_| serde_json::from_slice(&reader.read_frame().unwrap().unwrap().unwrap()).unwrap()).collect()
    }

    #[test]
    fn messages_arrive_whole_and_in_order() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let outbox = Outbox::new(ours, || {});
        for n in 0..50 {
            assert!(outbox.send(&json!({"n": n, "pad": "x".repeat(10_000)})));
        }
        let got = read_messages(&mut theirs, 50);
        assert!(got.iter().enumerate().all(|(n, m)| m["n"] == n), "out of order");
    }

    #[test]
    fn a_reader_that_stops_loses_events_not_answers_and_is_told() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let outbox = Outbox::new(ours, || {});
        let big = "e".repeat(4096);
        // Far more events than the socket buffer and the queue hold, while nobody reads.
        for n in 0..(EVENT_QUEUE_LIMIT * 4) {
            assert!(tick(&outbox, json!({"n": n, "pad": big})));
        }
        assert!(outbox.dropped_events() > 0, "nothing was dropped");
        // Sending never waited for the peer, and an answer still goes through.
        assert!(outbox.send(&json!({"id": 1, "result": "answer"})));
        let mut reader = frame::FrameReader::new(&mut theirs);
        let (mut answered, mut told) = (false, None);
        while !(answered && told.is_some()) {
            let message: Value = serde_json::from_slice(&reader.read_frame().unwrap().unwrap().unwrap()).unwrap();
            answered |= message["result"] == "answer";
            if message["method"] == EVENTS_DROPPED {
                told = message["params"]["dropped"].as_u64();
            }
        }
        assert_eq!(told, Some(outbox.dropped_events()));
    }

    #[test]
    fn a_sender_never_waits_for_a_stalled_peer() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let outbox = Outbox::new(ours, || {});
        let started = Instant::now();
        for n in 0..(EVENT_QUEUE_LIMIT * 2) {
            tick(&outbox, json!({"n": n, "pad": "p".repeat(8192)}));
        }
        outbox.send(&json!({"id": 2, "result": null}));
        assert!(started.elapsed() < Duration::from_secs(2), "sending took {:?}", started.elapsed());
    }

    #[test]
    fn a_peer_that_leaves_breaks_the_outbox() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let outbox = Outbox::new(ours, || {});
        drop(theirs);
        outbox.send(&json!({"id": 1}));
        outbox.flush(Duration::from_secs(2));
        assert!(outbox.is_broken());
        assert!(!outbox.send(&json!({"id": 2})));
    }

    #[test]
    fn a_peer_that_does_not_take_its_answer_is_cut_off() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (cut_tx, cut_rx) = mpsc::channel();
        let outbox = Outbox::with_deadline(ours, Duration::from_millis(600), move || {
            let _ = cut_tx.send(Instant::now());
        });
        let started = Instant::now();
        // Fill the socket with an answer nobody reads.
        outbox.send(&json!({"id": 1, "result": "r".repeat(4 << 20)}));
        let cut = cut_rx.recv_timeout(Duration::from_secs(5)).expect("cut off");
        let waited = cut - started;
        assert!(waited >= Duration::from_millis(600) && waited < Duration::from_secs(3), "cut off after {waited:?}");
        assert!(outbox.is_broken());
        drop(theirs);
    }

    #[test]
    fn a_stalled_reader_without_answers_waiting_is_not_cut_off() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        let outbox =
            Outbox::with_deadline(ours, Duration::from_millis(300), move || flag.store(true, Ordering::Relaxed));
        for n in 0..200 {
            tick(&outbox, json!({"n": n, "pad": "p".repeat(8192)}));
        }
        std::thread::sleep(Duration::from_millis(1000));
        assert!(!cut.load(Ordering::Relaxed) && !outbox.is_broken());
    }

    #[test]
    fn a_full_pipe_never_blocks_the_sender_and_an_unread_answer_cuts_it_off() {
        let (read_end, write_end) = rustix::pipe::pipe().unwrap();
        let (cut_tx, cut_rx) = mpsc::channel();
        let outbox = Outbox::with_deadline(write_end, Duration::from_millis(500), move || {
            let _ = cut_tx.send(());
        });
        assert_eq!(outbox.shared.mode, Mode::NonBlocking, "a pipe of our own is made non-blocking");
        let started = Instant::now();
        for n in 0..(EVENT_QUEUE_LIMIT * 2) {
            tick(&outbox, json!({"n": n, "pad": "p".repeat(4096)}));
        }
        assert!(outbox.dropped_events() > 0);
        // An answer behind the queued events: queued at once, and since the peer takes
        // nothing, it is cut off after the deadline.
        assert!(outbox.send_now(&json!({"id": 1, "result": "r".repeat(1 << 20)})));
        assert!(cut_rx.recv_timeout(Duration::from_secs(5)).is_ok());
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        drop(read_end);
    }

    #[test]
    fn the_fast_path_writes_inline() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let outbox = Outbox::new(ours, || {});
        assert!(outbox.send_now(&json!({"id": 7})));
        let mut header = [0u8; 16];
        theirs.read_exact(&mut header).unwrap();
        assert!(header.starts_with(b"Content-Length: "));
    }
}
