//! `nxops cache serve` and `nxops cache token`: what the CLI runs for the team's cache (the
//! arguments come parsed; nothing here knows clap).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::config::ServeConfig;
use super::server::{self, Server};
use super::store::Store;
use super::tokens;
use crate::input_error::ConfigError;
use crate::output::{Format, Report, emit};

/// Loads the file, opens the store and serves until SIGTERM or SIGINT; with `check`, stops after
/// the store opened. Bad input (the file, the store folder, the address) is a [`ConfigError`].
pub fn serve(file: &Path, listen: Option<&str>, check: bool, format: Format) -> anyhow::Result<()> {
    let config = ServeConfig::load(file, listen)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let store_error = |e: std::io::Error| ConfigError::file(file, format!("store: {e}"));
    let store = Arc::new(Store::open(&config.store).map_err(store_error)?);
    runtime.block_on(store.check()).map_err(store_error)?;
    let server = Server::new(&config, store, runtime.handle().clone()).map_err(store_error)?;
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
            store: server.store.describe(),
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
    store: String,
    serving: bool,
}

impl Report for Listening {
    fn human(&self) -> String {
        let what = if self.serving { "serving Nx's remote cache at" } else { "configuration sound; would serve at" };
        format!("nxops cache serve: {what} {} from {}\n", self.url, self.store)
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

/// Where `cache stats --remote` asks: Nx's own variables for the remote cache.
pub struct Remote {
    pub server: String,
    pub token: String,
    /// `NODE_TLS_REJECT_UNAUTHORIZED=0`, as Nx's client honours it: accept any certificate.
    pub insecure: bool,
}

pub const SERVER_VAR: &str = "NX_SELF_HOSTED_REMOTE_CACHE_SERVER";
pub const TOKEN_VAR: &str = "NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN";

impl Remote {
    /// From the environment Nx itself reads; a missing variable is bad input naming it.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Remote, ConfigError> {
        let need = |name: &str| {
            get(name).filter(|v| !v.is_empty()).ok_or_else(|| ConfigError {
                location: name.into(),
                problem: "is not set: cache stats --remote asks the server Nx uses, named by Nx's own variables".into(),
            })
        };
        let insecure = get("NODE_TLS_REJECT_UNAUTHORIZED").as_deref() == Some("0");
        Ok(Remote { server: need(SERVER_VAR)?.trim_end_matches('/').to_string(), token: need(TOKEN_VAR)?, insecure })
    }
}

/// `cache stats --remote`: the server's figures, with the largest artifacts tied to their Nx task
/// where this checkout's Nx database (`nx_db`) knows the hash.
pub fn remote_stats(remote: &Remote, nx_db: Option<&Path>, format: Format) -> anyhow::Result<()> {
    let url = format!("{}/v1/stats", remote.server);
    let tls = ureq::tls::TlsConfig::builder().disable_verification(remote.insecure).build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(std::time::Duration::from_secs(15)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut answer = agent
        .get(&url)
        .header("Authorization", format!("Bearer {}", remote.token))
        .call()
        .map_err(|e| anyhow::anyhow!("failed to reach the team cache at {url}: {e}"))?;
    let status = answer.status().as_u16();
    let text = answer.body_mut().read_to_string().unwrap_or_default();
    if status == 401 || status == 403 {
        return Err(
            ConfigError { location: TOKEN_VAR.into(), problem: format!("refused by {url}: {}", text.trim()) }.into()
        );
    }
    anyhow::ensure!(status == 200, "{url} answered {status}: {}", text.trim());
    let mut stats: RemoteStats = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{url} did not answer nxops's stats ({e}): is it nxops cache serve?"))?;
    stats.server = remote.server.clone();
    if let Some(db) = nx_db {
        name_tasks(&mut stats, db);
    }
    emit(&stats, format)
}

/// Adds `project:target` to the largest artifacts whose hash the Nx database has seen run.
fn name_tasks(stats: &mut RemoteStats, db: &Path) {
    let Ok(conn) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return;
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(2));
    let Ok(mut stmt) = conn.prepare("SELECT project, target FROM task_details WHERE hash = ?1") else { return };
    for artifact in &mut stats.largest {
        let found =
            stmt.query_row([&artifact.hash], |r| Ok(format!("{}:{}", r.get::<_, String>(0)?, r.get::<_, String>(1)?)));
        artifact.task = found.ok();
    }
}

#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemoteStats {
    #[serde(default)]
    server: String,
    prefix: String,
    artifacts: u64,
    bytes: u64,
    max_size: u64,
    max_age_ms: u64,
    largest: Vec<RemoteArtifact>,
    evicted: Evicted,
    damaged: u64,
    tokens: Vec<TokenFigures>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemoteArtifact {
    hash: String,
    bytes: u64,
    read_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    task: Option<String>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
struct Evicted {
    artifacts: u64,
    bytes: u64,
}

#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenFigures {
    name: String,
    hits: u64,
    misses: u64,
    uploads: u64,
    refused: u64,
    served_bytes: u64,
    stored_bytes: u64,
}

impl Report for RemoteStats {
    fn human(&self) -> String {
        use crate::config::units::{format_duration, format_size};
        use crate::output::Section;
        let (hits, misses) = self.tokens.iter().fold((0, 0), |(h, m), t| (h + t.hits, m + t.misses));
        let served: u64 = self.tokens.iter().map(|t| t.served_bytes).sum();
        let rate = (hits * 100).checked_div(hits + misses).map_or("no downloads yet".to_string(), |r| format!("{r}%"));
        let mut out = String::new();
        let scope = if self.prefix.is_empty() { String::new() } else { format!(" (prefix {})", self.prefix) };
        Section::new(&format!("Team cache at {}{scope}", self.server))
            .row(
                "artifacts",
                format!("{} ({} of {})", self.artifacts, format_size(self.bytes), format_size(self.max_size)),
            )
            .row("max age", format_duration(std::time::Duration::from_millis(self.max_age_ms)))
            .row("hit rate", format!("{rate} ({hits} hits, {misses} misses since the server started)"))
            .row("served", format!("{} that Nx did not rebuild", format_size(served)))
            .row("evicted", format!("{} ({})", self.evicted.artifacts, format_size(self.evicted.bytes)))
            .row("damaged", format!("{} (answered as misses and set aside)", self.damaged))
            .render(&mut out);
        let mut largest = Section::new("Largest");
        for a in &self.largest {
            largest.push(&a.hash, format!("{:>9}  {}", format_size(a.bytes), a.task.as_deref().unwrap_or("")));
        }
        largest.render(&mut out);
        let mut tokens = Section::new("Tokens");
        for t in &self.tokens {
            let figures = format!(
                "{} hits, {} misses, {} uploads ({}), {} refused",
                t.hits,
                t.misses,
                t.uploads,
                format_size(t.stored_bytes),
                t.refused
            );
            tokens.push(&t.name, figures);
        }
        tokens.render(&mut out);
        out
    }
}
