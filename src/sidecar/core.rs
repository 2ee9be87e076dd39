//! The sidecar's shared state: attached workspaces with their ownership role,
//! client sessions, and the event bus.
//!
//! `Core` is a cheap cloneable handle. The registry behind it and each
//! workspace's `Role` slot are `Exclusive` locks (see `crate::sync`): taken for
//! map reads and writes only, never across an await or I/O, and never one
//! inside the other, so cheap methods such as `nxops/status` answer without a
//! task hop. Whatever acts on a role (its sessions, its forwarding client)
//! works on a copy taken out of the slot (`RoleNow`). Long-lived per-workspace
//! activity (the follower loop, the owner's accept loop) runs in its own task
//! or thread and reports through the `Role` slot it owns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sync::Exclusive;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::runtime::Handle;
use tokio::sync::{broadcast, watch};

use super::ownership::{self, Backoff, OwnerGuard, Paths};
use crate::clock::now_ms;
use crate::config::{FlagValue, workspace_key};
use crate::environment::Environment;
use crate::rpc::client::RpcClient;
use crate::rpc::errors::RpcError;
use crate::supervisor::Supervisor;
use crate::workspace::{Workspace, find_root};

/// Events a client can subscribe to with `nxops/subscribe` (names without the `nxops/` prefix).
pub const EVENTS: &[&str] = &[
    "workspaceAttached",
    "workspaceDetached",
    "ownershipChanged",
    "cacheCleanup",
    "processStarted",
    "processExited",
    "processFailure",
    "processRestarted",
    "processMemoryLeak",
    "tasksReported",
    "healthCheck",
    "sessionOpened",
    "sessionClosed",
    "sessionRestarted",
    "maintenance",
];

/// Something that happened, for subscribers.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: &'static str,
    pub params: Value,
    /// Publication order; a session gets only events published after it subscribed.
    pub seq: u64,
    /// For one session only, whatever it subscribed to (`nxops/mcp/notification`).
    pub session: Option<u64>,
}

/// Notifications sent to one session without a subscription (see `Core::publish_to`;
/// the outbox sends `rpc::outbox::EVENTS_DROPPED` on its own).
pub const TARGETED: &[&str] = &["mcp/notification"];

/// How a client reached the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    Stdio,
    Socket,
    InProcess,
}

#[derive(Clone)]
pub struct Core(Arc<Inner>);

struct Inner {
    env: Environment,
    runtime: Handle,
    started: Instant,
    started_at_ms: u64,
    state: Exclusive<State>,
    events: broadcast::Sender<Event>,
    /// `NXOPS_FAULTS`: test-only fault injection, e.g. `panic:nxops/status`.
    faults: Vec<String>,
    /// Followers and owners exist only in a sidecar; the CLI's in-process core never locks.
    takes_ownership: bool,
    /// As an owner, warm only this MCP server's pool (the others open a connection
    /// when first asked): a proxy owning the workspace starts only what its agent asked for.
    warm_mcp_only: Option<String>,
    /// Supervisors of detached workspaces still stopping their processes.
    shutdowns: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Woken when a follower has connected (and opened its sessions) or became
    /// the owner: requests waiting in `route` go at once rather than at their next poll.
    role_settled: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    workspaces: BTreeMap<PathBuf, Attached>,
    sessions: BTreeMap<u64, Session>,
    /// Where each connection's events go (sessions of in-process calls have none).
    outboxes: BTreeMap<u64, crate::rpc::outbox::Outbox>,
    next_session: u64,
    /// `--set` given to `nxops serve`: under the client's `initializationOptions`.
    cli_overrides: Vec<FlagValue>,
    overrides: Vec<FlagValue>,
    events_published: u64,
}

struct Attached {
    workspace: Arc<Workspace>,
    attached_at_ms: u64,
    role: Arc<Exclusive<Role>>,
    stop: watch::Sender<bool>,
}

enum Role {
    InProcess,
    Owner(OwnerGuard, Owned),
    Follower(Following),
    Detached,
}

/// A follower's view of its owner.
#[derive(Clone, Default)]
struct Following {
    /// The forwarding connection, while there is one.
    client: Option<RpcClient>,
    owner_pid: Option<u32>,
    /// False while the owner leaves liveness checks unanswered (stopped or stuck).
    responsive: bool,
}

/// A copy of a workspace's role, to act on outside the role's lock.
#[derive(Clone)]
enum RoleNow {
    InProcess,
    Owner(Owned),
    Follower(Following),
    Detached,
}

impl Role {
    fn now(&self) -> RoleNow {
        match self {
            Role::InProcess => RoleNow::InProcess,
            Role::Owner(_, owned) => RoleNow::Owner(owned.clone()),
            Role::Follower(following) => RoleNow::Follower(following.clone()),
            Role::Detached => RoleNow::Detached,
        }
    }
}

/// What the owner of a workspace keeps for it.
#[derive(Clone)]
pub struct Owned {
    pub supervisor: Supervisor,
    pub mcp: crate::mcp::McpPools,
    pub runs: Arc<super::task_runs::RunLog>,
    /// Wakes the maintenance check (a run was just reported).
    pub maintenance: Arc<tokio::sync::Notify>,
    pub sessions: crate::sessions::Sessions,
    /// The connections accepted on this workspace's socket, closed when ownership ends.
    pub connections: Arc<super::Connections>,
}

/// A client connection, for `nxops/status` and event delivery.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: u64,
    pub transport: TransportKind,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    pub opened_at: u64,
    /// Subscribed event names, each with the last `Event::seq` published before the
    /// subscription (only later events are delivered). Serialized as the list of names.
    #[serde(serialize_with = "event_names")]
    pub subscriptions: BTreeMap<String, u64>,
}

/// An attached workspace as clients see it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceView {
    pub root: PathBuf,
    pub role: RoleView,
    pub attached_at: u64,
    /// Absent only in an MCP proxy following an owner, which never decides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum RoleView {
    /// This process owns the workspace and serves its socket.
    Owner {
        socket: PathBuf,
    },
    /// Another process owns it; requests are forwarded there.
    Follower {
        owner_pid: Option<u32>,
        connected: bool,
        /// False while the owner does not answer liveness checks (stopped or stuck);
        /// requests then fail at once with -32004.
        responsive: bool,
    },
    /// The CLI working without a sidecar.
    InProcess,
    Detached,
}

/// Where a workspace-scoped request goes.
pub enum Route {
    Local(Arc<Workspace>),
    Forward { client: RpcClient, root: PathBuf },
}

impl Core {
    /// The core of a sidecar: attaching a workspace takes part in ownership.
    pub fn sidecar(env: Environment, runtime: Handle) -> Core {
        Core::new(env, runtime, true, None)
    }

    /// The core of `nxops mcp proxy SERVER`: a sidecar's, except that as an owner
    /// it warms only `server`'s pool.
    pub fn mcp_proxy(env: Environment, runtime: Handle, server: &str) -> Core {
        Core::new(env, runtime, true, Some(server.to_string()))
    }

    /// The core of a CLI command working alone: workspaces attach in-process.
    pub fn in_process(env: Environment, runtime: Handle) -> Core {
        Core::new(env, runtime, false, None)
    }

    fn new(env: Environment, runtime: Handle, takes_ownership: bool, warm_mcp_only: Option<String>) -> Core {
        let faults = env.get("NXOPS_FAULTS").map(|f| f.split(',').map(str::to_string).collect()).unwrap_or_default();
        Core(Arc::new(Inner {
            env,
            runtime,
            started: Instant::now(),
            started_at_ms: now_ms(),
            state: Exclusive::new("core state", State::default()),
            events: broadcast::channel(256).0,
            faults,
            takes_ownership,
            warm_mcp_only,
            shutdowns: Mutex::default(),
            role_settled: tokio::sync::Notify::new(),
        }))
    }

    pub fn env(&self) -> &Environment {
        &self.0.env
    }

    pub fn runtime(&self) -> &Handle {
        &self.0.runtime
    }

    pub fn uptime(&self) -> Duration {
        self.0.started.elapsed()
    }

    pub fn started_at_ms(&self) -> u64 {
        self.0.started_at_ms
    }

    /// True when `NXOPS_FAULTS` asks for a panic in `method` (free when unset).
    pub fn panic_fault(&self, method: &str) -> bool {
        !self.0.faults.is_empty() && self.0.faults.iter().any(|f| f.strip_prefix("panic:") == Some(method))
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        self.0.state.with(f)
    }

    /// A copy of the role of `root`, if attached.
    fn role_now(&self, root: &Path) -> Option<RoleNow> {
        let role = self.with_state(|state| state.workspaces.get(root).map(|a| a.role.clone()))?;
        Some(role.with(|role| role.now()))
    }

    /// Copies of every attached workspace's role.
    fn roles_now(&self) -> Vec<(PathBuf, RoleNow)> {
        let roles: Vec<(PathBuf, Arc<Exclusive<Role>>)> =
            self.with_state(|state| state.workspaces.iter().map(|(root, a)| (root.clone(), a.role.clone())).collect());
        roles.into_iter().map(|(root, role)| (root, role.with(|role| role.now()))).collect()
    }

    fn roots(&self) -> Vec<PathBuf> {
        self.with_state(|state| state.workspaces.keys().cloned().collect())
    }

    /// Settings given by the client (`initializationOptions`), applied to workspaces attached later.
    pub fn set_overrides(&self, overrides: Vec<FlagValue>) {
        self.with_state(|state| state.overrides = overrides);
    }

    /// Settings given on `nxops serve`'s command line (`--set`), which the client's may override.
    pub fn set_cli_overrides(&self, overrides: Vec<FlagValue>) {
        self.with_state(|state| state.cli_overrides = overrides);
    }

    pub fn overrides(&self) -> Vec<FlagValue> {
        self.with_state(|state| state.cli_overrides.iter().chain(&state.overrides).cloned().collect())
    }

    // --- sessions ---

    pub fn open_session(&self, transport: TransportKind) -> u64 {
        let opened_at = now_ms();
        self.with_state(|state| {
            state.next_session += 1;
            let id = state.next_session;
            let session = Session {
                id,
                transport,
                client_name: None,
                client_version: None,
                opened_at,
                subscriptions: BTreeMap::new(),
            };
            state.sessions.insert(id, session);
            id
        })
    }

    /// Records the client's name and, for a client of our own (not a forwarder
    /// or a one-shot CLI on a socket), opens its session in every attached workspace.
    pub fn identify_session(&self, id: u64, name: Option<String>, version: Option<String>) {
        let announce = self.with_state(|state| {
            let session = state.sessions.get_mut(&id)?;
            session.client_name = name;
            session.client_version = version;
            Some(session.transport == TransportKind::Stdio)
        });
        if announce == Some(true) {
            for root in self.roots() {
                self.announce(&root, &[id]);
            }
        }
    }

    /// Opens these local sessions in `root`'s registry: directly on its owner,
    /// through the forwarding connection on a follower.
    /// Returns the requests sent to an owner, to be awaited by whoever needs them done.
    fn announce(&self, root: &Path, ids: &[u64]) -> Vec<tokio::task::JoinHandle<()>> {
        let mut sent = Vec::new();
        let Some(role) = self.role_now(root) else { return sent };
        type Client = (u64, Option<String>, Option<String>, BTreeSet<String>);
        let clients: Vec<Client> = self.with_state(|state| {
            ids.iter()
                .filter_map(|id| state.sessions.get(id))
                .map(|s| {
                    (s.id, s.client_name.clone(), s.client_version.clone(), s.subscriptions.keys().cloned().collect())
                })
                .collect()
        });
        match role {
            RoleNow::Owner(owned) => {
                for (id, name, version, events) in clients {
                    owned.sessions.hold(&session_id(id), id, (name, version));
                    owned.sessions.set_subscriptions(&session_id(id), events);
                }
            }
            RoleNow::Follower(Following { client: Some(client), .. }) => {
                for (id, name, version, events) in clients {
                    let client = client.clone();
                    let params = json!({"workspace": root, "session": session_id(id),
                        "client": {"name": name, "version": version}, "subscriptions": events});
                    sent.push(self.0.runtime.spawn(async move {
                        let _ = client.request("nxops/session/open", params).await;
                    }));
                }
            }
            _ => {}
        }
        sent
    }

    /// The client name and version a local session gave at `initialize`.
    pub fn client_of(&self, id: u64) -> (Option<String>, Option<String>) {
        self.with_state(|state| {
            state.sessions.get(&id).map(|s| (s.client_name.clone(), s.client_version.clone())).unwrap_or_default()
        })
    }

    /// Local sessions that clients of our own opened (see `identify_session`).
    fn own_clients(&self) -> Vec<u64> {
        self.with_state(|state| {
            state
                .sessions
                .values()
                .filter(|s| s.transport == TransportKind::Stdio && s.client_name.is_some())
                .map(|s| s.id)
                .collect()
        })
    }

    /// A connection ended. A clean end (`exit`, or end of input after
    /// `shutdown`) closes its session in every workspace now; otherwise its
    /// sessions expire after `sessions.timeout`, counted as vanished only when
    /// the connection was lost (see `sessions::End`). Returns once the owner
    /// has acted (bounded), so a sidecar about to exit does not cut it short.
    pub fn end_session(&self, id: u64, end: crate::sessions::End) {
        let graceful = end == crate::sessions::End::Clean;
        self.with_state(|state| {
            state.sessions.remove(&id);
            state.outboxes.remove(&id);
        });
        let sid = session_id(id);
        let mut pending = Vec::new();
        for (root, role) in self.roles_now() {
            match role {
                RoleNow::Owner(owned) => {
                    let sessions = owned.sessions.clone();
                    let sid = sid.clone();
                    pending.push(self.0.runtime.spawn(async move {
                        if graceful && sessions.exists(&sid) {
                            let _ = sessions.close(&sid, crate::sessions::Mode::Graceful).await;
                        }
                        sessions.connection_ended(id, end);
                    }));
                }
                RoleNow::Follower(Following { client: Some(client), .. }) => {
                    let (method, params) = if graceful {
                        ("nxops/session/close", json!({"workspace": root, "session": sid, "mode": "graceful"}))
                    } else {
                        let vanished = end == crate::sessions::End::Lost;
                        ("nxops/session/leave", json!({"workspace": root, "session": sid, "vanished": vanished}))
                    };
                    pending.push(self.0.runtime.spawn(async move {
                        let _ = client.request(method, params).await;
                    }));
                }
                _ => {}
            }
        }
        if pending.is_empty() {
            return;
        }
        let all = futures_util::future::join_all(pending);
        let bounded = async { tokio::time::timeout(Duration::from_secs(30), all).await };
        if Handle::try_current().is_ok() {
            self.0.runtime.spawn(bounded);
        } else {
            let _ = self.0.runtime.block_on(bounded);
        }
    }

    pub fn sessions(&self) -> Vec<Session> {
        self.with_state(|state| state.sessions.values().cloned().collect())
    }

    /// Adds event names to a session's subscriptions and returns them all.
    pub fn subscribe(&self, id: u64, events: &[String]) -> BTreeSet<String> {
        let now = self.with_state(|state| {
            let published = state.events_published;
            let Some(session) = state.sessions.get_mut(&id) else { return BTreeSet::new() };
            for event in events {
                session.subscriptions.entry(event.clone()).or_insert(published);
            }
            session.subscriptions.keys().cloned().collect()
        });
        self.subscriptions_changed(id);
        now
    }

    pub fn unsubscribe(&self, id: u64, events: &[String]) -> BTreeSet<String> {
        let now = self.with_state(|state| {
            let Some(session) = state.sessions.get_mut(&id) else { return BTreeSet::new() };
            for event in events {
                session.subscriptions.remove(event);
            }
            session.subscriptions.keys().cloned().collect()
        });
        self.subscriptions_changed(id);
        now
    }

    /// The workspaces' registries show what our own clients subscribed to.
    fn subscriptions_changed(&self, id: u64) {
        if !self.own_clients().contains(&id) {
            return;
        }
        for root in self.roots() {
            self.announce(&root, &[id]);
        }
    }

    // --- events ---

    /// Publishes an event: numbered, seen by the in-process listeners (the bus),
    /// and queued for every connection subscribed to it at this moment. The
    /// notification is serialized once for all of them, and queuing never waits
    /// for a peer (see `rpc::outbox`), so one publish costs the same whoever reads.
    pub fn publish(&self, name: &'static str, params: Value) {
        let targets = self.with_state(|state| {
            state.events_published += 1;
            let targets: Vec<crate::rpc::outbox::Outbox> = state
                .sessions
                .values()
                .filter(|s| s.subscriptions.contains_key(name))
                .filter_map(|s| state.outboxes.get(&s.id).cloned())
                .collect();
            let event = Event { name, params, seq: state.events_published, session: None };
            let params = (!targets.is_empty()).then(|| event.params.clone());
            let _ = self.0.events.send(event);
            (targets, params)
        });
        deliver(name, targets);
    }

    /// Sends a notification to one session only (no subscription needed).
    pub fn publish_to(&self, session: u64, name: &'static str, params: Value) {
        let targets = self.with_state(|state| {
            state.events_published += 1;
            let targets: Vec<_> = state.outboxes.get(&session).cloned().into_iter().collect();
            let event = Event { name, params, seq: state.events_published, session: Some(session) };
            let params = (!targets.is_empty()).then(|| event.params.clone());
            let _ = self.0.events.send(event);
            (targets, params)
        });
        deliver(name, targets);
    }

    /// Where this connection's events go, until `end_session`.
    pub fn set_outbox(&self, id: u64, outbox: crate::rpc::outbox::Outbox) {
        self.with_state(|state| state.outboxes.insert(id, outbox));
    }

    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.0.events.subscribe()
    }

    // --- workspaces ---

    /// Attaches the workspace containing `path` (idempotent) and returns its view.
    pub fn attach(&self, path: &Path) -> Result<WorkspaceView, RpcError> {
        let root = find_root(path)?;
        if let Some(view) = self.view(&root) {
            return Ok(view);
        }
        // An MCP proxy forwards to the owner and needs no Nx layout unless it owns the workspace.
        let workspace = match self.0.warm_mcp_only {
            Some(_) => Workspace::open_undecided(&root, &self.0.env, &self.overrides())?,
            None => Workspace::open(&root, &self.0.env, &self.overrides())?,
        };
        let workspace = Arc::new(workspace);
        let (stop, stop_rx) = watch::channel(false);
        let role = Arc::new(Exclusive::new("workspace role", Role::InProcess));
        // Without a runtime folder the workspace is still served, in-process (no
        // owner, so no supervised processes), rather than refused.
        let paths = match self.0.takes_ownership.then(|| Paths::for_workspace(&self.0.env, &workspace_key(&root))) {
            Some(Err(err)) => {
                tracing::warn!(target: "nxops::sidecar", "{} is served without an owner: {err:#}", root.display());
                None
            }
            other => other.and_then(Result::ok),
        };
        if let Some(paths) = paths {
            match ownership::try_own(&paths, &root).map_err(RpcError::Failed)? {
                Some(guard) => {
                    workspace.nx(); // the owner's watches start from a decided layout
                    self.become_owner(&workspace, guard, &role, stop_rx)
                }
                None => {
                    role.with(|role| *role = Role::Follower(Following::default()));
                    let task = follow(self.clone(), workspace.clone(), paths, role.clone(), stop_rx);
                    self.0.runtime.spawn(task);
                }
            }
        }
        let attached = Attached { workspace, attached_at_ms: now_ms(), role, stop };
        self.with_state(|state| state.workspaces.insert(root.clone(), attached));
        let view = self.view(&root).expect("just inserted");
        self.publish("workspaceAttached", json!({"workspace": root, "role": view.role}));
        Ok(view)
    }

    /// Detaches a workspace: a follower stops following, an owner releases the lock.
    pub fn detach(&self, path: &Path) -> Result<PathBuf, RpcError> {
        let root = self.resolve(Some(path))?;
        let attached = self.with_state(|state| state.workspaces.remove(&root));
        if let Some(attached) = attached {
            attached.stop.send_replace(true);
            let previous = attached.role.with(|role| std::mem::replace(role, Role::Detached));
            if let Role::Owner(guard, Owned { supervisor, mcp, sessions, connections, .. }) = previous {
                // No one reaches this owner any more: the socket stops accepting
                // and its connections are closed, so followers stop forwarding here
                // at once and race for the lock. The processes stop first and the
                // sessions are saved; only then is ownership released, so the next
                // owner never meets them as leftovers and reads the sessions as
                // they ended.
                guard.stop_listening();
                connections.close_all();
                let stopping = self.0.runtime.spawn(async move {
                    mcp.shutdown().await;
                    supervisor.shutdown().await;
                    sessions.flush().await;
                    drop(guard);
                });
                self.shutdowns().push(stopping);
            }
            self.publish("workspaceDetached", json!({"workspace": root}));
        }
        Ok(root)
    }

    fn shutdowns(&self) -> MutexGuard<'_, Vec<tokio::task::JoinHandle<()>>> {
        self.0.shutdowns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Detaches everything (the sidecar is exiting) and waits, from a thread
    /// outside the runtime, until every supervisor has stopped its processes.
    pub fn detach_all(&self) {
        for root in self.roots() {
            let _ = self.detach(&root);
        }
        let pending: Vec<_> = self.shutdowns().drain(..).collect();
        for handle in pending {
            let _ = self.0.runtime.block_on(handle);
        }
    }

    /// What this process keeps for a workspace it owns.
    pub fn owned(&self, root: &Path) -> Option<Owned> {
        match self.role_now(root)? {
            RoleNow::Owner(owned) => Some(owned),
            _ => None,
        }
    }

    /// The supervisor of an owned workspace.
    pub fn supervisor(&self, root: &Path) -> Option<Supervisor> {
        self.owned(root).map(|o| o.supervisor)
    }

    /// How long the sidecar may take to stop every supervised process.
    pub fn longest_stop(&self) -> Duration {
        self.roles_now()
            .into_iter()
            .filter_map(|(_, role)| match role {
                RoleNow::Owner(owned) => Some(owned.supervisor.longest_stop()),
                _ => None,
            })
            .max()
            .unwrap_or_default()
    }

    pub fn workspace(&self, root: &Path) -> Option<Arc<Workspace>> {
        self.with_state(|state| state.workspaces.get(root).map(|a| a.workspace.clone()))
    }

    pub fn workspaces(&self) -> Vec<WorkspaceView> {
        self.roots().iter().filter_map(|r| self.view(r)).collect()
    }

    fn view(&self, root: &Path) -> Option<WorkspaceView> {
        let (role, attached_at, workspace) = self.with_state(|state| {
            let attached = state.workspaces.get(root)?;
            Some((attached.role.clone(), attached.attached_at_ms, attached.workspace.clone()))
        })?;
        let cache_dir = workspace.cache_dir();
        let role = role.with(|role| match role {
            Role::Owner(guard, _) => RoleView::Owner { socket: guard.socket().to_path_buf() },
            Role::Follower(f) => {
                RoleView::Follower { owner_pid: f.owner_pid, connected: f.client.is_some(), responsive: f.responsive }
            }
            Role::InProcess => RoleView::InProcess,
            Role::Detached => RoleView::Detached,
        });
        Some(WorkspaceView { root: root.to_path_buf(), role, attached_at, cache_dir })
    }

    /// The attached workspace a request means: the one containing `selector`, or
    /// the only one attached when the request names none.
    pub fn resolve(&self, selector: Option<&Path>) -> Result<PathBuf, RpcError> {
        self.with_state(|state| Self::resolve_in(state, selector))
    }

    fn resolve_in(state: &State, selector: Option<&Path>) -> Result<PathBuf, RpcError> {
        match selector {
            Some(path) => {
                let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
                let found = state
                    .workspaces
                    .keys()
                    .filter(|root| canonical.starts_with(root))
                    .max_by_key(|r| r.as_os_str().len());
                found.cloned().ok_or_else(|| {
                    RpcError::NotAttached(format!(
                        "{} is not in an attached workspace; attach it first with nxops/workspace/attach",
                        path.display()
                    ))
                })
            }
            None => match state.workspaces.keys().collect::<Vec<_>>().as_slice() {
                [only] => Ok((*only).clone()),
                [] => Err(RpcError::NotAttached("no workspace is attached; pass \"workspace\" or attach one".into())),
                many => Err(RpcError::NotAttached(format!(
                    "{} workspaces are attached; pass \"workspace\" to choose one of {}",
                    many.len(),
                    many.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                ))),
            },
        }
    }

    /// Where a request for `selector`'s workspace must run. A follower between
    /// owners waits (up to 3 s) for the takeover to settle.
    pub async fn route(&self, selector: Option<&Path>) -> Result<Route, RpcError> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            // Listening before the role is read, so a change right after the read still wakes us.
            let settled = self.0.role_settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let root = self.resolve(selector)?;
            let workspace = self
                .workspace(&root)
                .ok_or_else(|| RpcError::NotAttached(format!("{} was detached", root.display())))?;
            match self.role_now(&root) {
                Some(RoleNow::Owner(..) | RoleNow::InProcess) => return Ok(Route::Local(workspace)),
                Some(RoleNow::Follower(Following { client: Some(_), responsive: false, owner_pid })) => {
                    return Err(owner_unresponsive(&root, owner_pid));
                }
                Some(RoleNow::Follower(Following { client: Some(client), .. })) => {
                    return Ok(Route::Forward { client, root });
                }
                Some(RoleNow::Follower(Following { client: None, .. })) => {}
                Some(RoleNow::Detached) | None => {
                    return Err(RpcError::NotAttached(format!("{} was detached", root.display())));
                }
            }
            if Instant::now() >= deadline {
                return Err(RpcError::OwnerUnavailable(format!(
                    "the owner of {} cannot be reached and no takeover happened within 3 s",
                    root.display()
                )));
            }
            tokio::select! {
                () = &mut settled => {}
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }

    fn become_owner(
        &self,
        workspace: &Arc<Workspace>,
        guard: OwnerGuard,
        role: &Arc<Exclusive<Role>>,
        stop: watch::Receiver<bool>,
    ) {
        let root = workspace.root.as_path();
        let wake = Arc::new(tokio::sync::Notify::new());
        self.0.runtime.spawn(super::health_methods::watch(self.clone(), workspace.clone(), stop.clone()));
        self.0.runtime.spawn(super::nx_watch::watch(workspace.clone(), stop.clone()));
        super::run_watch::start(self.clone(), workspace.clone(), stop.clone());
        let session_stop = stop.clone();
        self.0.runtime.spawn(super::maintenance::maintain(self.clone(), workspace.clone(), stop, wake.clone()));
        let listener = guard.listener();
        let socket = guard.socket().to_path_buf();
        let publish = publish_for(&self.0, root);
        let supervisor = Supervisor::launch(
            root.to_path_buf(),
            workspace.state_dir.clone(),
            workspace.settings.clone(),
            self.0.env.clone(),
            self.0.runtime.clone(),
            publish,
        );
        let mcp = crate::mcp::McpPools::start(root, &self.0.env, supervisor.clone(), self.0.warm_mcp_only.clone());
        let sessions = crate::sessions::Sessions::start(
            workspace.clone(),
            supervisor.clone(),
            mcp.clone(),
            publish_for(&self.0, root),
            session_stop,
        );
        // Our own clients hold their sessions here now (they may predate the ownership).
        for id in self.own_clients() {
            sessions.hold(&session_id(id), id, self.client_of(id));
        }
        let connections = Arc::new(super::Connections::default());
        let owned = Owned { supervisor, mcp, runs: Arc::default(), maintenance: wake, sessions, connections };
        let accepted = owned.connections.clone();
        role.with(|role| *role = Role::Owner(guard, owned));
        let core = self.clone();
        let spawned = std::thread::Builder::new().name("nxops-accept".into()).spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) if ownership::peer_is_us(&stream) => {
                        super::serve_socket(core.clone(), stream, &accepted);
                    }
                    Ok(_) => tracing::warn!(target: "nxops::sidecar", "refused a connection from another user"),
                    Err(_) => break,
                }
            }
        });
        if let Err(err) = spawned {
            tracing::error!(target: "nxops::sidecar", "cannot start the accept loop: {err}");
        }
        tracing::info!(target: "nxops::sidecar", "owner of {} on {}", root.display(), socket.display());
        self.publish("ownershipChanged", json!({"workspace": root, "role": {"kind": "owner", "socket": socket}}));
    }
}

/// A follower's life: connect to the owner, and when that connection ends, try
/// to take over; whoever wins the lock becomes owner, the rest reconnect.
async fn follow(
    core: Core,
    workspace: Arc<Workspace>,
    paths: Paths,
    role: Arc<Exclusive<Role>>,
    mut stop: watch::Receiver<bool>,
) {
    let root = workspace.root.clone();
    let mut backoff = Backoff::default();
    loop {
        if *stop.borrow() {
            return;
        }
        match ownership::try_own(&paths, &root) {
            Ok(Some(guard)) => {
                if *stop.borrow() {
                    return;
                }
                // The owner's watches start from a decided layout (it may run git: off the runtime).
                let deciding = workspace.clone();
                let _ = tokio::task::spawn_blocking(move || deciding.nx()).await;
                core.become_owner(&workspace, guard, &role, stop.clone());
                core.0.role_settled.notify_waiters();
                return;
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(target: "nxops::sidecar", "cannot take over {}: {err:#}", root.display()),
        }
        if let Some(client) = connect_to_owner(&core, &root, &paths).await {
            let owner_pid = paths.owner_info().map(|i| i.pid);
            let following = Following { client: Some(client.clone()), owner_pid, responsive: true };
            role.with(|role| *role = Role::Follower(following));
            backoff = Backoff::default();
            // Requests waiting in `route` go once the owner knows our sessions (their leases are theirs).
            let opening = core.announce(&root, &core.own_clients());
            let _ = tokio::time::timeout(Duration::from_secs(1), futures_util::future::join_all(opening)).await;
            core.0.role_settled.notify_waiters();
            tokio::select! {
                () = client.closed() => {}
                () = watch_owner(&core, &role, &client, &root) => {}
                _ = stop.changed() => { client.close(); return; }
            }
            role.with(|role| {
                if let Role::Follower(_) = role {
                    *role = Role::Follower(Following::default());
                }
            });
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.changed() => return,
        }
    }
}

/// How often a follower checks that its owner answers, and how long it waits.
pub const LIVENESS_INTERVAL: Duration = Duration::from_secs(1);
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks, every `LIVENESS_INTERVAL`, that the owner answers `nxops/status`
/// (answered on the owner's connection thread, so a busy owner still answers).
/// An owner that stays silent for `LIVENESS_TIMEOUT` (SIGSTOPped, or stuck) is
/// marked unresponsive: requests forwarded to it fail with -32004 at once, and
/// so do new ones, until it answers again. It is not taken over: it still holds
/// the lock and its processes run (see ARCHITECTURE.md, "Failover"). Never returns.
async fn watch_owner(core: &Core, role: &Exclusive<Role>, client: &RpcClient, root: &Path) {
    loop {
        tokio::time::sleep(LIVENESS_INTERVAL).await;
        let answered = tokio::time::timeout(LIVENESS_TIMEOUT, client.request("nxops/status", json!({}))).await;
        let responsive = matches!(answered, Ok(Ok(_)));
        if responsive == client.is_responsive() {
            continue;
        }
        client.set_responsive(responsive);
        let owner_pid = role.with(|role| match role {
            Role::Follower(following) => {
                following.responsive = responsive;
                following.owner_pid
            }
            _ => None,
        });
        if responsive {
            tracing::info!(target: "nxops::sidecar", "the owner of {} answers again", root.display());
        } else {
            tracing::warn!(
                target: "nxops::sidecar",
                "the owner of {} (pid {}) left a liveness check unanswered for {LIVENESS_TIMEOUT:?}: stopped or stuck",
                root.display(),
                owner_pid.map_or("?".into(), |p| p.to_string())
            );
        }
        core.publish(
            "ownershipChanged",
            json!({"workspace": root, "role": {"kind": "follower", "ownerPid": owner_pid, "connected": true,
                "responsive": responsive}}),
        );
    }
}

/// The error for a request meant for an owner that does not answer.
fn owner_unresponsive(root: &Path, owner_pid: Option<u32>) -> RpcError {
    RpcError::OwnerUnavailable(format!(
        "the owner of {} (pid {}) does not answer (stopped or stuck: no answer to a liveness check within {} s); \
         retry when it answers, or end it so another sidecar takes over",
        root.display(),
        owner_pid.map_or("?".into(), |p| p.to_string()),
        LIVENESS_TIMEOUT.as_secs()
    ))
}

/// Opens a forwarding connection: handshake, then subscribe to the owner's events
/// so this sidecar's clients see them too.
async fn connect_to_owner(core: &Core, root: &Path, paths: &Paths) -> Option<RpcClient> {
    let relay = core.clone();
    let ours = root.to_path_buf();
    let on_notification = Box::new(move |method: &str, params: Value| {
        if method == "nxops/mcp/notification" {
            // For the client of ours whose lease this is ("<our pid>.<session>").
            let ours = params.get("lease").and_then(Value::as_str).and_then(|lease| {
                let (pid, session) = lease.split_once('.')?;
                (pid == std::process::id().to_string()).then(|| session.parse::<u64>().ok())?
            });
            if let Some(session) = ours {
                relay.publish_to(session, "mcp/notification", params);
            }
            return;
        }
        let Some(name) = method.strip_prefix("nxops/").and_then(|n| EVENTS.iter().find(|e| **e == n)) else { return };
        let about_ours = params.get("workspace").and_then(Value::as_str).is_none_or(|w| Path::new(w) == ours);
        if about_ours {
            relay.publish(name, params);
        }
    });
    // A stopped owner's full backlog would block `connect`: off the runtime's threads.
    let socket = paths.socket.clone();
    let client = tokio::task::spawn_blocking(move || RpcClient::connect(&socket, on_notification)).await.ok()?.ok()?;
    let opened = async {
        client.handshake("nxops-forwarder").await?;
        client.request("nxops/subscribe", json!({"events": EVENTS})).await
    };
    match tokio::time::timeout(Duration::from_secs(3), opened).await {
        Ok(Ok(_)) => Some(client),
        _ => {
            client.close();
            None
        }
    }
}

/// Queues one event, serialized once, for each of `targets`.
fn deliver(name: &str, (targets, params): (Vec<crate::rpc::outbox::Outbox>, Option<Value>)) {
    let Some(params) = params else { return };
    let method = format!("nxops/{name}");
    let Some(frame) = crate::rpc::outbox::Frame::event(&method, params) else { return };
    for outbox in targets {
        outbox.event_frame(&frame);
    }
}

/// Publishes on this core's bus, naming the workspace, without keeping the core alive.
fn publish_for(inner: &Arc<Inner>, root: &Path) -> crate::supervisor::Publish {
    let events = Arc::downgrade(inner);
    let about = root.to_path_buf();
    Arc::new(move |name, mut params| {
        if let Some(inner) = events.upgrade() {
            params["workspace"] = json!(about);
            Core(inner).publish(name, params);
        }
    })
}

fn event_names<S: serde::Serializer>(subscriptions: &BTreeMap<String, u64>, out: S) -> Result<S::Ok, S::Error> {
    out.collect_seq(subscriptions.keys())
}

/// A local connection's session id everywhere: `<pid>.<n>` (also its MCP lease key).
pub fn session_id(session: u64) -> String {
    format!("{}.{session}", std::process::id())
}
