//! The `nxops/session/*` methods, run on the workspace's owner (see
//! `crate::sessions` for the model), and `acting_session`, which every method
//! that creates something uses to know whose it is.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Value, json};

use super::core::session_id;
use super::methods::{CallCtx, parse};
use crate::rpc::errors::RpcError;
use crate::sessions::{self, Mode, Sessions};
use crate::workspace::Workspace;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    /// A named session (outlives connections); without it, the caller's connection session.
    name: Option<String>,
    /// For a named session: how long it lives after its last sign of life.
    timeout: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// A follower's client: its connection session id.
    session: Option<String>,
    client: Option<ClientInfo>,
    /// A follower's client: the events it subscribed to.
    subscriptions: Option<std::collections::BTreeSet<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientInfo {
    name: Option<String>,
    version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    session: Option<String>,
    #[serde(default = "graceful")]
    mode: Mode,
}

fn graceful() -> Mode {
    Mode::Graceful
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    session: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaveParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    session: Option<String>,
    /// The client went without a word (its connection broke), so it counts as vanished.
    #[serde(default)]
    vanished: bool,
}

pub async fn run(ctx: &CallCtx, ws: &Workspace, method: &str, raw: Value) -> Result<Value, RpcError> {
    let Some(sessions) = ctx.core.owned(&ws.root).map(|o| o.sessions) else {
        if method == "nxops/session/list" {
            parse::<ListParams>(method, raw)?;
            return saved(ws);
        }
        return Err(RpcError::OwnerUnavailable(format!(
            "no sidecar runs for {}: sessions live in the workspace's sidecar",
            ws.root.display()
        )));
    };
    match method {
        "nxops/session/list" => {
            parse::<ListParams>(method, raw)?;
            let since = crate::clock::now_ms().saturating_sub(3_600_000);
            Ok(
                json!({"workspace": ws.root, "sidecar": true, "file": ws.state_dir.as_deref().map(sessions::store::path),
                      "sessions": sessions.list(), "counts": sessions.counts(since)}),
            )
        }
        "nxops/session/open" => {
            let params: OpenParams = parse(method, raw)?;
            open(ctx, &sessions, method, params)
        }
        "nxops/session/close" => {
            let params: CloseParams = parse(method, raw)?;
            let id = target(ctx, params.session);
            Ok(serde_json::to_value(sessions.close(&id, params.mode).await?).expect("serializes"))
        }
        "nxops/session/restart" => {
            let params: SessionParams = parse(method, raw)?;
            let id = target(ctx, params.session);
            Ok(serde_json::to_value(sessions.restart(&id).await?).expect("serializes"))
        }
        "nxops/session/heartbeat" => {
            let params: SessionParams = parse(method, raw)?;
            let id = target(ctx, params.session);
            sessions.touch(method, &id)?;
            Ok(serde_json::to_value(sessions.view(&id)).expect("serializes"))
        }
        "nxops/session/leave" => {
            let params: LeaveParams = parse(method, raw)?;
            let id = target(ctx, params.session);
            sessions.let_go(&id, ctx.session, params.vanished);
            Ok(json!({"session": id, "held": false}))
        }
        other => Err(RpcError::UnknownMethod(other.to_string())),
    }
}

/// Without a sidecar: the sessions saved by the last owner, which the next
/// one restores (or expires, when their time ran out).
fn saved(ws: &Workspace) -> Result<Value, RpcError> {
    let file = ws.state_dir.as_deref().map(sessions::store::path);
    let records = match &file {
        Some(file) => sessions::store::peek(file).map_err(|p| RpcError::Failed(anyhow::anyhow!(p)))?,
        None => Vec::new(),
    };
    let views: Vec<sessions::SessionView> = records
        .into_iter()
        .map(|record| {
            let expires_at = record.expires_at(false);
            sessions::SessionView { record, state: "saved", expires_at }
        })
        .collect();
    Ok(json!({"workspace": ws.root, "sidecar": false, "file": file, "sessions": views,
              "counts": sessions::Counts::default()}))
}

fn open(ctx: &CallCtx, sessions: &Sessions, method: &str, params: OpenParams) -> Result<Value, RpcError> {
    if let Some(name) = params.name {
        if params.session.is_some() || params.client.is_some() || params.subscriptions.is_some() {
            return Err(RpcError::invalid_params(method, "name: a named session takes no session or client"));
        }
        sessions::check_name(&name).map_err(|p| RpcError::invalid_params(method, format!("name: {p}")))?;
        let timeout = params
            .timeout
            .map(|t| crate::config::units::parse_duration(&t))
            .transpose()
            .map_err(|p| RpcError::invalid_params(method, format!("timeout: {p}")))?;
        return Ok(serde_json::to_value(sessions.open_named(&name, timeout, params.labels)).expect("serializes"));
    }
    if params.timeout.is_some() || !params.labels.is_empty() {
        return Err(RpcError::invalid_params(
            method,
            "timeout: only a named session takes a timeout or labels (pass name)",
        ));
    }
    let id = match params.session {
        Some(id) if is_connection_id(&id) => id,
        Some(id) => {
            return Err(RpcError::invalid_params(
                method,
                format!("session: {id:?} is not a connection session id (<pid>.<n>); to open a named one pass name"),
            ));
        }
        None => session_id(ctx.session),
    };
    let client = match params.client {
        Some(c) => (c.name, c.version),
        None => ctx.core.client_of(ctx.session),
    };
    sessions.hold(&id, ctx.session, client);
    if let Some(events) = params.subscriptions {
        sessions.set_subscriptions(&id, events);
    }
    Ok(serde_json::to_value(sessions.view(&id)).expect("serializes"))
}

/// The session a session method is about: the one named, else the caller's own.
fn target(ctx: &CallCtx, named: Option<String>) -> String {
    named.unwrap_or_else(|| session_id(ctx.session))
}

/// `<pid>.<n>`: the id of a connection session (named ones have no dot).
pub fn is_connection_id(id: &str) -> bool {
    id.split_once('.').is_some_and(|(pid, n)| {
        !pid.is_empty()
            && !n.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The session a request that creates something acts for: the one it names
/// (which must be open, or be a follower's client connection), else the
/// caller's own connection session, opened if new.
///
/// `method` is the request's, named in the error for a session that is not open.
pub fn acting_session(
    ctx: &CallCtx,
    method: &str,
    sessions: &Sessions,
    named: Option<&str>,
) -> Result<String, RpcError> {
    match named {
        Some(id) if sessions.exists(id) => {
            sessions.touch(method, id)?;
            Ok(id.to_string())
        }
        Some(id) if is_connection_id(id) => {
            sessions.hold(id, ctx.session, (None, None));
            Ok(id.to_string())
        }
        Some(id) => Err(sessions.unknown(method, id)),
        None => {
            let id = session_id(ctx.session);
            sessions.hold(&id, ctx.session, ctx.core.client_of(ctx.session));
            Ok(id)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn connection_ids_are_told_from_names() {
        assert!(super::is_connection_id("4242.7"));
        assert!(!super::is_connection_id("e2e"));
        assert!(!super::is_connection_id("4242."));
        assert!(!super::is_connection_id("a.7"));
    }
}
