//! `nxops cache verify`: find entries Nx would serve wrong.
//!
//! - empty: the folder has no files but the row claims outputs (Nx replays a
//!   hit and restores nothing);
//! - partial: the folder holds fewer bytes than the row claims;
//! - changed: the content differs from the digest recorded when nxops first saw
//!   the entry (a first sight records the digest). The digest is kept with the
//!   entry's identity (`identity`: the row's `created_at`, the folder's inode
//!   and birth time): an entry Nx wrote again under the same hash (after an
//!   eviction by nxops or by Nx) is a new first sight, not a change, so tasks
//!   whose outputs hold a timestamp are not reported. Digests of entries no
//!   longer in the cache are forgotten by each verify. A task whose outputs
//!   differ run to run is still reported if its entry is changed in place,
//!   which Nx never does;
//! - unsafe: the entry folder, its terminal output or something in its outputs
//!   is not what Nx writes there (a symlink where a folder or the terminal
//!   output belongs, a FIFO, a device, a socket). It is never opened or followed
//!   (see `entry_reader`): Nx would restore from outside the cache, or hang.
//!
//! An entry without its terminal output is not a problem: Nx restores its
//! outputs and replays an empty log. It is counted (`missingTerminalOutputs`),
//! never evicted, and its sizes and digest are not checked (the row's size
//! includes the log's bytes, and the digest covers the log).
//!
//! `--fix` evicts them the safe way (see `clean`), so the next run is a clean miss.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::clean::{self, CleanOptions, Reason, Trigger};
use super::db::NxDb;
use super::digests::Digests;
use super::entry_reader::{CacheReader, DigestError, Found, Trap, digest_entry};
use super::{CacheError, CachePaths, Cancel, now_secs};
use crate::output::{Report, Section};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub cache_dir: PathBuf,
    pub checked: u64,
    /// Entries seen for the first time, whose digest was recorded now.
    pub recorded: u64,
    /// Rows whose folder is missing: harmless (Nx treats them as misses), listed for completeness.
    pub missing_folders: u64,
    /// Entries without a terminal output: Nx restores their outputs and replays an empty log.
    #[serde(default)]
    pub missing_terminal_outputs: u64,
    pub problems: Vec<Problem>,
    pub fixed: u64,
    /// The request was cancelled before every entry was checked.
    pub cancelled: bool,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub hash: String,
    pub project: Option<String>,
    pub target: Option<String>,
    pub kind: ProblemKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    Empty,
    Partial,
    Changed,
    Unsafe,
}

pub fn run(paths: &CachePaths, fix: bool, cancel: &Cancel) -> Result<VerifyReport, CacheError> {
    let started = Instant::now();
    let mut db = NxDb::open(&paths.db_file)?;
    let mut digests = match &paths.state_dir {
        Some(dir) => Some(Digests::open(dir).map_err(|e| {
            CacheError::io(format!("failed to open digests in {}", dir.display()), std::io::Error::other(e))
        })?),
        None => None,
    };
    let now = now_secs();
    let mut report = VerifyReport {
        cache_dir: paths.cache_dir.clone(),
        checked: 0,
        recorded: 0,
        missing_folders: 0,
        missing_terminal_outputs: 0,
        problems: Vec::new(),
        fixed: 0,
        cancelled: false,
        duration_ms: 0,
    };
    let reader = CacheReader::open(&paths.cache_dir)
        .map_err(|e| CacheError::io(format!("failed to open {}", paths.cache_dir.display()), e))?;
    let rows = db.rows()?;
    for row in rows.iter().filter(|r| r.is_cache_entry) {
        if cancel.is_cancelled() {
            report.cancelled = true;
            break;
        }
        let problem = |kind, detail: String| Problem {
            hash: row.hash.to_string(),
            project: row.project().map(str::to_string),
            target: row.target().map(str::to_string),
            kind,
            detail,
        };
        let unsafe_item = |trap: Trap| {
            problem(
                ProblemKind::Unsafe,
                format!(
                    "{} is {}: nxops never opens or follows it, and Nx would restore from outside the cache or hang",
                    trap.path.display(),
                    trap.what
                ),
            )
        };
        let folder = match reader.entry_folder(&row.hash) {
            Ok(Found::Opened(folder)) => folder,
            Ok(Found::Missing) => {
                report.missing_folders += 1;
                continue;
            }
            Ok(Found::Trap(trap)) => {
                report.checked += 1;
                report.problems.push(unsafe_item(trap));
                continue;
            }
            Err(e) => {
                tracing::warn!(target: "nxops::cache", "cannot open the entry {}: {e}", row.hash);
                continue;
            }
        };
        report.checked += 1;
        let mut terminal = match reader.terminal_output(&row.hash) {
            Ok(Found::Opened(file)) => Some(file),
            Ok(Found::Missing) => None,
            Err(e) => {
                tracing::warn!(target: "nxops::cache", "cannot open the terminal output of {}: {e}", row.hash);
                None
            }
            Ok(Found::Trap(trap)) => {
                report.problems.push(unsafe_item(trap));
                continue;
            }
        };
        // Still digested without one: that is what finds a trap among its outputs.
        let has_terminal = terminal.is_some();
        let terminal_bytes = terminal.as_ref().map_or(0, |t| t.len);
        let (digest, output_bytes) = match digest_entry(
            std::os::fd::AsFd::as_fd(&folder),
            std::path::Path::new(&*row.hash),
            terminal.as_mut(),
        ) {
            Ok(entry) => (entry.digest, entry.output_bytes),
            Err(DigestError::Trap(trap)) => {
                report.problems.push(unsafe_item(trap));
                continue;
            }
            Err(DigestError::Io(e)) => {
                tracing::warn!(target: "nxops::cache", "cannot read the entry {}: {e}", row.hash);
                continue;
            }
        };
        if !has_terminal {
            report.missing_terminal_outputs += 1;
            continue;
        }
        let claimed_outputs = row.size.saturating_sub(terminal_bytes);
        if output_bytes == 0 && claimed_outputs > 0 {
            report.problems.push(problem(ProblemKind::Empty, format!("the folder is empty but the database records {} bytes of outputs; Nx would report a cache hit and restore nothing", claimed_outputs)));
            continue;
        }
        if output_bytes < claimed_outputs {
            report.problems.push(problem(
                ProblemKind::Partial,
                format!("{output_bytes} of the {claimed_outputs} output bytes the database records are there"),
            ));
            continue;
        }
        if let Some(store) = &digests {
            let entry = identity(&folder, row.created);
            let rewritten = |seen: &super::digests::Seen| seen.entry.as_ref().is_some_and(|e| *e != entry);
            match store.get(&row.hash) {
                Ok(Some(seen)) if !rewritten(&seen) && seen.digest != digest => report.problems.push(problem(
                    ProblemKind::Changed,
                    format!(
                        "content differs from when nxops first saw it (blake3 {:.16}..., now {digest:.16}...)",
                        seen.digest
                    ),
                )),
                Ok(Some(seen)) if !rewritten(&seen) && seen.entry.is_some() => {}
                // First sight, a new entry under a known hash, or a digest recorded without an identity.
                Ok(_) => {
                    if store.record(&row.hash, &digest, &entry, now).is_ok() {
                        report.recorded += 1;
                    }
                }
                Err(e) => tracing::warn!(target: "nxops::cache", "cannot read digests: {e}"),
            }
        }
    }
    if let Some(store) = digests.as_mut()
        && !report.cancelled
        && let Err(e) = store.keep_only(rows.iter().filter(|r| r.is_cache_entry).map(|r| &*r.hash))
    {
        tracing::warn!(target: "nxops::cache", "cannot forget the digests of entries that are gone: {e}");
    }
    if fix && !report.problems.is_empty() {
        report.fixed = fix_problems(paths, &mut db, &report.problems, digests.as_ref())?;
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Which writing of an entry this is: its row's `created_at` (whole seconds) with
/// its folder's inode and birth time (nanoseconds, where the file system keeps
/// it). Nx's `put` removes the folder and creates it again, so an entry written
/// again under the same hash, even within the same second, has another identity;
/// changing files inside the folder keeps it.
fn identity(folder: &std::os::fd::OwnedFd, created: i64) -> String {
    use rustix::fs::{AtFlags, StatxFlags};
    let wanted = StatxFlags::INO | StatxFlags::BTIME;
    match rustix::fs::statx(folder, "", AtFlags::EMPTY_PATH, wanted) {
        Ok(stat) if StatxFlags::from_bits_retain(stat.stx_mask).contains(StatxFlags::BTIME) => {
            format!("{created}/{}/{}.{:09}", stat.stx_ino, stat.stx_btime.tv_sec, stat.stx_btime.tv_nsec)
        }
        Ok(stat) => format!("{created}/{}", stat.stx_ino),
        Err(_) => created.to_string(),
    }
}

/// Evicts the problem entries through the cleaner (lock, trash, guarded rows).
fn fix_problems(
    paths: &CachePaths,
    db: &mut NxDb,
    problems: &[Problem],
    digests: Option<&Digests>,
) -> Result<u64, CacheError> {
    let hashes: std::collections::HashSet<&str> = problems.iter().map(|p| p.hash.as_str()).collect();
    let rows: Vec<_> = db.rows()?.into_iter().filter(|r| hashes.contains(&*r.hash)).collect();
    let options = CleanOptions {
        max_size: u64::MAX,
        max_age: std::time::Duration::MAX,
        dry_run: false,
        force: true,
        trigger: Trigger::Manual,
    };
    let report = clean::evict_rows(paths, rows, Reason::Corrupt, options)?;
    if let Some(store) = digests {
        for problem in problems {
            let _ = store.forget(&problem.hash);
        }
    }
    Ok(report.entries)
}

impl Report for VerifyReport {
    /// 1 when problems were found and are still there (`--fix` evicted fewer than
    /// were found); 0 when the cache is sound, or `--fix` made it so.
    fn exit_code(&self) -> u8 {
        u8::from(self.fixed < self.problems.len() as u64)
    }

    fn human(&self) -> String {
        let mut out = String::new();
        let mut section = Section::new(&format!(
            "Checked {} entries: {} problem(s){}",
            self.checked,
            self.problems.len(),
            if self.fixed > 0 { format!(", {} fixed (evicted)", self.fixed) } else { String::new() }
        ));
        for p in &self.problems {
            let kind =
                serde_json::to_value(p.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            section.push(&p.hash, format!("{kind}: {}", p.detail));
        }
        section.push("first seen", format!("{} entries (digests recorded for later checks)", self.recorded));
        section.push("missing folders", format!("{} rows (harmless: Nx treats them as misses)", self.missing_folders));
        if self.missing_terminal_outputs > 0 {
            section.push(
                "no terminal output",
                format!(
                    "{} entries (harmless: Nx restores their outputs and replays an empty log)",
                    self.missing_terminal_outputs
                ),
            );
        }
        section.render(&mut out);
        out
    }
}
