//! The `nxops/mcp/*` methods, run on the workspace's owner.
//!
//! A request is forwarded within the caller's lease (its session, or the
//! `lease` it names): the first request leases a warm connection, later ones
//! reuse it, and nobody else gets it until the lease is released or the
//! session ends. The server's own messages during the lease reach that
//! session as `nxops/mcp/notification`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::core::session_id;
use super::methods::{CallCtx, parse};
use crate::mcp::McpPools;
use crate::mcp::conn::Era;
use crate::mcp::pool::PoolError;
use crate::rpc::errors::RpcError;
use crate::workspace::Workspace;

/// The longest one forwarded request may take (a client cancels sooner with `$/cancelRequest`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServersParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    server: String,
    method: String,
    #[serde(default)]
    params: Value,
    /// Another lease than the caller's session (a proxy or a forwarder serving several clients).
    lease: Option<String>,
    /// The caller's environment (`nxops mcp proxy` sends its agent's): when the
    /// server's entry expands to other values with it, the lease gets a server
    /// started for it alone (`McpPools::launch_for`).
    env: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    server: Option<String>,
    lease: Option<String>,
}

pub async fn run(ctx: &CallCtx, ws: &Workspace, method: &str, raw: Value) -> Result<Value, RpcError> {
    let pools = ctx.core.owned(&ws.root).map(|o| o.mcp);
    match method {
        "nxops/mcp/servers" => {
            parse::<ServersParams>(method, raw)?;
            let (servers, problems) = match &pools {
                Some(pools) => pools.servers(),
                None => without_sidecar(ws, ctx),
            };
            Ok(json!({"workspace": ws.root, "sidecar": pools.is_some(), "servers": servers, "problems": problems}))
        }
        "nxops/mcp/request" => {
            let params: RequestParams = parse(method, raw)?;
            let pools = need(pools, ws)?;
            request(ctx, ws, &pools, params).await
        }
        "nxops/mcp/release" => {
            let params: ReleaseParams = parse(method, raw)?;
            let pools = need(pools, ws)?;
            let key = params.lease.unwrap_or_else(|| session_id(ctx.session));
            match &params.server {
                Some(server) => pool_of(&pools, server)?.release(&key),
                None => pools.release_all(&key),
            }
            if let Some(owned) = ctx.core.owned(&ws.root) {
                owned.sessions.forget_mcp(&key, params.server.as_deref());
            }
            Ok(json!({"released": key}))
        }
        other => Err(RpcError::UnknownMethod(other.to_string())),
    }
}

fn need(pools: Option<McpPools>, ws: &Workspace) -> Result<McpPools, RpcError> {
    pools.ok_or_else(|| {
        RpcError::OwnerUnavailable(format!(
            "no sidecar runs for {}: MCP pools live in the workspace's sidecar",
            ws.root.display()
        ))
    })
}

fn pool_of(pools: &McpPools, server: &str) -> Result<crate::mcp::pool::Pool, RpcError> {
    pools.pool(server).ok_or_else(|| {
        let (servers, _) = pools.servers();
        match servers.iter().find(|s| s.name == server) {
            Some(view) => RpcError::NotAllowed(format!(
                "the MCP server {server:?} is not pooled: {}",
                view.reason.clone().unwrap_or_default()
            )),
            None => {
                let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
                let hint = crate::config::suggest(server, names.iter().copied())
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_default();
                RpcError::invalid_params(
                    "nxops/mcp/request",
                    format!(
                        "server: no MCP server named {server:?}{hint} (configured: {})",
                        if names.is_empty() { "none".into() } else { names.join(", ") }
                    ),
                )
            }
        }
    })
}

async fn request(
    ctx: &CallCtx,
    ws: &Workspace,
    pools: &McpPools,
    mut params: RequestParams,
) -> Result<Value, RpcError> {
    let pool = pool_of(pools, &params.server)?;
    // The lease is a session's (the caller's, or the one named); any other
    // lease name (a proxy's, a script's) is honoured but tracked by nobody.
    let sessions = ctx.core.owned(&ws.root).map(|o| o.sessions);
    let key = match (&params.lease, &sessions) {
        (None, Some(sessions)) => super::session_methods::acting_session(ctx, "nxops/mcp/request", sessions, None)?,
        (Some(lease), Some(sessions)) if sessions.exists(lease) || super::session_methods::is_connection_id(lease) => {
            super::session_methods::acting_session(ctx, "nxops/mcp/request", sessions, Some(lease))?
        }
        (Some(lease), _) => lease.clone(),
        (None, None) => session_id(ctx.session),
    };
    let want = crate::mcp::pool::Want::for_request(&params.method, &params.params);
    let own = match params.env.take() {
        Some(vars) if !pool.holds(&key) => {
            let (pools, server) = (pools.clone(), params.server.clone());
            tokio::task::spawn_blocking(move || pools.launch_for(&server, &vars)).await.unwrap_or(None)
        }
        _ => None,
    };
    let conn = match own {
        Some(launch) => pool.acquire_own(&key, want, launch).await,
        None => pool.acquire_for(&key, want).await,
    }
    .map_err(pool_error)?;
    if let Some(sessions) = &sessions
        && sessions.exists(&key)
    {
        sessions.record_mcp(&key, &params.server);
    }
    // The connection is initialized already: its handshake's answer is the answer
    // (this is how a proxy's client sees an instant start).
    let handshake = match (params.method.as_str(), conn.era()) {
        ("initialize", Era::Legacy) | ("server/discover", Era::Modern) => Some(json!({"result": conn.hello()})),
        ("initialize", Era::Modern) => Some(json!({"error": {"code": -32601,
            "message": "this pooled server speaks the 2026-07-28 protocol: send server/discover, not initialize"}})),
        _ => None,
    };
    if let Some(mut answer) = handshake {
        answer["connection"] = json!(conn.id);
        return Ok(answer);
    }
    // The server's own messages during this lease go to this session.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    conn.set_sink(Some(tx));
    let (core, session, server, lease) = (ctx.core.clone(), ctx.session, params.server.clone(), key.clone());
    ctx.core.runtime().spawn(async move {
        while let Some(message) = rx.recv().await {
            core.publish_to(session, "mcp/notification", json!({"server": server, "lease": lease, "message": message}));
        }
    });
    let answer = conn.forward(&params.method, params.params, REQUEST_TIMEOUT).await.map_err(|e| {
        // A dead connection leaves the lease; the next request gets a fresh one.
        if conn.is_dead() {
            pool.release(&key);
        }
        RpcError::Failed(anyhow::Error::new(e))
    })?;
    let mut out = serde_json::Map::new();
    for field in ["result", "error"] {
        if let Some(value) = answer.get(field) {
            out.insert(field.to_string(), value.clone());
        }
    }
    out.insert("connection".into(), json!(conn.id));
    Ok(Value::Object(out))
}

fn pool_error(err: PoolError) -> RpcError {
    RpcError::Failed(anyhow::Error::new(err))
}

/// The configured servers, for a CLI without a sidecar (nothing is pooled then).
fn without_sidecar(ws: &Workspace, ctx: &CallCtx) -> (Vec<crate::mcp::ServerView>, Vec<String>) {
    let discovered = crate::mcp::config::discover(&ws.root, ctx.core.env());
    let reason = || Some("no sidecar runs for this workspace".to_string());
    let views = discovered.servers.iter().map(|s| crate::mcp::view(s, ctx.core.env(), reason(), None)).collect();
    (views, discovered.problems)
}
