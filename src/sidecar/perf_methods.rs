//! `nxops/perf/optimize`: every maintenance action, now, with the figures
//! before and after.
//!
//! Actions, in order:
//! - cache: the automatic maintenance check, now (cleans when over
//!   `cache.autoCleanAt` percent of `cache.maxSize` or holding entries older than
//!   `cache.maxAge`);
//! - MCP pools (with a sidecar): idle connections beyond `minIdle` are closed now;
//! - the Nx daemon: a record pointing at a dead or foreign process is removed
//!   (Nx starts a fresh daemon when it next needs one); a daemon over 1 GiB of
//!   memory is stopped (SIGTERM, then SIGKILL), and Nx starts it again.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::methods::{CallCtx, parse};
use crate::config::units::format_size;
use crate::health::Rating;
use crate::output::{Report, Section};
use crate::rpc::errors::RpcError;
use crate::workspace::Workspace;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptimizeParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub rating: Rating,
    pub score: u32,
    pub cache_bytes: Option<u64>,
    pub idle_mcp_connections: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub name: String,
    pub done: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PerfReport {
    pub workspace: PathBuf,
    pub before: Figures,
    pub actions: Vec<Action>,
    pub after: Figures,
}

impl Report for PerfReport {
    fn human(&self) -> String {
        let mut out = String::new();
        let mut actions = Section::new("Maintenance done");
        for a in &self.actions {
            actions.push(&a.name, a.done.clone());
        }
        actions.render(&mut out);
        let show = |f: &Figures| {
            let cache = f.cache_bytes.map_or("-".into(), format_size);
            let idle = f.idle_mcp_connections.map_or("-".into(), |n| n.to_string());
            format!("{:?} ({}/100), cache {cache}, idle MCP connections {idle}", f.rating, f.score)
        };
        Section::new("Figures").row("before", show(&self.before)).row("after", show(&self.after)).render(&mut out);
        out
    }
}

pub async fn run(ctx: &CallCtx, ws: &Arc<Workspace>, method: &str, raw: Value) -> Result<Value, RpcError> {
    parse::<OptimizeParams>(method, raw)?;
    let before = figures(ctx, ws).await;
    let mut actions = Vec::new();

    let workspace = ws.clone();
    let cache = tokio::task::spawn_blocking(move || super::maintenance::run_once(&workspace, false))
        .await
        .map_err(|e| RpcError::Failed(anyhow::anyhow!("maintenance stopped: {e}")))?;
    let done = match cache {
        Ok(report) => match &report.clean {
            Some(clean) if clean.skipped_run.is_none() => {
                super::cache_methods::publish_cleanup(&ctx.core, &ws.root, clean);
                format!("{}: {} entries, {} freed", report.reason, clean.entries, format_size(clean.bytes_freed))
            }
            _ => report.reason,
        },
        Err(err) => format!("not checked: {err}"),
    };
    actions.push(Action { name: "cache".into(), done });

    if let Some(owned) = ctx.core.owned(&ws.root) {
        let closed = owned.mcp.trim_idle().await;
        actions.push(Action { name: "mcp".into(), done: format!("closed {closed} idle connections beyond minIdle") });
    }

    let (root, data_dir) = (ws.root.clone(), ws.nx().workspace_data_dir);
    let done = tokio::task::spawn_blocking(move || super::maintenance::tidy_nx_daemon(&root, &data_dir).1)
        .await
        .unwrap_or_else(|e| e.to_string());
    actions.push(Action { name: "nx daemon".into(), done });

    let after = figures(ctx, ws).await;
    let report = PerfReport { workspace: ws.root.clone(), before, actions, after };
    Ok(serde_json::to_value(report).expect("reports serialize"))
}

async fn figures(ctx: &CallCtx, ws: &Arc<Workspace>) -> Figures {
    let health = super::health_methods::check(&ctx.core, ws).await;
    let workspace = ws.clone();
    let cache_bytes = tokio::task::spawn_blocking(move || {
        let paths = crate::cache::CachePaths::of(&workspace).ok()?;
        crate::cache::db::NxDb::open(&paths.db_file).ok()?.totals().ok().map(|(_, b)| b)
    })
    .await
    .ok()
    .flatten();
    let idle_mcp_connections = ctx.core.owned(&ws.root).map(|o| {
        let (servers, _) = o.mcp.servers();
        servers.iter().filter_map(|s| s.pool.as_ref()).map(|p| p.idle).sum()
    });
    Figures { rating: health.rating, score: health.score, cache_bytes, idle_mcp_connections }
}
