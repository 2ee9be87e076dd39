//! A pool of warm connections to one stdio MCP server, for one workspace.
//!
//! - `min_idle` initialized connections are kept warm; the pool grows on
//!   demand up to `max`; a caller that finds every connection busy waits up to
//!   `acquire_timeout`, then gets an error that says so.
//! - Affinity: a lease key (a client session) that holds a connection keeps
//!   getting the same one until it releases it or the session ends, and a
//!   connection is never leased to two keys at once.
//! - A fresh server per session: MCP servers keep state per connection, so
//!   by default (`Sharing::OneSession`) a connection that served one key is
//!   never leased to another. A released one is parked for its own key (a
//!   session that comes back within `idle_timeout` gets it again) and then
//!   ended; the idle set holds only never-used connections. A server declared
//!   `stateless` gets its released connections back in the idle set, once the
//!   server has answered every request still outstanding on them.
//! - Cancellation: a released connection's requests still waiting are
//!   cancelled (`notifications/cancelled` with the server's own ids); the
//!   connection is leased to nobody else until the server has answered them
//!   or the connection has been replaced.
//! - Eras: a client that opens with `initialize` gets a legacy connection
//!   opened with its own `initialize` params (so the server negotiates the
//!   protocol version with it), or a warm one opened with the same version
//!   and capabilities; a `server/discover` client gets a modern one. The
//!   upkeep warms connections in the shape the last such client asked for.
//! - `maintain` (one task per pool) drops dead connections, closes idle ones
//!   beyond `min_idle` after `idle_timeout`, health-checks idle ones every
//!   `health_interval` (`ping` or `server/discover`) and replaces failures,
//!   and refills to `min_idle`.
//! - The era a server speaks is learned by its first connection and reused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

use super::config::{PoolSettings, Sharing};
use super::conn::{ConnError, Connection, Era, Launch};
use crate::supervisor::Supervisor;

#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    #[error(
        "all {max} connections of the MCP server {server:?} are busy; waited {}",
        crate::config::units::format_duration(*.waited)
    )]
    Busy { server: String, max: usize, waited: Duration },
    #[error(
        "the MCP server {server:?} is still starting ({opening} connection(s) opening, none free); waited {}",
        crate::config::units::format_duration(*.waited)
    )]
    Starting { server: String, opening: usize, waited: Duration },
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("the pool of {0:?} is shut down")]
    Closed(String),
}

/// Figures for `nxops/mcp/servers`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolView {
    pub server: String,
    pub era: Option<Era>,
    pub busy: usize,
    /// Never-used connections (any, for a stateless server), ready for a new session.
    pub idle: usize,
    /// Released connections kept for their own session (or, stateless, waiting
    /// for the server to answer cancelled requests).
    pub parked: usize,
    pub opening: usize,
    pub cold_starts: u64,
    pub warm_acquires: u64,
    pub median_acquire_us: Option<u64>,
    pub replaced: u64,
    /// Connections that died (or failed a health check) in the last 10 minutes.
    pub replaced_last_10m: usize,
    /// Warm-ups that failed in a row (the server cannot be started).
    pub warm_failures: u32,
    pub leases: Vec<String>,
    pub stderr: Vec<String>,
}

struct Lease {
    conn: Arc<Connection>,
    last_used: Instant,
}

/// What kind of connection a lease's first request needs.
#[derive(Debug, Clone)]
pub enum Want {
    /// Any (the request is not a handshake).
    Any,
    /// A legacy one, opened with these `initialize` params (or the same version and capabilities).
    Initialize(Value),
    /// A modern one (`server/discover`).
    Discover,
}

impl Want {
    /// The connection a lease's first request `method` with `params` needs.
    pub fn for_request(method: &str, params: &Value) -> Want {
        match method {
            "initialize" => Want::Initialize(params.clone()),
            "server/discover" => Want::Discover,
            _ => Want::Any,
        }
    }

    fn fits(&self, conn: &Connection) -> bool {
        match self {
            Want::Any => true,
            Want::Discover => conn.era() == Era::Modern,
            Want::Initialize(params) => conn.era() == Era::Legacy && same_opening(conn.asked(), params),
        }
    }

    /// Whether a connection opened for `other` fits this want.
    fn accepts(&self, other: &Want) -> bool {
        match (self, other) {
            (Want::Any, _) => true,
            (Want::Discover, Want::Discover) => true,
            (Want::Initialize(a), Want::Initialize(b)) => same_opening(a, b),
            _ => false,
        }
    }
}

/// Two `initialize` requests the server answers alike: the same version and capabilities.
fn same_opening(a: &Value, b: &Value) -> bool {
    a.get("protocolVersion") == b.get("protocolVersion") && a.get("capabilities") == b.get("capabilities")
}

#[derive(Default)]
struct State {
    idle: Vec<(Arc<Connection>, Instant)>,
    leased: HashMap<String, Lease>,
    /// Released connections kept for their own key only (`Sharing::OneSession`), since when.
    parked: HashMap<String, (Arc<Connection>, Instant)>,
    /// Released connections of a stateless server whose requests the server has
    /// not answered yet; they go back to `idle` once it has.
    draining: Vec<(Arc<Connection>, Instant)>,
    opening: usize,
    /// Of `opening`, those the upkeep is warming for nobody in particular.
    warming: usize,
    /// Failed warm-ups in a row, and when the next may start (1 s, doubling, at most 60 s).
    warm_failures: u32,
    next_warm: Option<Instant>,
    /// Connections that finished opening after `shutdown` began; it closes them.
    late: Vec<Arc<Connection>>,
    /// Connections being ended in the background (`end`); `shutdown` ends them too.
    ending: Vec<Arc<Connection>>,
    closed: bool,
    /// The most recent acquire times (microseconds), for the median.
    acquire_us: Vec<u64>,
    last_stderr: Vec<String>,
    /// When connections died and were replaced (the last 64), for "restarted 3 times in 10 min".
    replacements: std::collections::VecDeque<Instant>,
    /// Every dead connection taken out, wherever it was (idle, leased, parked, draining).
    replaced: u64,
    /// Connections started for one session with its own values (`acquire_own`):
    /// never idle, never leased to another session, ended when released by a
    /// stateless server's session too.
    own: std::collections::HashSet<u64>,
}

impl State {
    fn total(&self) -> usize {
        self.idle.len() + self.leased.len() + self.parked.len() + self.draining.len() + self.opening
    }

    /// The oldest parked connection, taken out to make room.
    fn evict_parked(&mut self) -> Option<Arc<Connection>> {
        let key = self.parked.iter().min_by_key(|(_, (_, since))| *since).map(|(k, _)| k.clone())?;
        self.parked.remove(&key).map(|(conn, _)| conn)
    }

    /// The one place a dead connection taken out is counted.
    fn note_replaced(&mut self, count: usize) {
        self.replaced += count as u64;
        for _ in 0..count {
            if self.replacements.len() == 64 {
                self.replacements.pop_front();
            }
            self.replacements.push_back(Instant::now());
        }
    }
}

#[derive(Clone)]
pub struct Pool(Arc<Inner>);

/// What an acquire does next.
enum Step {
    Got(Arc<Connection>),
    /// Open a connection (an `opening` slot was taken for it).
    Open,
    /// Wait for a connection to be freed or warmed.
    Wait,
}

struct Inner {
    launch: Launch,
    /// Changed by `update` (`nxops trust` re-reads nxops.json); read afresh by every step.
    settings: Mutex<PoolSettings>,
    sup: Supervisor,
    state: Mutex<State>,
    freed: Notify,
    era: Mutex<Option<Era>>,
    /// The shape the last handshaking client asked for; warm connections take it.
    preferred: Mutex<Want>,
    cold_starts: AtomicU64,
    warm_acquires: AtomicU64,
}

const ACQUIRE_SAMPLES: usize = 256;
/// How long a released connection of a stateless server may wait for the
/// server to answer its cancelled requests before it is replaced.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

impl Pool {
    /// A pool; its maintenance task starts at once and warms `min_idle` connections.
    pub fn start(sup: Supervisor, launch: Launch, settings: PoolSettings) -> Pool {
        let pool = Pool(Arc::new(Inner {
            launch,
            settings: Mutex::new(settings),
            sup,
            state: Mutex::default(),
            freed: Notify::new(),
            era: Mutex::default(),
            preferred: Mutex::new(Want::Any),
            cold_starts: AtomicU64::new(0),
            warm_acquires: AtomicU64::new(0),
        }));
        let maintained = pool.clone();
        pool.0.sup.runtime().spawn(async move { maintained.maintain().await });
        pool
    }

    /// The settings in effect now.
    pub fn settings(&self) -> PoolSettings {
        self.0.settings.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies new settings: the upkeep grows the pool to the new `min_idle`,
    /// ends idle connections beyond it, and ends parked, then idle ones while
    /// the pool holds more than the new `max` (leased ones end when released).
    pub fn update(&self, settings: PoolSettings) {
        let shrunk = {
            let mut current = self.0.settings.lock().unwrap_or_else(|p| p.into_inner());
            let shrunk = settings.min_idle < current.min_idle;
            *current = settings.clone();
            shrunk
        };
        if shrunk {
            let extra: Vec<Arc<Connection>> = {
                let mut state = self.state();
                let keep = settings.min_idle.min(state.idle.len());
                state.idle.drain(keep..).map(|(c, _)| c).collect()
            };
            extra.into_iter().for_each(|conn| self.end(conn));
        }
        self.0.freed.notify_waiters();
    }

    pub fn launch(&self) -> &Launch {
        &self.0.launch
    }

    pub fn server(&self) -> &str {
        &self.0.launch.server
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection leased to `key`: the one it already holds (or had parked),
    /// else a never-used idle one, else a new one (up to `max`), else the first
    /// one freed within `acquire_timeout`.
    pub async fn acquire(&self, key: &str) -> Result<Arc<Connection>, PoolError> {
        self.acquire_for(key, Want::Any).await
    }

    /// Whether `key` holds a connection, leased or parked.
    pub fn holds(&self, key: &str) -> bool {
        let state = self.state();
        state.leased.contains_key(key) || state.parked.contains_key(key)
    }

    /// `acquire` for a lease whose first request needs `want` (see `Want`).
    pub async fn acquire_for(&self, key: &str, want: Want) -> Result<Arc<Connection>, PoolError> {
        self.acquire_with(key, want, None).await
    }

    /// `acquire_for` for a session whose server starts as `launch`, not as the
    /// pool's (an agent's own values, see `McpPools::launch_for`): unless `key`
    /// holds a connection already, it gets one started for it alone (a cold
    /// start, within `max`), which nobody else is ever leased.
    pub async fn acquire_own(&self, key: &str, want: Want, launch: Launch) -> Result<Arc<Connection>, PoolError> {
        self.acquire_with(key, want, Some(launch)).await
    }

    async fn acquire_with(&self, key: &str, want: Want, launch: Option<Launch>) -> Result<Arc<Connection>, PoolError> {
        let asked = Instant::now();
        let deadline = asked + self.settings().acquire_timeout;
        let want = self.learn(want);
        loop {
            let freed = self.0.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let (step, to_end) = self.next_step(key, &want, asked, launch.is_some());
            to_end.into_iter().for_each(|conn| self.end(conn));
            match step? {
                Step::Got(conn) => return Ok(conn),
                Step::Open => return self.open_leased(key, &want, asked, launch.as_ref()).await,
                Step::Wait => {
                    if tokio::time::timeout_at(deadline.into(), freed).await.is_err() {
                        return Err(self.busy_error());
                    }
                }
            }
        }
    }

    /// What `acquire_for` does next, decided under the state's lock, and the
    /// connections to end once it is released: dead ones found on the way, and
    /// one ended to make room. `own`: a warm connection does not fit (`acquire_own`).
    fn next_step(
        &self,
        key: &str,
        want: &Want,
        asked: Instant,
        own: bool,
    ) -> (Result<Step, PoolError>, Vec<Arc<Connection>>) {
        let mut state = self.state();
        if state.closed {
            return (Err(PoolError::Closed(self.server().to_string())), Vec::new());
        }
        let mut to_end = Vec::new();
        let held = self.held(&mut state, key, &mut to_end);
        let (live, dead): (Vec<_>, Vec<_>) =
            std::mem::take(&mut state.idle).into_iter().partition(|(c, _)| !c.is_dead());
        state.idle = live;
        to_end.extend(dead.into_iter().map(|(conn, _)| conn));
        state.note_replaced(to_end.len());
        if let Some(conn) = held {
            return (Ok(Step::Got(conn)), to_end);
        }
        if let Some(i) = state.idle.iter().position(|(conn, _)| !own && want.fits(conn)) {
            let (conn, _) = state.idle.remove(i);
            state.leased.insert(key.to_string(), Lease { conn: conn.clone(), last_used: Instant::now() });
            self.record_acquire(&mut state, asked);
            self.0.warm_acquires.fetch_add(1, Ordering::Relaxed);
            return (Ok(Step::Got(conn)), to_end);
        }
        let max = self.settings().max;
        if !own && state.warming > 0 && want.accepts(&self.preferred()) {
            return (Ok(Step::Wait), to_end); // a warm connection is on its way: wait for it rather than start another
        }
        if state.total() >= max {
            // Full: make room by ending a parked connection, a draining one (it is
            // replaced), or an idle one of another shape.
            let evicted = state
                .evict_parked()
                .or_else(|| state.draining.pop().map(|(c, _)| c))
                .or_else(|| (!state.idle.is_empty()).then(|| state.idle.remove(0).0));
            to_end.extend(evicted);
        }
        if state.total() < max {
            state.opening += 1;
            (Ok(Step::Open), to_end)
        } else {
            (Ok(Step::Wait), to_end)
        }
    }

    /// The want warm-ups follow from now on, when `want` is a handshake; a
    /// `server/discover` for a server known to be legacy-only takes any connection.
    fn learn(&self, want: Want) -> Want {
        let era = *self.0.era.lock().unwrap_or_else(|p| p.into_inner());
        let want = match want {
            Want::Discover if era == Some(Era::Legacy) => Want::Any,
            other => other,
        };
        if !matches!(want, Want::Any) {
            *self.0.preferred.lock().unwrap_or_else(|p| p.into_inner()) = want.clone();
        }
        want
    }

    fn preferred(&self) -> Want {
        self.0.preferred.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The connection `key` holds already, leased or parked, if it still lives;
    /// a dead one goes to `dead` (the caller counts and ends it).
    fn held(&self, state: &mut State, key: &str, dead: &mut Vec<Arc<Connection>>) -> Option<Arc<Connection>> {
        if let Some(lease) = state.leased.get_mut(key) {
            if !lease.conn.is_dead() {
                lease.last_used = Instant::now();
                return Some(lease.conn.clone());
            }
            dead.extend(state.leased.remove(key).map(|lease| lease.conn));
        }
        let (conn, _) = state.parked.remove(key)?;
        if conn.is_dead() {
            dead.push(conn);
            return None;
        }
        state.leased.insert(key.to_string(), Lease { conn: conn.clone(), last_used: Instant::now() });
        Some(conn)
    }

    /// Opens a connection for `want` (as `launch`, else the pool's) and leases
    /// it to `key` (one `opening` slot was taken for it).
    async fn open_leased(
        &self,
        key: &str,
        want: &Want,
        asked: Instant,
        launch: Option<&Launch>,
    ) -> Result<Arc<Connection>, PoolError> {
        let opened = self.open(want, launch).await;
        let leased = {
            let mut state = self.state();
            state.opening -= 1;
            let conn = opened?;
            if state.closed {
                Err(conn)
            } else {
                if launch.is_some() {
                    state.own.insert(conn.id);
                }
                state.leased.insert(key.to_string(), Lease { conn: conn.clone(), last_used: Instant::now() });
                self.record_acquire(&mut state, asked);
                Ok(conn)
            }
        };
        match leased {
            Ok(conn) => Ok(conn),
            Err(conn) => {
                self.state().late.push(conn);
                Err(PoolError::Closed(self.server().to_string()))
            }
        }
    }

    fn busy_error(&self) -> PoolError {
        let (busy, opening) = {
            let state = self.state();
            (state.leased.len(), state.opening)
        };
        if busy < self.settings().max && opening > 0 {
            // Nobody holds the connections: they are slow to start (cold start past acquireTimeout).
            return PoolError::Starting {
                server: self.server().to_string(),
                opening,
                waited: self.settings().acquire_timeout,
            };
        }
        PoolError::Busy {
            server: self.server().to_string(),
            max: self.settings().max,
            waited: self.settings().acquire_timeout,
        }
    }

    /// Ends a connection in the background; `shutdown` waits for it too.
    fn end(&self, conn: Arc<Connection>) {
        {
            let mut state = self.state();
            state.own.remove(&conn.id);
            state.ending.push(conn.clone());
        }
        let pool = self.clone();
        self.0.sup.runtime().spawn(async move {
            conn.close(&pool.0.sup).await;
            pool.state().ending.retain(|c| c.id != conn.id);
        });
    }

    fn record_acquire(&self, state: &mut State, asked: Instant) {
        if state.acquire_us.len() >= ACQUIRE_SAMPLES {
            state.acquire_us.remove(0);
        }
        state.acquire_us.push(asked.elapsed().as_micros() as u64);
    }

    /// Opens a connection shaped for `want` (`Any`: the era the server speaks),
    /// started as `launch`, else as the pool's servers are.
    async fn open(&self, want: &Want, launch: Option<&Launch>) -> Result<Arc<Connection>, PoolError> {
        let launch = launch.unwrap_or(&self.0.launch);
        let conn = match want {
            Want::Initialize(params) => Connection::open_legacy(&self.0.sup, launch, params.clone()).await?,
            Want::Discover => Connection::open(&self.0.sup, launch, Some(Era::Modern)).await?,
            Want::Any => {
                let known = *self.0.era.lock().unwrap_or_else(|p| p.into_inner());
                Connection::open(&self.0.sup, launch, known).await?
            }
        };
        if !matches!(want, Want::Initialize(_)) {
            *self.0.era.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.era());
        }
        self.0.cold_starts.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    /// Ends `key`'s lease. Requests still waiting on its connection are
    /// cancelled; the connection is parked for `key` alone (`OneSession`), or,
    /// for a stateless server, goes back to the idle set once the server has
    /// answered them. A dead one is dropped.
    pub fn release(&self, key: &str) {
        let (dead, cancel) = {
            let mut state = self.state();
            let Some(lease) = state.leased.remove(key) else { return };
            lease.conn.set_sink(None);
            let cancel = (lease.conn.outstanding() > 0).then(|| lease.conn.clone());
            if lease.conn.is_dead() {
                state.note_replaced(1);
                (Some(lease.conn), None)
            } else if state.own.contains(&lease.conn.id) && self.settings().sharing == Sharing::Stateless {
                (Some(lease.conn), None) // started with one session's values: it serves no other
            } else {
                match self.settings().sharing {
                    Sharing::OneSession => {
                        state.parked.insert(key.to_string(), (lease.conn, Instant::now()));
                    }
                    Sharing::Stateless if cancel.is_some() => state.draining.push((lease.conn, Instant::now())),
                    Sharing::Stateless => state.idle.push((lease.conn, Instant::now())),
                }
                (None, cancel)
            }
        };
        self.0.freed.notify_waiters();
        if let Some(conn) = cancel {
            self.0.sup.runtime().spawn(async move { conn.cancel_all("the client went away").await });
        }
        if let Some(conn) = dead {
            self.remember_stderr(&conn);
            self.end(conn);
        }
    }

    /// `key`'s session ended for good: its connection ends (`OneSession`: no
    /// other session may see its state), or, for a stateless server, is released.
    pub fn end_session(&self, key: &str) {
        match self.settings().sharing {
            Sharing::OneSession => self.discard(key),
            Sharing::Stateless => self.release(key),
        }
    }

    /// Ends `key`'s lease and closes its connection (its server state goes with
    /// it); the upkeep warms a fresh one if the pool is below `min_idle`.
    pub fn discard(&self, key: &str) {
        let conn = {
            let mut state = self.state();
            let parked = state.parked.remove(key).map(|(conn, _)| conn);
            state.leased.remove(key).map(|lease| lease.conn).or(parked)
        };
        let Some(conn) = conn else { return };
        conn.set_sink(None);
        self.0.freed.notify_waiters();
        self.remember_stderr(&conn);
        self.end(conn);
    }

    fn remember_stderr(&self, conn: &Connection) {
        self.state().last_stderr = conn.stderr.tail(10);
    }

    pub fn view(&self) -> PoolView {
        let state = self.state();
        let mut samples = state.acquire_us.clone();
        samples.sort_unstable();
        let stderr = match state.idle.first().map(|(c, _)| c).or(state.leased.values().next().map(|l| &l.conn)) {
            Some(conn) => conn.stderr.tail(10),
            None => state.last_stderr.clone(),
        };
        PoolView {
            server: self.server().to_string(),
            era: *self.0.era.lock().unwrap_or_else(|p| p.into_inner()),
            busy: state.leased.len(),
            idle: state.idle.len(),
            parked: state.parked.len() + state.draining.len(),
            opening: state.opening,
            cold_starts: self.0.cold_starts.load(Ordering::Relaxed),
            warm_acquires: self.0.warm_acquires.load(Ordering::Relaxed),
            median_acquire_us: samples.get(samples.len() / 2).copied(),
            replaced: state.replaced,
            replaced_last_10m: state.replacements.iter().filter(|at| at.elapsed() <= Duration::from_secs(600)).count(),
            warm_failures: state.warm_failures,
            leases: state.leased.keys().cloned().collect(),
            stderr,
        }
    }

    /// Takes out what a released connection's time is up for: parked ones after
    /// `idle_timeout`; draining ones go back to idle once answered, or out after
    /// `DRAIN_LIMIT` (a server that never answers a cancelled request).
    fn expire_released(&self, state: &mut State, settings: &PoolSettings) -> Vec<Arc<Connection>> {
        let mut out = Vec::new();
        let parked: Vec<String> = state
            .parked
            .iter()
            .filter(|(_, (conn, since))| conn.is_dead() || since.elapsed() >= settings.idle_timeout)
            .map(|(key, _)| key.clone())
            .collect();
        out.extend(parked.iter().filter_map(|key| state.parked.remove(key)).map(|(conn, _)| conn));
        for (conn, since) in std::mem::take(&mut state.draining) {
            if conn.is_dead() || since.elapsed() >= DRAIN_LIMIT {
                out.push(conn);
            } else if conn.outstanding() == 0 {
                state.idle.push((conn, Instant::now()));
                self.0.freed.notify_waiters();
            } else {
                state.draining.push((conn, since));
            }
        }
        out
    }

    /// The pool's upkeep, until `shutdown`.
    async fn maintain(&self) {
        let mut last_health = Instant::now();
        loop {
            let settings = self.settings();
            let tick = settings
                .health_interval
                .min(settings.idle_timeout)
                .min(Duration::from_secs(1))
                .max(Duration::from_millis(20));
            let (expired, dead, to_open, to_check) = {
                let mut state = self.state();
                if state.closed {
                    return;
                }
                let mut dead: Vec<Arc<Connection>> = Vec::new();
                state.idle.retain(|(conn, _)| {
                    let alive = !conn.is_dead();
                    if !alive {
                        dead.push(conn.clone());
                    }
                    alive
                });
                let stale: Vec<String> = state
                    .leased
                    .iter()
                    .filter(|(_, l)| l.conn.is_dead() || l.last_used.elapsed() >= settings.idle_timeout)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in stale {
                    // An abandoned lease (no use for idle_timeout) is released, or dropped if dead.
                    if let Some(lease) = state.leased.remove(&key) {
                        lease.conn.set_sink(None);
                        if lease.conn.is_dead() {
                            dead.push(lease.conn);
                        } else {
                            match settings.sharing {
                                Sharing::OneSession => drop(state.parked.insert(key, (lease.conn, Instant::now()))),
                                Sharing::Stateless => state.draining.push((lease.conn, Instant::now())),
                            }
                        }
                    }
                }
                let mut expired = self.expire_released(&mut state, &settings);
                let preferred = self.preferred();
                let (fitting, other): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut state.idle).into_iter().partition(|(conn, _)| preferred.fits(conn));
                state.idle = fitting;
                expired.extend(other.into_iter().map(|(conn, _)| conn));
                while state.idle.len() > settings.min_idle {
                    let oldest = state
                        .idle
                        .iter()
                        .enumerate()
                        .filter(|(_, (_, since))| since.elapsed() >= settings.idle_timeout)
                        .min_by_key(|(_, (_, since))| *since)
                        .map(|(i, _)| i);
                    let Some(i) = oldest else { break };
                    expired.push(state.idle.remove(i).0);
                }
                // Settings shrunk (`update`): parked, then idle connections end down to `max`.
                while state.total() > settings.max {
                    let Some(conn) = state.evict_parked().or_else(|| state.idle.pop().map(|(c, _)| c)) else { break };
                    expired.push(conn);
                }
                let want = settings.min_idle.saturating_sub(state.idle.len() + state.opening);
                let backing_off = state.next_warm.is_some_and(|t| Instant::now() < t);
                let wanted = if backing_off { 0 } else { want };
                // Warm connections come before parked ones: end parked ones to make room.
                while wanted > settings.max.saturating_sub(state.total()) {
                    let Some(conn) = state.evict_parked() else { break };
                    expired.push(conn);
                }
                let to_open = wanted.min(settings.max.saturating_sub(state.total()));
                state.opening += to_open;
                state.warming += to_open;
                let to_check: Vec<Arc<Connection>> = if last_health.elapsed() >= settings.health_interval {
                    last_health = Instant::now();
                    state.idle.iter().map(|(c, _)| c.clone()).collect()
                } else {
                    Vec::new()
                };
                // Parked and draining ones that died come out with the expired.
                let died = dead.len() + expired.iter().filter(|conn| conn.is_dead()).count();
                state.note_replaced(died);
                (expired, dead, to_open, to_check)
            };
            if !dead.is_empty() {
                self.0.freed.notify_waiters();
            }
            for conn in dead.into_iter().chain(expired) {
                self.remember_stderr(&conn);
                conn.close(&self.0.sup).await;
            }
            for conn in to_check {
                if !conn.healthy(settings.health_interval.min(Duration::from_secs(10))).await {
                    tracing::info!(target: "nxops::mcp", "{}: connection {} failed its health check", self.server(), conn.id);
                    let removed = {
                        let mut state = self.state();
                        let before = state.idle.len();
                        state.idle.retain(|(c, _)| c.id != conn.id);
                        before != state.idle.len()
                    };
                    if removed {
                        self.state().note_replaced(1);
                        conn.close(&self.0.sup).await;
                    }
                }
            }
            let shape = self.preferred();
            for opened_so_far in 0..to_open {
                let opened = self.open(&shape, None).await;
                if let Ok(conn) = &opened {
                    conn.prime().await; // warm-ups only: a client waiting on an open does not wait for this
                }
                {
                    let mut state = self.state();
                    state.opening -= 1;
                    state.warming -= 1;
                    match opened {
                        Ok(conn) if !state.closed => {
                            state.idle.push((conn, Instant::now()));
                            state.warm_failures = 0;
                            state.next_warm = None;
                        }
                        Ok(conn) => state.late.push(conn),
                        Err(err) => {
                            // The rest of this round's openings are given back.
                            state.opening -= to_open - opened_so_far - 1;
                            state.warming -= to_open - opened_so_far - 1;
                            // A server that cannot start is not started again every second.
                            let delay =
                                Duration::from_secs(1 << state.warm_failures.min(6)).min(Duration::from_secs(60));
                            state.warm_failures += 1;
                            state.next_warm = Some(Instant::now() + delay);
                            drop(state);
                            tracing::warn!(target: "nxops::mcp", "{}: cannot warm a connection: {err}", self.server());
                            // Waiters stop waiting for it and open their own (and see its error).
                            self.0.freed.notify_waiters();
                            break;
                        }
                    }
                }
                self.0.freed.notify_waiters();
            }
            tokio::time::sleep(tick).await;
        }
    }

    /// Closes idle connections beyond `min_idle`, and parked ones, now, whatever
    /// their idle time; returns how many were closed.
    pub async fn trim_idle(&self) -> usize {
        let extra: Vec<Arc<Connection>> = {
            let mut state = self.state();
            let keep = self.settings().min_idle.min(state.idle.len());
            let mut extra: Vec<Arc<Connection>> = state.idle.drain(keep..).map(|(c, _)| c).collect();
            extra.extend(state.parked.drain().map(|(_, (c, _))| c));
            extra
        };
        for conn in &extra {
            conn.close(&self.0.sup).await;
        }
        extra.len()
    }

    /// Closes every connection (leased ones too) and stops the upkeep.
    pub async fn shutdown(&self) {
        self.state().closed = true;
        // A connection still opening would outlive the pool: wait for it (its handshake is bounded).
        let deadline = Instant::now() + Duration::from_secs(35);
        while self.state().opening > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let all: Vec<Arc<Connection>> = {
            let mut state = self.state();
            let mut all: Vec<Arc<Connection>> = state.idle.drain(..).map(|(c, _)| c).collect();
            all.extend(state.leased.drain().map(|(_, l)| l.conn));
            all.extend(state.parked.drain().map(|(_, (c, _))| c));
            all.extend(state.draining.drain(..).map(|(c, _)| c));
            all.append(&mut state.late);
            all.extend(state.ending.iter().cloned());
            all
        };
        self.0.freed.notify_waiters();
        let sup = self.0.sup.clone();
        futures_util::future::join_all(all.iter().map(|c| c.close(&sup))).await;
    }
}
