//! The HTTP side of `nxops cache serve` (see the module doc of `team_cache` for the API): axum on
//! tokio through axum-server (HTTP/1.1 and HTTP/2, in the clear or over rustls when given a
//! certificate and key), bodies streamed both ways one chunk at a time, and a graceful shutdown
//! that lets requests in flight (uploads included) finish.

use std::io;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_server::tls_rustls::RustlsConfig;
use futures_util::StreamExt;

use super::artifact::Footer;
use super::config::ServeConfig;
use super::counters::{Counters, TokenCounters, add};
use super::policy::Policy;
use super::stalled_writes::StallAcceptor;
use super::store::{CommitError, Opened, Reading, Source, Store};
use super::tokens::{Access, Token, Tokens};

/// Bytes read from the store per step of a download.
const CHUNK: usize = 64 * 1024;

pub struct Server {
    pub store: Arc<Store>,
    pub policy: Policy,
    pub tokens: Tokens,
    pub max_artifact_size: u64,
    pub client_timeout: std::time::Duration,
    pub rules: super::policy::Rules,
    pub counters: Counters,
}

impl Server {
    /// Opens the index of `store` (opened and checked by the caller) and starts the policy thread
    /// on `runtime`.
    pub fn new(config: &ServeConfig, store: Arc<Store>, runtime: tokio::runtime::Handle) -> io::Result<Arc<Server>> {
        let counters = Counters::new(&config.tokens);
        let policy = Policy::start(&config.index, store.clone(), runtime, config.rules, counters.evictions.clone())
            .map_err(|e| io::Error::other(format!("the index {}: {e}", config.index.display())))?;
        Ok(Arc::new(Server {
            store,
            policy,
            tokens: config.tokens.clone(),
            max_artifact_size: config.max_artifact_size,
            client_timeout: config.client_timeout,
            rules: config.rules,
            counters,
        }))
    }
}

pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/v1/cache/{hash}", get(get_artifact).put(put_artifact))
        .route("/metrics", get(metrics))
        .route("/v1/stats", get(stats))
        .layer(DefaultBodyLimit::disable())
        .with_state(server)
}

/// Serves on `listener` until `shutdown` completes, then finishes the requests in flight.
/// `tls` (from [`load_tls`]) makes it HTTPS; both speak HTTP/1.1 and HTTP/2.
pub async fn serve(
    server: Arc<Server>,
    listener: std::net::TcpListener,
    tls: Option<RustlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(None);
    });
    let accept = StallAcceptor { limit: server.client_timeout, cut: server.counters.stalled.clone() };
    let app = router(server).into_make_service();
    match tls {
        Some(tls) => {
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(accept);
            let mut http = axum_server::from_tcp(listener)?.acceptor(acceptor).handle(handle);
            bound_buffers(http.http_builder());
            http.serve(app).await
        }
        None => {
            let mut http = axum_server::from_tcp(listener)?.acceptor(accept).handle(handle);
            bound_buffers(http.http_builder());
            http.serve(app).await
        }
    }
}

/// What one HTTP/1 connection may buffer each way (hyper's default is ~400 KB, and a fast upload
/// fills it: with the upload queue's chunks cut from it, 16 uploads beside 16 downloads peaked at
/// 66.8 MB, 35.6 MB with this bound). An HTTP/2 stream is bounded by its flow-control window.
const CONNECTION_BUFFER: usize = 64 * 1024;
const HTTP2_STREAM_WINDOW: u32 = 256 * 1024;
const HTTP2_CONNECTION_WINDOW: u32 = 1024 * 1024;

fn bound_buffers(http: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>) {
    http.http1().max_buf_size(CONNECTION_BUFFER);
    http.http2()
        .initial_stream_window_size(HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW);
}

/// The certificate chain and private key (PEM files) for HTTPS.
pub async fn load_tls(tls: &super::config::TlsFiles) -> io::Result<RustlsConfig> {
    RustlsConfig::from_pem_file(&tls.cert, &tls.key).await
}

/// A refusal: its status and a one-line reason for the client's log.
fn refuse(status: StatusCode, reason: &str) -> Response {
    let mut response = (status, format!("nxops cache serve: {reason}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

async fn metrics(State(server): State<Arc<Server>>) -> Response {
    let mut response = server.counters.render().into_response();
    let kind = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    response.headers_mut().insert(header::CONTENT_TYPE, kind);
    response
}

/// `GET /v1/stats` (nxops's own, beside Nx's API): what is stored under the token's prefix, the
/// largest artifacts there, and every token's counts since the server started.
async fn stats(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let (token, _) = match authorize(&server, &headers, Access::Read) {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let Some(report) = server.policy.report(&token.prefix).await else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the index is busy; try again");
    };
    let c = &server.counters;
    let largest: Vec<_> = report
        .largest
        .iter()
        .map(|(key, size, read_ms)| serde_json::json!({"hash": &key[token.prefix.len()..], "bytes": size, "readMs": read_ms}))
        .collect();
    let body = serde_json::json!({
        "prefix": token.prefix,
        "artifacts": report.artifacts,
        "bytes": report.bytes,
        "maxSize": server.rules.max_size,
        "maxAgeMs": server.rules.max_age.as_millis() as u64,
        "largest": largest,
        "evicted": {"artifacts": c.evictions.artifacts.load(std::sync::atomic::Ordering::Relaxed),
                    "bytes": c.evictions.bytes.load(std::sync::atomic::Ordering::Relaxed)},
        "damaged": c.damaged.load(std::sync::atomic::Ordering::Relaxed),
        "tokens": c.per_token_json(),
    });
    axum::Json(body).into_response()
}

/// The request's token and its counters, if it may do `needed`.
fn authorize<'s>(
    server: &'s Server,
    headers: &HeaderMap,
    needed: Access,
) -> Result<(&'s Token, &'s TokenCounters), Response> {
    let presented =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some((index, token)) = presented.and_then(|p| server.tokens.check(p.trim())) else {
        add(&server.counters.unauthorized, 1);
        return Err(refuse(StatusCode::UNAUTHORIZED, "a valid bearer token is required"));
    };
    let counters = server.counters.of(index);
    if needed == Access::ReadWrite && token.access != Access::ReadWrite {
        add(&counters.refused, 1);
        return Err(refuse(StatusCode::FORBIDDEN, &format!("token {:?} may only read", token.name)));
    }
    Ok((token, counters))
}

/// Nx's hashes are digits; any 1 to 128 ASCII letters and digits are taken, nothing else.
fn check_hash(hash: &str) -> Result<(), Response> {
    if (1..=128).contains(&hash.len()) && hash.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(refuse(StatusCode::BAD_REQUEST, "the hash must be 1 to 128 letters and digits"))
    }
}

async fn get_artifact(State(server): State<Arc<Server>>, Path(hash): Path<String>, headers: HeaderMap) -> Response {
    let (token, counters) = match authorize(&server, &headers, Access::Read) {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    if let Err(refusal) = check_hash(&hash) {
        add(&counters.refused, 1);
        return refusal;
    }
    let key = format!("{}{hash}", token.prefix);
    let reading = server.store.reading(&key);
    match server.store.open_checked(&key).await {
        Ok(Opened::Missing) => {
            add(&counters.misses, 1);
            refuse(StatusCode::NOT_FOUND, "no artifact for this hash")
        }
        Ok(Opened::Damaged(damage)) => {
            // Checked before the status is sent: Nx 24 fails the whole run when a body is cut
            // ("Failed to read remote cache response body"), so damage must be a 404 (a miss,
            // and the task runs), never a cut 200.
            tracing::warn!(target: "nxops", "cache serve: {key} is damaged ({damage}); moved aside, served as a miss");
            damaged(&server, &key).await;
            add(&counters.misses, 1);
            refuse(StatusCode::NOT_FOUND, "no artifact for this hash")
        }
        Ok(Opened::Sound(source, footer)) => {
            add(&counters.hits, 1);
            add(&counters.bytes_served, footer.size);
            server.policy.read(&key);
            let size = footer.size;
            let serving = Serving {
                server: server.clone(),
                key,
                source,
                footer,
                hasher: blake3::Hasher::new(),
                left: size,
                held: None,
                done: false,
                _reading: reading,
            };
            let body = Body::from_stream(futures_util::stream::unfold(serving, Serving::next));
            let mut response = Response::new(body);
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            response
        }
        Err(err) => {
            // Nx 24 fails the run on any answer but 200 and 404 ("Misconfigured remote cache
            // endpoint", seen with 24.0.6), so a store that cannot be read is a miss: the task
            // runs, and the build goes on.
            tracing::error!(target: "nxops", "cache serve: failed to read {key}: {err}; served as a miss");
            add(&server.counters.store_errors, 1);
            add(&counters.misses, 1);
            refuse(StatusCode::NOT_FOUND, "the store could not be read; answered as a miss")
        }
    }
}

async fn damaged(server: &Server, key: &str) {
    add(&server.counters.damaged, 1);
    server.policy.removed(key);
    if let Err(err) = server.store.set_aside(key).await {
        tracing::error!(target: "nxops", "cache serve: failed to move damaged {key} aside: {err}");
    }
}

/// A download in progress, checked again as it streams: one chunk is held back until the bytes are
/// known to match their digest, so an object changed after its check never reaches a client whole.
struct Serving {
    server: Arc<Server>,
    key: String,
    source: Source,
    footer: Footer,
    hasher: blake3::Hasher,
    left: u64,
    held: Option<Bytes>,
    done: bool,
    /// Keeps the artifact from eviction until the download ends.
    _reading: Reading,
}

impl Serving {
    async fn next(mut self) -> Option<(io::Result<Bytes>, Serving)> {
        while !self.done {
            if self.left == 0 {
                self.done = true;
                if *self.hasher.finalize().as_bytes() == self.footer.digest {
                    return self.held.take().map(|last| (Ok(last), self));
                }
                return Some((Err(self.damage("the bytes do not match their digest").await), self));
            }
            let mut chunk = match self.source.next_chunk(CHUNK.min(self.left as usize)).await {
                Ok(None) => {
                    return Some((Err(self.damage("the object is shorter than its footer says").await), self.ended()));
                }
                Ok(Some(chunk)) => chunk,
                Err(err) => return Some((Err(err), self.ended())),
            };
            if chunk.len() as u64 > self.left {
                // A stream past the artifact's bytes (its footer): only the bytes are served.
                chunk.truncate(self.left as usize);
            }
            self.left -= chunk.len() as u64;
            self.hasher.update(&chunk);
            if let Some(previous) = self.held.replace(chunk) {
                return Some((Ok(previous), self));
            }
        }
        None
    }

    fn ended(mut self) -> Serving {
        self.done = true;
        self
    }

    async fn damage(&self, what: &str) -> io::Error {
        tracing::warn!(target: "nxops", "cache serve: {} is damaged ({what}); download cut, moved aside", self.key);
        damaged(&self.server, &self.key).await;
        io::Error::other(format!("{}: {what}", self.key))
    }
}

async fn put_artifact(
    State(server): State<Arc<Server>>,
    Path(hash): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (token, counters) = match authorize(&server, &headers, Access::ReadWrite) {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    match store_upload(&server, token, &hash, &headers, body).await {
        Ok(stored) => {
            add(&counters.uploads, 1);
            add(&counters.bytes_stored, stored);
            StatusCode::OK.into_response()
        }
        Err(refusal) => {
            add(&counters.refused, 1);
            refusal
        }
    }
}

/// Stores the upload for `token`; its size once stored.
async fn store_upload(
    server: &Server,
    token: &Token,
    hash: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<u64, Response> {
    check_hash(hash)?;
    let length = content_length(headers, server.max_artifact_size)?;
    let key = format!("{}{hash}", token.prefix);
    let exists = server.store.exists(&key).await.map_err(|e| failed(server, "read", &key, e))?;
    if exists {
        return Err(refuse(StatusCode::CONFLICT, "this hash is already stored"));
    }
    let mut upload = server.store.upload(&key, length).await.map_err(|e| failed(server, "write", &key, e))?;
    let mut chunks = body.into_data_stream();
    loop {
        let Ok(next) = tokio::time::timeout(server.client_timeout, chunks.next()).await else {
            let reason = format!("the upload sent nothing for {:?}", server.client_timeout);
            return Err(refuse(StatusCode::REQUEST_TIMEOUT, &reason));
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|_| refuse(StatusCode::BAD_REQUEST, "the upload ended before its Content-Length"))?;
        if upload.written() + chunk.len() as u64 > length {
            return Err(refuse(StatusCode::BAD_REQUEST, "the body is longer than its Content-Length"));
        }
        upload.write(chunk).await.map_err(|e| failed(server, "write", &key, e))?;
    }
    if upload.written() != length {
        return Err(refuse(StatusCode::BAD_REQUEST, "the body is shorter than its Content-Length"));
    }
    match upload.commit(&server.store).await {
        Ok(()) => {
            server.policy.stored(&key, length);
            Ok(length)
        }
        Err(CommitError::Exists) => Err(refuse(StatusCode::CONFLICT, "this hash is already stored")),
        Err(CommitError::Io(err)) => Err(failed(server, "write", &key, err)),
    }
}

fn content_length(headers: &HeaderMap, limit: u64) -> Result<u64, Response> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return Err(refuse(StatusCode::LENGTH_REQUIRED, "an upload needs a Content-Length"));
    };
    let length: u64 = value
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "Content-Length is not a number"))?;
    if length > limit {
        let reason = format!("{length} bytes is more than the server's maxArtifactSize ({limit} bytes)");
        return Err(refuse(StatusCode::PAYLOAD_TOO_LARGE, &reason));
    }
    Ok(length)
}

fn failed(server: &Server, what: &str, key: &str, err: io::Error) -> Response {
    tracing::error!(target: "nxops", "cache serve: failed to {what} {key}: {err}");
    add(&server.counters.store_errors, 1);
    // 403, not 503: Nx 24 fails the task on a 5xx answer to an upload (seen with 24.0.6), and takes
    // 403 as "the server does not store this", which a store that failed is.
    refuse(StatusCode::FORBIDDEN, &format!("the store could not {what} the artifact; it is not stored"))
}
