//! The team cache's size and age policies, and the index they are decided from.
//!
//! # The index
//! A store has no access times worth trusting (S3 has none; folders are mounted `relatime`), so the
//! server keeps its own: a sqlite file on the server's disk (`index` in its file; by default
//! `<store>/.index.db` for a folder store, `<config folder>/<bucket>.index.db` for a bucket) with
//! one row per artifact, `(key, size, stored_ms, read_ms)`, about 100 bytes each. One thread owns it
//! (the policy thread); request handlers only send it messages ([`Policy::stored`],
//! [`Policy::read`]) and never wait for it. When the file is missing it is rebuilt from a listing
//! of the store (an artifact's modification time standing for its last read; S3 lists 1,000 keys
//! per request). Lost messages (a full queue) only make an artifact look older. One server owns
//! a store's eviction: servers sharing a bucket (or a prefix) each see only their own reads.
//!
//! # Eviction
//! Every `evictInterval` (default 1 minute), and only then, the policy thread removes what the rules
//! say, oldest reads first: artifacts not read for `maxAge`, then, while the stored bytes exceed
//! `maxSize`, the least recently read down to 90% of it (the local cache's rules). Each removal is
//! a delete of one name; a download that already opened the artifact finishes (an open file outlives
//! its name), and one that starts after is a plain miss, so a removal never cuts a read.
//!
//! # Performance
//! A hit costs one message on a bounded channel; the thread writes reads to the index in one
//! transaction per batch.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};

use super::store::Store;

/// Messages waiting for the policy thread at most; past this, reads are not recorded.
const QUEUE: usize = 4096;

/// The rules, from the server's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub max_size: u64,
    pub max_age: Duration,
    pub interval: Duration,
}

/// What the policy thread has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct Evictions {
    pub artifacts: AtomicU64,
    pub bytes: AtomicU64,
    pub stored_bytes: AtomicU64,
    pub stored_artifacts: AtomicU64,
}

enum Message {
    Stored { key: String, size: u64, at_ms: i64 },
    Read { key: String, at_ms: i64 },
    Removed { key: String },
    Report { prefix: String, reply: tokio::sync::oneshot::Sender<Report> },
}

/// What the index holds under one prefix.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub artifacts: u64,
    pub bytes: u64,
    /// The largest artifacts: key, bytes, last read (ms since the epoch).
    pub largest: Vec<(String, u64, i64)>,
}

/// The handle request handlers hold.
#[derive(Clone)]
pub struct Policy {
    tx: SyncSender<Message>,
}

impl Policy {
    /// Opens the index in `file` (rebuilt from a listing of `store` when missing) and starts the
    /// policy thread, which reaches the store through `runtime`.
    pub fn start(
        file: &Path,
        store: Arc<Store>,
        runtime: tokio::runtime::Handle,
        rules: Rules,
        evictions: Arc<Evictions>,
    ) -> rusqlite::Result<Policy> {
        let (index, fresh) = Index::open(file)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let mut owner = Owner { index, store, runtime, rules, evictions };
        std::thread::Builder::new()
            .name("nxops-policy".into())
            .spawn(move || {
                if fresh {
                    owner.rebuild();
                }
                owner.run(&rx)
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Policy { tx })
    }

    pub fn stored(&self, key: &str, size: u64) {
        self.send(Message::Stored { key: key.into(), size, at_ms: now_ms() });
    }

    pub fn read(&self, key: &str) {
        self.send(Message::Read { key: key.into(), at_ms: now_ms() });
    }

    pub fn removed(&self, key: &str) {
        self.send(Message::Removed { key: key.into() });
    }

    /// The index's figures under `prefix`; `None` when the policy thread is too busy to answer.
    pub async fn report(&self, prefix: &str) -> Option<Report> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx.try_send(Message::Report { prefix: prefix.into(), reply }).ok()?;
        tokio::time::timeout(Duration::from_secs(5), answer).await.ok()?.ok()
    }

    fn send(&self, message: Message) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(message) {
            tracing::debug!(target: "nxops", "cache serve: the policy queue is full; a read is not recorded");
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The policy thread's state.
struct Owner {
    index: Index,
    store: Arc<Store>,
    runtime: tokio::runtime::Handle,
    rules: Rules,
    evictions: Arc<Evictions>,
}

impl Owner {
    /// Fills a new index from a listing of the store (modification times standing for last reads).
    fn rebuild(&mut self) {
        let started = Instant::now();
        match self.runtime.block_on(self.store.list()) {
            Ok(listing) => match self.index.rebuild(&listing) {
                Ok(()) => tracing::info!(target: "nxops",
                    "cache serve: index rebuilt from the store: {} artifacts in {:?}", listing.len(), started.elapsed()),
                Err(err) => tracing::error!(target: "nxops", "cache serve: failed to rebuild the index: {err}"),
            },
            Err(err) => tracing::error!(target: "nxops", "cache serve: failed to list the store for the index: {err}"),
        }
    }

    fn run(&mut self, rx: &Receiver<Message>) {
        self.publish_totals();
        let mut due = Instant::now() + self.rules.interval;
        loop {
            let wait = due.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(first) => {
                    let batch: Vec<Message> = std::iter::once(first).chain(rx.try_iter()).collect();
                    if let Err(err) = self.index.apply(&batch) {
                        tracing::error!(target: "nxops", "cache serve: failed to update the index: {err}");
                    }
                    for message in batch {
                        if let Message::Report { prefix, reply } = message {
                            let _ = reply.send(self.index.report(&prefix).unwrap_or_default());
                        }
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    self.evict(now_ms());
                    due = Instant::now() + self.rules.interval;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn evict(&mut self, now_ms: i64) {
        let victims = match self.index.victims(self.rules, now_ms) {
            Ok(victims) => victims,
            Err(err) => return tracing::error!(target: "nxops", "cache serve: failed to read the index: {err}"),
        };
        for (key, size) in victims {
            // A download in progress keeps its artifact until a later round.
            if self.store.is_being_read(&key) {
                tracing::debug!(target: "nxops", "cache serve: {key} is being read; evicted later");
                continue;
            }
            if let Err(err) = self.runtime.block_on(self.store.remove(&key)) {
                tracing::error!(target: "nxops", "cache serve: failed to evict {key}: {err}");
                continue;
            }
            let _ = self.index.apply(&[Message::Removed { key: key.clone() }]);
            super::counters::add(&self.evictions.artifacts, 1);
            super::counters::add(&self.evictions.bytes, size);
            tracing::info!(target: "nxops", "cache serve: evicted {key} ({size} bytes)");
        }
        self.publish_totals();
    }

    fn publish_totals(&self) {
        if let Ok((artifacts, bytes)) = self.index.totals() {
            self.evictions.stored_artifacts.store(artifacts, std::sync::atomic::Ordering::Relaxed);
            self.evictions.stored_bytes.store(bytes, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The sqlite index, owned by the policy thread.
struct Index {
    conn: Connection,
}

impl Index {
    /// Opens the index in `file`; `true` when it had to be created (and so is to be rebuilt).
    fn open(file: &Path) -> rusqlite::Result<(Index, bool)> {
        let fresh = !file.exists();
        let conn = Connection::open(file)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS artifacts(key TEXT PRIMARY KEY, size INTEGER NOT NULL,
                 stored_ms INTEGER NOT NULL, read_ms INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS by_read ON artifacts(read_ms);",
        )?;
        Ok((Index { conn }, fresh))
    }

    /// Fills the index from a listing of the store: key, stored bytes, modification time.
    fn rebuild(&mut self, listing: &[(String, u64, i64)]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        for (key, stored, at_ms) in listing {
            let size = stored.saturating_sub(super::artifact::FOOTER_LEN);
            tx.execute("INSERT OR REPLACE INTO artifacts VALUES (?1, ?2, ?3, ?3)", params![key, size as i64, at_ms])?;
        }
        tx.commit()
    }

    fn apply(&mut self, batch: &[Message]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        for message in batch {
            match message {
                Message::Stored { key, size, at_ms } => tx.execute(
                    "INSERT OR REPLACE INTO artifacts VALUES (?1, ?2, ?3, ?3)",
                    params![key, *size as i64, at_ms],
                )?,
                Message::Read { key, at_ms } => {
                    tx.execute("UPDATE artifacts SET read_ms = max(read_ms, ?2) WHERE key = ?1", params![key, at_ms])?
                }
                Message::Removed { key } => tx.execute("DELETE FROM artifacts WHERE key = ?1", params![key])?,
                // Answered by `run` once the writes before it are applied.
                Message::Report { .. } => 0,
            };
        }
        tx.commit()
    }

    fn report(&self, prefix: &str) -> rusqlite::Result<Report> {
        // Keys under `prefix`: those that start with it (a prefix has no LIKE wildcards but `_`,
        // so the comparison is by substr).
        let under = "substr(key, 1, length(?1)) = ?1";
        let (artifacts, bytes) = self.conn.query_row(
            &format!("SELECT count(*), coalesce(sum(size), 0) FROM artifacts WHERE {under}"),
            params![prefix],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT key, size, read_ms FROM artifacts WHERE {under} ORDER BY size DESC, key LIMIT 10"
        ))?;
        let largest = stmt
            .query_map(params![prefix], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Report { artifacts, bytes, largest })
    }

    fn totals(&self) -> rusqlite::Result<(u64, u64)> {
        self.conn.query_row("SELECT count(*), coalesce(sum(size), 0) FROM artifacts", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })
    }

    /// What the rules remove now, oldest reads first: too old, then least recently read while the
    /// rest is above `max_size`, down to 90% of it.
    fn victims(&self, rules: Rules, now_ms: i64) -> rusqlite::Result<Vec<(String, u64)>> {
        let (_, mut total) = self.totals()?;
        let oldest_kept = now_ms - rules.max_age.as_millis() as i64;
        let over = total > rules.max_size;
        let target = rules.max_size / 10 * 9;
        let mut stmt = self.conn.prepare("SELECT key, size, read_ms FROM artifacts ORDER BY read_ms, key")?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)?)))?;
        let mut victims = Vec::new();
        for row in rows {
            let (key, size, read_ms) = row?;
            // Rows come oldest read first, so once one is neither too old nor needed to get under
            // the target, none after it is either.
            let too_old = read_ms < oldest_kept;
            let too_big = over && total > target;
            if !(too_old || too_big) {
                break;
            }
            total = total.saturating_sub(size);
            victims.push((key, size));
        }
        Ok(victims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_with(rows: &[(&str, u64, i64)]) -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let (mut index, _) = Index::open(&dir.path().join("index.db")).unwrap();
        let batch: Vec<Message> = rows
            .iter()
            .map(|(key, size, at_ms)| Message::Stored { key: (*key).into(), size: *size, at_ms: *at_ms })
            .collect();
        index.apply(&batch).unwrap();
        (dir, index)
    }

    const DAY: i64 = 86_400_000;

    #[test]
    fn the_least_recently_read_go_first_down_to_ninety_percent() {
        let (_dir, mut index) = index_with(&[("a", 40, 10 * DAY), ("b", 40, 11 * DAY), ("c", 40, 12 * DAY)]);
        index.apply(&[Message::Read { key: "a".into(), at_ms: 13 * DAY }]).unwrap();
        let rules = Rules { max_size: 100, max_age: Duration::from_secs(30 * 86_400), interval: Duration::ZERO };
        // 120 > 100: b (oldest read) goes, leaving 80 <= 90.
        assert_eq!(index.victims(rules, 14 * DAY).unwrap(), [("b".to_string(), 40)]);
    }

    #[test]
    fn artifacts_not_read_for_max_age_go_whatever_the_size() {
        let (_dir, index) = index_with(&[("old", 1, DAY), ("new", 1, 9 * DAY)]);
        let rules = Rules { max_size: 1 << 30, max_age: Duration::from_secs(7 * 86_400), interval: Duration::ZERO };
        assert_eq!(index.victims(rules, 10 * DAY).unwrap(), [("old".to_string(), 1)]);
    }

    #[test]
    fn a_lost_index_is_rebuilt_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("team/")).unwrap();
        std::fs::create_dir_all(dir.path().join(".incoming")).unwrap();
        std::fs::write(dir.path().join("123"), vec![0; 48 + 5]).unwrap();
        std::fs::write(dir.path().join("team/456"), vec![0; 48 + 7]).unwrap();
        std::fs::write(dir.path().join(".incoming/x.part"), b"not yet").unwrap();
        let folder = super::super::folder_store::FolderStore::open(dir.path()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let listing = runtime.block_on(folder.list()).unwrap();
        let (mut index, fresh) = Index::open(&dir.path().join(".index.db")).unwrap();
        assert!(fresh);
        index.rebuild(&listing).unwrap();
        assert_eq!(index.totals().unwrap(), (2, 12));
    }
}
