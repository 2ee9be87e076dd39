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

impl Digests {
    pub fn open(state_dir: &Path) -> rusqlite::Result<Digests> {
        let _ = std::fs::create_dir_all(state_dir);
        let conn = Connection::open(state_dir.join("cache-digests.sqlite"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS digests (hash TEXT PRIMARY KEY, digest TEXT NOT NULL, recorded_at INTEGER NOT NULL)",
            [],
        )?;
        Ok(Digests { conn })
    }

    pub fn get(&self, hash: &str) -> rusqlite::Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT digest FROM digests WHERE hash = ?1")?
            .query_row(params![hash], |r| r.get(0))
            .optional()
    }

    pub fn record(&self, hash: &str, digest: &str, now: i64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO digests (hash, digest, recorded_at) VALUES (?1, ?2, ?3)")?
            .execute(params![hash, digest, now])?;
        Ok(())
    }

    pub fn forget(&self, hash: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached("DELETE FROM digests WHERE hash = ?1")?.execute(params![hash])?;
        Ok(())
    }
}
