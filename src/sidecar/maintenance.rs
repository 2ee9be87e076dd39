//! Automatic maintenance: the owner's periodic check, and the one-shot
//! `nxops maintain` that the Nx plugin starts after a run when no sidecar runs.
//!
//! Every `cache.checkInterval` (default 5 min), and right after a run reported
//! by the Nx plugin, the owner reads two figures from Nx's database (total
//! bytes, oldest last use). When the cache is above `cache.autoCleanAt` percent
//! of `cache.maxSize` (default 90) or holds entries older than `cache.maxAge`,
//! it cleans, the way a manual clean does, except that it skips when another
//! cleaner holds the lock. The clean runs on a blocking thread at nice 10, in
//! short batches, so Nx is never kept waiting; the interval is also the least
//! time between two automatic cleans.
//!
//! At the same interval the owner looks after the workspace's Nx daemon: a
//! record (`<workspace data>/d/server-process.json`) that points at a dead or
//! foreign process is removed (Nx would otherwise try to talk to it), and a
//! daemon above `DAEMON_RSS_LIMIT` (1 GiB) resident is stopped (SIGTERM, then
//! SIGKILL after 2 s); Nx starts a fresh one when it next needs it. Each such
//! action is published as `nxops/maintenance`. The other automatic actions
//! live where their state is: idle MCP connections beyond `minIdle` are closed
//! by their pool after its `idleTimeout`; a process whose spec sets
//! `leak.restart` is restarted by its task when the leak detector fires; and
//! orphans that end are reaped by `crate::reaper` as soon as they exit.
//!
//! Without a sidecar, `nxops maintain --if-due` does the same check once; it
//! records when it last checked in `<state>/maintenance.json` and does nothing
//! when that was less than `cache.checkInterval` ago, so a plugin that starts
//! it after every run costs one short-lived process, not a database read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::core::Core;
use crate::cache::clean::{CleanOptions, CleanReport, Trigger};
use crate::cache::{CachePaths, db::NxDb, now_secs};
use crate::config::units::{format_duration, format_size};
use crate::output::{Report, Section};
use crate::workspace::Workspace;

/// An Nx daemon above this much resident memory is restarted.
pub const DAEMON_RSS_LIMIT: u64 = 1 << 30;

/// Runs until `stop` turns true; `wake` asks for a check now (a run just ended).
pub async fn maintain(core: Core, workspace: Arc<Workspace>, mut stop: watch::Receiver<bool>, wake: Arc<Notify>) {
    let settings = &workspace.settings;
    let cleans = settings.auto_clean_at() > 0;
    let interval = settings.cache_check_interval().max(Duration::from_millis(100));
    let mut last_clean: Option<Instant> = None;
    // A blocked clean is told once, not at every check until it can evict.
    let mut told_blocked = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = wake.notified() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let (root, data_dir) = (workspace.root.clone(), workspace.nx().workspace_data_dir);
        if let Ok((true, done)) = tokio::task::spawn_blocking(move || tidy_nx_daemon(&root, &data_dir)).await {
            tracing::info!(target: "nxops::maintenance", "{}: nx daemon: {done}", workspace.root.display());
            core.publish(
                "maintenance",
                serde_json::json!({"workspace": workspace.root, "action": "nx daemon", "done": done}),
            );
        }
        if !cleans || last_clean.is_some_and(|t| t.elapsed() < interval) {
            continue;
        }
        let ws = workspace.clone();
        let checked = tokio::task::spawn_blocking(move || check_and_clean(&ws, true)).await;
        match checked {
            Ok(Ok(check)) => {
                let Some(report) = check.clean.as_ref().filter(|r| r.skipped_run.is_none()) else { continue };
                last_clean = Some(Instant::now());
                match &check.blocked {
                    Some(blocked) if !told_blocked => {
                        told_blocked = true;
                        super::cache_methods::publish_blocked(&core, &workspace.root, report, blocked);
                    }
                    Some(_) => {}
                    None => {
                        told_blocked = false;
                        // An automatic clean that removed nothing is not news.
                        if report.entries > 0 || !report.by_reason.is_empty() || report.failed > 0 {
                            super::cache_methods::publish_cleanup(&core, &workspace.root, report);
                        }
                    }
                }
            }
            Ok(Err(err)) => {
                tracing::debug!(target: "nxops::maintenance", "{}: no automatic clean: {err}", workspace.root.display())
            }
            Err(err) => tracing::warn!(target: "nxops::maintenance", "the automatic clean stopped: {err}"),
        }
    }
}

/// Removes a stale daemon record, or stops a bloated daemon; says what it
/// found, and whether it acted. A record whose pid is not proven to be this
/// workspace's daemon (see `cache::daemon`) is stale: nothing is signalled.
pub fn tidy_nx_daemon(root: &std::path::Path, workspace_data_dir: &std::path::Path) -> (bool, String) {
    use crate::cache::daemon;
    let Some(record) = daemon::read_record(workspace_data_dir) else {
        return (false, "no Nx daemon recorded".into());
    };
    let pid = record.pid;
    if let Some(why) = daemon::not_our_daemon(root, &record) {
        return match std::fs::remove_file(daemon::record_path(workspace_data_dir)) {
            Ok(()) => (true, format!("removed a stale record ({why})")),
            Err(e) => (false, format!("a stale record (pid {pid}) could not be removed: {e}")),
        };
    }
    let rss = crate::procfs::stat(pid).map_or(0, |s| s.rss_bytes);
    if rss > DAEMON_RSS_LIMIT {
        return match daemon::stop(root, &record) {
            Some(_) => {
                (true, format!("stopped the daemon (pid {pid}, {}); Nx starts it again when needed", format_size(rss)))
            }
            None => (false, format!("the daemon (pid {pid}, {}) could not be stopped", format_size(rss))),
        };
    }
    (false, format!("the daemon (pid {pid}) uses {}: fine", format_size(rss)))
}

/// What one maintenance check found and did.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceReport {
    /// False when the check itself was skipped (`--if-due` and checked recently).
    pub checked: bool,
    pub reason: String,
    pub cache_bytes: Option<u64>,
    pub max_size: u64,
    pub auto_clean_at: u64,
    pub oldest_use_age_ms: Option<u64>,
    pub max_age_ms: u64,
    pub clean: Option<CleanReport>,
    /// A clean was due but could evict nothing yet: why, and when it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Blocked>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blocked {
    pub why: String,
    /// In how long the first entry may be evicted.
    pub evictable_in_ms: u64,
}

impl Report for MaintenanceReport {
    fn human(&self) -> String {
        let mut out = String::new();
        let mut section = Section::new(&format!("Maintenance: {}", self.reason));
        if let Some(bytes) = self.cache_bytes {
            let percent = if self.max_size > 0 { bytes as f64 * 100.0 / self.max_size as f64 } else { 0.0 };
            section.push(
                "cache",
                format!(
                    "{} of {} ({percent:.0}%; cleans above {}%)",
                    format_size(bytes),
                    format_size(self.max_size),
                    self.auto_clean_at
                ),
            );
        }
        if let Some(age) = self.oldest_use_age_ms {
            section.push(
                "oldest use",
                format!(
                    "{} ago (limit {})",
                    format_duration(Duration::from_secs(age / 1000)),
                    format_duration(Duration::from_millis(self.max_age_ms))
                ),
            );
        }
        section.render(&mut out);
        if let Some(clean) = &self.clean {
            out.push('\n');
            out.push_str(&clean.human());
        }
        out
    }
}

/// The stamp of the last one-shot check.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stamp {
    last_check: u64,
}

/// One check, cleaning when a threshold is passed. With `if_due`, a one-shot
/// run (no sidecar) skips when the last check is younger than the interval.
pub fn run_once(ws: &Workspace, if_due: bool) -> Result<MaintenanceReport, crate::cache::CacheError> {
    let stamp = ws.state_dir.as_ref().map(|d| d.join("maintenance.json"));
    let interval = ws.settings.cache_check_interval();
    let now_ms = crate::clock::now_ms();
    if if_due
        && let Some(last) = stamp
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<Stamp>(&b).ok())
            .map(|s| s.last_check)
        && now_ms.saturating_sub(last) < interval.as_millis() as u64
    {
        let ago = Duration::from_millis(now_ms.saturating_sub(last) / 1000 * 1000);
        return Ok(skipped(ws, format!("checked {} ago (every {})", format_duration(ago), format_duration(interval))));
    }
    if let Some(path) = &stamp {
        let _ = path.parent().map(std::fs::create_dir_all);
        let _ = std::fs::write(path, serde_json::to_vec(&Stamp { last_check: now_ms }).expect("stamp serializes"));
    }
    check_and_clean(ws, false)
}

fn skipped(ws: &Workspace, reason: String) -> MaintenanceReport {
    MaintenanceReport {
        checked: false,
        reason,
        cache_bytes: None,
        max_size: ws.settings.cache_max_size(),
        auto_clean_at: ws.settings.auto_clean_at(),
        oldest_use_age_ms: None,
        max_age_ms: ws.settings.cache_max_age().as_millis() as u64,
        clean: None,
        blocked: None,
    }
}

/// Reads the two figures and cleans when a threshold is passed.
fn check_and_clean(ws: &Workspace, lower: bool) -> Result<MaintenanceReport, crate::cache::CacheError> {
    let paths = match CachePaths::of(ws) {
        Ok(paths) => paths,
        Err(crate::cache::CacheError::NxNotRun { cache_dir, .. }) => {
            let why = format!("nothing to maintain: Nx has not run here yet (no cache at {})", cache_dir.display());
            let mut report = skipped(ws, why);
            report.checked = true;
            return Ok(report);
        }
        Err(err) => return Err(err),
    };
    let settings = &ws.settings;
    let (max_size, max_age) = (settings.cache_max_size(), settings.cache_max_age());
    let db = NxDb::open(&paths.db_file)?;
    let (_, bytes) = db.totals()?;
    let oldest = db.oldest_use()?;
    drop(db);
    let mut report = skipped(ws, String::new());
    report.checked = true;
    report.cache_bytes = Some(bytes);
    report.oldest_use_age_ms = oldest.map(|t| (now_secs() - t).max(0) as u64 * 1000);
    if settings.auto_clean_at() == 0 {
        report.reason = "automatic cleaning is off (cache.autoCleanAt = 0)".into();
        return Ok(report);
    }
    let over_size = bytes as u128 * 100 > max_size as u128 * settings.auto_clean_at() as u128;
    let over_age = oldest.is_some_and(|t| now_secs() - t > max_age.as_secs() as i64);
    if !(over_size || over_age) {
        report.reason = "nothing due".into();
        return Ok(report);
    }
    if lower {
        lower_priority();
    }
    let options = CleanOptions { max_size, max_age, dry_run: false, force: false, trigger: Trigger::Automatic };
    let clean = crate::cache::clean::run(&paths, options, &|_, _| {}, &crate::cache::Cancel::default())?;
    let blocked = match clean.entries {
        0 => crate::cache::eviction_blocked(bytes, max_size, oldest, now_secs()),
        _ => None,
    };
    report.reason = match (&clean.skipped_run, &blocked, over_size) {
        (Some(why), _, _) => format!("a clean was due, but {why}"),
        (None, Some((why, _)), _) => format!("a clean was due, but nothing may be evicted yet: the cache is {why}"),
        (None, None, true) => format!("cleaned: the cache was over {}% of its limit", settings.auto_clean_at()),
        (None, None, false) => "cleaned: entries were older than the age limit".into(),
    };
    report.blocked = blocked.map(|(why, wait)| Blocked { why, evictable_in_ms: wait as u64 * 1000 });
    report.clean = Some(clean);
    Ok(report)
}

/// Runs this (blocking-pool) thread at nice 10, so a clean yields to builds.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    let _ = rustix::process::setpriority_process(Some(tid), 10);
}
