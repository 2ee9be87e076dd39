//! The `LanguageServer` of one connection: the LSP lifecycle, workspace folders
//! as workspaces, and every `nxops/*` method routed to `methods::call`.

use std::path::PathBuf;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::{
    DidChangeWorkspaceFoldersParams, InitializeParams, InitializeResult, InitializedParams, OneOf, ServerCapabilities,
    ServerInfo, WorkspaceFoldersServerCapabilities, WorkspaceServerCapabilities,
};
use tower_lsp_server::{ClientSocket, LanguageServer, LspService};

use super::core::{Core, EVENTS};
use super::methods::{self, CallCtx, METHODS};
use super::progress::Progress;
use crate::config::{self, FlagValue};
use crate::rpc::errors::{self, RpcError};
use crate::rpc::outbox::Outbox;

pub struct Backend {
    core: Core,
    session: u64,
    outbox: Outbox,
}

/// Builds the service for one connection, with every nxops method registered.
pub fn build(core: Core, session: u64, outbox: Outbox) -> (LspService<Backend>, ClientSocket) {
    let mut builder = LspService::build(move |_client| Backend { core, session, outbox });
    for def in METHODS {
        let name = def.name;
        builder = builder.custom_method(name, move |backend: &Backend, params: Value| backend.call(name, params));
    }
    builder.finish()
}

impl Backend {
    fn call(&self, method: &'static str, params: Value) -> BoxFuture<'static, Result<Value>> {
        let ctx = CallCtx {
            core: self.core.clone(),
            session: self.session,
            progress: Progress::for_request(&params, &self.outbox),
        };
        Box::pin(async move { methods::call(&ctx, method, params).await.map_err(errors::to_jsonrpc) })
    }

    fn attach_folder(&self, folder: PathBuf) {
        if let Err(err) = self.core.attach(&folder) {
            tracing::warn!(target: "nxops::sidecar", "not attaching {}: {err}", folder.display());
        }
    }
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let (name, version) = params.client_info.map(|c| (Some(c.name), c.version)).unwrap_or_default();
        self.core.identify_session(self.session, name, version);
        if let Some(options) = &params.initialization_options {
            let overrides = overrides(options).map_err(errors::to_jsonrpc)?;
            self.core.set_overrides(overrides);
        }
        #[allow(deprecated)]
        let folders: Vec<PathBuf> = match (params.workspace_folders, params.root_uri, params.root_path) {
            (Some(folders), _, _) if !folders.is_empty() => {
                folders.iter().filter_map(|f| f.uri.to_file_path().map(|p| p.into_owned())).collect()
            }
            (_, Some(uri), _) => uri.to_file_path().map(|p| vec![p.into_owned()]).unwrap_or_default(),
            (_, _, Some(path)) => vec![PathBuf::from(path)],
            _ => Vec::new(),
        };
        for folder in folders {
            self.attach_folder(folder);
        }
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                workspace: Some(WorkspaceServerCapabilities {
                    workspace_folders: Some(WorkspaceFoldersServerCapabilities {
                        supported: Some(true),
                        change_notifications: Some(OneOf::Left(true)),
                    }),
                    file_operations: None,
                }),
                experimental: Some(json!({
                    "nxops": {
                        "methods": METHODS.iter().map(|m| m.name).collect::<Vec<_>>(),
                        "events": EVENTS,
                        "workspaces": self.core.workspaces(),
                    }
                })),
                ..ServerCapabilities::default()
            },
            server_info: Some(ServerInfo { name: "nxops".into(), version: Some(env!("CARGO_PKG_VERSION").into()) }),
            offset_encoding: None,
        })
    }

    async fn initialized(&self, _: InitializedParams) {}

    async fn shutdown(&self) -> Result<()> {
        // Teardown happens when the connection ends (`exit` or end of input), so that
        // a client that sends `shutdown` and then keeps asking still gets answers.
        Ok(())
    }

    async fn did_change_workspace_folders(&self, params: DidChangeWorkspaceFoldersParams) {
        for removed in params.event.removed {
            if let Some(path) = removed.uri.to_file_path()
                && let Err(err) = self.core.detach(&path)
            {
                tracing::warn!(target: "nxops::sidecar", "not detaching {}: {err}", path.display());
            }
        }
        for added in params.event.added {
            if let Some(path) = added.uri.to_file_path() {
                self.attach_folder(path.into_owned());
            }
        }
    }
}

/// `initializationOptions`: `{"settings": {"cache": {"maxSize": "2GB"}}}` or the
/// flat `{"settings": {"cache.maxSize": "2GB"}}`; the same names as everywhere.
fn overrides(options: &Value) -> std::result::Result<Vec<FlagValue>, RpcError> {
    let bad = |message: String| RpcError::invalid_params("initialize", format!("initializationOptions.{message}"));
    let Some(settings) = options.get("settings") else {
        let keys: Vec<&String> = options.as_object().map(|o| o.keys().collect()).unwrap_or_default();
        return match keys.as_slice() {
            [] => Ok(Vec::new()),
            some => Err(bad(format!("{}: unknown option (expected \"settings\")", some[0]))),
        };
    };
    let Some(map) = settings.as_object() else { return Err(bad("settings: must be an object".into())) };
    let mut flags = Vec::new();
    for (key, value) in map {
        match value {
            Value::Object(fields) => {
                for (field, leaf) in fields {
                    flags.push(
                        flag(&format!("{key}.{field}"), leaf)
                            .map_err(|m| bad(format!("settings.{key}.{field}: {m}")))?,
                    );
                }
            }
            leaf => flags.push(flag(key, leaf).map_err(|m| bad(format!("settings.{key}: {m}")))?),
        }
    }
    config::Settings::resolve(None, &crate::environment::Environment::default(), &flags).map_err(|e| {
        let key = e.location.strip_prefix("initializationOptions ").unwrap_or(&e.location).to_string();
        bad(format!("settings.{key}: {}", e.problem))
    })?;
    Ok(flags)
}

fn flag(key: &str, value: &Value) -> std::result::Result<FlagValue, String> {
    config::lookup(key)?;
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => return Err(format!("{other} is not a valid value")),
    };
    Ok(FlagValue { key: key.to_string(), value: text, flag: format!("initializationOptions {key}") })
}
