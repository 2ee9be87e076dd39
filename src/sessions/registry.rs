//! The sessions of one workspace as plain state: who opened them, what they
//! created, who holds them, and when they expire. No I/O and no clock of its
//! own: every call that depends on time takes `now` (ms since the epoch), so
//! the expiry rules are tested with an injected clock.
//!
//! Two kinds of session:
//! - a **connection** session belongs to one client connection (an editor, a
//!   script, the CLI). It is *held* while that connection lives: by the
//!   connection itself on the owner, or by the forwarding connection of the
//!   follower sidecar the client is connected to. When the last holder goes
//!   away without closing it, it expires `timeout` later.
//! - a **named** session is opened by a script and outlives connections. It is
//!   never held; every request naming it (and `heartbeat`) counts as a sign of
//!   life, and it expires `timeout` after the last one.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Connection,
    Named,
}

/// One session, as persisted (holders are not: connections die with the process).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: String,
    pub kind: Kind,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub client_version: Option<String>,
    pub opened_at: u64,
    pub last_seen: u64,
    /// When the last connection holding it went away (connection sessions).
    #[serde(default)]
    pub disconnected_at: Option<u64>,
    /// How long it lives without a holder (connection) or a sign of life (named).
    pub timeout_ms: u64,
    /// Free-form labels given at open, kept across restarts.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Processes it started: name -> the spec as the client gave it.
    #[serde(default)]
    pub processes: BTreeMap<String, Value>,
    /// MCP servers it holds a lease on (its affinity, restored on restart).
    #[serde(default)]
    pub mcp: BTreeSet<String>,
    #[serde(default)]
    pub restarts: u32,
    /// Events its client subscribed to (kept by the sidecar the client is connected to).
    #[serde(default)]
    pub subscriptions: BTreeSet<String>,
}

impl Record {
    /// When it expires if nothing happens, or `None` while a connection holds it.
    pub fn expires_at(&self, held: bool) -> Option<u64> {
        match self.kind {
            Kind::Connection if held => None,
            Kind::Connection => Some(self.disconnected_at.unwrap_or(self.last_seen) + self.timeout_ms),
            Kind::Named => Some(self.last_seen.max(self.disconnected_at.unwrap_or(0)) + self.timeout_ms),
        }
    }
}

/// Why a session ended, for events and the health report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ending {
    Closed,
    Forced,
    Expired,
}

#[derive(Debug, Default)]
pub struct Registry {
    records: BTreeMap<String, Record>,
    /// Connection-local ids (`Core` session numbers) holding each session.
    holders: BTreeMap<String, BTreeSet<u64>>,
    /// Sessions being closed: not listed as open, not expired twice.
    closing: BTreeSet<String>,
    /// When sessions expired, newest last (for "n expired in the last hour").
    expired: Vec<u64>,
    /// Connection sessions let go of without a word from their client (see [`End`]): counted in
    /// `vanished` if they expire before someone holds them again.
    unannounced: BTreeSet<String>,
    /// When sessions of clients that vanished expired, newest last (what health counts).
    vanished: Vec<u64>,
    closed_total: u64,
    /// Bumped on every change that must be persisted.
    generation: u64,
    /// The sign of life last counted as a change, per session (see `touch`).
    seen_saved: BTreeMap<String, u64>,
}

/// How a connection that held sessions ended, as its transport saw it.
///
/// Only a client that vanished counts against health: a script that ends its input is done, as
/// documented, and a named session that expires does what it was opened to do. A session the
/// connection held for others (a follower's clients) vanished with it unless they were let go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `exit`, or end of input after `shutdown`: its own session is closed at once.
    Clean,
    /// End of input between two messages, without `shutdown`: its own session expires after
    /// `sessions.timeout` (a client that crashed looks the same, so its work keeps that grace), but
    /// the client is not counted as vanished.
    InputClosed,
    /// The connection broke (a read error, or end of input in the middle of a message).
    Lost,
}

/// A session as `nxops/session/list` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    #[serde(flatten)]
    pub record: Record,
    pub state: &'static str,
    pub expires_at: Option<u64>,
}

impl Registry {
    /// The registry restored from disk, and the sessions that cannot come back.
    /// Nobody holds anything yet, so every connection session starts its expiry
    /// clock now: a client of a live follower sidecar reconnects through it and
    /// holds its session again. A connection session of a sidecar that is gone
    /// (`sidecar_alive(pid)` false: the crashed owner itself) lost its client
    /// with it, so it is returned apart, to be counted as expired.
    pub fn restored(records: Vec<Record>, now: u64, sidecar_alive: impl Fn(u32) -> bool) -> (Registry, Vec<Record>) {
        let mut registry = Registry::default();
        let mut lost = Vec::new();
        for mut record in records {
            if record.kind == Kind::Connection {
                let pid = record.id.split_once('.').and_then(|(pid, _)| pid.parse::<u32>().ok());
                if !pid.is_some_and(&sidecar_alive) {
                    registry.expired.push(now);
                    registry.vanished.push(now);
                    lost.push(record);
                    continue;
                }
                record.disconnected_at = Some(now);
                registry.unannounced.insert(record.id.clone());
            }
            registry.records.insert(record.id.clone(), record);
        }
        if !lost.is_empty() {
            registry.changed();
        }
        (registry, lost)
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn changed(&mut self) {
        self.generation += 1;
    }

    pub fn get(&self, id: &str) -> Option<&Record> {
        self.records.get(id).filter(|_| !self.closing.contains(id))
    }

    pub fn records(&self) -> Vec<Record> {
        self.records.values().cloned().collect()
    }

    pub fn is_held(&self, id: &str) -> bool {
        self.holders.get(id).is_some_and(|h| !h.is_empty())
    }

    /// Opens (or finds) a connection session held by `holder`.
    pub fn hold_connection(
        &mut self,
        id: &str,
        holder: u64,
        client: (Option<String>, Option<String>),
        timeout_ms: u64,
        now: u64,
    ) -> &Record {
        let fresh = !self.records.contains_key(id);
        let record = self.records.entry(id.to_string()).or_insert_with(|| Record {
            id: id.to_string(),
            kind: Kind::Connection,
            client_name: None,
            client_version: None,
            opened_at: now,
            last_seen: now,
            disconnected_at: None,
            timeout_ms,
            labels: BTreeMap::new(),
            processes: BTreeMap::new(),
            mcp: BTreeSet::new(),
            restarts: 0,
            subscriptions: BTreeSet::new(),
        });
        let mut dirty = fresh || record.disconnected_at.is_some();
        record.disconnected_at = None;
        record.last_seen = now;
        if client.0.is_some() && (record.client_name != client.0 || record.client_version != client.1) {
            (record.client_name, record.client_version) = client;
            dirty = true;
        }
        self.holders.entry(id.to_string()).or_default().insert(holder);
        self.unannounced.remove(id);
        if dirty {
            self.changed();
        }
        &self.records[id]
    }

    /// Opens a named session, or returns the one of that name (a sign of life).
    /// Returns whether it was created.
    pub fn open_named(&mut self, id: &str, timeout_ms: u64, labels: BTreeMap<String, String>, now: u64) -> bool {
        if let Some(record) = self.records.get_mut(id) {
            record.last_seen = now;
            if !labels.is_empty() {
                record.labels = labels;
            }
            self.changed();
            return false;
        }
        self.records.insert(
            id.to_string(),
            Record {
                id: id.to_string(),
                kind: Kind::Named,
                client_name: None,
                client_version: None,
                opened_at: now,
                last_seen: now,
                disconnected_at: None,
                timeout_ms,
                labels,
                processes: BTreeMap::new(),
                mcp: BTreeSet::new(),
                restarts: 0,
                subscriptions: BTreeSet::new(),
            },
        );
        self.changed();
        true
    }

    /// A sign of life; false for an unknown session. It is worth a write to
    /// disk only when it moves the expiry by a tenth of the timeout (at most
    /// 30 s), so a script's stream of requests does not fsync on each one; a
    /// restored session may then expire that much early, never late.
    pub fn touch(&mut self, id: &str, now: u64) -> bool {
        match self.records.get_mut(id) {
            Some(record) if !self.closing.contains(id) => {
                let step = (record.timeout_ms / 10).min(30_000);
                let saved = self.seen_saved.get(id).copied().unwrap_or(record.opened_at);
                record.last_seen = now;
                if now.saturating_sub(saved) >= step {
                    self.seen_saved.insert(id.to_string(), now);
                    self.changed();
                }
                true
            }
            _ => false,
        }
    }

    /// `holder` (a connection) stops holding `id`; without holders its expiry clock starts.
    /// `holder` stops holding `id`; `vanished` when its client went without a word (see [`End`]).
    pub fn let_go(&mut self, id: &str, holder: u64, now: u64, vanished: bool) {
        let Some(holders) = self.holders.get_mut(id) else { return };
        holders.remove(&holder);
        if holders.is_empty() {
            self.holders.remove(id);
            if vanished {
                self.unannounced.insert(id.to_string());
            } else {
                self.unannounced.remove(id);
            }
            if let Some(record) = self.records.get_mut(id) {
                record.disconnected_at = Some(now);
                self.changed();
            }
        }
    }

    /// A connection ended: it stops holding everything it held. `own` is the connection's own
    /// session, which its client ended as `end` says; any other session it held (for a follower's
    /// clients) vanished with it.
    pub fn connection_ended(&mut self, holder: u64, own: &str, end: End, now: u64) {
        let held: Vec<String> =
            self.holders.iter().filter(|(_, h)| h.contains(&holder)).map(|(id, _)| id.clone()).collect();
        for id in held {
            let vanished = end == End::Lost || id != own;
            self.let_go(&id, holder, now, vanished);
        }
    }

    pub fn add_process(&mut self, id: &str, name: &str, spec: Value) {
        // A name belongs to one session at a time: the latest start wins.
        for record in self.records.values_mut() {
            record.processes.remove(name);
        }
        if let Some(record) = self.records.get_mut(id) {
            record.processes.insert(name.to_string(), spec);
        }
        self.changed();
    }

    /// The session a process belongs to, if any.
    pub fn owner_of_process(&self, name: &str) -> Option<&str> {
        self.records.values().find(|r| r.processes.contains_key(name)).map(|r| r.id.as_str())
    }

    pub fn add_mcp(&mut self, id: &str, server: &str) {
        if let Some(record) = self.records.get_mut(id)
            && record.mcp.insert(server.to_string())
        {
            self.changed();
        }
    }

    pub fn remove_mcp(&mut self, id: &str, server: Option<&str>) {
        if let Some(record) = self.records.get_mut(id) {
            match server {
                Some(server) => {
                    record.mcp.remove(server);
                }
                None => record.mcp.clear(),
            }
            self.changed();
        }
    }

    pub fn set_subscriptions(&mut self, id: &str, events: BTreeSet<String>) {
        if let Some(record) = self.records.get_mut(id)
            && record.subscriptions != events
        {
            record.subscriptions = events;
            self.changed();
        }
    }

    pub fn count_restart(&mut self, id: &str) {
        if let Some(record) = self.records.get_mut(id) {
            record.restarts += 1;
            self.changed();
        }
    }

    /// Takes a session out of the open set for closing; `None` if unknown or
    /// already closing. The record stays until `finish_close`.
    pub fn begin_close(&mut self, id: &str) -> Option<Record> {
        if self.closing.contains(id) {
            return None;
        }
        let record = self.records.get(id)?.clone();
        self.closing.insert(id.to_string());
        Some(record)
    }

    pub fn finish_close(&mut self, id: &str, ending: Ending, now: u64) {
        self.closing.remove(id);
        self.holders.remove(id);
        self.seen_saved.remove(id);
        let vanished = self.unannounced.remove(id);
        if self.records.remove(id).is_some() {
            match ending {
                Ending::Expired => {
                    self.expired.push(now);
                    if vanished {
                        self.vanished.push(now);
                    }
                }
                Ending::Closed | Ending::Forced => self.closed_total += 1,
            }
            self.changed();
        }
    }

    /// Sessions whose time is up at `now`, not yet closing.
    pub fn due(&self, now: u64) -> Vec<String> {
        self.records
            .values()
            .filter(|r| !self.closing.contains(&r.id))
            .filter(|r| r.expires_at(self.is_held(&r.id)).is_some_and(|at| at <= now))
            .map(|r| r.id.clone())
            .collect()
    }

    /// The earliest expiry among open sessions.
    pub fn next_expiry(&self) -> Option<u64> {
        self.records
            .values()
            .filter(|r| !self.closing.contains(&r.id))
            .filter_map(|r| r.expires_at(self.is_held(&r.id)))
            .min()
    }

    fn state_of(&self, r: &Record) -> &'static str {
        match (self.closing.contains(&r.id), r.kind, self.is_held(&r.id)) {
            (true, ..) => "closing",
            (false, Kind::Connection, true) | (false, Kind::Named, _) => "active",
            (false, Kind::Connection, false) => "disconnected",
        }
    }

    fn view_of(&self, r: &Record) -> SessionView {
        SessionView { record: r.clone(), state: self.state_of(r), expires_at: r.expires_at(self.is_held(&r.id)) }
    }

    pub fn view(&self, id: &str) -> Option<SessionView> {
        self.records.get(id).map(|r| self.view_of(r))
    }

    pub fn views(&self) -> Vec<SessionView> {
        self.records.values().map(|r| self.view_of(r)).collect()
    }

    /// `(open, disconnected, expired since `since`, closed in all)`, for health and metrics.
    pub fn counts(&self, since: u64) -> Counts {
        let in_state = |state: &str| self.records.values().filter(|r| self.state_of(r) == state).count();
        Counts {
            active: in_state("active"),
            disconnected: in_state("disconnected"),
            expired_recently: self.expired.iter().filter(|at| **at >= since).count(),
            vanished_recently: self.vanished.iter().filter(|at| **at >= since).count(),
            expired_total: self.expired.len() as u64,
            closed_total: self.closed_total,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub active: usize,
    pub disconnected: usize,
    pub expired_recently: usize,
    /// Of those, the sessions of clients that vanished (see [`End`]): what health counts.
    pub vanished_recently: usize,
    pub expired_total: u64,
    pub closed_total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn client() -> (Option<String>, Option<String>) {
        (Some("vscode".into()), Some("1.99".into()))
    }

    #[test]
    fn a_held_connection_session_never_expires() {
        let mut r = Registry::default();
        r.hold_connection("41.1", 7, client(), MIN, 0);
        assert!(r.due(100 * MIN).is_empty());
        assert_eq!(r.next_expiry(), None);
        assert_eq!(r.views()[0].state, "active");
    }

    #[test]
    fn a_connection_session_expires_its_timeout_after_the_last_holder_left() {
        let mut r = Registry::default();
        r.hold_connection("41.1", 7, client(), MIN, 0);
        r.hold_connection("41.1", 8, client(), MIN, 1_000);
        r.connection_ended(7, "41.7", End::Lost, 5_000);
        assert!(r.due(10 * MIN).is_empty(), "still held by 8");
        r.connection_ended(8, "41.8", End::Lost, 2 * MIN);
        assert_eq!(r.views()[0].state, "disconnected");
        assert_eq!(r.next_expiry(), Some(3 * MIN));
        assert!(r.due(3 * MIN - 1).is_empty());
        assert_eq!(r.due(3 * MIN), vec!["41.1".to_string()]);
    }

    /// Regression: a finished script (end of input) and a named session's expiry were counted as
    /// clients gone without closing, so four finished scripts made `monitor check` exit 1.
    #[test]
    fn only_clients_that_vanished_are_counted_when_their_sessions_expire() {
        let mut r = Registry::default();
        r.hold_connection("41.1", 1, client(), MIN, 0); // a script that ends its input
        r.hold_connection("41.2", 2, client(), MIN, 0); // a client whose connection breaks
        r.hold_connection("41.3", 3, client(), MIN, 0); // a follower that goes away, holding...
        r.hold_connection("99.1", 3, client(), MIN, 0); // ...its client's session
        r.hold_connection("99.2", 3, client(), MIN, 0); // a follower's client that ended, let go first
        r.hold_connection("41.4", 4, client(), MIN, 0); // a client that vanished and came back
        r.open_named("e2e", MIN, BTreeMap::new(), 0);
        r.let_go("99.2", 3, 0, false);
        r.connection_ended(1, "41.1", End::InputClosed, 0);
        r.connection_ended(2, "41.2", End::Lost, 0);
        r.connection_ended(3, "41.3", End::InputClosed, 0);
        r.connection_ended(4, "41.4", End::Lost, 0);
        r.hold_connection("41.4", 5, client(), MIN, 1); // back through a follower, which then reports its end
        r.let_go("41.4", 5, 2, false);
        let due = r.due(2 * MIN);
        assert_eq!(due.len(), 7, "{due:?}");
        for id in &due {
            r.begin_close(id);
            r.finish_close(id, Ending::Expired, 2 * MIN);
        }
        let counts = r.counts(0);
        assert_eq!((counts.expired_recently, counts.vanished_recently), (7, 2), "41.2 and 99.1 vanished");
        assert_eq!(r.counts(2 * MIN + 1).vanished_recently, 0);
    }

    #[test]
    fn holding_again_stops_the_clock() {
        let mut r = Registry::default();
        r.hold_connection("41.1", 7, client(), MIN, 0);
        r.connection_ended(7, "41.7", End::Lost, 0);
        r.hold_connection("41.1", 9, client(), MIN, MIN / 2);
        assert!(r.due(10 * MIN).is_empty());
    }

    #[test]
    fn a_named_session_lives_timeout_after_its_last_sign_of_life() {
        let mut r = Registry::default();
        assert!(r.open_named("e2e", 10 * MIN, BTreeMap::new(), 0));
        assert!(!r.open_named("e2e", 10 * MIN, BTreeMap::new(), 3 * MIN), "reopening finds it");
        assert!(r.touch("e2e", 8 * MIN));
        assert!(r.due(17 * MIN).is_empty());
        assert_eq!(r.due(18 * MIN), vec!["e2e".to_string()]);
        assert!(!r.touch("nope", 0));
    }

    #[test]
    fn closing_takes_a_session_out_once_and_counts_how_it_ended() {
        let mut r = Registry::default();
        r.open_named("a", MIN, BTreeMap::new(), 0);
        r.open_named("b", MIN, BTreeMap::new(), 0);
        let record = r.begin_close("a").expect("open");
        assert_eq!(record.id, "a");
        assert!(r.begin_close("a").is_none(), "a close in progress is not started twice");
        assert_eq!(r.due(2 * MIN), vec!["b".to_string()], "a closing session does not expire");
        r.finish_close("a", Ending::Closed, MIN);
        r.begin_close("b");
        r.finish_close("b", Ending::Expired, 2 * MIN);
        let counts = r.counts(MIN);
        assert_eq!((counts.active, counts.expired_recently, counts.closed_total), (0, 1, 1));
        assert_eq!(r.counts(3 * MIN).expired_recently, 0);
    }

    #[test]
    fn a_process_name_belongs_to_the_session_that_started_it_last() {
        let mut r = Registry::default();
        r.open_named("a", MIN, BTreeMap::new(), 0);
        r.open_named("b", MIN, BTreeMap::new(), 0);
        r.add_process("a", "web", serde_json::json!({"command": "x"}));
        r.add_process("b", "web", serde_json::json!({"command": "y"}));
        assert_eq!(r.owner_of_process("web"), Some("b"));
        assert!(r.get("a").unwrap().processes.is_empty());
    }

    #[test]
    fn restored_connection_sessions_start_their_clock_at_the_restore_or_are_lost_with_their_sidecar() {
        let mut r = Registry::default();
        r.hold_connection("41.1", 7, client(), MIN, 0);
        r.open_named("e2e", 10 * MIN, BTreeMap::new(), 0);
        r.hold_connection("99.1", 7, client(), MIN, 0);
        let (restored, lost) = Registry::restored(r.records(), 5 * MIN, |pid| pid == 41);
        assert_eq!(lost.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), ["99.1"], "sidecar 99 is gone");
        assert_eq!(restored.counts(0).expired_total, 1);
        assert_eq!(restored.next_expiry(), Some(6 * MIN));
        assert_eq!(restored.due(6 * MIN), vec!["41.1".to_string()]);
        assert_eq!(restored.due(10 * MIN), vec!["41.1".to_string(), "e2e".to_string()]);
    }

    #[test]
    fn every_persisted_change_bumps_the_generation() {
        let mut r = Registry::default();
        let g0 = r.generation();
        r.hold_connection("41.1", 7, client(), MIN, 0);
        let g1 = r.generation();
        assert!(g1 > g0);
        r.hold_connection("41.1", 7, client(), MIN, 10);
        assert_eq!(r.generation(), g1, "holding again with nothing new is not a change to persist");
        r.add_mcp("41.1", "memory");
        assert!(r.generation() > g1);
        r.open_named("e2e", 10 * MIN, BTreeMap::new(), 0);
        let g2 = r.generation();
        for second in 1..30 {
            r.touch("e2e", second * 1_000);
        }
        assert_eq!(r.generation(), g2, "signs of life within 30 s of the last write are not worth another");
        r.touch("e2e", 30_000);
        assert!(r.generation() > g2, "30 s after the last write one is");
    }
}
