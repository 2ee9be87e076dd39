//! The Nx task cache: statistics, eviction, reset and verification, always in
//! step with Nx's own database.
//!
//! # Layout (Nx 24)
//! `<cache>/<hash>/` holds a task's outputs (hash names are all digits),
//! `<cache>/terminalOutputs/<hash>` its terminal output, and one row of
//! `cache_outputs` in `<db dir>/<machine id>-v<N>.db` records its size and last
//! use (`accessed_at`, updated by Nx on every hit; atime is never used).
//!
//! # Safety
//! - An entry is never left partly deleted under its real name: its folder and
//!   terminal output are renamed into `<cache>/.nxops-trash` inside the same
//!   short transaction that deletes its row (guarded by `accessed_at`), and only
//!   then deleted, in parallel, outside any lock.
//! - Entries touched in the last hour and entries of running tasks are skipped
//!   unless forced; folders and terminal outputs without a row are left alone
//!   while younger than an hour (Nx may be writing them).
//! - Symlinks are never followed; nothing outside the cache folder is touched.
//!   Files vanishing underneath are tolerated.
//! - Every reader of entries (`verify`, `stats --deep`, `clean`'s listings)
//!   follows one rule, kept in `entry_reader` and `scan`: open relative to the
//!   cache folder with `openat` + `O_NOFOLLOW`, learn kinds with
//!   `AT_SYMLINK_NOFOLLOW`, and open only regular files and folders (files also
//!   `O_NONBLOCK`, checked with `fstat`). An entry folder, `terminalOutputs` or a
//!   terminal output that is a symlink, a FIFO, a device or a socket, or a FIFO,
//!   device or socket among an entry's outputs, is never opened: `verify`
//!   reports the entry as `unsafe` (saying what it is) and `--fix` evicts it
//!   through the trash, which removes the symlink itself; `stats --deep` lists
//!   the same entries as `unsafeItems`. A symlink among an entry's outputs is an
//!   output Nx stores as it found it: digested by its target, never followed.
//! - The manual reset signals the Nx daemon only when its record's pid is
//!   proven to be this workspace's daemon (`daemon`: nx's daemon script from
//!   this workspace's `node_modules`, working folder the workspace root, started
//!   no later than the record), and removes only the socket folder that record
//!   names; other workspaces' socket folders are never touched.
//!
//! # Locking
//! One cleaner at a time per cache: `flock` on `<cache>/.nxops-clean.lock`.
//! Manual runs wait for it; automatic runs skip when it is held.
//!
//! # Compatibility
//! A cache without Nx's database (Nx before 20), or a database without the
//! columns we use, is refused with a message saying so: nxops never guesses.

pub mod clean;
pub mod daemon;
pub mod db;
pub mod digests;
pub mod entry_reader;
pub mod lock;
pub mod reset;
pub mod scan;
pub mod stats;
pub mod trash;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::workspace::Workspace;

/// Entries used (or written) this recently are left alone unless forced.
pub const RECENT_SECS: i64 = 3600;

/// Why a cache over its limit cannot be brought under it yet, and in how many
/// seconds the first entry may go: when even its least recently used entry was
/// used within the hour (`oldest_use`, Unix seconds), a clean without `--force`
/// evicts nothing. `None` when the cache is within its limit or eviction can start.
pub fn eviction_blocked(bytes: u64, max_size: u64, oldest_use: Option<i64>, now: i64) -> Option<(String, i64)> {
    let oldest = oldest_use?;
    let wait = oldest + RECENT_SECS - now;
    (bytes > max_size && wait > 0).then(|| {
        let minutes = (wait + 59) / 60;
        let why = format!(
            "over its limit ({} of {}), but every entry was used in the last hour, which a clean keeps: the first may go in {minutes} min (`nxops cache clean --force` takes them now)",
            crate::config::units::format_size(bytes),
            crate::config::units::format_size(max_size)
        );
        (why, wait)
    })
}

/// Why the cache cannot be worked on.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "Nx has not run in {} yet, or not since its cache was reset: no task cache in {} and no database in {}; run a cacheable Nx task first (for example `nx run-many -t build`)",
        .root.display(), .cache_dir.display(), .db_dir.display()
    )]
    NxNotRun { root: PathBuf, cache_dir: PathBuf, db_dir: PathBuf },
    #[error(
        "no Nx database in {}: the cache at {} is not Nx 24's layout (Nx before 20 kept no database); nxops will not guess which entries are in use",
        .db_dir.display(), .cache_dir.display()
    )]
    NoDatabase { db_dir: PathBuf, cache_dir: PathBuf },
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("cannot tell which tasks Nx is running, so nothing was cleaned: {0}")]
    RunningTasks(db::DbError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl CacheError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> CacheError {
        CacheError::Io { context: context.into(), source }
    }
}

/// Where one workspace's cache is, checked.
#[derive(Debug, Clone)]
pub struct CachePaths {
    pub root: PathBuf,
    pub cache_dir: PathBuf,
    pub db_file: PathBuf,
    /// The checkout's own database (running tasks); the same file in the local layout.
    pub local_db_file: Option<PathBuf>,
    pub workspace_data_dir: PathBuf,
    pub state_dir: Option<PathBuf>,
}

impl CachePaths {
    /// The cache as it is now. Before Nx's first run, or its first since a reset
    /// (no database, and no cache folder or an empty one), the error says that
    /// Nx has not run yet; only a
    /// cache with entries but no database is refused as not Nx 24's layout.
    pub fn of(ws: &Workspace) -> Result<CachePaths, CacheError> {
        let nx = ws.nx();
        let db_file = nx.db_files.first().cloned();
        let has_entries = has_entries(&nx.cache_dir);
        let db_file = match (db_file, has_entries) {
            (Some(db_file), _) if nx.cache_dir.is_dir() => db_file,
            (_, false) => {
                return Err(CacheError::NxNotRun {
                    root: ws.root.clone(),
                    cache_dir: nx.cache_dir.clone(),
                    db_dir: nx.db_dir.clone(),
                });
            }
            (_, true) => return Err(CacheError::NoDatabase { db_dir: nx.db_dir, cache_dir: nx.cache_dir }),
        };
        let local_db_file = crate::workspace::nx_paths::find_db_files(&nx.workspace_data_dir).into_iter().next();
        Ok(CachePaths {
            root: ws.root.clone(),
            cache_dir: nx.cache_dir,
            db_file,
            local_db_file,
            workspace_data_dir: nx.workspace_data_dir,
            state_dir: ws.state_dir.clone(),
        })
    }

    pub fn entry(&self, hash: &str) -> PathBuf {
        self.cache_dir.join(hash)
    }

    pub fn terminal_output(&self, hash: &str) -> PathBuf {
        self.cache_dir.join("terminalOutputs").join(hash)
    }

    /// `project:target` of tasks running now, from both databases that record
    /// them: the cache's and, in the shared layout, the checkout's own. An
    /// unreadable record is an error: a clean that cannot tell what runs must not
    /// guess.
    pub fn running_tasks(&self, shared: &db::NxDb) -> Result<Vec<String>, CacheError> {
        let mut running = shared.running_tasks().map_err(CacheError::RunningTasks)?;
        if let Some(local) = &self.local_db_file
            && local != &self.db_file
        {
            running.extend(db::running_tasks_at(local).map_err(CacheError::RunningTasks)?);
        }
        Ok(running)
    }
}

/// A request to stop a long cache operation between two steps (a batch of a
/// clean, an entry of a verify). Set when the `$/cancelRequest`ed request's future
/// is dropped: the work itself runs on a blocking thread and cannot be aborted.
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A guard that cancels when dropped (put it in the request's future).
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// True when `cache_dir` holds at least one entry or terminal output (Nx has run).
fn has_entries(cache_dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(cache_dir) else { return false };
    entries.filter_map(Result::ok).any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        is_hash(&name) || name == "terminalOutputs"
    })
}

/// True for Nx's entry names: all digits.
pub fn is_hash(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Seconds since `path` was last modified (0 when unknown), for the "younger than an hour" rule.
pub fn age_of(path: &Path, now: i64) -> i64 {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| now - d.as_secs() as i64)
}
