//! A pool of warm connections to one stdio MCP server, for one workspace.
//!
//! - `min_idle` initialized connections are kept warm; the pool grows on
//!   demand up to `max`; a caller that finds every connection busy waits up to
//!   `acquire_timeout`, then gets an error that says so.
//! - Affinity: a lease key (a client session) that holds a connection keeps
//!   getting the same one until it releases it or the session ends, and a
//!   connection is never leased to two keys at once, so no state leaks between
//!   clients.
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
use tokio::sync::Notify;

use super::config::PoolSettings;
use super::conn::{ConnError, Connection, Era, Launch};
use crate::supervisor::Supervisor;

#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    #[error(
        "all {max} connections of the MCP server {server:?} are busy; waited {}",
        crate::config::units::format_duration(*.waited)
    )]
    Busy { server: String, max: usize, waited: Duration },
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
    pub idle: usize,
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

#[derive(Default)]
struct State {
    idle: Vec<(Arc<Connection>, Instant)>,
    leased: HashMap<String, Lease>,
    opening: usize,
    /// Of `opening`, those the upkeep is warming for nobody in particular.
    warming: usize,
    /// Failed warm-ups in a row, and when the next may start (1 s, doubling, at most 60 s).
    warm_failures: u32,
    next_warm: Option<Instant>,
    /// Connections that finished opening after `shutdown` began; it closes them.
    late: Vec<Arc<Connection>>,
    closed: bool,
    /// The most recent acquire times (microseconds), for the median.
    acquire_us: Vec<u64>,
    last_stderr: Vec<String>,
    /// When connections died and were replaced (the last 64), for "restarted 3 times in 10 min".
    replacements: std::collections::VecDeque<Instant>,
}

impl State {
    fn note_replaced(&mut self, count: usize) {
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

struct Inner {
    launch: Launch,
    settings: PoolSettings,
    sup: Supervisor,
    state: Mutex<State>,
    freed: Notify,
    era: Mutex<Option<Era>>,
    cold_starts: AtomicU64,
    warm_acquires: AtomicU64,
    replaced: AtomicU64,
}

const ACQUIRE_SAMPLES: usize = 256;

impl Pool {
    /// A pool; its maintenance task starts at once and warms `min_idle` connections.
    pub fn start(sup: Supervisor, launch: Launch, settings: PoolSettings) -> Pool {
        let pool = Pool(Arc::new(Inner {
            launch,
            settings,
            sup,
            state: Mutex::default(),
            freed: Notify::new(),
            era: Mutex::default(),
            cold_starts: AtomicU64::new(0),
            warm_acquires: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
        }));
        let maintained = pool.clone();
        pool.0.sup.runtime().spawn(async move { maintained.maintain().await });
        pool
    }

    pub fn server(&self) -> &str {
        &self.0.launch.server
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection leased to `key`: the one it already holds, else an idle
    /// one, else a new one (up to `max`), else the first one freed within
    /// `acquire_timeout`.
    pub async fn acquire(&self, key: &str) -> Result<Arc<Connection>, PoolError> {
        let asked = Instant::now();
        let deadline = asked + self.0.settings.acquire_timeout;
        loop {
            let freed = self.0.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let open_one = {
                let mut state = self.state();
                if state.closed {
                    return Err(PoolError::Closed(self.server().to_string()));
                }
                if let Some(lease) = state.leased.get_mut(key) {
                    if !lease.conn.is_dead() {
                        lease.last_used = Instant::now();
                        return Ok(lease.conn.clone());
                    }
                    state.leased.remove(key);
                    state.note_replaced(1);
                }
                state.idle.retain(|(conn, _)| !conn.is_dead());
                if let Some((conn, _)) = state.idle.pop() {
                    state.leased.insert(key.to_string(), Lease { conn: conn.clone(), last_used: Instant::now() });
                    self.record_acquire(&mut state, asked);
                    self.0.warm_acquires.fetch_add(1, Ordering::Relaxed);
                    return Ok(conn);
                }
                let total = state.idle.len() + state.leased.len() + state.opening;
                if state.warming > 0 {
                    false // a warm connection is on its way: wait for it rather than start another
                } else if total < self.0.settings.max {
                    state.opening += 1;
                    true
                } else {
                    false
                }
            };
            if open_one {
                let opened = self.open().await;
                let leased = {
                    let mut state = self.state();
                    state.opening -= 1;
                    let conn = opened?;
                    if state.closed {
                        Err(conn)
                    } else {
                        state.leased.insert(key.to_string(), Lease { conn: conn.clone(), last_used: Instant::now() });
                        self.record_acquire(&mut state, asked);
                        Ok(conn)
                    }
                };
                return match leased {
                    Ok(conn) => Ok(conn),
                    Err(conn) => {
                        self.state().late.push(conn);
                        Err(PoolError::Closed(self.server().to_string()))
                    }
                };
            }
            if tokio::time::timeout_at(deadline.into(), freed).await.is_err() {
                return Err(PoolError::Busy {
                    server: self.server().to_string(),
                    max: self.0.settings.max,
                    waited: self.0.settings.acquire_timeout,
                });
            }
        }
    }

    fn record_acquire(&self, state: &mut State, asked: Instant) {
        if state.acquire_us.len() >= ACQUIRE_SAMPLES {
            state.acquire_us.remove(0);
        }
        state.acquire_us.push(asked.elapsed().as_micros() as u64);
    }

    async fn open(&self) -> Result<Arc<Connection>, PoolError> {
        let known = *self.0.era.lock().unwrap_or_else(|p| p.into_inner());
        let conn = Connection::open(&self.0.sup, &self.0.launch, known).await?;
        *self.0.era.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.era());
        self.0.cold_starts.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    /// Gives `key`'s connection back to the idle set (a dead one is dropped).
    pub fn release(&self, key: &str) {
        let dead = {
            let mut state = self.state();
            let Some(lease) = state.leased.remove(key) else { return };
            lease.conn.set_sink(None);
            if lease.conn.is_dead() {
                state.note_replaced(1);
                Some(lease.conn)
            } else {
                state.idle.push((lease.conn, Instant::now()));
                None
            }
        };
        self.0.freed.notify_waiters();
        if let Some(conn) = dead {
            self.remember_stderr(&conn);
            let sup = self.0.sup.clone();
            self.0.sup.runtime().spawn(async move { conn.close(&sup).await });
        }
    }

    /// Ends `key`'s lease and closes its connection (its server state goes with
    /// it); the upkeep warms a fresh one if the pool is below `min_idle`.
    pub fn discard(&self, key: &str) {
        let Some(lease) = self.state().leased.remove(key) else { return };
        lease.conn.set_sink(None);
        self.0.freed.notify_waiters();
        self.remember_stderr(&lease.conn);
        let sup = self.0.sup.clone();
        self.0.sup.runtime().spawn(async move { lease.conn.close(&sup).await });
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
            opening: state.opening,
            cold_starts: self.0.cold_starts.load(Ordering::Relaxed),
            warm_acquires: self.0.warm_acquires.load(Ordering::Relaxed),
            median_acquire_us: samples.get(samples.len() / 2).copied(),
            replaced: self.0.replaced.load(Ordering::Relaxed),
            replaced_last_10m: state.replacements.iter().filter(|at| at.elapsed() <= Duration::from_secs(600)).count(),
            warm_failures: state.warm_failures,
            leases: state.leased.keys().cloned().collect(),
            stderr,
        }
    }

    /// The pool's upkeep, until `shutdown`.
    async fn maintain(&self) {
        let settings = self.0.settings.clone();
        let tick = settings
            .health_interval
            .min(settings.idle_timeout)
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(20));
        let mut last_health = Instant::now();
        loop {
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
                    // An abandoned lease (no use for idle_timeout) goes back, or out if dead.
                    if let Some(lease) = state.leased.remove(&key) {
                        lease.conn.set_sink(None);
                        if lease.conn.is_dead() {
                            dead.push(lease.conn);
                        } else {
                            state.idle.push((lease.conn, Instant::now()));
                        }
                    }
                }
                let mut expired = Vec::new();
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
                let total = state.idle.len() + state.leased.len() + state.opening;
                let want = settings.min_idle.saturating_sub(state.idle.len() + state.opening);
                let backing_off = state.next_warm.is_some_and(|t| Instant::now() < t);
                let to_open = if backing_off { 0 } else { want.min(settings.max.saturating_sub(total)) };
                state.opening += to_open;
                state.warming += to_open;
                let to_check: Vec<Arc<Connection>> = if last_health.elapsed() >= settings.health_interval {
                    last_health = Instant::now();
                    state.idle.iter().map(|(c, _)| c.clone()).collect()
                } else {
                    Vec::new()
                };
                (expired, dead, to_open, to_check)
            };
            if !dead.is_empty() {
                self.state().note_replaced(dead.len());
                self.0.replaced.fetch_add(dead.len() as u64, Ordering::Relaxed);
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
                        self.0.replaced.fetch_add(1, Ordering::Relaxed);
                        conn.close(&self.0.sup).await;
                    }
                }
            }
            for opened_so_far in 0..to_open {
                let opened = self.open().await;
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

    /// Closes idle connections beyond `min_idle` now, whatever their idle time;
    /// returns how many were closed.
    pub async fn trim_idle(&self) -> usize {
        let extra: Vec<Arc<Connection>> = {
            let mut state = self.state();
            let keep = self.0.settings.min_idle.min(state.idle.len());
            state.idle.drain(keep..).map(|(c, _)| c).collect()
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
            all.append(&mut state.late);
            all
        };
        self.0.freed.notify_waiters();
        let sup = self.0.sup.clone();
        futures_util::future::join_all(all.iter().map(|c| c.close(&sup))).await;
    }
}
