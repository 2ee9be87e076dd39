//! Content digests of cache entries, recorded the first time nxops sees an
//! entry, so a later `verify` can tell that an entry's content changed.
//!
//! Stored in `<state dir>/cache-digests.sqlite` (outside the workspace and the
//! cache); one row per hash. A digest is blake3 over the entry's files in path
//! order (relative path, kind, content or link target) and its terminal output,
//! computed by `entry_reader::digest_entry`, which never leaves the cache.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

pub struct Digests {
    conn: Connection,
}

/// A digest as recorded, with the identity of the entry it was taken from (see
/// `verify::identity`): another identity is a new entry under the same hash (Nx
/// wrote it again after an eviction), not a changed one. `None` for digests
/// recorded before nxops kept it.
pub struct Seen {
    pub digest: String,
    pub entry: Option<String>,
}

impl Digests {
    pub fn open(state_dir: &Path) -> rusqlite::Result<Digests> {
        let _ = std::fs::create_dir_all(state_dir);
        let conn = Connection::open(state_dir.join("cache-digests.sqlite"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS digests (hash TEXT PRIMARY KEY, digest TEXT NOT NULL, recorded_at INTEGER NOT NULL, entry TEXT)",
            [],
        )?;
        let has_entry = conn
            .prepare("PRAGMA table_info(digests)")?
            .query_map([], |r| r.get::<_, String>(1))?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .iter()
            .any(|c| c == "entry");
        if !has_entry {
            conn.execute("ALTER TABLE digests ADD COLUMN entry TEXT", [])?;
        }
        Ok(Digests { conn })
    }

    pub fn get(&self, hash: &str) -> rusqlite::Result<Option<Seen>> {
        self.conn
            .prepare_cached("SELECT digest, entry FROM digests WHERE hash = ?1")?
            .query_row(params![hash], |r| Ok(Seen { digest: r.get(0)?, entry: r.get(1)? }))
            .optional()
    }

    /// Records `digest` for the entry `hash` with the identity `entry`.
    pub fn record(&self, hash: &str, digest: &str, entry: &str, now: i64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO digests (hash, digest, recorded_at, entry) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![hash, digest, now, entry])?;
        Ok(())
    }

    pub fn forget(&self, hash: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached("DELETE FROM digests WHERE hash = ?1")?.execute(params![hash])?;
        Ok(())
    }

    /// Forgets every digest whose entry is gone (evicted by nxops or by Nx, or
    /// reset), so the store holds at most one digest per entry in the cache.
    pub fn keep_only<'a>(&mut self, hashes: impl Iterator<Item = &'a str>) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("CREATE TEMP TABLE IF NOT EXISTS present (hash TEXT PRIMARY KEY)", [])?;
        tx.execute("DELETE FROM present", [])?;
        {
            let mut insert = tx.prepare("INSERT OR IGNORE INTO present (hash) VALUES (?1)")?;
            for hash in hashes {
                insert.execute(params![hash])?;
            }
        }
        tx.execute("DELETE FROM digests WHERE hash NOT IN (SELECT hash FROM present)", [])?;
        tx.execute("DELETE FROM present", [])?;
        tx.commit()
    }
}
