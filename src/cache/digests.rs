//! Content digests of cache entries, recorded the first time nxops sees an
//! entry, so a later `verify` can tell that an entry's content changed.
//!
//! Stored in `<state dir>/cache-digests.sqlite` (outside the workspace and the
//! cache); one row per hash. A digest is blake3 over the entry's files in path
//! order (relative path, kind, content or link target) and its terminal output.

use std::path::{Path, PathBuf};

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

/// The digest of an entry folder plus its terminal output; symlinks are hashed
/// by their target, never followed. Returns the digest and the bytes of output files.
pub fn digest_entry(folder: &Path, terminal_output: &Path) -> std::io::Result<(String, u64)> {
    let mut files: Vec<PathBuf> = Vec::new();
    collect(folder, &mut files)?;
    files.sort();
    let mut hasher = blake3::Hasher::new();
    let mut bytes = 0;
    for path in &files {
        let relative = path.strip_prefix(folder).unwrap_or(path);
        hasher.update(relative.as_os_str().as_encoded_bytes());
        let meta = std::fs::symlink_metadata(path)?;
        if meta.file_type().is_symlink() {
            hasher.update(b"\0link\0");
            hasher.update(std::fs::read_link(path)?.as_os_str().as_encoded_bytes());
        } else {
            hasher.update(b"\0file\0");
            bytes += meta.len();
            hasher.update_reader(std::fs::File::open(path)?)?;
        }
    }
    hasher.update(b"\0terminal\0");
    if let Ok(file) = std::fs::File::open(terminal_output) {
        hasher.update_reader(file)?;
    }
    Ok((hasher.finalize().to_hex().to_string(), bytes))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let kind = item.file_type()?;
        if kind.is_dir() {
            collect(&item.path(), out)?;
        } else {
            out.push(item.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_changes_with_content_and_not_with_order_of_creation() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for (root, order) in [(&a, ["x", "y"]), (&b, ["y", "x"])] {
            std::fs::create_dir_all(root.join("sub")).unwrap();
            for name in order {
                std::fs::write(root.join("sub").join(name), name).unwrap();
            }
        }
        let term = dir.path().join("t");
        let (da, bytes) = digest_entry(&a, &term).unwrap();
        assert_eq!(bytes, 2);
        assert_eq!(da, digest_entry(&b, &term).unwrap().0);
        std::fs::write(b.join("sub/x"), "changed").unwrap();
        assert_ne!(da, digest_entry(&b, &term).unwrap().0);
    }
}
