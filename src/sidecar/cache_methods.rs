//! The `nxops/cache/*` methods, run on the workspace's owner (or in-process).
//! Cache work is blocking I/O, so it runs on the blocking pool; `clean` reports
//! `$/progress` and publishes a `cacheCleanup` event.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::methods::CallCtx;
use crate::cache::clean::{CleanOptions, Trigger};
use crate::cache::reset::ResetOptions;
use crate::cache::{self, CachePaths};
use crate::config::units::{parse_duration, parse_size};
use crate::rpc::errors::RpcError;
use crate::workspace::Workspace;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    #[serde(default)]
    deep: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CleanParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    /// A size ("2GB") or bytes; default: the `cache.maxSize` setting.
    max_size: Option<Value>,
    /// A duration ("3d"); default: the `cache.maxAge` setting.
    max_age: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResetParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    #[serde(default)]
    all: bool,
    /// How long `nx reset` may take before the manual fallback ("60s").
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    #[serde(default)]
    fix: bool,
}

pub async fn run(ctx: &CallCtx, ws: &Arc<Workspace>, method: &str, raw: Value) -> Result<Value, RpcError> {
    let bad = |m: String| RpcError::invalid_params(method, m);
    match method {
        "nxops/cache/stats" => {
            let p: StatsParams = super::methods::parse(method, raw)?;
            let (max_size, max_age) = (ws.settings.cache_max_size(), ws.settings.cache_max_age().as_millis() as u64);
            let paths = CachePaths::of(ws).map_err(cache_error)?;
            blocking(move || cache::stats::collect(&paths, max_size, max_age, p.deep)).await
        }
        "nxops/cache/clean" => {
            let p: CleanParams = super::methods::parse(method, raw)?;
            let max_size = match &p.max_size {
                None => ws.settings.cache_max_size(),
                Some(Value::Number(n)) => n.as_u64().ok_or_else(|| bad(format!("maxSize: {n} is not a byte count")))?,
                Some(Value::String(s)) => parse_size(s.as_str()).map_err(|e| bad(format!("maxSize: {s:?}: {e}")))?,
                Some(other) => return Err(bad(format!("maxSize: expected a size such as \"5GB\", got {other}"))),
            };
            let max_age = match &p.max_age {
                None => ws.settings.cache_max_age(),
                Some(s) => parse_duration(s).map_err(|e| bad(format!("maxAge: {s:?}: {e}")))?,
            };
            let options =
                CleanOptions { max_size, max_age, dry_run: p.dry_run, force: p.force, trigger: Trigger::Manual };
            clean(ctx, ws, options).await
        }
        "nxops/cache/reset" => {
            let p: ResetParams = super::methods::parse(method, raw)?;
            let timeout = match &p.timeout {
                None => Duration::from_secs(60),
                Some(s) => parse_duration(s).map_err(|e| bad(format!("timeout: {s:?}: {e}")))?,
            };
            let ws = ws.clone();
            blocking(move || cache::reset::run(&ws, ResetOptions { all: p.all, timeout })).await
        }
        "nxops/cache/verify" => {
            let p: VerifyParams = super::methods::parse(method, raw)?;
            let paths = CachePaths::of(ws).map_err(cache_error)?;
            let cancel = crate::cache::Cancel::default();
            let _cancel_when_dropped = cancel.on_drop();
            blocking(move || cache::verify::run(&paths, p.fix, &cancel)).await
        }
        other => Err(RpcError::UnknownMethod(other.to_string())),
    }
}

/// Cleans (reporting progress) and publishes `cacheCleanup` when something was done.
/// The event is published by the blocking task itself, so a cancelled request
/// (whose answer is the cancellation error) still tells subscribers what was removed.
pub async fn clean(ctx: &CallCtx, ws: &Workspace, options: CleanOptions) -> Result<Value, RpcError> {
    let paths = CachePaths::of(ws).map_err(cache_error)?;
    let progress = ctx.progress.clone();
    let cancel = crate::cache::Cancel::default();
    let _cancel_when_dropped = cancel.on_drop();
    let (core, root) = (ctx.core.clone(), ws.root.clone());
    progress.begin("nxops: cleaning the Nx cache", &format!("{}", paths.cache_dir.display()));
    let report = tokio::task::spawn_blocking(move || {
        let report = |done: u64, total: u64| {
            let percentage = (done * 100).checked_div(total).unwrap_or(100) as u32;
            progress.report(&format!("{done} of {total}"), Some(percentage));
        };
        let cleaned = cache::clean::run(&paths, options, &report, &cancel);
        if let Ok(report) = &cleaned {
            publish_cleanup(&core, &root, report);
        }
        cleaned
    })
    .await
    .map_err(|e| RpcError::Failed(anyhow::anyhow!("the cleaner stopped: {e}")))?
    .map_err(cache_error)?;
    ctx.progress.end(&if report.dry_run {
        format!("{} entries would be removed", report.entries)
    } else {
        format!("{} entries removed", report.entries)
    });
    Ok(serde_json::to_value(report).expect("reports serialize"))
}

/// `nxops/cacheCleanup` for a clean that did something (not a dry run, not a skipped automatic run).
pub fn publish_cleanup(core: &super::core::Core, root: &std::path::Path, report: &cache::clean::CleanReport) {
    if report.dry_run || report.skipped_run.is_some() {
        return;
    }
    core.publish("cacheCleanup", cleanup_params(root, report));
}

/// `nxops/cacheCleanup` for an automatic clean that was due but could evict
/// nothing yet: the usual fields, with `blocked` saying why and `evictableInMs` when.
pub fn publish_blocked(
    core: &super::core::Core,
    root: &std::path::Path,
    report: &cache::clean::CleanReport,
    blocked: &super::maintenance::Blocked,
) {
    let mut params = cleanup_params(root, report);
    params["blocked"] = json!(blocked.why);
    params["evictableInMs"] = json!(blocked.evictable_in_ms);
    core.publish("cacheCleanup", params);
}

fn cleanup_params(root: &std::path::Path, report: &cache::clean::CleanReport) -> Value {
    json!({
        "workspace": root,
        "trigger": report.trigger,
        "entries": report.entries,
        "files": report.files,
        "bytesFreed": report.bytes_freed,
        "durationMs": report.duration_ms,
        "cancelled": report.cancelled,
    })
}

async fn blocking<T: serde::Serialize + Send + 'static>(
    work: impl FnOnce() -> Result<T, cache::CacheError> + Send + 'static,
) -> Result<Value, RpcError> {
    let report = tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RpcError::Failed(anyhow::anyhow!("the cache task stopped: {e}")))?
        .map_err(cache_error)?;
    Ok(serde_json::to_value(report).expect("reports serialize"))
}

pub fn cache_error(err: cache::CacheError) -> RpcError {
    RpcError::Failed(anyhow::Error::new(err))
}
