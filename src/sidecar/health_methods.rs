//! `nxops/health` and the owner's periodic `healthCheck` (see `crate::health`
//! for the scoring). Without a sidecar the report has the cache only.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::watch;

use super::core::Core;
use super::methods::{CallCtx, parse};
use crate::clock::now_ms;
use crate::health::{self, Component, HealthReport, Hysteresis};
use crate::rpc::errors::RpcError;
use crate::workspace::Workspace;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
}

pub async fn run(ctx: &CallCtx, ws: &Arc<Workspace>, method: &str, raw: Value) -> Result<Value, RpcError> {
    parse::<HealthParams>(method, raw)?;
    let report = check(&ctx.core, ws).await;
    Ok(serde_json::to_value(report).expect("reports serialize"))
}

/// One health check of `ws` by what this process knows of it.
pub async fn check(core: &Core, ws: &Arc<Workspace>) -> HealthReport {
    let mut components = Vec::new();
    let owned = core.owned(&ws.root);
    if let Some(owned) = &owned {
        components.push(health::processes(&owned.supervisor.states()));
        let (servers, _) = owned.mcp.servers();
        let pools: Vec<health::PoolHealth> = servers
            .into_iter()
            .filter_map(|s| {
                s.pool.map(|p| health::PoolHealth {
                    server: s.name,
                    warm_failures: p.warm_failures,
                    replaced_last_10m: p.replaced_last_10m,
                    stderr: p.stderr,
                })
            })
            .collect();
        components.push(health::mcp(&pools));
        let counts = owned.sessions.counts(now_ms().saturating_sub(3_600_000));
        components.push(health::sessions(&health::SessionFigures {
            vanished_recently: counts.vanished_recently,
            disconnected: counts.disconnected,
            events_dropped: crate::rpc::outbox::dropped_events_total(),
            last_drop_ago_ms: crate::rpc::outbox::last_drop_ms().map(|at| now_ms().saturating_sub(at)),
        }));
        let rss = crate::procfs::stat(std::process::id()).map_or(0, |s| s.rss_bytes);
        components.push(health::sidecar_memory(rss));
    }
    let workspace = ws.clone();
    let cache = tokio::task::spawn_blocking(move || cache_component(&workspace)).await;
    components.push(cache.unwrap_or_else(|e| Component {
        name: "cache".into(),
        score: 100,
        reasons: vec![format!("the cache was not read: {e}")],
    }));
    // Reading the root's dotenv files and the probe both block: off the runtime's threads.
    let (root, env) = (ws.root.clone(), core.env().clone());
    let remote = tokio::task::spawn_blocking(move || {
        let remote = crate::team_cache::probe::configured(&root, &env)?;
        let found = crate::team_cache::probe::probe_recent(&remote);
        Some(health::remote_cache(&remote.server, &found))
    });
    match remote.await {
        Ok(component) => components.extend(component),
        Err(e) => components.push(Component {
            name: "remoteCache".into(),
            score: 100,
            reasons: vec![format!("the team cache was not probed: {e}")],
        }),
    }
    let mut report = HealthReport::new(ws.root.clone(), components, now_ms());
    report.sidecar = owned.is_some();
    report
}

fn cache_component(ws: &Workspace) -> Component {
    let max_size = ws.settings.cache_max_size();
    let Ok(paths) = crate::cache::CachePaths::of(ws) else { return health::cache(None, max_size, None) };
    let db = crate::cache::db::NxDb::open(&paths.db_file).ok();
    let bytes = db.as_ref().and_then(|db| db.totals().ok()).map(|(_, b)| b);
    // The oldest use matters only over the limit (is anything evictable yet?): no scan otherwise.
    let over = bytes.is_some_and(|b| b > max_size);
    let oldest = db.as_ref().filter(|_| over).and_then(|db| db.oldest_use().ok()).flatten();
    drop(db);
    let volume = rustix::fs::statvfs(&paths.cache_dir).ok().map(|s| (s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize));
    let mut component = health::cache(bytes, max_size, volume);
    if let Some((why, _)) =
        bytes.and_then(|b| crate::cache::eviction_blocked(b, max_size, oldest, crate::cache::now_secs()))
    {
        component.reasons.push(format!("the cache is {why}"));
    }
    component
}

/// Events after which the rating may have moved: a check follows at once.
const TRIGGERS: &[&str] =
    &["processFailure", "processStarted", "processMemoryLeak", "cacheCleanup", "sessionClosed", "maintenance"];

/// The owner's checks: every `health.interval` a `healthCheck` event (with
/// `changed` when the published rating moved), and between two, a check right
/// after anything that may move the rating, published only when it did. The
/// published rating goes through `health::Hysteresis` (worse at once, better
/// after `health::RECOVERY_HOLD`); a check is made when a better rating's hold
/// ends, so a recovery is published then, not at the next interval.
pub async fn watch(core: Core, ws: Arc<Workspace>, mut stop: watch::Receiver<bool>) {
    let interval = ws.settings.health_interval().max(std::time::Duration::from_millis(100));
    let mut events = core.events();
    let mut rating = Hysteresis::new(check(&core, &ws).await.rating);
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        let hold_ends = rating.due().map_or(next, |due| next.min(tokio::time::Instant::from_std(due)));
        let scheduled = tokio::select! {
            () = tokio::time::sleep_until(hold_ends) => hold_ends == next,
            event = events.recv() => match event {
                Ok(event) if TRIGGERS.contains(&event.name) && about(&event.params, &ws) => {
                    // Let a burst (a crash and its restart) settle into one check.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    while events.try_recv().is_ok() {}
                    false
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = stop.changed() => return,
        };
        if *stop.borrow() {
            return;
        }
        if scheduled {
            next = tokio::time::Instant::now() + interval;
        }
        let report = check(&core, &ws).await;
        let changed = rating.observe(report.rating, std::time::Instant::now());
        if scheduled || changed {
            let mut params = serde_json::to_value(&report).expect("reports serialize");
            params["measuredRating"] = params["rating"].take();
            params["rating"] = serde_json::to_value(rating.published()).expect("ratings serialize");
            params["changed"] = Value::Bool(changed);
            core.publish("healthCheck", params);
        }
    }
}

/// Whether an event is about this workspace.
fn about(params: &Value, ws: &Workspace) -> bool {
    params.get("workspace").and_then(Value::as_str).is_some_and(|w| std::path::Path::new(w) == ws.root)
}
