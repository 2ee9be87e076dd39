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
pub mod methods;
pub mod metrics;
pub mod ownership;
pub mod perf_methods;
pub mod process_methods;
pub mod progress;
pub mod session_methods;
pub mod task_runs;

use std::fs::File;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::Context;

use self::core::{Core, TransportKind};
use crate::environment::Environment;
use crate::rpc::outbox::Outbox;
use crate::rpc::transport::{self, Ended};

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
    let ended = run_connection(&core, input, Outbox::new(output), TransportKind::Stdio);
    shut_down(&core, stop_timeout);
    Ok(match ended {
        Ended::Exit { after_shutdown: false } => 1,
        _ => 0,
    })
}

/// Serves one connection accepted on an owner socket (on its own thread).
pub(crate) fn serve_socket(core: Core, stream: UnixStream) {
    let spawned = std::thread::Builder::new().name("nxops-conn".into()).spawn(move || {
        let Ok(writer) = stream.try_clone() else { return };
        run_connection(&core, stream, Outbox::new(writer), TransportKind::Socket);
    });
    if let Err(err) = spawned {
        tracing::error!(target: "nxops::sidecar", "cannot serve a connection: {err}");
    }
}

/// One session: open it, serve it, deliver its events, close it.
fn run_connection(core: &Core, reader: impl Read, outbox: Outbox, kind: TransportKind) -> Ended {
    let session = core.open_session(kind);
    let (service, socket) = backend::build(core.clone(), session, outbox.clone());
    let events = deliver_events(core, session, outbox.clone());
    let ended = transport::serve(reader, outbox, service, socket, core.runtime());
    events.abort();
    core.end_session(session, matches!(ended, Ended::Exit { .. }));
    ended
}

/// Forwards subscribed events to this session as `nxops/<event>` notifications.
fn deliver_events(core: &Core, session: u64, outbox: Outbox) -> tokio::task::JoinHandle<()> {
    let mut events = core.events();
    let core = core.clone();
    core.clone().runtime().spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) if core.wants(session, &event) => {
                    if !outbox.notify(&format!("nxops/{}", event.name), event.params) {
                        return;
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(target: "nxops::sidecar", "session {session} missed {missed} events");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// Graceful teardown: every supervised process gets its stop timeout, and the
/// whole teardown is bounded by the longest of them plus a margin.
fn shut_down(core: &Core, stop_timeout: Duration) {
    let limit = stop_timeout.max(core.longest_stop()) + Duration::from_secs(2);
    let core = core.clone();
    let done = std::thread::spawn(move || core.detach_all());
    let deadline = std::time::Instant::now() + limit;
    while !done.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
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
        let core = core_for_task.clone();
        let _ = tokio::task::spawn_blocking(move || shut_down(&core, stop_timeout)).await;
        std::process::exit(0);
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
