//! `nxops cache verify`: find entries Nx would serve wrong.
//!
//! - empty: the folder has no files but the row claims outputs (Nx replays a
//!   hit and restores nothing);
//! - partial: the folder holds fewer bytes than the row claims;
//! - changed: the content differs from the digest recorded when nxops first saw
//!   the entry (a first sight records the digest);
//! - unsafe: the entry folder, its terminal output or something in its outputs
//!   is not what Nx writes there (a symlink where a folder or the terminal
//!   output belongs, a FIFO, a device, a socket). It is never opened or followed
//!   (see `entry_reader`): Nx would restore from outside the cache, or hang.
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
    let digests = match &paths.state_dir {
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
            Ok(Found::Missing) | Err(_) => None,
            Ok(Found::Trap(trap)) => {
                report.problems.push(unsafe_item(trap));
                continue;
            }
        };
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
            match store.get(&row.hash) {
                Ok(Some(seen)) if seen != digest => report.problems.push(problem(
                    ProblemKind::Changed,
                    format!("content differs from when nxops first saw it (blake3 {seen:.16}..., now {digest:.16}...)"),
                )),
                Ok(Some(_)) => {}
                Ok(None) => {
                    if store.record(&row.hash, &digest, now).is_ok() {
                        report.recorded += 1;
                    }
                }
                Err(e) => tracing::warn!(target: "nxops::cache", "cannot read digests: {e}"),
            }
        }
    }
    if fix && !report.problems.is_empty() {
        report.fixed = fix_problems(paths, &mut db, &report.problems, digests.as_ref())?;
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
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
        section.render(&mut out);
        out
    }
}
