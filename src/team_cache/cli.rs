//! `nxops cache serve` and `nxops cache token`: what the CLI runs for the team's cache (the
//! arguments come parsed; nothing here knows clap).

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::config::ServeConfig;
use super::server::{self, Server};
use super::tokens;
use crate::input_error::ConfigError;
use crate::output::{Format, Report, emit};

/// Loads the file, opens the store and serves until SIGTERM or SIGINT; with `check`, stops after
/// the store opened. Bad input (the file, the store folder, the address) is a [`ConfigError`].
pub fn serve(file: &Path, listen: Option<&str>, check: bool, format: Format) -> anyhow::Result<()> {
    let config = ServeConfig::load(file, listen)?;
    let server = Server::new(&config).map_err(|e| ConfigError::file(file, format!("store: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let tls = match &config.tls {
            Some(files) => Some(server::load_tls(files).await.map_err(|e| {
                let location = format!("{}: tls", file.display());
                ConfigError { location, problem: format!("{} and {}: {e}", files.cert.display(), files.key.display()) }
            })?),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let report = |listen: String, serving| Listening {
            config: config.file.clone(),
            url: format!("{scheme}://{listen}"),
            listen,
            store: server.store.root().into(),
            serving,
        };
        if check {
            return emit(&report(config.listen.to_string(), false), format);
        }
        let listener = std::net::TcpListener::bind(config.listen).map_err(|e| ConfigError {
            location: "listen".into(),
            problem: format!("cannot listen on {}: {e}", config.listen),
        })?;
        emit(&report(listener.local_addr()?.to_string(), true), format)?;
        std::io::stdout().flush()?;
        server::serve(server, listener, tls, stop_signal()).await?;
        anyhow::Ok(())
    })
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!(target: "nxops", "cache serve: stopping; finishing the requests in flight");
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listening {
    config: std::path::PathBuf,
    listen: String,
    url: String,
    store: std::path::PathBuf,
    serving: bool,
}

impl Report for Listening {
    fn human(&self) -> String {
        let what = if self.serving { "serving Nx's remote cache at" } else { "configuration sound; would serve at" };
        format!("nxops cache serve: {what} {} from {}\n", self.url, self.store.display())
    }
}

/// Prints a new token and its entry for the server's file.
pub fn token(name: &str, access: tokens::Access, prefix: &str, format: Format) -> anyhow::Result<()> {
    super::config::check_prefix(prefix)
        .map_err(|p| ConfigError { location: "--prefix".into(), problem: format!("{prefix:?} {p}") })?;
    let token = tokens::generate()?;
    let entry = Entry { name: name.into(), sha256: hex::encode(tokens::sha256(&token)), access, prefix: prefix.into() };
    emit(&NewToken { token, entry }, format)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    name: String,
    sha256: String,
    access: tokens::Access,
    #[serde(skip_serializing_if = "String::is_empty")]
    prefix: String,
}

#[derive(Serialize)]
struct NewToken {
    token: String,
    entry: Entry,
}

impl Report for NewToken {
    fn human(&self) -> String {
        let entry = serde_json::to_string(&self.entry).unwrap_or_default();
        format!(
            "Token (give it to the client as NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN; it is shown only now):\n  {}\n\nEntry for the server's \"tokens\":\n  {entry}\n",
            self.token
        )
    }
}
