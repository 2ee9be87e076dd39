//! `nxops serve --stdio`: the sidecar.
//!
//! One process serves its editor or script over stdin/stdout, plus, for each
//! workspace it owns, a private socket for other nxops processes (see
//! `ownership`). Every connection is a session with its own `LspService`; all
//! share one `Core`.
//!
//! stdout is the wire: at start the protocol descriptors are moved to private
//! close-on-exec copies, fd 1 is pointed at stderr and fd 0 at /dev/null, so
//! nothing else (a dependency's print, a child process) can ever write to or
//! read from the protocol stream.

pub mod backend;
pub mod cache_methods;
pub mod core;
pub mod health_methods;
pub mod maintenance;
pub mod mcp_methods;
pub mod mcp_proxy;
pub mod methods;
pub mod metrics;
pub mod nx_records;
pub mod nx_watch;
pub mod ownership;
pub mod perf_methods;
pub mod process_methods;
pub mod progress;
pub mod run_watch;
pub mod session_methods;
pub mod task_runs;

use std::fs::File;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;

use self::core::{Core, TransportKind};
use crate::environment::Environment;
use crate::rpc::outbox::Outbox;
use crate::rpc::transport::{self, Ended};
use crate::sync::Exclusive;

/// Serves stdin/stdout until `exit`, end of input, SIGTERM or SIGINT; then
/// releases everything it owns and exits the process.
pub fn serve_stdio(
    env: Environment,
    flags: Vec<crate::config::FlagValue>,
    metrics_addr: Option<&str>,
) -> anyhow::Result<i32> {
    let (input, output) = take_stdio().context("failed to take over stdin and stdout")?;
    // Orphans of supervised processes come back to us, and are reaped by crate::reaper.
    crate::reaper::become_subreaper().context("failed to become the child subreaper")?;
    if let Err(err) = crate::reaper::raise_fd_limit() {
        tracing::warn!(target: "nxops::sidecar", "cannot raise the limit of open files: {err}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("nxops-worker")
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let core = Core::sidecar(env, runtime.handle().clone());
    core.set_cli_overrides(flags);
    if let Some(addr) = metrics_addr {
        let bound = metrics::serve(core.clone(), addr)?;
        eprintln!("nxops: metrics on http://{bound}/metrics");
    }
    let stop_timeout = crate::config::Settings::resolve(None, core.env(), &core.overrides())?.stop_timeout();
    watch_signals(&core, stop_timeout);
    // An editor that takes no answer for the outbox's deadline is treated as gone:
    // the sidecar ends as it does at the end of its input.
    let cut_core = core.clone();
    let outbox = Outbox::new(output, move || {
        tracing::warn!(target: "nxops::sidecar", "the editor stopped reading its answers; shutting down");
        exit_gracefully(&cut_core, stop_timeout);
    });
    let ended = run_connection(&core, input, outbox.clone(), TransportKind::Stdio);
    outbox.flush(Duration::from_secs(2));
    shut_down(&core, stop_timeout);
    Ok(match ended {
        Ended::Exit { after_shutdown: false } => 1,
        _ => 0,
    })
}

/// Socket connections served at once; past it a connection is refused with an error.
pub const MAX_SOCKET_CONNECTIONS: usize = 256;
static SOCKET_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// Serves one connection accepted on an owner socket, on its own thread (plus
/// its writer's), at most `MAX_SOCKET_CONNECTIONS` at once. The connection is
/// kept in `open` while it lasts, so the owner can close it when it lets go.
pub(crate) fn serve_socket(core: Core, stream: UnixStream, open: &Arc<Connections>) {
    if SOCKET_CONNECTIONS.fetch_add(1, Ordering::AcqRel) >= MAX_SOCKET_CONNECTIONS {
        SOCKET_CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
        refuse(&stream);
        return;
    }
    let handles = (stream.try_clone(), stream.try_clone());
    let (Ok(writer), Ok(cut)) = handles else {
        SOCKET_CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
        return;
    };
    let Some(id) = open.add(&stream) else {
        SOCKET_CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
        return;
    };
    let open = open.clone();
    let spawned = std::thread::Builder::new().name("nxops-conn".into()).spawn(move || {
        let outbox = Outbox::new(writer, move || {
            let _ = cut.shutdown(std::net::Shutdown::Both);
        });
        run_connection(&core, stream, outbox.clone(), TransportKind::Socket);
        outbox.flush(Duration::from_secs(1));
        open.remove(id);
        SOCKET_CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
    });
    if let Err(err) = spawned {
        SOCKET_CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
        tracing::error!(target: "nxops::sidecar", "cannot serve a connection: {err}");
    }
}

/// The connections accepted on one owner socket, so they can be closed together.
#[derive(Default)]
pub struct Connections {
    open: Exclusive<ConnectionSet>,
}

#[derive(Default)]
struct ConnectionSet {
    next: u64,
    streams: std::collections::BTreeMap<u64, UnixStream>,
    closed: bool,
}

impl Connections {
    /// Keeps a handle to `stream`; None (and the stream shut down) once `close_all` ran.
    fn add(&self, stream: &UnixStream) -> Option<u64> {
        let handle = stream.try_clone().ok()?;
        let added = self.open.with(|set| {
            if set.closed {
                return None;
            }
            set.next += 1;
            set.streams.insert(set.next, handle);
            Some(set.next)
        });
        if added.is_none() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        added
    }

    fn remove(&self, id: u64) {
        self.open.with(|set| set.streams.remove(&id));
    }

    /// Shuts every connection down (their readers see the end) and refuses later ones.
    pub fn close_all(&self) {
        let streams = self.open.with(|set| {
            set.closed = true;
            std::mem::take(&mut set.streams)
        });
        for stream in streams.values() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Tells a connection past the cap why it is closed (without waiting for it), and closes it.
fn refuse(stream: &UnixStream) {
    tracing::warn!(target: "nxops::sidecar", "refused a connection: {MAX_SOCKET_CONNECTIONS} are open");
    let error = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32005, "message": format!(
        "this sidecar already serves {MAX_SOCKET_CONNECTIONS} connections, the most it accepts; close some and retry"
    )}});
    let mut bytes = Vec::new();
    crate::rpc::frame::encode(&serde_json::to_vec(&error).expect("serializes"), &mut bytes);
    let _ = rustix::net::send(stream, &bytes, rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// One session: open it (its events go to `outbox`), serve it, close it.
fn run_connection(core: &Core, reader: impl Read, outbox: Outbox, kind: TransportKind) -> Ended {
    let session = core.open_session(kind);
    core.set_outbox(session, outbox.clone());
    let (service, socket) = backend::build(core.clone(), session, outbox.clone());
    let ended = transport::serve(reader, outbox.clone(), service, socket, core.runtime());
    core.end_session(session, session_end(ended, outbox.is_broken()));
    ended
}

/// What the end of a connection means for its session (see `sessions::End`). A peer
/// that was cut off (`broken`: it took no answers) vanished, though its input then ends.
fn session_end(ended: Ended, broken: bool) -> crate::sessions::End {
    use crate::sessions::End;
    match ended {
        Ended::Exit { .. } | Ended::Closed { after_shutdown: true } => End::Clean,
        Ended::Closed { after_shutdown: false } if broken => End::Lost,
        Ended::Closed { after_shutdown: false } => End::InputClosed,
        Ended::Lost => End::Lost,
    }
}

/// Graceful teardown: every supervised process gets its stop timeout, and the
/// whole teardown is bounded by the longest of them plus a margin.
pub(crate) fn shut_down(core: &Core, stop_timeout: Duration) {
    let limit = stop_timeout.max(core.longest_stop()) + Duration::from_secs(2);
    let core = core.clone();
    let done = std::thread::spawn(move || core.detach_all());
    let deadline = std::time::Instant::now() + limit;
    while !done.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Ends the sidecar as a signal does: graceful teardown on a thread of its
/// own (callable from any thread, once), then exit.
fn exit_gracefully(core: &Core, stop_timeout: Duration) {
    static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if EXITING.swap(true, Ordering::AcqRel) {
        return;
    }
    let core = core.clone();
    let _ = std::thread::Builder::new().name("nxops-exit".into()).spawn(move || {
        shut_down(&core, stop_timeout);
        std::process::exit(0);
    });
}

/// SIGTERM and SIGINT end the sidecar gracefully, like end of input.
fn watch_signals(core: &Core, stop_timeout: Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let core_for_task = core.clone();
    core.runtime().spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!(target: "nxops::sidecar", "signal received, shutting down");
        exit_gracefully(&core_for_task, stop_timeout);
    });
}

/// Moves the protocol to private descriptors and neutralizes fds 0 and 1.
pub(crate) fn take_stdio() -> std::io::Result<(File, File)> {
    use rustix::io::fcntl_dupfd_cloexec;
    use rustix::stdio::{dup2_stdin, dup2_stdout, stderr, stdin, stdout};
    let input = File::from(fcntl_dupfd_cloexec(stdin(), 3)?);
    let output = File::from(fcntl_dupfd_cloexec(stdout(), 3)?);
    dup2_stdin(File::open("/dev/null")?)?;
    dup2_stdout(stderr())?;
    Ok((input, output))
}
