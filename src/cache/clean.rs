//! `nxops cache clean`: evict by age, then least recently used (Nx's
//! `accessed_at`) down to 90% of the size limit, then sweep orphans.
//!
//! The plan is computed from one read of the database and printed as it is by
//! `--dry-run`. Execution takes entries out in batches: each batch is one short
//! `BEGIN IMMEDIATE` transaction that re-checks every row, renames its folder
//! and terminal output into the trash and deletes the row if `accessed_at` is
//! unchanged. The trash is emptied in parallel after the batch commits.
//!
//! `--force` skips the age rule for finished entries (a row with its folder,
//! used or written in the last hour), and only that: it may skip age rules,
//! never correctness. What Nx may be writing or reading stays protected with
//! `--force` too, from Nx 24's write order (`NxCache::put`: remove the folder,
//! create it, write the terminal output, copy the outputs, insert the row last;
//! a hit stamps `accessed_at`, then reads the folder):
//! - a 10-second grace after `accessed_at` (Nx stamps whole seconds);
//! - entries of tasks Nx records as running (a re-run under the same hash
//!   removes and rewrites its folder), from the cache's database and, in the
//!   shared layout, the checkout's own `.nx/workspace-data` database;
//! - entries whose folder is newer than their row (made and modified in a later
//!   second than the row's `created_at`, within the hour): Nx is putting them again
//!   (`--skip-nx-cache`, or a run in another checkout, whose running tasks no
//!   record here shows), and its `ON CONFLICT` insert stamps `created_at` only
//!   once the folder is written, so a finished entry is never newer than its
//!   row. Checked again inside the write transaction, just before the rename;
//!   a put that starts in the microseconds between the two is not covered;
//! - folders and terminal outputs without a row, folders whose row is only a
//!   terminal output's (`is_cache_entry = 0`), and rows without a folder,
//!   younger than an hour: an entry being written looks like that until its
//!   row is inserted or promoted. Orphans are checked again inside the write
//!   transaction that takes them; an old folder of a terminal output's row is
//!   swept as an orphan (Nx never serves it), its row and terminal output kept.
//!
//! It never removes the guard on `accessed_at`, never follows symlinks and
//! never touches anything outside the cache folder.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::db::{NxDb, Row, RowKind};
use super::lock::CleanerLock;
use super::scan;
use super::trash::{TRASH_DIR, Trash};
use super::{CacheError, CachePaths, Cancel, RECENT_SECS, age_of, is_hash, now_secs};
use crate::config::units::{format_duration, format_size};
use crate::output::{Report, Section};

/// Entries taken out per database transaction.
const BATCH: usize = 64;

/// At most this many removed entries are listed one by one; `byReason` and the
/// totals always count them all (a report of 100,000 lines helps nobody).
pub const LISTED: usize = 1000;

/// Entries used this recently are kept even with `--force`: Nx stamps
/// `accessed_at` in whole seconds, so a hit in the same second as the planned
/// stamp would pass the guard while Nx restores from the folder.
const GRACE_SECS: i64 = 10;

#[derive(Debug, Clone, Copy)]
pub struct CleanOptions {
    pub max_size: u64,
    pub max_age: Duration,
    pub dry_run: bool,
    pub force: bool,
    /// Automatic runs skip when another cleaner holds the lock; manual runs wait.
    pub trigger: Trigger,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    Manual,
    Automatic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Not used within the age limit.
    Age,
    /// Least recently used while the cache was over its size limit.
    Size,
    /// Found corrupt by `verify --fix`.
    Corrupt,
    /// An entry folder with no database row.
    OrphanFolder,
    /// A terminal output with no database row.
    OrphanTerminalOutput,
    /// A row marked as an entry whose folder is gone.
    RowWithoutFolder,
    /// Left in the trash by an interrupted run.
    Trash,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Removed {
    pub hash: String,
    pub project: Option<String>,
    pub target: Option<String>,
    pub bytes: u64,
    pub reason: Reason,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub hash: String,
    pub why: String,
    /// An error kept it (it should have gone), not a protection.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanReport {
    pub cache_dir: PathBuf,
    pub dry_run: bool,
    pub force: bool,
    pub trigger: Trigger,
    pub max_size: u64,
    pub max_age_ms: u64,
    /// Entries and bytes by the database before and after.
    pub before: Totals,
    pub after: Totals,
    /// The first `LISTED` removed items (all of them when fewer).
    pub removed: Vec<Removed>,
    /// How many removed items `removed` leaves out.
    pub unlisted: u64,
    /// Items and bytes removed per reason.
    pub by_reason: std::collections::BTreeMap<String, Totals>,
    /// The first `LISTED` entries kept although they qualified.
    pub skipped: Vec<Skipped>,
    /// Entries (rows) removed, files deleted, and bytes freed on disk (apparent).
    pub entries: u64,
    pub files: u64,
    pub bytes_freed: u64,
    pub duration_ms: u64,
    /// An automatic run that found another cleaner at work does nothing.
    pub skipped_run: Option<String>,
    /// The request was cancelled: what was taken out before is reported, the rest was left.
    pub cancelled: bool,
    /// Qualifying entries that could not be taken out (an error, not a protection:
    /// they are listed in `skipped` with the error); the CLI exits 1 when there are any.
    #[serde(default)]
    pub failed: u64,
    /// Items of the trash that could not be deleted, each with its error: skipped,
    /// so they never block this clean or a later one (they are tried again each time).
    #[serde(default)]
    pub trash_stuck: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub entries: u64,
    pub bytes: u64,
}

/// What a clean would do, from one read of the database and the folder.
pub struct Plan {
    /// Every row, once; `evict` refers to them by index (no copies: 100,000 entries stay small).
    pub rows: Vec<Row>,
    pub evict: Vec<(usize, Reason)>,
    pub orphans: Vec<(PathBuf, Reason, u64)>,
    pub skipped: Vec<Skipped>,
    pub before: Totals,
    pub after: Totals,
}

/// Cleans, or with `dry_run` only plans. `progress(done, total)` is called as batches complete.
pub fn run(
    paths: &CachePaths,
    options: CleanOptions,
    progress: &dyn Fn(u64, u64),
    cancel: &Cancel,
) -> Result<CleanReport, CacheError> {
    let started = Instant::now();
    let Some(_lock) = take_lock(paths, options.trigger)? else {
        return Ok(empty_report(paths, options, started, "another cleaner is running"));
    };
    let mut db = NxDb::open(&paths.db_file)?;
    let plan = plan(paths, &db, options)?;
    carry_out(paths, &mut db, plan, options, started, progress, cancel)
}

/// Evicts the given rows now (`verify --fix`), with the same lock, trash and guards.
pub fn evict_rows(
    paths: &CachePaths,
    rows: Vec<Row>,
    reason: Reason,
    options: CleanOptions,
) -> Result<CleanReport, CacheError> {
    let started = Instant::now();
    let _lock = take_lock(paths, Trigger::Manual)?;
    let mut db = NxDb::open(&paths.db_file)?;
    let (entries, bytes) = db.totals()?;
    let before = Totals { entries, bytes };
    let evict = (0..rows.len()).map(|i| (i, reason)).collect();
    let plan = Plan { rows, evict, orphans: Vec::new(), skipped: Vec::new(), before, after: before };
    carry_out(paths, &mut db, plan, options, started, &|_, _| {}, &Cancel::default())
}

fn take_lock(paths: &CachePaths, trigger: Trigger) -> Result<Option<CleanerLock>, CacheError> {
    let io = |e| CacheError::io(format!("failed to take the cleaner lock in {}", paths.cache_dir.display()), e);
    match trigger {
        Trigger::Manual => CleanerLock::wait(&paths.cache_dir).map(Some).map_err(io),
        Trigger::Automatic => CleanerLock::try_take(&paths.cache_dir).map_err(io),
    }
}

fn carry_out(
    paths: &CachePaths,
    db: &mut NxDb,
    plan: Plan,
    options: CleanOptions,
    started: Instant,
    progress: &dyn Fn(u64, u64),
    cancel: &Cancel,
) -> Result<CleanReport, CacheError> {
    let mut report = empty_report(paths, options, started, "");
    report.skipped_run = None;
    report.before = plan.before;
    report.after = plan.after;
    report.skipped = plan.skipped.iter().take(LISTED).cloned().collect();
    if options.dry_run {
        for &(i, reason) in &plan.evict {
            note(&mut report, removed_of(&plan.rows[i], reason));
        }
        for (path, reason, bytes) in &plan.orphans {
            note(&mut report, removed_orphan(path, *reason, *bytes));
        }
        report.entries = plan.evict.len() as u64;
        report.bytes_freed = report.by_reason.values().map(|t| t.bytes).sum();
    } else {
        let io = |what: &str, e| CacheError::io(format!("{what} in {}", paths.cache_dir.display()), e);
        let trash = Trash::open(&paths.cache_dir).map_err(|e| io("failed to open the trash", e))?;
        execute(paths, db, &trash, &plan, &mut report, progress, cancel)?;
        let (freed, stuck) =
            trash.empty_all(scan::default_threads()).map_err(|e| io("failed to empty the trash", e))?;
        report.trash_stuck = stuck.iter().take(LISTED).map(|(_, e)| format!("cannot delete {e}")).collect();
        // A leftover of the trash that is still there was not removed after all.
        let still: HashSet<&str> = stuck.iter().map(|(name, _)| name.as_str()).collect();
        report.removed.retain(|r| {
            let kept = r.reason == Reason::Trash && still.contains(r.hash.as_str());
            if kept && let Some(totals) = report.by_reason.get_mut("trash") {
                totals.entries -= 1;
            }
            !kept
        });
        report.by_reason.retain(|_, totals| totals.entries > 0);
        report.files = freed.files;
        report.bytes_freed = freed.apparent_bytes;
        let (entries, bytes) = db.totals()?;
        report.after = Totals { entries, bytes };
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Records one removed item: listed while under `LISTED`, always counted by reason.
fn note(report: &mut CleanReport, removed: Removed) {
    let label =
        serde_json::to_value(removed.reason).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let totals = report.by_reason.entry(label).or_default();
    totals.entries += 1;
    totals.bytes += removed.bytes;
    if report.removed.len() < LISTED {
        report.removed.push(removed);
    } else {
        report.unlisted += 1;
    }
}

/// Age first, then least recently used down to 90% of the limit, then orphans.
pub fn plan(paths: &CachePaths, db: &NxDb, options: CleanOptions) -> Result<Plan, CacheError> {
    let now = now_secs();
    let rows = db.rows()?;
    let running: HashSet<String> = paths.running_tasks(db)?.into_iter().collect();
    let (mut evict, mut skipped, mut kept) = (Vec::new(), Vec::new(), Vec::new());
    let cutoff = now - options.max_age.as_secs() as i64;
    let entries = || rows.iter().enumerate().filter(|(_, r)| r.is_cache_entry);
    let before = Totals { entries: entries().count() as u64, bytes: entries().map(|(_, r)| r.size).sum() };
    for (i, row) in entries() {
        let protection = protected(paths, row, now, &running, options.force);
        match (row.accessed < cutoff, protection) {
            (true, Some(why)) => skipped.push(Skipped { hash: row.hash.to_string(), why, failed: false }),
            (true, None) => evict.push((i, Reason::Age)),
            (false, _) => kept.push(i),
        }
    }
    let mut remaining: u64 = kept.iter().map(|&i| rows[i].size).sum();
    if remaining > options.max_size {
        let goal = options.max_size / 10 * 9;
        for &i in &kept {
            if remaining <= goal {
                break;
            }
            match protected(paths, &rows[i], now, &running, options.force) {
                Some(why) => skipped.push(Skipped { hash: rows[i].hash.to_string(), why, failed: false }),
                None => {
                    remaining -= rows[i].size;
                    evict.push((i, Reason::Size));
                }
            }
        }
    }
    let mut marked = vec![false; rows.len()];
    for &(i, _) in &evict {
        marked[i] = true;
    }
    for (i, row) in entries() {
        // Even with `force`: a re-put removes the folder before writing it again.
        if !marked[i] && !paths.entry(&row.hash).exists() && now - row.created >= RECENT_SECS {
            evict.push((i, Reason::RowWithoutFolder));
        }
    }
    let mut orphans = orphan_files(paths, &rows, now);
    orphans.sort_by(|a, b| a.0.cmp(&b.0));
    let removed_bytes: u64 = evict.iter().map(|&(i, _)| rows[i].size).sum();
    let after =
        Totals { entries: before.entries - evict.len() as u64, bytes: before.bytes.saturating_sub(removed_bytes) };
    Ok(Plan { rows, evict, orphans, skipped, before, after })
}

/// Why an entry must be kept, if it must. The 10-second grace holds even with
/// `force`, here as in `take_entry`, so a dry run lists what a clean would do.
/// A running task's entries are kept even with `force`: Nx may be rewriting
/// one of them (a re-run under the same hash removes its folder first), and so
/// is an entry whose folder Nx is writing again (from any checkout).
fn protected(paths: &CachePaths, row: &Row, now: i64, running: &HashSet<String>, force: bool) -> Option<String> {
    if now - row.accessed < GRACE_SECS {
        return Some("used in the last 10 seconds".into());
    }
    let task = format!("{}:{}", row.project().unwrap_or(""), row.target().unwrap_or(""));
    if running.contains(&task) {
        return Some(format!("task {task} is running"));
    }
    if let Some(why) = being_put(paths, row, now) {
        return Some(why);
    }
    (!force && now - row.accessed < RECENT_SECS).then(|| "used in the last hour".into())
}

/// Entry folders (or traps in their place) no cache-entry row knows about (no
/// row, or a row Nx keeps for a terminal output only, which it never serves
/// from a folder), terminal outputs no row knows about, and leftover trash.
/// Only those untouched for an hour, even with `--force`: Nx writes an entry's
/// folder and terminal output first and inserts (or promotes) its row last, so
/// a young one may be an entry Nx is writing right now.
fn orphan_files(paths: &CachePaths, rows: &[Row], now: i64) -> Vec<(PathBuf, Reason, u64)> {
    let known: HashSet<&str> = rows.iter().map(|r| &*r.hash).collect();
    let entries: HashSet<&str> = rows.iter().filter(|r| r.is_cache_entry).map(|r| &*r.hash).collect();
    let old_enough = |path: &std::path::Path| age_of(path, now) >= RECENT_SECS;
    let mut out = Vec::new();
    for (dir, reason) in [
        (paths.cache_dir.clone(), Reason::OrphanFolder),
        (paths.cache_dir.join("terminalOutputs"), Reason::OrphanTerminalOutput),
    ] {
        // `terminalOutputs` (and the trash below) are listed only when they are real folders: a symlink
        // in their place would list a folder outside the cache.
        if dir != paths.cache_dir && !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let Ok(listing) = std::fs::read_dir(&dir) else { continue };
        for item in listing.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            // Anything under an entry's name, folder or not: a symlink or FIFO in a folder's
            // place is taken (renamed, never followed or opened) like the folder it replaced.
            let rows = if reason == Reason::OrphanFolder { &entries } else { &known };
            if is_hash(&name) && !rows.contains(name.as_str()) && old_enough(&item.path()) {
                let bytes = match reason {
                    Reason::OrphanFolder => scan::measure(&item.path()).map_or(0, |u| u.apparent_bytes),
                    _ => item.metadata().map_or(0, |m| m.len()),
                };
                out.push((item.path(), reason, bytes));
            }
        }
    }
    let trash = paths.cache_dir.join(TRASH_DIR);
    if std::fs::symlink_metadata(&trash).is_ok_and(|m| m.is_dir())
        && let Ok(listing) = std::fs::read_dir(&trash)
    {
        out.extend(listing.flatten().map(|item| (item.path(), Reason::Trash, 0)));
    }
    out
}

fn execute(
    paths: &CachePaths,
    db: &mut NxDb,
    trash: &Trash,
    plan: &Plan,
    report: &mut CleanReport,
    progress: &dyn Fn(u64, u64),
    cancel: &Cancel,
) -> Result<(), CacheError> {
    let total = (plan.evict.len() + plan.orphans.len()) as u64;
    let mut done = 0u64;
    for batch in plan.evict.chunks(BATCH) {
        if cancel.is_cancelled() {
            report.cancelled = true;
            return Ok(());
        }
        let outcome = db.batch(|tx| {
            let mut taken_here: Vec<(PathBuf, PathBuf)> = Vec::new();
            let mut results = Vec::new();
            for &(i, reason) in batch {
                let row = &plan.rows[i];
                match take_entry(paths, trash, tx, row, reason, now_secs(), report.force, &mut taken_here) {
                    Ok(true) => results.push(Ok((row, reason))),
                    Ok(false) => results.push(Err(Skipped {
                        hash: row.hash.to_string(),
                        why: "used while cleaning".into(),
                        failed: false,
                    })),
                    Err(Taken::Kept(why)) => {
                        results.push(Err(Skipped { hash: row.hash.to_string(), why, failed: false }))
                    }
                    Err(Taken::Failed(why)) => {
                        results.push(Err(Skipped { hash: row.hash.to_string(), why, failed: true }))
                    }
                }
            }
            (results, taken_here)
        });
        match outcome {
            Ok(((results, _), Ok(()))) => {
                for result in results {
                    match result {
                        Ok((row, reason)) => {
                            report.entries += 1;
                            note(report, removed_of(row, reason));
                        }
                        Err(skip) => {
                            report.failed += u64::from(skip.failed);
                            if report.skipped.len() < LISTED {
                                report.skipped.push(skip);
                            }
                        }
                    }
                }
            }
            Ok(((_, taken), Err(err))) => {
                tracing::warn!(target: "nxops::cache", "a batch was rolled back: {err}");
                put_back(trash, &taken);
            }
            Err(err) => return Err(err.into()),
        }
        done += batch.len() as u64;
        progress(done, total);
    }
    for batch in plan.orphans.chunks(BATCH) {
        if cancel.is_cancelled() {
            report.cancelled = true;
            return Ok(());
        }
        // Inside a write transaction, so Nx cannot record one of them meanwhile;
        // each is checked again: still without a row (a folder: without an entry
        // row), still untouched for an hour.
        let outcome = db.batch(|tx| {
            let mut taken = Vec::new();
            for (path, reason, bytes) in batch {
                if *reason != Reason::Trash {
                    let hash = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    let orphan = matches!(
                        (tx.row_kind(&hash), reason),
                        (Ok(None), _) | (Ok(Some(RowKind::TerminalOutputOnly)), Reason::OrphanFolder)
                    );
                    if !orphan || age_of(path, now_secs()) < RECENT_SECS {
                        continue;
                    }
                }
                if let Ok(Some(_)) = trash.take(path) {
                    taken.push(removed_orphan(path, *reason, *bytes));
                }
            }
            taken
        })?;
        // Orphans have no row to delete: a failed commit changes nothing they depend on.
        for removed in outcome.0 {
            note(report, removed);
        }
        done += batch.len() as u64;
        progress(done, total);
    }
    Ok(())
}

/// Inside a batch: re-check the row, move its files to the trash, delete it.
/// Ok(false) when Nx used the entry since the plan was made.
#[allow(clippy::too_many_arguments)]
fn take_entry(
    paths: &CachePaths,
    trash: &Trash,
    tx: &super::db::Batch<'_>,
    row: &Row,
    reason: Reason,
    now: i64,
    force: bool,
    taken: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<bool, Taken> {
    let failed = |what: String| Taken::Failed(what);
    let current = tx.accessed(&row.hash).map_err(|e| failed(format!("cannot read the row of {}: {e}", row.hash)))?;
    if current != Some(row.accessed) {
        return Ok(false);
    }
    // A corrupt entry restores nothing useful, and a missing folder restores nothing at all.
    let recent = match reason {
        Reason::Corrupt | Reason::RowWithoutFolder => 0,
        _ if force => GRACE_SECS,
        _ => RECENT_SECS,
    };
    if now - row.accessed < recent {
        let why = if recent == GRACE_SECS { "used in the last 10 seconds" } else { "used in the last hour" };
        return Err(Taken::Kept(why.into()));
    }
    if let Some(why) = being_put(paths, row, now) {
        return Err(Taken::Kept(why));
    }
    let mut moved = Vec::new();
    for original in [paths.entry(&row.hash), paths.terminal_output(&row.hash)] {
        match trash.take(&original) {
            Ok(Some(in_trash)) => moved.push((in_trash, original)),
            Ok(None) => {}
            Err(e) => {
                put_back(trash, &moved);
                return Err(failed(format!("cannot move it to the trash: {e}")));
            }
        }
    }
    match tx.delete_if_unused(&row.hash, row.accessed) {
        Ok(true) => {
            taken.extend(moved);
            Ok(true)
        }
        Ok(false) => {
            put_back(trash, &moved);
            Ok(false)
        }
        Err(e) => {
            put_back(trash, &moved);
            Err(failed(format!("cannot delete the row of {}: {e}", row.hash)))
        }
    }
}

/// Why an entry's folder says Nx is writing it again: made and modified in a
/// later second than its row was stamped (Nx stamps `created_at` after writing
/// the folder), within the hour (a put that died leaves such a folder for good).
/// Both times, because each alone misleads: files deleted inside a finished
/// entry change its modification time (damage `verify --fix` must still take),
/// and a cache restored from an archive has new folders with old modification
/// times. Where the file system keeps no birth time, the modification time alone.
fn being_put(paths: &CachePaths, row: &Row, now: i64) -> Option<String> {
    let meta = std::fs::symlink_metadata(paths.entry(&row.hash)).ok()?;
    if !meta.is_dir() {
        // Nx writes a folder: anything else there is a trap, not a put.
        return None;
    }
    let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let modified = secs(meta.modified().ok()?);
    let born_after_row = meta.created().map_or(true, |born| secs(born) > row.created);
    (modified > row.created && born_after_row && now - modified < RECENT_SECS)
        .then(|| "Nx is writing it again (its folder is newer than its row)".into())
}

/// Why `take_entry` did not take an entry: a protection, or an error.
enum Taken {
    Kept(String),
    Failed(String),
}

fn put_back(trash: &Trash, moved: &[(PathBuf, PathBuf)]) {
    for (in_trash, original) in moved {
        if let Err(e) = trash.restore(in_trash, original) {
            tracing::error!(target: "nxops::cache", "cannot put {} back: {e}", original.display());
        }
    }
}

fn removed_of(row: &Row, reason: Reason) -> Removed {
    Removed {
        hash: row.hash.to_string(),
        project: row.project().map(str::to_string),
        target: row.target().map(str::to_string),
        bytes: row.size,
        reason,
    }
}

fn removed_orphan(path: &std::path::Path, reason: Reason, bytes: u64) -> Removed {
    let hash = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Removed { hash, project: None, target: None, bytes, reason }
}

fn empty_report(paths: &CachePaths, options: CleanOptions, started: Instant, why: &str) -> CleanReport {
    CleanReport {
        cache_dir: paths.cache_dir.clone(),
        dry_run: options.dry_run,
        force: options.force,
        trigger: options.trigger,
        max_size: options.max_size,
        max_age_ms: options.max_age.as_millis() as u64,
        before: Totals::default(),
        after: Totals::default(),
        removed: Vec::new(),
        unlisted: 0,
        by_reason: Default::default(),
        skipped: Vec::new(),
        entries: 0,
        files: 0,
        bytes_freed: 0,
        duration_ms: started.elapsed().as_millis() as u64,
        skipped_run: Some(why.to_string()),
        cancelled: false,
        failed: 0,
        trash_stuck: Vec::new(),
    }
}

impl Report for CleanReport {
    /// 1 when qualifying entries could not be removed: the clean did not do what it was asked.
    fn exit_code(&self) -> u8 {
        u8::from(self.failed > 0)
    }

    fn human(&self) -> String {
        let mut out = String::new();
        if let Some(why) = &self.skipped_run {
            return format!("Nothing done: {why}.\n");
        }
        let verb = if self.dry_run { "Would remove" } else { "Removed" };
        let mut section = Section::new(&format!(
            "{verb} {} entries, {} (limits: {}, {})",
            self.entries,
            format_size(self.bytes_freed),
            format_size(self.max_size),
            format_duration(Duration::from_millis(self.max_age_ms))
        ));
        for r in self.removed.iter().take(20) {
            let task = match (&r.project, &r.target) {
                (Some(p), Some(t)) => format!("{p}:{t}"),
                _ => "-".into(),
            };
            let reason =
                serde_json::to_value(r.reason).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            section.push(&r.hash, format!("{:<24} {:>10}  {reason}", task, format_size(r.bytes)));
        }
        let more = self.removed.len().saturating_sub(20) as u64 + self.unlisted;
        if more > 0 {
            section.push(
                "...",
                format!(
                    "and {more} more (--json lists up to {LISTED}; by reason: {})",
                    self.by_reason.iter().map(|(r, t)| format!("{r} {}", t.entries)).collect::<Vec<_>>().join(", ")
                ),
            );
        }
        section.render(&mut out);
        let mut totals = Section::new("Cache")
            .row("before", format!("{} entries, {}", self.before.entries, format_size(self.before.bytes)))
            .row("after", format!("{} entries, {}", self.after.entries, format_size(self.after.bytes)));
        if !self.dry_run {
            totals.push("files deleted", self.files.to_string());
            totals.push("took", format!("{} ms", self.duration_ms));
        }
        let kept: Vec<&Skipped> = self.skipped.iter().filter(|s| !s.failed).collect();
        if !kept.is_empty() {
            let mut why: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
            for skip in &kept {
                *why.entry(skip.why.as_str()).or_default() += 1;
            }
            let why: Vec<String> = why.iter().map(|(w, n)| format!("{n} {w}")).collect();
            let recent = why.iter().any(|w| w.ends_with("used in the last hour"));
            let hint = if recent && !self.force { "; --force takes those used in the last hour" } else { "" };
            totals.push("kept", format!("{} entries that qualified ({}){hint}", kept.len(), why.join(", ")));
        }
        totals.render(&mut out);
        if self.failed > 0 {
            let mut failures = Section::new(&format!("Could not remove {} entries", self.failed));
            for skip in self.skipped.iter().filter(|s| s.failed).take(20) {
                failures.push(&skip.hash, skip.why.clone());
            }
            failures.render(&mut out);
        }
        if !self.trash_stuck.is_empty() {
            let mut stuck = Section::new(&format!(
                "Left in the trash: {} items (tried again by every clean)",
                self.trash_stuck.len()
            ));
            for (i, why) in self.trash_stuck.iter().take(20).enumerate() {
                stuck.push(&(i + 1).to_string(), why.clone());
            }
            stuck.render(&mut out);
        }
        out
    }
}
