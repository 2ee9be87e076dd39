//! The sessions of a workspace, kept by its owner sidecar: the registry (what
//! each session created and who holds it), its file (restored by the next
//! owner), and the actions on a session's resources (close, restart, expire).
//!
//! One `Sessions` per owned workspace owns the registry; the supervisor owns
//! the processes and the MCP pools own the connections, and this module only
//! asks them to stop, start, release or discard what a session made.

pub mod registry;
pub mod render;
pub mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use self::registry::Registry;
pub use self::registry::{Counts, End, Ending, Kind, Record, SessionView};
use crate::clock::now_ms;
use crate::mcp::McpPools;
use crate::rpc::errors::RpcError;
use crate::supervisor::{Publish, Supervisor};
use crate::sync::Exclusive;
use crate::workspace::Workspace;

/// How a session is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Leases released, processes stopped with SIGTERM and their stop timeout.
    Graceful,
    /// Leased connections closed and processes killed at once.
    Force,
}

/// What closing a session did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Closed {
    pub session: String,
    pub ending: Ending,
    pub processes: Vec<String>,
    pub mcp: Vec<String>,
    pub elapsed_ms: u64,
}

#[derive(Clone)]
pub struct Sessions(Arc<Inner>);

struct Inner {
    workspace: Arc<Workspace>,
    file: Option<PathBuf>,
    registry: Exclusive<Registry>,
    /// The generation last written, so an older snapshot never overwrites a newer one.
    /// Only the writer task writes the file (or `flush`, once that task has ended).
    written: AtomicU64,
    /// Asks the writer to write now and say when it has.
    flushes: mpsc::UnboundedSender<oneshot::Sender<()>>,
    /// Set once the writer task has ended.
    writer_done: watch::Sender<bool>,
    sup: Supervisor,
    mcp: McpPools,
    publish: Publish,
    /// Wakes the expiry loop when deadlines may have moved.
    changed: Notify,
    /// Wakes the writer: the registry changed.
    dirty: Notify,
    connection_timeout: Duration,
    named_timeout: Duration,
}

impl Sessions {
    /// Restores the workspace's sessions from its file and starts the keeper:
    /// it starts the restored sessions' processes and MCP leases again, then
    /// expires sessions as their time comes, until `stop`.
    pub fn start(
        workspace: Arc<Workspace>,
        sup: Supervisor,
        mcp: McpPools,
        publish: Publish,
        stop: watch::Receiver<bool>,
    ) -> Sessions {
        let file = workspace.state_dir.as_deref().map(store::path);
        let records = match file.as_deref().map(store::load) {
            Some(Ok(records)) => records,
            Some(Err(problem)) => {
                tracing::warn!(target: "nxops::sessions", "{problem}");
                Vec::new()
            }
            None => Vec::new(),
        };
        let (registry, lost) = Registry::restored(records, now_ms(), sidecar_alive);
        let (flushes, flush_requests) = mpsc::unbounded_channel();
        let restored: Vec<Record> = registry.records();
        let sessions = Sessions(Arc::new(Inner {
            connection_timeout: workspace.settings.session_timeout(),
            named_timeout: workspace.settings.named_session_timeout(),
            workspace,
            file,
            registry: Exclusive::new("sessions registry", registry),
            written: AtomicU64::new(0),
            flushes,
            writer_done: watch::channel(false).0,
            sup,
            mcp,
            publish,
            changed: Notify::new(),
            dirty: Notify::new(),
        }));
        let writer = sessions.clone();
        let writer_stop = stop.clone();
        sessions.0.sup.runtime().spawn(async move { writer.write_changes(flush_requests, writer_stop).await });
        let keeper = sessions.clone();
        sessions.0.sup.runtime().spawn(async move {
            // Their processes were ended with the crashed owner's leftovers.
            for record in lost {
                let closed = Closed {
                    session: record.id.clone(),
                    ending: Ending::Expired,
                    processes: record.processes.keys().cloned().collect(),
                    mcp: record.mcp.iter().cloned().collect(),
                    elapsed_ms: 0,
                };
                keeper.publish("sessionClosed", serde_json::to_value(&closed).expect("serializes"));
            }
            keeper.persist();
            keeper.restore(restored).await;
            keeper.expire(stop).await;
        });
        sessions
    }

    /// The registry, for plain reads and writes: the lock never outlives `f`.
    fn with<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        self.0.registry.with(f)
    }

    /// A change to write: the writer task saves it in the background, so no
    /// request waits for an fsync (a crash within those milliseconds loses the
    /// change, never the file).
    fn persist(&self) {
        self.0.dirty.notify_one();
        self.0.changed.notify_one();
    }

    /// The writer, the one task that writes the file: saves after each change
    /// (changes that come meanwhile are saved together), on request
    /// (`flush`), and once more when the owner stops.
    async fn write_changes(
        &self,
        mut requests: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let (stopping, ack) = tokio::select! {
                () = self.0.dirty.notified() => (false, None),
                request = requests.recv() => (false, request),
                _ = stop.changed() => (true, None),
            };
            self.write_off_runtime().await;
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
            if stopping || *stop.borrow() {
                break;
            }
        }
        // Requests that came before the end are answered after one more write.
        requests.close();
        let mut late = Vec::new();
        while let Ok(ack) = requests.try_recv() {
            late.push(ack);
        }
        if !late.is_empty() {
            self.write_off_runtime().await;
        }
        for ack in late {
            let _ = ack.send(());
        }
        self.0.writer_done.send_replace(true);
    }

    /// Writes what changed now; the owner calls it last, before it lets go of the workspace.
    pub async fn flush(&self) {
        let (ack, written) = oneshot::channel();
        if self.0.flushes.send(ack).is_ok() && written.await.is_ok() {
            return;
        }
        // The writer has ended (the owner is stopping): nobody else writes now.
        let mut done = self.0.writer_done.subscribe();
        let _ = done.wait_for(|d| *d).await;
        self.write_off_runtime().await;
    }

    async fn write_off_runtime(&self) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || this.write_now()).await;
    }

    /// Writes the registry if it changed since the last write (atomically; see `store`).
    fn write_now(&self) {
        let Some(file) = &self.0.file else { return };
        let (generation, records) = self.with(|registry| (registry.generation(), registry.records()));
        if generation <= self.0.written.load(Ordering::Acquire) {
            return;
        }
        match store::save(file, records) {
            Ok(()) => self.0.written.store(generation, Ordering::Release),
            Err(err) => tracing::warn!(target: "nxops::sessions", "cannot save {}: {err}", file.display()),
        }
    }

    fn publish(&self, event: &'static str, mut params: Value) {
        params["workspace"] = json!(self.0.workspace.root);
        (self.0.publish)(event, params);
    }

    pub fn list(&self) -> Vec<SessionView> {
        self.with(|r| r.views())
    }

    pub fn view(&self, id: &str) -> Option<SessionView> {
        self.with(|r| r.view(id))
    }

    pub fn counts(&self, since: u64) -> Counts {
        self.with(|r| r.counts(since))
    }

    pub fn exists(&self, id: &str) -> bool {
        self.with(|r| r.get(id).is_some())
    }

    /// A connection session, opened if new, held by the connection `holder`.
    pub fn hold(&self, id: &str, holder: u64, client: (Option<String>, Option<String>)) {
        let (timeout, now) = (self.0.connection_timeout.as_millis() as u64, now_ms());
        let created = self.with(|registry| {
            let created = registry.get(id).is_none();
            registry.hold_connection(id, holder, client, timeout, now);
            created
        });
        self.persist();
        if created && let Some(view) = self.view(id) {
            self.publish("sessionOpened", json!({"session": view}));
        }
    }

    /// The connection `holder` stops holding `id`: its client ended without `exit` (`vanished`:
    /// without a word; see [`End`]).
    pub fn let_go(&self, id: &str, holder: u64, vanished: bool) {
        let now = now_ms();
        self.with(|r| r.let_go(id, holder, now, vanished));
        self.persist();
    }

    /// A connection ended as `end` says: whatever it held starts its expiry clock.
    pub fn connection_ended(&self, holder: u64, end: End) {
        let own = format!("{}.{holder}", std::process::id());
        let now = now_ms();
        self.with(|r| r.connection_ended(holder, &own, end, now));
        self.persist();
    }

    /// Opens a named session (or finds it: a sign of life) and returns it.
    pub fn open_named(&self, name: &str, timeout: Option<Duration>, labels: BTreeMap<String, String>) -> SessionView {
        let timeout = timeout.unwrap_or(self.0.named_timeout).as_millis() as u64;
        let now = now_ms();
        let created = self.with(|r| r.open_named(name, timeout, labels, now));
        self.persist();
        let view = self.view(name).expect("just opened");
        if created {
            self.publish("sessionOpened", json!({"session": view}));
        }
        view
    }

    /// A sign of life from `id` (saved only when the registry says it is worth it); `method` is the request
    /// that gave it, named in the error when `id` is unknown.
    pub fn touch(&self, method: &str, id: &str) -> Result<(), RpcError> {
        let now = now_ms();
        let touched = self.with(|registry| {
            let before = registry.generation();
            registry.touch(id, now).then(|| registry.generation() != before)
        });
        let Some(saved) = touched else { return Err(self.unknown(method, id)) };
        if saved {
            self.persist();
        }
        Ok(())
    }

    /// The -32602 answer of `method` for a session `id` that is not open.
    pub fn unknown(&self, method: &str, id: &str) -> RpcError {
        let ids: Vec<String> = self.list().into_iter().map(|v| v.record.id).collect();
        RpcError::invalid_params(
            method,
            format!(
                "session: no open session {id:?} in {} (open: {})",
                self.0.workspace.root.display(),
                if ids.is_empty() { "none".into() } else { ids.join(", ") }
            ),
        )
    }

    /// The session a process belongs to, if any.
    pub fn owner_of_process(&self, name: &str) -> Option<String> {
        self.with(|r| r.owner_of_process(name).map(str::to_string))
    }

    pub fn record_process(&self, id: &str, name: &str, spec: Value) {
        self.with(|r| r.add_process(id, name, spec));
        self.persist();
    }

    /// The events a connection session's client subscribed to, as its sidecar reports them.
    pub fn set_subscriptions(&self, id: &str, events: std::collections::BTreeSet<String>) {
        self.with(|r| r.set_subscriptions(id, events));
        self.persist();
    }

    pub fn record_mcp(&self, id: &str, server: &str) {
        self.with(|r| r.add_mcp(id, server));
        self.persist();
    }

    pub fn forget_mcp(&self, id: &str, server: Option<&str>) {
        self.with(|r| r.remove_mcp(id, server));
        self.persist();
    }

    /// Closes a session: its MCP leases released (force: their connections
    /// closed) and its processes stopped and removed.
    pub async fn close(&self, id: &str, mode: Mode) -> Result<Closed, RpcError> {
        let ending = match mode {
            Mode::Graceful => Ending::Closed,
            Mode::Force => Ending::Forced,
        };
        self.end(id, mode, ending).await.ok_or_else(|| self.unknown("nxops/session/close", id))
    }

    async fn end(&self, id: &str, mode: Mode, ending: Ending) -> Option<Closed> {
        let record = self.with(|r| r.begin_close(id))?;
        Some(self.finish(record, mode, ending).await)
    }

    /// The rest of a close, once `begin_close` took the session out.
    async fn finish(&self, record: Record, mode: Mode, ending: Ending) -> Closed {
        let started = std::time::Instant::now();
        let id = record.id.as_str();
        self.release_mcp(&record, mode == Mode::Force);
        let force = mode == Mode::Force;
        let stops = record.processes.keys().map(|name| self.0.sup.remove_process(name, force));
        futures_util::future::join_all(stops).await;
        let now = now_ms();
        self.with(|r| r.finish_close(id, ending, now));
        self.persist();
        let closed = Closed {
            session: id.to_string(),
            ending,
            processes: record.processes.keys().cloned().collect(),
            mcp: record.mcp.iter().cloned().collect(),
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        self.publish("sessionClosed", serde_json::to_value(&closed).expect("serializes"));
        closed
    }

    /// Gives back every lease of the session; `discard` closes their connections first.
    fn release_mcp(&self, record: &Record, discard: bool) {
        if discard {
            for pool in record.mcp.iter().filter_map(|server| self.0.mcp.pool(server)) {
                pool.discard(&record.id);
            }
        }
        self.0.mcp.release_all(&record.id);
    }

    /// Stops the session's resources and starts them again: the same id,
    /// labels, process specs, and a fresh connection to each of its MCP servers.
    pub async fn restart(&self, id: &str) -> Result<SessionView, RpcError> {
        // Copied out first: `unknown` takes the registry's lock itself.
        let record = self.with(|r| r.get(id).cloned());
        let record = record.ok_or_else(|| self.unknown("nxops/session/restart", id))?;
        for server in &record.mcp {
            if let Some(pool) = self.0.mcp.pool(server) {
                pool.discard(id);
            }
        }
        let stops = record.processes.keys().map(|name| self.0.sup.stop_process(name, false));
        futures_util::future::join_all(stops).await;
        let problems = self.start_resources(&record).await;
        let now = now_ms();
        self.with(|registry| {
            registry.count_restart(id);
            registry.touch(id, now);
        });
        self.persist();
        let view = self.view(id).ok_or_else(|| self.unknown("nxops/session/restart", id))?;
        self.publish("sessionRestarted", json!({"session": view, "cause": "request", "problems": problems}));
        if problems.is_empty() {
            Ok(view)
        } else {
            Err(RpcError::Failed(anyhow::anyhow!("session {id} restarted with problems: {}", problems.join("; "))))
        }
    }

    /// Starts a session's processes from their specs and leases its MCP servers;
    /// returns what could not be done.
    async fn start_resources(&self, record: &Record) -> Vec<String> {
        let ws = &self.0.workspace;
        let mut problems = Vec::new();
        for (name, value) in &record.processes {
            let location = format!("session {} process {name}", record.id);
            let started = match crate::supervisor::spec::parse(name, value.clone(), &ws.root, &ws.settings, &location) {
                Ok(spec) => self.0.sup.start_process(name, Some(spec)).await.map(|_| ()),
                Err(err) => Err(RpcError::invalid_params("nxops/session/restart", err.to_string())),
            };
            if let Err(err) = started {
                problems.push(format!("process {name}: {err}"));
            }
        }
        for server in &record.mcp {
            let leased = match self.0.mcp.pool(server) {
                Some(pool) => pool.acquire(&record.id).await.map(|_| ()).map_err(|e| e.to_string()),
                None => Err("not pooled any more".to_string()),
            };
            if let Err(err) = leased {
                problems.push(format!("mcp server {server}: {err}"));
            }
        }
        problems
    }

    /// The keeper's first job: a restored session gets its processes and leases back.
    async fn restore(&self, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        self.0.sup.ready().await;
        // A session whose time ran out while no sidecar ran is expired, not started again.
        let now = now_ms();
        let due = self.with(|r| r.due(now));
        for id in &due {
            let _ = self.end(id, Mode::Graceful, Ending::Expired).await;
        }
        for record in records.iter().filter(|r| !due.contains(&r.id)) {
            let problems = self.start_resources(record).await;
            for problem in &problems {
                tracing::warn!(target: "nxops::sessions", "restoring session {}: {problem}", record.id);
            }
            if let Some(view) = self.view(&record.id) {
                self.publish("sessionRestarted", json!({"session": view, "cause": "restored", "problems": problems}));
            }
        }
    }

    /// The keeper's loop: closes (gracefully) each session whose time is up.
    async fn expire(&self, mut stop: watch::Receiver<bool>) {
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = now_ms();
            let due: Vec<Record> = self.with(|registry| {
                let ids = registry.due(now);
                ids.iter().filter_map(|id| registry.begin_close(id)).collect()
            });
            for record in due {
                let this = self.clone();
                self.0.sup.runtime().spawn(async move { this.finish(record, Mode::Graceful, Ending::Expired).await });
            }
            let wait = match self.with(|r| r.next_expiry()) {
                Some(at) => Duration::from_millis(at.saturating_sub(now_ms()).max(10)),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut changed => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }
}

/// Whether `pid` is a running nxops (a sidecar whose clients may come back).
fn sidecar_alive(pid: u32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let name = std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(program));
    name.file_name().is_some_and(|n| n.to_string_lossy().starts_with("nxops"))
}

/// A named session's id: letters, digits, `-` and `_`, up to 64 (connection
/// sessions are `<pid>.<n>`, so the two never collide).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("{name:?} must be 1 to 64 characters"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(format!("{name:?} may hold only letters, digits, '-' and '_' (not {bad:?})"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn session_names_are_checked() {
        assert!(super::check_name("e2e_run-1").is_ok());
        assert!(super::check_name("").unwrap_err().contains("1 to 64"));
        assert!(super::check_name("a.b").unwrap_err().contains("'.'"));
        assert!(super::check_name(&"x".repeat(65)).is_err());
    }
}
