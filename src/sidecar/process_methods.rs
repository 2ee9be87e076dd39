//! The `nxops/process/*` methods and `nxops/trust`, run on the workspace's owner.
//!
//! Processes live in the owner sidecar's supervisor. A CLI working without a
//! sidecar can still list what is declared, read the log files and manage trust;
//! starting and stopping need a sidecar, and the error says so.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Value, json};

use super::methods::CallCtx;
use crate::rpc::errors::RpcError;
use crate::supervisor::Supervisor;
use crate::supervisor::spec::{self, ProcessSpec};
use crate::trust::{self, Trust};
use crate::workspace::Workspace;
use crate::workspace::nxops_json::{self, NxopsJson};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    name: String,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    name: String,
    lines: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TrustAction {
    Status,
    Allow,
    Revoke,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    action: TrustAction,
    /// With `allow`: the content hash the user reviewed; refused if the file changed since.
    sha256: Option<String>,
}

/// Runs a process or trust method for `ws`, here on its owner (or in-process).
pub async fn run(ctx: &CallCtx, ws: &Workspace, method: &str, raw: Value) -> Result<Value, RpcError> {
    let supervisor = ctx.core.supervisor(&ws.root);
    match method {
        "nxops/process/list" => {
            super::methods::parse::<ListParams>(method, raw)?;
            match supervisor {
                Some(sup) => {
                    let mut list = serde_json::to_value(sup.list().await).expect("views serialize");
                    if let (Some(owned), Some(Value::Array(processes))) =
                        (ctx.core.owned(&ws.root), list.get_mut("processes"))
                    {
                        for process in processes {
                            let name = process.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                            process["session"] = json!(owned.sessions.owner_of_process(&name));
                        }
                    }
                    Ok(list)
                }
                None => declared_without_sidecar(ctx, ws),
            }
        }
        "nxops/process/start" => {
            let start = start_params(method, raw, ws)?;
            let sup = need(supervisor, ws)?;
            // A client's process belongs to a session (the caller's unless it names
            // one), which stops it when it ends; `detached` runs it until stopped.
            let owner = match (&start.spec, start.detached, ctx.core.owned(&ws.root)) {
                (Some(_), false, Some(owned)) => {
                    let id =
                        super::session_methods::acting_session(ctx, method, &owned.sessions, start.session.as_deref())?;
                    Some((owned.sessions, id))
                }
                _ => None,
            };
            let by_name = start.spec.is_none();
            let view = sup.start_process(&start.name, start.spec).await?;
            // A detached process's spec is kept on disk, so the next owner starts it
            // again after a crash; it is answered only once that is written.
            match owner {
                Some((sessions, id)) => {
                    sessions.record_process(&id, &start.name, start.given);
                    sup.detached().forget(&start.name).await;
                }
                None if by_name => sup.detached().started_by_name(&start.name).await,
                None if start.detached => sup.detached().keep(&start.name, start.given).await,
                None => {}
            }
            Ok(with_session(ctx, ws, view))
        }
        "nxops/process/stop" => {
            let params: StopParams = super::methods::parse(method, raw)?;
            let sup = need(supervisor, ws)?;
            let view = sup.stop_process(&params.name, params.force).await?;
            // Stopped by a user: a detached process is not started again by the next owner.
            sup.detached().stopped(&params.name).await;
            Ok(with_session(ctx, ws, view))
        }
        "nxops/process/restart" => {
            let params: NameParams = super::methods::parse(method, raw)?;
            let sup = need(supervisor, ws)?;
            Ok(with_session(ctx, ws, sup.restart_process(&params.name).await?))
        }
        "nxops/process/logs" => {
            let params: LogsParams = super::methods::parse(method, raw)?;
            let lines = params.lines.unwrap_or(50).min(crate::supervisor::logs::RING_LINES);
            match supervisor {
                Some(sup) => sup.logs(&params.name, lines),
                None => logs_from_files(ws, &params.name, lines),
            }
        }
        "nxops/trust" => {
            let params: TrustParams = super::methods::parse(method, raw)?;
            trust_method(ctx, ws, supervisor, params).await
        }
        other => Err(RpcError::UnknownMethod(other.to_string())),
    }
}

/// A process's view with the session it belongs to (null for declared and detached ones).
fn with_session(ctx: &CallCtx, ws: &Workspace, view: crate::supervisor::service::View) -> Value {
    let mut value = serde_json::to_value(&view).expect("views serialize");
    value["session"] = json!(ctx.core.owned(&ws.root).and_then(|o| o.sessions.owner_of_process(&view.name)));
    value
}

fn need(supervisor: Option<Supervisor>, ws: &Workspace) -> Result<Supervisor, RpcError> {
    supervisor.ok_or_else(|| {
        RpcError::OwnerUnavailable(format!(
            "no sidecar runs for {}: supervised processes live in the workspace's sidecar \
             (started by your editor, the Nx plugin or `nxops serve --stdio`)",
            ws.root.display()
        ))
    })
}

/// A `nxops/process/start` request.
struct Start {
    name: String,
    spec: Option<ProcessSpec>,
    /// The spec as given, kept by its session to start it again.
    given: Value,
    session: Option<String>,
    detached: bool,
}

/// `{name, command?, session?, detached?, ...spec}`: a declared process by name, or a client's spec.
fn start_params(method: &str, raw: Value, ws: &Workspace) -> Result<Start, RpcError> {
    let Value::Object(mut map) = raw else {
        return Err(RpcError::invalid_params(method, "params must be an object"));
    };
    map.remove("workspace");
    map.remove("workDoneToken");
    let session = match map.remove("session") {
        Some(Value::String(id)) => Some(id),
        None | Some(Value::Null) => None,
        Some(_) => return Err(RpcError::invalid_params(method, "session: must be a string (a session id)")),
    };
    let detached = match map.remove("detached") {
        Some(Value::Bool(detached)) => detached,
        None => false,
        Some(_) => return Err(RpcError::invalid_params(method, "detached: must be true or false")),
    };
    if detached && session.is_some() {
        return Err(RpcError::invalid_params(
            method,
            "detached: a detached process belongs to no session; drop session",
        ));
    }
    let name = match map.remove("name") {
        Some(Value::String(name)) => name,
        Some(_) => return Err(RpcError::invalid_params(method, "name: must be a string")),
        None => return Err(RpcError::invalid_params(method, "missing field `name`")),
    };
    spec::check_name(&name).map_err(|p| RpcError::invalid_params(method, format!("name: {p}")))?;
    if map.is_empty() {
        return Ok(Start { name, spec: None, given: Value::Null, session, detached });
    }
    if !map.contains_key("command") {
        return Err(RpcError::invalid_params(
            method,
            "command: a process started at run time needs a command (or pass only `name` to start a declared one)",
        ));
    }
    let given = Value::Object(map);
    let spec = spec::parse(&name, given.clone(), &ws.root, &ws.settings, "params")
        .map_err(|e| RpcError::invalid_params(method, e.to_string()))?;
    Ok(Start { name, spec: Some(spec), given, session, detached })
}

/// What nxops.json declares, for a CLI without a sidecar.
fn declared_without_sidecar(ctx: &CallCtx, ws: &Workspace) -> Result<Value, RpcError> {
    let file = NxopsJson::read(&ws.root)?;
    let path = ws.root.join(nxops_json::FILE_NAME);
    let (trust, processes) = match &file {
        None => (None, Vec::new()),
        Some(file) => {
            let mut specs = Vec::new();
            for (name, value) in &file.processes {
                let location = format!("{} processes.{name}", file.path.display());
                let spec = spec::parse(name, value.clone(), &ws.root, &ws.settings, &location)
                    .map_err(|e| crate::config::ConfigError { location: e.location, problem: e.problem })?;
                specs
                    .push(json!({"name": spec.name, "state": "stopped", "command": spec.command_line(), "spec": spec}));
            }
            (Some(trust::check(ctx.core.env(), &file.path, &file.sha256)), specs)
        }
    };
    Ok(json!({
        "workspace": ws.root,
        "sidecar": false,
        "config": {"path": path, "exists": file.is_some(), "sha256": file.as_ref().map(|f| &f.sha256), "trust": trust},
        "processes": processes,
        "unattributed": [],
    }))
}

/// Log files are readable without a sidecar.
fn logs_from_files(ws: &Workspace, name: &str, lines: usize) -> Result<Value, RpcError> {
    spec::check_name(name).map_err(|p| RpcError::invalid_params("nxops/process/logs", format!("name: {p}")))?;
    let dir = ws.state_dir.as_ref().map(|d| d.join("logs"));
    let read = |stream: &str| -> (Option<PathBuf>, Vec<String>) {
        let Some(path) = dir.as_ref().map(|d| d.join(format!("{name}.{stream}.log"))) else {
            return (None, Vec::new());
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].iter().map(|s| s.to_string()).collect();
        (path.exists().then_some(path), tail)
    };
    let (out_file, stdout) = read("stdout");
    let (err_file, stderr) = read("stderr");
    if out_file.is_none() && err_file.is_none() {
        return Err(RpcError::invalid_params("nxops/process/logs", format!("no logs of a process named {name:?}")));
    }
    Ok(json!({"name": name, "stdout": stdout, "stderr": stderr, "files": {"stdout": out_file, "stderr": err_file}}))
}

async fn trust_method(
    ctx: &CallCtx,
    ws: &Workspace,
    supervisor: Option<Supervisor>,
    params: TrustParams,
) -> Result<Value, RpcError> {
    let env = ctx.core.env();
    let path = ws.root.join(nxops_json::FILE_NAME);
    let file = NxopsJson::read(&ws.root)?;
    // Every declared spec must be valid before the file can be allowed.
    let mut declared = Vec::new();
    if let Some(file) = &file {
        for (name, value) in &file.processes {
            let location = format!("{} processes.{name}", file.path.display());
            let spec = spec::parse(name, value.clone(), &ws.root, &ws.settings, &location)
                .map_err(|e| crate::config::ConfigError { location: e.location, problem: e.problem })?;
            declared.push(json!({"name": spec.name, "command": spec.command_line(), "cwd": spec.cwd}));
        }
    }
    // The workspace's MCP files name commands too, and are allowed with it.
    let discovered = crate::mcp::config::discover(&ws.root, env);
    let mcp_files: Vec<&crate::mcp::config::SourceFile> =
        discovered.files.iter().filter(|f| f.workspace_file).collect();
    let mut allowables: Vec<(PathBuf, String)> = mcp_files.iter().map(|f| (f.path.clone(), f.sha256.clone())).collect();
    if let Some(file) = &file {
        allowables.insert(0, (file.path.clone(), file.sha256.clone()));
    }
    let failed = |e: std::io::Error| RpcError::Failed(anyhow::anyhow!("cannot update the trust store: {e}"));
    let mut changed = false;
    match params.action {
        TrustAction::Status => {}
        TrustAction::Allow => {
            if let (Some(expected), Some(file)) = (&params.sha256, &file)
                && expected != &file.sha256
            {
                return Err(RpcError::invalid_params(
                    "nxops/trust",
                    format!(
                        "sha256: {} changed after you reviewed it (now {}); review it again",
                        file.path.display(),
                        file.sha256
                    ),
                ));
            }
            for (path, sha) in &allowables {
                let before = trust::check(env, path, sha);
                trust::allow(env, path, sha).map_err(failed)?;
                changed |= before != Trust::Allowed;
            }
        }
        TrustAction::Revoke => {
            for (path, _) in &allowables {
                changed |= trust::revoke(env, path).map_err(failed)?;
            }
        }
    }
    if changed && let Some(sup) = &supervisor {
        sup.reload()?;
        if let Some(owned) = ctx.core.owned(&ws.root) {
            owned.mcp.reload();
        }
    }
    let mcp: Vec<Value> = mcp_files
        .iter()
        .map(|f| {
            let servers: Vec<Value> = discovered
                .servers
                .iter()
                .filter(|s| s.source.path == f.path)
                .map(|s| json!({"name": s.name, "command": crate::output::shell_line(s.command.iter().chain(&s.args).map(String::as_str)), "url": s.url}))
                .collect();
            json!({"file": f.path, "kind": f.kind.label(), "sha256": f.sha256, "trust": trust::check(env, &f.path, &f.sha256), "servers": servers})
        })
        .collect();
    Ok(json!({
        "file": path,
        "exists": file.is_some(),
        "sha256": file.as_ref().map(|f| &f.sha256),
        "trust": file.as_ref().map(|f| trust::check(env, &f.path, &f.sha256)),
        "processes": declared,
        "mcp": mcp,
        "changed": changed,
        "sidecar": supervisor.is_some(),
    }))
}
