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
    if check {
        let report = Listening {
            config: config.file.clone(),
            listen: config.listen.to_string(),
            store: server.store.root().into(),
            serving: false,
        };
        return emit(&report, format);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| ConfigError {
            location: "listen".into(),
            problem: format!("cannot listen on {}: {e}", config.listen),
        })?;
        let address = listener.local_addr()?.to_string();
        let report = Listening {
            config: config.file.clone(),
            listen: address,
            store: server.store.root().into(),
            serving: true,
        };
        emit(&report, format)?;
        std::io::stdout().flush()?;
        server::serve(server, listener, stop_signal()).await?;
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
    store: std::path::PathBuf,
    serving: bool,
}

impl Report for Listening {
    fn human(&self) -> String {
        let what = if self.serving { "serving Nx's remote cache at" } else { "configuration sound; would serve at" };
        format!("nxops cache serve: {what} http://{} from {}\n", self.listen, self.store.display())
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
