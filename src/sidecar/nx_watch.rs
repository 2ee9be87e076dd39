//! The owner's watch of where Nx keeps the workspace's cache.
//!
//! Nx decides its cache and database folders from nx.json, `NX_*` variables and
//! the repository's git identity, and creates them on its first run, which is
//! often after the editor started the sidecar. Two parts keep the owner right:
//! - the database files are listed on every use (`Workspace::nx`, one
//!   `read_dir`), so a database Nx creates later is found at once;
//! - this task stats the decision's inputs (`nx_paths::inputs_fingerprint`:
//!   nx.json and a few git files) every [`INTERVAL`], and only when one changed
//!   decides the layout again on the blocking pool (`Workspace::refresh_nx`,
//!   which may run git), so an edited `cacheDirectory` or a first commit moves the
//!   cache within seconds. Nothing runs on the runtime's threads but the timer.
//!
//! One task per owned workspace, ended by the owner's stop signal.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::workspace::Workspace;
use crate::workspace::nx_paths::inputs_fingerprint;

/// How often the inputs are stat'ed.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Runs until `stop`: re-decides the layout whenever its inputs change.
pub async fn watch(ws: Arc<Workspace>, mut stop: watch::Receiver<bool>) {
    let root = ws.root.clone();
    let Ok(mut last) = tokio::task::spawn_blocking(move || inputs_fingerprint(&root)).await else { return };
    loop {
        tokio::select! {
            () = tokio::time::sleep(INTERVAL) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let workspace = ws.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let now = inputs_fingerprint(&workspace.root);
            let moved = now != last && workspace.refresh_nx();
            (now, moved)
        })
        .await;
        let Ok((now, moved)) = checked else { return };
        last = now;
        if moved {
            let nx = ws.nx();
            tracing::info!(
                target: "nxops::sidecar",
                "Nx's cache of {} is now at {} (database folder {})",
                ws.root.display(),
                nx.cache_dir.display(),
                nx.db_dir.display()
            );
        }
    }
}
