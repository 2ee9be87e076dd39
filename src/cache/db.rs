//! Nx's own sqlite database, read and written the way Nx expects.
//!
//! Locking: Nx blocks while another process holds the write lock, so writes
//! here are tiny transactions (a batch of row deletes), a busy timeout makes us
//! wait politely for Nx instead of failing, and every delete is guarded by the
//! row's `accessed_at` as planned, so an entry Nx used since is never removed.
//!
//! Compatibility: the file name's `-vN` suffix changes with Nx's schema; we
//! check the columns we use (not the version number) and refuse with a clear
//! message when they are missing.
//!
//! Performance: statistics are aggregate queries (one table scan each); the
//! eviction plan loads one compact row per entry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// What a `cache_outputs` row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// A cache entry (`is_cache_entry`): Nx serves its folder as a hit.
    Entry,
    /// A row Nx keeps only so a terminal output is reachable (`is_cache_entry = 0`).
    TerminalOutputOnly,
}

/// One cache entry as Nx's database records it.
#[derive(Debug, Clone)]
pub struct Row {
    pub hash: Box<str>,
    /// Output bytes plus terminal output bytes, as Nx counts them.
    pub size: u64,
    /// `accessed_at` as Unix seconds: the guard for deletes (Nx stamps whole seconds).
    pub accessed: i64,
    /// `created_at` as Unix seconds.
    pub created: i64,
    pub is_cache_entry: bool,
    /// The entry's task, shared between the rows of one task (a cache holds many per task).
    pub task: Option<Arc<Task>>,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Task {
    pub project: String,
    pub target: String,
}

impl Row {
    pub fn project(&self) -> Option<&str> {
        self.task.as_ref().map(|t| t.project.as_str())
    }

    pub fn target(&self) -> Option<&str> {
        self.task.as_ref().map(|t| t.target.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{}: {source}", .path.display())]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error(
        "{}: not the Nx 24 cache schema: table {table} lacks column(s) {missing} (nxops supports the layout of Nx 20 to 24)",
        .path.display()
    )]
    Schema { path: PathBuf, table: &'static str, missing: String },
}

pub struct NxDb {
    conn: Connection,
    path: PathBuf,
    has_history: bool,
}

const REQUIRED: &[(&str, &[&str])] = &[
    ("cache_outputs", &["hash", "code", "size", "is_cache_entry", "created_at", "accessed_at"]),
    ("task_details", &["hash", "project", "target"]),
];

impl NxDb {
    /// Opens an existing database (never creates one) and checks its schema.
    pub fn open(path: &Path) -> Result<NxDb, DbError> {
        let sqlite = |source| DbError::Sqlite { path: path.to_path_buf(), source };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite)?;
        // Our own commits need no fsync in WAL mode; this affects this connection only.
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sqlite)?;
        for (table, columns) in REQUIRED {
            let have = columns_of(&conn, table).map_err(sqlite)?;
            let missing: Vec<&str> = columns.iter().copied().filter(|c| !have.iter().any(|h| h == c)).collect();
            if !missing.is_empty() {
                return Err(DbError::Schema { path: path.to_path_buf(), table, missing: missing.join(", ") });
            }
        }
        let history = columns_of(&conn, "task_history").map_err(sqlite)?;
        let has_history = ["hash", "status", "start"].iter().all(|c| history.iter().any(|h| h == c));
        Ok(NxDb { conn, path: path.to_path_buf(), has_history })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> DbError {
        DbError::Sqlite { path: self.path.clone(), source }
    }

    /// Every row of `cache_outputs` with its task, oldest access first. Compact:
    /// one small struct per entry, task names shared (100,000 entries take ~8 MB).
    pub fn rows(&self) -> Result<Vec<Row>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.hash, c.size, CAST(strftime('%s', c.accessed_at) AS INTEGER), \
                 CAST(strftime('%s', c.created_at) AS INTEGER), c.is_cache_entry, d.project, d.target \
                 FROM cache_outputs c LEFT JOIN task_details d ON d.hash = c.hash ORDER BY c.accessed_at, c.hash",
            )
            .map_err(|e| self.err(e))?;
        let mut tasks: HashMap<(String, String), Arc<Task>> = HashMap::new();
        let mut out = Vec::new();
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let read = || -> rusqlite::Result<(Row, Option<(String, String)>)> {
                let project: Option<String> = r.get(5)?;
                let target: Option<String> = r.get(6)?;
                let row = Row {
                    hash: r.get::<_, String>(0)?.into_boxed_str(),
                    size: r.get::<_, i64>(1)?.max(0) as u64,
                    accessed: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    created: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                    is_cache_entry: r.get::<_, Option<bool>>(4)?.unwrap_or(true),
                    task: None,
                };
                Ok((row, project.zip(target)))
            };
            let (mut row, names) = read().map_err(|e| self.err(e))?;
            if let Some((project, target)) = names {
                let shared = tasks
                    .entry((project.clone(), target.clone()))
                    .or_insert_with(|| Arc::new(Task { project, target }));
                row.task = Some(shared.clone());
            }
            out.push(row);
        }
        Ok(out)
    }

    /// Every row's hash and whether Nx treats it as a cache entry (no join: for the deep scan).
    pub fn hashes(&self) -> Result<Vec<(String, bool)>, DbError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT hash, is_cache_entry FROM cache_outputs").map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<bool>>(1)?.unwrap_or(true))))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// (entries, bytes) of rows Nx treats as cache entries.
    pub fn totals(&self) -> Result<(u64, u64), DbError> {
        self.conn
            .query_row("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM cache_outputs WHERE is_cache_entry", [], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)?.max(0) as u64))
            })
            .map_err(|e| self.err(e))
    }

    /// Unix seconds of the least recent use among cache entries, `None` when empty.
    pub fn oldest_use(&self) -> Result<Option<i64>, DbError> {
        self.conn
            .query_row(
                "SELECT CAST(strftime('%s', MIN(accessed_at)) AS INTEGER) FROM cache_outputs WHERE is_cache_entry",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Entries and bytes per age bucket (by `accessed_at`), for the given bucket
    /// upper bounds in seconds (the last bucket is open-ended).
    pub fn age_histogram(&self, now: i64, bounds: &[i64]) -> Result<Vec<(u64, u64)>, DbError> {
        let mut out = vec![(0u64, 0u64); bounds.len() + 1];
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT ?1 - CAST(strftime('%s', accessed_at) AS INTEGER) AS age, size FROM cache_outputs WHERE is_cache_entry",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params![now]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let age: i64 = row.get::<_, Option<i64>>(0).map_err(|e| self.err(e))?.unwrap_or(0);
            let size: i64 = row.get(1).map_err(|e| self.err(e))?;
            let bucket = bounds.iter().position(|b| age < *b).unwrap_or(bounds.len());
            out[bucket].0 += 1;
            out[bucket].1 += size.max(0) as u64;
        }
        Ok(out)
    }

    /// (hits, executed) in task history since `since_ms` (epoch milliseconds);
    /// `None` when this database keeps no task history.
    pub fn hit_counts(&self, since_ms: i64) -> Result<Option<(u64, u64)>, DbError> {
        if !self.has_history {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(status IN ('local-cache', 'local-cache-kept-existing', 'remote-cache')), 0), \
                 COALESCE(SUM(status IN ('success', 'failure')), 0) FROM task_history WHERE start >= ?1",
                params![since_ms],
                |r| Ok(Some((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))),
            )
            .map_err(|e| self.err(e))
    }

    /// The biggest consumers: (project, target, entries, bytes), largest first.
    pub fn consumers(&self, limit: usize) -> Result<Vec<(String, String, u64, u64)>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(d.project, '?'), COALESCE(d.target, '?'), COUNT(*), SUM(c.size) AS bytes \
                 FROM cache_outputs c LEFT JOIN task_details d ON d.hash = c.hash WHERE c.is_cache_entry \
                 GROUP BY 1, 2 ORDER BY bytes DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64, r.get::<_, i64>(3)?.max(0) as u64))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// `project:target` of tasks Nx records as running in this database.
    pub fn running_tasks(&self) -> Result<Vec<String>, DbError> {
        running_in(&self.conn).map_err(|e| self.err(e))
    }

    /// Runs `work` inside one short write transaction (`BEGIN IMMEDIATE`), so Nx
    /// never sees half of it. Returns `work`'s output together with the outcome of
    /// the commit, so the caller can undo its file moves when the commit fails.
    pub fn batch<T>(&mut self, work: impl FnOnce(&Batch<'_>) -> T) -> Result<(T, Result<(), DbError>), DbError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|source| DbError::Sqlite { path: path.clone(), source })?;
        let out = work(&Batch { tx: &tx });
        let committed = tx.commit().map_err(|source| DbError::Sqlite { path, source });
        Ok((out, committed))
    }
}

/// Row operations inside one write transaction.
pub struct Batch<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

impl Batch<'_> {
    /// The row's current `accessed_at` in Unix seconds, `None` when the row is gone.
    pub fn accessed(&self, hash: &str) -> rusqlite::Result<Option<i64>> {
        self.tx
            .prepare_cached("SELECT CAST(strftime('%s', accessed_at) AS INTEGER) FROM cache_outputs WHERE hash = ?1")?
            .query_row(params![hash], |r| r.get::<_, Option<i64>>(0))
            .optional()
            .map(Option::flatten)
    }

    /// What `cache_outputs` has for `hash`: no row, an entry, or a terminal output's row.
    pub fn row_kind(&self, hash: &str) -> rusqlite::Result<Option<RowKind>> {
        self.tx
            .prepare_cached("SELECT is_cache_entry FROM cache_outputs WHERE hash = ?1")?
            .query_row(params![hash], |r| r.get::<_, Option<bool>>(0))
            .optional()
            .map(|found| {
                found.map(|entry| if entry.unwrap_or(true) { RowKind::Entry } else { RowKind::TerminalOutputOnly })
            })
    }

    /// Deletes the row only if it was not used since `accessed` (Unix seconds). True when deleted.
    pub fn delete_if_unused(&self, hash: &str, accessed: i64) -> rusqlite::Result<bool> {
        let n = self
            .tx
            .prepare_cached(
                "DELETE FROM cache_outputs WHERE hash = ?1 AND CAST(strftime('%s', accessed_at) AS INTEGER) = ?2",
            )?
            .execute(params![hash, accessed])?;
        Ok(n == 1)
    }
}

/// `project:target` of tasks Nx records as running in the database at `path`,
/// which needs no cache table: in the shared layout Nx records a checkout's
/// running tasks in its own `.nx/workspace-data` database, which has none.
/// Opened read-only; a missing file is an error, as is a locked one after 10 s.
pub fn running_tasks_at(path: &Path) -> Result<Vec<String>, DbError> {
    let sqlite = |source| DbError::Sqlite { path: path.to_path_buf(), source };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite)?;
    running_in(&conn).map_err(sqlite)
}

/// `running_tasks` (continuous tasks) and `task_invocations` (every task a live
/// `nx` is running), keeping rows whose process (or its root `nx`) is alive.
/// Nx records task ids (`project:target[:configuration]`), not hashes, so
/// protection is per task: every entry of a running task is kept.
fn running_in(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut running = Vec::new();
    for (table, [task, pid, root]) in
        [("running_tasks", ["task_id", "pid", "pid"]), ("task_invocations", ["task_id", "pid", "root_pid"])]
    {
        let have = columns_of(conn, table)?;
        if ![task, pid, root].iter().all(|c| have.iter().any(|h| h == c)) {
            continue;
        }
        let mut stmt = conn.prepare(&format!("SELECT {task}, {pid}, {root} FROM {table}"))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
        for row in rows {
            let (task, pid, root) = row?;
            if alive(pid) || alive(root) {
                running.push(project_target(&task));
            }
        }
    }
    Ok(running)
}

/// `project:target` of a task id (`project:target` or `project:target:configuration`).
fn project_target(task_id: &str) -> String {
    task_id.splitn(3, ':').take(2).collect::<Vec<_>>().join(":")
}

fn alive(pid: i64) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists()
}

fn columns_of(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
    names.collect()
}
