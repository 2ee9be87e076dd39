//! The one place where nxops errors become JSON-RPC errors.
//!
//! Codes: the JSON-RPC 2.0 ones (-32700 parse, -32600 invalid request, -32601
//! unknown method, -32602 invalid params, -32603 internal), LSP's -32002 (not
//! initialized) and -32800 (cancelled), and nxops's own in -32000..-32099:
//! see `Code` and docs/protocol.md.

use serde_json::{Value, json};
use tower_lsp_server::jsonrpc::{Error, ErrorCode};

use crate::config::ConfigError;
use crate::workspace::WorkspaceError;

/// nxops's own error codes (server-defined range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The named workspace is not attached to this sidecar.
    NotAttached = -32001,
    /// The workspace or its configuration is unusable (no nx.json, bad settings).
    BadWorkspace = -32003,
    /// The workspace's owner could not be reached, or went away mid-request.
    OwnerUnavailable = -32004,
    /// An operation failed for a reason outside the request (I/O, permissions).
    Failed = -32005,
    /// Commands from a workspace file that the user has not allowed (`nxops trust`).
    NotAllowed = -32006,
}

/// A failed nxops method call, before it is put on the wire.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    #[error("invalid params for {method}: {message}")]
    InvalidParams { method: String, message: String },
    #[error("{0}")]
    NotAttached(String),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error("{0}")]
    OwnerUnavailable(String),
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
    #[error("{0}")]
    NotAllowed(String),
    /// An error answered by another nxops (the owner) that is passed on unchanged.
    #[error("{}", .0.message)]
    Remote(Error),
}

impl RpcError {
    pub fn invalid_params(method: &str, message: impl Into<String>) -> RpcError {
        RpcError::InvalidParams { method: method.to_string(), message: message.into() }
    }
}

impl From<ConfigError> for RpcError {
    fn from(err: ConfigError) -> Self {
        RpcError::Workspace(WorkspaceError::Config(err))
    }
}

/// The wire form of an error.
pub fn to_jsonrpc(err: RpcError) -> Error {
    let message = err.to_string();
    let (code, data): (ErrorCode, Option<Value>) = match &err {
        RpcError::UnknownMethod(m) => (ErrorCode::MethodNotFound, Some(json!({"method": m}))),
        RpcError::InvalidParams { method, .. } => (ErrorCode::InvalidParams, Some(json!({"method": method}))),
        RpcError::NotAttached(_) => (ErrorCode::ServerError(Code::NotAttached as i64), None),
        RpcError::Workspace(WorkspaceError::Config(c)) => (
            ErrorCode::ServerError(Code::BadWorkspace as i64),
            Some(json!({"location": c.location, "problem": c.problem})),
        ),
        RpcError::Workspace(_) => (ErrorCode::ServerError(Code::BadWorkspace as i64), None),
        RpcError::OwnerUnavailable(_) => (ErrorCode::ServerError(Code::OwnerUnavailable as i64), None),
        RpcError::Failed(_) => (ErrorCode::ServerError(Code::Failed as i64), None),
        RpcError::NotAllowed(_) => (ErrorCode::ServerError(Code::NotAllowed as i64), None),
        RpcError::Remote(remote) => return remote.clone(),
    };
    Error { code, message: message.into(), data }
}

/// Rewrites tower-lsp's bare "Method not found" so the message names the method.
pub fn name_unknown_method(mut err: Error) -> Error {
    if err.code == ErrorCode::MethodNotFound
        && let Some(Value::String(method)) = &err.data
    {
        err.message = format!("unknown method {method:?}").into();
    }
    err
}

/// -32601 for `method`, with the message and data tower-lsp gives other unknown methods.
pub fn unknown_method(method: &str) -> Error {
    Error {
        code: ErrorCode::MethodNotFound,
        message: format!("unknown method {method:?}").into(),
        data: Some(Value::String(method.to_string())),
    }
}

/// The error a panicking handler answers with.
pub fn panicked(method: &str, payload: &(dyn std::any::Any + Send)) -> Error {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Error {
        code: ErrorCode::InternalError,
        message: format!("internal error: the handler for {method} panicked: {what}").into(),
        data: None,
    }
}
