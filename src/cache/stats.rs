//! `nxops cache stats`: the cache as Nx's database sees it (milliseconds), and
//! with `--deep`, as the disk sees it, checked against the database.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::db::NxDb;
use super::entry_reader::{CacheReader, Found};
use super::scan::{self, Kind};
use super::trash::TRASH_DIR;
use super::{CacheError, CachePaths, is_hash, now_secs};
use crate::config::units::{format_duration, format_size};
use crate::output::{Report, Section};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheStats {
    pub workspace_root: PathBuf,
    pub cache_dir: PathBuf,
    pub db_file: PathBuf,
    pub max_size: u64,
    pub max_age_ms: u64,
    /// Rows Nx treats as cache entries, and their bytes (outputs + terminal output).
    pub entries: u64,
    pub bytes: u64,
    /// `bytes / max_size`.
    pub utilization: f64,
    pub volume: Option<Volume>,
    /// By time since last use: < 1 h, < 1 d, < 7 d, < 30 d, older.
    pub ages: Vec<AgeBucket>,
    /// Cache hits against executed tasks in Nx's task history over the last 7 days.
    pub hit_rate: Option<HitRate>,
    /// The ten (project, target) pairs holding the most bytes.
    pub consumers: Vec<Consumer>,
    /// With `--deep`: the disk walked and checked against the database.
    pub deep: Option<DeepStats>,
    pub duration_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgeBucket {
    pub label: String,
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HitRate {
    pub days: u32,
    pub hits: u64,
    pub executed: u64,
    /// `hits / (hits + executed)`, `None` when nothing ran.
    pub rate: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consumer {
    pub project: String,
    pub target: String,
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeepStats {
    /// Everything under the cache folder, hard links counted once.
    pub apparent_bytes: u64,
    pub allocated_bytes: u64,
    pub files: u64,
    pub entry_folders: u64,
    pub orphans: Orphans,
    /// Entries that are not what Nx writes (see `entry_reader`): an entry or
    /// terminal output that is a symlink, a FIFO, a device or a socket, or an
    /// entry folder holding a FIFO, device or socket. Never opened or followed;
    /// `verify` reports the same entries as `unsafe`.
    #[serde(default)]
    pub unsafe_items: Vec<UnsafeItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnsafeItem {
    /// Relative to the cache folder.
    pub path: PathBuf,
    pub what: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Orphans {
    /// `<hash>/` folders with no database row: Nx never evicts them.
    pub folders_without_row: u64,
    /// `<hash>/` folders whose row is not a cache entry (`is_cache_entry = 0`, a row Nx keeps for a
    /// terminal output only, or demoted when it once found the folder missing): Nx never serves
    /// them; `clean` sweeps them as orphans, keeping the row and its terminal output.
    pub folders_of_non_entry_rows: u64,
    /// Rows marked as cache entries whose folder is missing (Nx treats them as misses).
    pub rows_without_folder: u64,
    pub terminal_outputs_without_row: u64,
    /// Items left in `.nxops-trash` by an interrupted clean.
    pub trash_items: u64,
    /// Apparent bytes of orphan folders (with or without a row), orphan terminal outputs and trash.
    pub bytes: u64,
}

const AGE_BOUNDS: [(i64, &str); 4] =
    [(3600, "< 1h"), (86_400, "1h - 1d"), (7 * 86_400, "1d - 7d"), (30 * 86_400, "7d - 30d")];

pub fn collect(paths: &CachePaths, max_size: u64, max_age_ms: u64, deep: bool) -> Result<CacheStats, CacheError> {
    let started = Instant::now();
    // The disk walk (when asked for) runs while the database answers, on its own threads.
    std::thread::scope(|scope| {
        let walk = deep.then(|| scope.spawn(|| scan::scan_children(&paths.cache_dir, scan::default_threads())));
        let db = NxDb::open(&paths.db_file)?;
        let mut stats = from_database(paths, &db, max_size, max_age_ms)?;
        if let Some(walk) = walk {
            // The rows are read, and `terminalOutputs` listed, while the walk runs.
            let rows = db.hashes()?;
            let known: HashSet<&str> = rows.iter().map(|(hash, _)| hash.as_str()).collect();
            let outputs = terminal_outputs(paths, |name| !known.contains(name));
            let children = walk
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the disk walk panicked")))
                .map_err(|e| CacheError::io(format!("failed to scan {}", paths.cache_dir.display()), e))?;
            stats.deep = Some(deep_stats(paths, Rows { all: &rows, known: &known }, &children, outputs)?);
        }
        stats.duration_ms = started.elapsed().as_millis() as u64;
        Ok(stats)
    })
}

fn from_database(paths: &CachePaths, db: &NxDb, max_size: u64, max_age_ms: u64) -> Result<CacheStats, CacheError> {
    let (entries, bytes) = db.totals()?;
    let now = now_secs();
    let bounds: Vec<i64> = AGE_BOUNDS.iter().map(|(b, _)| *b).collect();
    let labels = AGE_BOUNDS.iter().map(|(_, l)| *l).chain(["> 30d"]);
    let ages = db
        .age_histogram(now, &bounds)?
        .into_iter()
        .zip(labels)
        .map(|((entries, bytes), label)| AgeBucket { label: label.into(), entries, bytes })
        .collect();
    let hit_rate = db.hit_counts((now - 7 * 86_400) * 1000)?.map(|(hits, executed)| HitRate {
        days: 7,
        hits,
        executed,
        rate: (hits + executed > 0).then(|| hits as f64 / (hits + executed) as f64),
    });
    let consumers = db
        .consumers(10)?
        .into_iter()
        .map(|(project, target, entries, bytes)| Consumer { project, target, entries, bytes })
        .collect();
    Ok(CacheStats {
        workspace_root: paths.root.clone(),
        cache_dir: paths.cache_dir.clone(),
        db_file: paths.db_file.clone(),
        max_size,
        max_age_ms,
        entries,
        bytes,
        utilization: if max_size == 0 { 0.0 } else { bytes as f64 / max_size as f64 },
        volume: volume(&paths.cache_dir),
        ages,
        hit_rate,
        consumers,
        deep: None,
        duration_ms: 0,
    })
}

fn volume(dir: &std::path::Path) -> Option<Volume> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(Volume { total_bytes: stat.f_blocks * stat.f_frsize, free_bytes: stat.f_bavail * stat.f_frsize })
}

/// The database's rows for [`deep_stats`]: every `(hash, is_cache_entry)`, and the set of their hashes.
struct Rows<'r> {
    all: &'r [(String, bool)],
    known: &'r HashSet<&'r str>,
}

/// Compares the walk's `children` and the listing of `terminalOutputs` (`outputs`) with the rows.
fn deep_stats(
    paths: &CachePaths,
    rows: Rows,
    children: &[scan::Child],
    outputs: Vec<(std::ffi::OsString, Kind, u64)>,
) -> Result<DeepStats, CacheError> {
    let Rows { all: rows, known } = rows;
    let entries: HashSet<&str> = rows.iter().filter(|(_, entry)| *entry).map(|(hash, _)| hash.as_str()).collect();
    let mut total = scan::Usage::default();
    let mut orphans = Orphans::default();
    let mut unsafe_items = Vec::new();
    let mut on_disk: HashSet<&str> = HashSet::with_capacity(children.len());
    let mut terminal_outputs_folder = false;
    let reader = CacheReader::open(&paths.cache_dir)
        .map_err(|e| CacheError::io(format!("failed to open {}", paths.cache_dir.display()), e))?;
    for child in children {
        add(&mut total, &child.usage);
        let Some(name) = child.name.to_str() else { continue };
        if is_hash(name) {
            match child.kind {
                Kind::Dir => {
                    on_disk.insert(name);
                    if !known.contains(name) {
                        orphans.folders_without_row += 1;
                        orphans.bytes += child.usage.apparent_bytes;
                    } else if !entries.contains(name) {
                        orphans.folders_of_non_entry_rows += 1;
                        orphans.bytes += child.usage.apparent_bytes;
                    } else if child.usage.specials > 0 {
                        let what = format!("a folder holding {} FIFO(s), socket(s) or device(s)", child.usage.specials);
                        unsafe_items.push(UnsafeItem { path: name.into(), what });
                    }
                }
                // Not a folder where Nx puts one: a trap, counted as itself (never followed).
                _ => {
                    on_disk.insert(name);
                    if let Ok(Found::Trap(trap)) = reader.entry_folder(name) {
                        unsafe_items.push(UnsafeItem { path: trap.path, what: trap.what });
                    }
                }
            }
        } else if name == TRASH_DIR && child.kind == Kind::Dir {
            orphans.trash_items += trash_count(paths);
            orphans.bytes += child.usage.apparent_bytes;
        } else if name == "terminalOutputs" {
            terminal_outputs_folder = child.kind == Kind::Dir;
            if let Some(trap) = reader.terminal_outputs_trap() {
                unsafe_items.push(UnsafeItem { path: trap.path.clone(), what: trap.what.clone() });
            }
        }
    }
    if terminal_outputs_folder {
        for (name, kind, bytes) in outputs {
            let Some(name) = name.to_str() else { continue };
            if !known.contains(name) {
                orphans.terminal_outputs_without_row += 1;
                orphans.bytes += bytes;
            } else if kind != Kind::File
                && let Ok(Found::Trap(trap)) = reader.terminal_output(name)
            {
                unsafe_items.push(UnsafeItem { path: trap.path, what: trap.what });
            }
        }
    }
    orphans.rows_without_folder =
        rows.iter().filter(|(hash, entry)| *entry && !on_disk.contains(hash.as_str())).count() as u64;
    Ok(DeepStats {
        apparent_bytes: total.apparent_bytes,
        allocated_bytes: total.allocated_bytes,
        files: total.files,
        entry_folders: on_disk.len() as u64,
        orphans,
        unsafe_items,
    })
}

/// Items directly in the trash, listed without following anything.
fn trash_count(paths: &CachePaths) -> u64 {
    list_nofollow(&paths.cache_dir, TRASH_DIR, |_| false).len() as u64
}

/// `terminalOutputs/*`: name, kind and size (sizes only of those `orphan` says have no row:
/// one stat each would cost more than the rest of a deep scan of them), listed without
/// following anything.
fn terminal_outputs(paths: &CachePaths, orphan: impl Fn(&str) -> bool) -> Vec<(std::ffi::OsString, Kind, u64)> {
    list_nofollow(&paths.cache_dir, "terminalOutputs", orphan)
}

/// The items of the folder `name` in `cache_dir`, opened with `O_NOFOLLOW`; none when it is
/// not a folder. Kinds come from the folder's own entries (`lstat` only where it does not say);
/// sizes only for the items `sized` picks (0 for the others).
fn list_nofollow(
    cache_dir: &std::path::Path,
    name: &str,
    sized: impl Fn(&str) -> bool,
) -> Vec<(std::ffi::OsString, Kind, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(dir) = std::fs::File::open(cache_dir) else { return Vec::new() };
    let Ok(name) = std::ffi::CString::new(name) else { return Vec::new() };
    let Ok(Some(folder)) = scan::open_dir_at(std::os::fd::AsFd::as_fd(&dir), &name) else { return Vec::new() };
    let folder = std::os::fd::AsFd::as_fd(&folder);
    let Ok(items) = scan::DirBuffer::new().names_and_kinds(folder) else { return Vec::new() };
    items
        .into_iter()
        .filter_map(|(item, kind)| {
            let os = std::ffi::OsStr::from_bytes(item.to_bytes()).to_os_string();
            let wants_size = os.to_str().is_none_or(&sized);
            let (kind, size) = match kind {
                Some(kind) if !wants_size => (kind, 0),
                _ => {
                    let stat = scan::lstat_at(folder, &item).ok()??;
                    (scan::kind_of(&stat), stat.stx_size)
                }
            };
            Some((os, kind, size))
        })
        .collect()
}

fn add(total: &mut scan::Usage, usage: &scan::Usage) {
    total.apparent_bytes += usage.apparent_bytes;
    total.allocated_bytes += usage.allocated_bytes;
    total.files += usage.files;
    total.dirs += usage.dirs;
    total.symlinks += usage.symlinks;
}

impl Report for CacheStats {
    fn human(&self) -> String {
        let mut out = String::new();
        let mut summary = Section::new("Nx cache")
            .row("folder", self.cache_dir.display().to_string())
            .row("database", self.db_file.display().to_string())
            .row("entries", self.entries.to_string())
            .row(
                "size",
                format!(
                    "{} of {} ({:.0}%), max age {}",
                    format_size(self.bytes),
                    format_size(self.max_size),
                    self.utilization * 100.0,
                    format_duration(std::time::Duration::from_millis(self.max_age_ms))
                ),
            );
        if let Some(v) = &self.volume {
            summary.push("volume", format!("{} free of {}", format_size(v.free_bytes), format_size(v.total_bytes)));
        }
        if let Some(h) = &self.hit_rate {
            let rate = h.rate.map_or("-".into(), |r| format!("{:.0}%", r * 100.0));
            summary.push("hit rate", format!("{rate} over {} days ({} hits, {} executed)", h.days, h.hits, h.executed));
        }
        summary.render(&mut out);
        let mut ages = Section::new("Last used");
        for bucket in &self.ages {
            ages.push(&bucket.label, format!("{:>6} entries  {}", bucket.entries, format_size(bucket.bytes)));
        }
        ages.render(&mut out);
        let mut consumers = Section::new("Biggest consumers");
        for c in &self.consumers {
            consumers.push(
                &format!("{}:{}", c.project, c.target),
                format!("{:>6} entries  {}", c.entries, format_size(c.bytes)),
            );
        }
        consumers.render(&mut out);
        if let Some(deep) = &self.deep {
            let o = &deep.orphans;
            Section::new("On disk")
                .row("apparent", format_size(deep.apparent_bytes))
                .row("allocated", format_size(deep.allocated_bytes))
                .row("files", deep.files.to_string())
                .row("entry folders", deep.entry_folders.to_string())
                .row("orphan folders", format!("{} (no database row; Nx never evicts them)", o.folders_without_row))
                .row(
                    "folders of non-entry rows",
                    format!("{} (Nx never serves them; clean sweeps them)", o.folders_of_non_entry_rows),
                )
                .row("rows without folder", o.rows_without_folder.to_string())
                .row("orphan terminal outputs", o.terminal_outputs_without_row.to_string())
                .row("leftover trash", o.trash_items.to_string())
                .row("orphan bytes", format_size(o.bytes))
                .render(&mut out);
            if !deep.unsafe_items.is_empty() {
                let mut traps = Section::new("Unsafe entries (never opened or followed; `verify --fix` evicts them)");
                for item in &deep.unsafe_items {
                    traps.push(&item.path.display().to_string(), item.what.clone());
                }
                traps.render(&mut out);
            }
        } else {
            out.push_str("\n(--deep walks the disk and checks it against the database)\n");
        }
        out
    }
}
