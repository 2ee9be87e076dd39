//! Automatic cache maintenance by a workspace's owner.
//!
//! Every `cache.checkInterval` (default 5 min) the owner reads two figures from
//! Nx's database (total bytes, oldest last use). When the cache is above
//! `cache.autoCleanAt` percent of `cache.maxSize` (default 90) or holds entries
//! older than `cache.maxAge`, it cleans, the way a manual clean does, except
//! that it skips when another cleaner holds the lock. The clean runs on a
//! blocking thread at nice 10, in short batches, so Nx is never kept waiting;
//! the interval is also the least time between two automatic cleans.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::core::Core;
use crate::cache::clean::{CleanOptions, Trigger};
use crate::cache::{CachePaths, db::NxDb, now_secs};
use crate::workspace::Workspace;

/// Runs until `stop` turns true.
pub async fn maintain(core: Core, workspace: Arc<Workspace>, mut stop: watch::Receiver<bool>) {
    let settings = &workspace.settings;
    if settings.auto_clean_at() == 0 {
        return;
    }
    let interval = settings.cache_check_interval().max(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let ws = workspace.clone();
        let due = tokio::task::spawn_blocking(move || clean_if_due(&ws)).await;
        match due {
            Ok(Ok(Some(report))) => super::cache_methods::publish_cleanup(&core, &workspace.root, &report),
            Ok(Ok(None)) => {}
            Ok(Err(err)) => {
                tracing::debug!(target: "nxops::maintenance", "{}: no automatic clean: {err}", workspace.root.display())
            }
            Err(err) => tracing::warn!(target: "nxops::maintenance", "the automatic clean stopped: {err}"),
        }
    }
}

/// Cleans when a threshold is passed; `None` when nothing was due or another cleaner ran.
fn clean_if_due(ws: &Workspace) -> Result<Option<crate::cache::clean::CleanReport>, crate::cache::CacheError> {
    let paths = CachePaths::of(ws)?;
    let settings = &ws.settings;
    let (max_size, max_age) = (settings.cache_max_size(), settings.cache_max_age());
    let db = NxDb::open(&paths.db_file)?;
    let (_, bytes) = db.totals()?;
    let over_size = bytes as u128 * 100 > max_size as u128 * settings.auto_clean_at() as u128;
    let oldest = db.oldest_use()?;
    let over_age = oldest.is_some_and(|t| now_secs() - t > max_age.as_secs() as i64);
    drop(db);
    if !(over_size || over_age) {
        return Ok(None);
    }
    lower_priority();
    let options = CleanOptions { max_size, max_age, dry_run: false, force: false, trigger: Trigger::Automatic };
    let report = crate::cache::clean::run(&paths, options, &|_, _| {}, &crate::cache::Cancel::default())?;
    Ok(report.skipped_run.is_none().then_some(report))
}

/// Runs this (blocking-pool) thread at nice 10, so a clean yields to builds.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    let _ = rustix::process::setpriority_process(Some(tid), 10);
}
