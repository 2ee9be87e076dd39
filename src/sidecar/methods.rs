//! Every `nxops/*` method: its name, what it is scoped to, and its handler.
//!
//! This is the one dispatcher for nxops's own methods. The sidecar reaches it
//! through tower-lsp's custom-method routing, the CLI calls it in-process when
//! no sidecar owns the workspace. Workspace-scoped methods run where the
//! workspace's owner is: here, or forwarded to the owning process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::core::{Core, EVENTS, Route};
use super::progress::Progress;
use crate::config::{self, FlagValue, Settings};
use crate::info;
use crate::rpc::client::ClientError;
use crate::rpc::errors::RpcError;
use crate::workspace::Workspace;

/// One method of the protocol.
#[derive(Debug)]
pub struct MethodDef {
    pub name: &'static str,
    pub summary: &'static str,
}

/// The protocol's methods; docs/protocol.md documents each (a test checks).
pub const METHODS: &[MethodDef] = &[
    MethodDef { name: "nxops/status", summary: "version, pid, uptime, attached workspaces and sessions" },
    MethodDef { name: "nxops/workspace/attach", summary: "attach the workspace containing a path" },
    MethodDef { name: "nxops/workspace/detach", summary: "detach a workspace" },
    MethodDef { name: "nxops/workspace/list", summary: "attached workspaces and this process's role for each" },
    MethodDef { name: "nxops/system/info", summary: "the `nxops system info` report" },
    MethodDef { name: "nxops/env/info", summary: "the `nxops env info` report (runs on the workspace's owner)" },
    MethodDef { name: "nxops/cache/stats", summary: "cache statistics from Nx's database, or the disk with deep" },
    MethodDef { name: "nxops/cache/clean", summary: "evict by age, then least recently used, then orphans" },
    MethodDef { name: "nxops/cache/reset", summary: "nx reset with a manual fallback" },
    MethodDef { name: "nxops/cache/verify", summary: "find entries Nx would serve wrong; fix evicts them" },
    MethodDef {
        name: "nxops/process/list",
        summary: "supervised processes: state, pid, uptime, restarts, memory, CPU",
    },
    MethodDef { name: "nxops/process/start", summary: "start a declared process, or a client's process from a spec" },
    MethodDef { name: "nxops/process/stop", summary: "stop a process and its whole tree (SIGTERM, then SIGKILL)" },
    MethodDef { name: "nxops/process/restart", summary: "stop a process, then start it again" },
    MethodDef { name: "nxops/process/logs", summary: "the last lines of a process's stdout and stderr" },
    MethodDef { name: "nxops/trust", summary: "allow, revoke or show the allowance of the workspace's nxops.json" },
    MethodDef { name: "nxops/tasks/report", summary: "the Nx plugin reports a run's task results" },
    MethodDef { name: "nxops/tasks/runs", summary: "the last runs reported, newest first" },
    MethodDef { name: "nxops/maintenance/run", summary: "check the maintenance thresholds now and clean when due" },
    MethodDef {
        name: "nxops/mcp/servers",
        summary: "MCP servers from the workspace's files, with their pools' figures",
    },
    MethodDef {
        name: "nxops/mcp/request",
        summary: "forward a request to a pooled MCP server within the caller's lease",
    },
    MethodDef { name: "nxops/mcp/release", summary: "give back the caller's leased MCP connections" },
    MethodDef { name: "nxops/health", summary: "a score per component and the overall rating, with reasons" },
    MethodDef {
        name: "nxops/perf/optimize",
        summary: "every maintenance action now, with the figures before and after",
    },
    MethodDef { name: "nxops/session/list", summary: "the workspace's sessions with what each created and holds" },
    MethodDef {
        name: "nxops/session/open",
        summary: "open a named session that outlives connections, or register the caller's",
    },
    MethodDef {
        name: "nxops/session/close",
        summary: "close a session: release its leases, stop its processes (graceful or force)",
    },
    MethodDef {
        name: "nxops/session/restart",
        summary: "stop a session's resources and start them again, keeping its id and specs",
    },
    MethodDef { name: "nxops/session/heartbeat", summary: "a sign of life that keeps a named session open" },
    MethodDef {
        name: "nxops/session/leave",
        summary: "the caller stops holding a connection session; it expires after sessions.timeout",
    },
    MethodDef { name: "nxops/subscribe", summary: "receive the named events as notifications" },
    MethodDef { name: "nxops/unsubscribe", summary: "stop receiving the named events" },
];

/// Who is calling, for handlers that need the session or progress reporting.
pub struct CallCtx {
    pub core: Core,
    pub session: u64,
    pub progress: Progress,
}

/// Runs one nxops method.
pub async fn call(ctx: &CallCtx, method: &str, params: Value) -> Result<Value, RpcError> {
    if ctx.core.panic_fault(method) {
        panic!("fault injected by NXOPS_FAULTS");
    }
    match method {
        "nxops/status" => status(ctx, parse(method, params)?),
        "nxops/workspace/attach" => attach(ctx, parse(method, params)?),
        "nxops/workspace/detach" => detach(ctx, parse(method, params)?),
        "nxops/workspace/list" => {
            parse::<NoParams>(method, params)?;
            Ok(json!({"workspaces": ctx.core.workspaces()}))
        }
        "nxops/system/info" => system_info(ctx, parse(method, params)?).await,
        "nxops/env/info" => env_info(ctx, method, params).await,
        "nxops/cache/stats" | "nxops/cache/clean" | "nxops/cache/reset" | "nxops/cache/verify" => {
            cache_method(ctx, method, params).await
        }
        "nxops/process/list"
        | "nxops/process/start"
        | "nxops/process/stop"
        | "nxops/process/restart"
        | "nxops/process/logs"
        | "nxops/trust" => process_method(ctx, method, params).await,
        "nxops/health"
        | "nxops/perf/optimize"
        | "nxops/tasks/report"
        | "nxops/tasks/runs"
        | "nxops/maintenance/run"
        | "nxops/mcp/servers"
        | "nxops/mcp/request"
        | "nxops/mcp/release"
        | "nxops/session/list"
        | "nxops/session/open"
        | "nxops/session/close"
        | "nxops/session/restart"
        | "nxops/session/heartbeat"
        | "nxops/session/leave" => owner_method(ctx, method, params).await,
        "nxops/subscribe" => subscribe(ctx, method, parse(method, params)?),
        "nxops/unsubscribe" => unsubscribe(ctx, method, parse(method, params)?),
        other => Err(RpcError::UnknownMethod(other.to_string())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathParams {
    path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemInfoParams {
    workspace: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EnvInfoParams {
    workspace: Option<PathBuf>,
    /// Setting overrides for this report only, as `--set` gives them.
    #[serde(default)]
    set: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsParams {
    events: Vec<String>,
}

/// Deserializes params; the error names the field (`missing field `path``).
pub fn parse<T: DeserializeOwned>(method: &str, params: Value) -> Result<T, RpcError> {
    let params = match params {
        Value::Object(mut map) => {
            // LSP's work-done token may accompany any request; it is read by `Progress`.
            map.remove("workDoneToken");
            Value::Object(map)
        }
        // Omitted params, and `[]`, which is how Neovim's Lua encodes an empty table.
        Value::Null => json!({}),
        Value::Array(items) if items.is_empty() => json!({}),
        other => other,
    };
    serde_json::from_value(params).map_err(|e| RpcError::invalid_params(method, e.to_string()))
}

/// The `nxops/status` result.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    version: &'static str,
    pid: u32,
    uptime_ms: u64,
    started_at: u64,
    workspaces: Vec<super::core::WorkspaceView>,
    sessions: Vec<super::core::Session>,
}

fn status(ctx: &CallCtx, _: NoParams) -> Result<Value, RpcError> {
    let status = Status {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        uptime_ms: ctx.core.uptime().as_millis() as u64,
        started_at: ctx.core.started_at_ms(),
        workspaces: ctx.core.workspaces(),
        sessions: ctx.core.sessions(),
    };
    Ok(serde_json::to_value(status).expect("status serializes"))
}

fn attach(ctx: &CallCtx, params: PathParams) -> Result<Value, RpcError> {
    let path = absolute("nxops/workspace/attach", &params.path)?;
    Ok(serde_json::to_value(ctx.core.attach(&path)?).expect("views serialize"))
}

fn detach(ctx: &CallCtx, params: PathParams) -> Result<Value, RpcError> {
    let root = ctx.core.detach(&absolute("nxops/workspace/detach", &params.path)?)?;
    Ok(json!({"root": root, "detached": true}))
}

fn absolute(method: &str, path: &Path) -> Result<PathBuf, RpcError> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Err(RpcError::invalid_params(method, format!("path: {} is not an absolute path", path.display())))
    }
}

async fn system_info(ctx: &CallCtx, params: SystemInfoParams) -> Result<Value, RpcError> {
    let workspace = match ctx.core.resolve(params.workspace.as_deref()) {
        Ok(root) => ctx.core.workspace(&root),
        Err(_) if params.workspace.is_none() => None,
        Err(err) => return Err(err),
    };
    let env = ctx.core.env().clone();
    ctx.progress.begin("nxops: system info", "probing node, npm and pnpm");
    let report = tokio::task::spawn_blocking(move || {
        let root = workspace.as_ref().map(|w| w.root.as_path());
        let cache = workspace.as_ref().map(|w| w.nx().cache_dir);
        info::system::collect(&env, root, cache.as_deref())
    })
    .await
    .map_err(|e| RpcError::Failed(anyhow::anyhow!("system probe failed: {e}")))?;
    ctx.progress.end("done");
    Ok(serde_json::to_value(report).expect("reports serialize"))
}

async fn env_info(ctx: &CallCtx, method: &str, raw: Value) -> Result<Value, RpcError> {
    let params: EnvInfoParams = parse(method, raw.clone())?;
    match ctx.core.route(params.workspace.as_deref()).await? {
        Route::Forward { client, root } => forward(&client, method, raw, &root).await,
        Route::Local(workspace) => {
            let flags = set_flags(&params.set)?;
            let workspace = if flags.is_empty() {
                workspace
            } else {
                let mut all = ctx.core.overrides();
                all.extend(flags);
                std::sync::Arc::new(Workspace::open(&workspace.root, ctx.core.env(), &all)?)
            };
            Ok(serde_json::to_value(info::env::collect(&workspace, ctx.core.env())).expect("reports serialize"))
        }
    }
}

/// Runs a cache method where the workspace's owner is.
async fn cache_method(ctx: &CallCtx, method: &str, raw: Value) -> Result<Value, RpcError> {
    let workspace = raw.get("workspace").and_then(Value::as_str).map(PathBuf::from);
    match ctx.core.route(workspace.as_deref()).await? {
        Route::Forward { client, root } => forward(&client, method, raw, &root).await,
        Route::Local(ws) => super::cache_methods::run(ctx, &ws, method, raw).await,
    }
}

/// Runs a process or trust method where the workspace's owner is.
async fn process_method(ctx: &CallCtx, method: &str, mut raw: Value) -> Result<Value, RpcError> {
    let workspace = raw.get("workspace").and_then(Value::as_str).map(PathBuf::from);
    match ctx.core.route(workspace.as_deref()).await? {
        Route::Forward { client, root } => {
            // A client's process belongs to its session: name it for the owner.
            if method == "nxops/process/start"
                && raw.is_object()
                && raw.get("session").is_none()
                && raw.get("detached").is_none_or(|d| d == &Value::Bool(false))
            {
                raw["session"] = json!(super::core::session_id(ctx.session));
            }
            forward(&client, method, raw, &root).await
        }
        Route::Local(ws) => super::process_methods::run(ctx, &ws, method, raw).await,
    }
}

/// Runs a task-report or maintenance method where the workspace's owner is.
async fn owner_method(ctx: &CallCtx, method: &str, mut raw: Value) -> Result<Value, RpcError> {
    let workspace = raw.get("workspace").and_then(Value::as_str).map(PathBuf::from);
    match ctx.core.route(workspace.as_deref()).await? {
        Route::Forward { client, root } => {
            // Every client of this follower reaches the owner over one connection:
            // name the client's session (its lease) for the owner.
            let ours = json!(super::core::session_id(ctx.session));
            if raw.is_object() {
                if matches!(method, "nxops/mcp/request" | "nxops/mcp/release") && raw.get("lease").is_none() {
                    raw["lease"] = ours;
                } else if method.starts_with("nxops/session/")
                    && !matches!(method, "nxops/session/list")
                    && raw.get("session").is_none()
                    && raw.get("name").is_none()
                {
                    if method == "nxops/session/open" {
                        let (name, version) = ctx.core.client_of(ctx.session);
                        raw["client"] = json!({"name": name, "version": version});
                    }
                    raw["session"] = ours;
                }
            }
            forward(&client, method, raw, &root).await
        }
        Route::Local(ws) if method == "nxops/maintenance/run" => {
            let params: MaintenanceParams = parse(method, raw)?;
            let report = tokio::task::spawn_blocking(move || super::maintenance::run_once(&ws, params.if_due))
                .await
                .map_err(|e| RpcError::Failed(anyhow::anyhow!("maintenance stopped: {e}")))?
                .map_err(super::cache_methods::cache_error)?;
            Ok(serde_json::to_value(report).expect("reports serialize"))
        }
        Route::Local(ws) if method.starts_with("nxops/mcp/") => super::mcp_methods::run(ctx, &ws, method, raw).await,
        Route::Local(ws) if method == "nxops/health" => super::health_methods::run(ctx, &ws, method, raw).await,
        Route::Local(ws) if method == "nxops/perf/optimize" => super::perf_methods::run(ctx, &ws, method, raw).await,
        Route::Local(ws) if method.starts_with("nxops/session/") => {
            super::session_methods::run(ctx, &ws, method, raw).await
        }
        Route::Local(ws) => super::task_runs::run(ctx, &ws, method, raw).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MaintenanceParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    /// Skip when the last one-shot check is younger than `cache.checkInterval`.
    #[serde(default)]
    if_due: bool,
}

/// `{"cache.maxSize": "2GB"}` as command-line flag values, validated.
pub fn set_flags(set: &BTreeMap<String, String>) -> Result<Vec<FlagValue>, RpcError> {
    let flags: Vec<FlagValue> = set
        .iter()
        .map(|(key, value)| FlagValue { key: key.clone(), value: value.clone(), flag: format!("--set {key}") })
        .collect();
    Settings::resolve(None, &crate::environment::Environment::default(), &flags)?;
    Ok(flags)
}

async fn forward(
    client: &crate::rpc::client::RpcClient,
    method: &str,
    raw: Value,
    root: &Path,
) -> Result<Value, RpcError> {
    let mut params = raw;
    params["workspace"] = json!(root);
    let answered = tokio::select! {
        answered = client.request(method, params) => answered,
        () = client.unresponsive() => {
            return Err(RpcError::OwnerUnavailable(format!(
                "the owner of {} stopped answering during the request (no answer to a liveness check within {} s); \
                 it may have been stopped or be stuck",
                root.display(),
                super::core::LIVENESS_TIMEOUT.as_secs()
            )));
        }
    };
    answered.map_err(|err| match err {
        ClientError::Rpc(remote) => RpcError::Remote(remote),
        ClientError::Closed | ClientError::Unresponsive(_) => RpcError::OwnerUnavailable(format!(
            "the owner of {} went away during the request; retry it",
            root.display()
        )),
    })
}

fn subscribe(ctx: &CallCtx, method: &str, params: EventsParams) -> Result<Value, RpcError> {
    let events = check_events(method, &params.events)?;
    let subscribed = ctx.core.subscribe(ctx.session, &events);
    Ok(json!({"subscribed": subscribed, "available": EVENTS}))
}

fn unsubscribe(ctx: &CallCtx, method: &str, params: EventsParams) -> Result<Value, RpcError> {
    let events = check_events(method, &params.events)?;
    let subscribed = ctx.core.unsubscribe(ctx.session, &events);
    Ok(json!({"subscribed": subscribed, "available": EVENTS}))
}

/// Validates event names (with or without the `nxops/` prefix) and returns them without it.
fn check_events(method: &str, events: &[String]) -> Result<Vec<String>, RpcError> {
    let mut names = Vec::with_capacity(events.len());
    for event in events {
        let name = event.strip_prefix("nxops/").unwrap_or(event);
        if !EVENTS.contains(&name) {
            let hint = config::suggest(name, EVENTS.iter().copied())
                .map(|s| format!("; did you mean {s:?}?"))
                .unwrap_or_default();
            return Err(RpcError::invalid_params(
                method,
                format!("events: unknown event {event:?}{hint} (available: {})", EVENTS.join(", ")),
            ));
        }
        names.push(name.to_string());
    }
    Ok(names)
}
