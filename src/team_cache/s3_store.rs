//! Artifacts in a bucket of any S3-compatible service (tested with Garage): `<prefix><hash>`, each
//! holding the artifact's bytes and its [`Footer`], the same stored form as the folder store's.
//! The client is the AWS SDK for Rust on smithy's hyper client (rustls with ring).
//!
//! # Invariants
//! - An artifact appears only complete: an upload is one streaming `PutObject` whose
//!   `Content-Length` is the artifact's plus its footer's, so S3 stores nothing unless every byte
//!   arrived; an upload that ends early is dropped with its request, and the object never exists.
//!   `If-None-Match: *` asks the service not to replace a stored artifact (AWS S3 honours it; Garage
//!   2.5 ignores it, so there the server's `HeadObject` before the upload is the check, and two
//!   uploads of one hash at the same moment can both succeed, the later replacing the earlier).
//! - What is served is checked against its footer before the status is sent. Reading every object
//!   twice would halve the throughput, so the store remembers, per key, the entity tag and footer of
//!   the object it last checked or uploaded itself ([`VERIFIED_MAX`] keys at most), and fetches
//!   such a key with `If-Match: <etag>`: an object changed in the bucket since (another tag) is
//!   refused by the service and checked again in full. Every download is also hashed as it streams
//!   and cut before its last chunk if the digest is wrong (see `server::Serving`).
//! - A key never checked (after a restart, or written by another server) is read in full once
//!   before its status is sent: into memory up to [`SMALL`] bytes (then served from there), else
//!   hashed as it streams by and fetched again with `If-Match`.
//! - Damaged objects are copied to `.damaged/<key>.<ms>` and deleted, so the hash reads as a miss.
//! - Keys are a checked prefix and a checked hash, and the store's own keys start with `.`, which
//!   neither may: nothing outside the artifacts is ever deleted.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use axum::body::Bytes;
use tokio::sync::mpsc;

use super::artifact::{Damage, FOOTER_LEN, Footer};
use super::config::S3Config;
use super::store::{Opened, Source};

/// Objects up to this size that the store has not checked yet are read into memory once and served
/// from there; larger ones are read twice (checked, then streamed).
pub const SMALL: u64 = 1 << 20;
/// Keys whose check the store remembers at most; past this, one is forgotten for each new one.
pub const VERIFIED_MAX: usize = 100_000;
/// Chunks queued between a client's upload and the request to the store.
const UPLOAD_QUEUE: usize = 4;

pub struct S3Store {
    client: Client,
    bucket: String,
    endpoint: String,
    verified: Mutex<HashMap<String, Checked>>,
}

/// An object the store has checked (or written), by its entity tag.
#[derive(Clone)]
struct Checked {
    etag: String,
    footer: Footer,
}

impl S3Store {
    pub fn new(config: &S3Config) -> S3Store {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(30))
            .build();
        let credentials =
            Credentials::new(&config.access_key_id, &config.secret_access_key, None, None, "nxops cache serve");
        let sdk = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(timeouts)
            // A cache answers at once or not at all (a miss): one retry, no more.
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(2))
            .endpoint_url(&config.endpoint)
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            // Paths (`host/bucket/key`), not virtual hosts: what self-hosted services serve.
            .force_path_style(true)
            // Our own digest covers every byte; CRC trailers would need aws-chunked bodies.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        S3Store {
            client: Client::from_conf(sdk),
            bucket: config.bucket.clone(),
            endpoint: config.endpoint.clone(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Where the store is, for messages: `<endpoint> bucket <bucket>`.
    pub fn describe(&self) -> String {
        format!("{} bucket {}", self.endpoint, self.bucket)
    }

    /// Whether the bucket exists and the credentials may use it (for `--check`).
    pub async fn check(&self) -> io::Result<()> {
        let listed = self.client.list_objects_v2().bucket(&self.bucket).max_keys(1).send().await;
        listed.map(drop).map_err(|e| self.error("list", "", e))
    }

    /// The artifact under `key`, checked (see the module doc).
    pub async fn open(&self, key: &str) -> io::Result<Opened> {
        let known = self.verified.lock().expect("the verified map").get(key).cloned();
        if let Some(checked) = known {
            let mut get = self.client.get_object().bucket(&self.bucket).key(key).if_match(&checked.etag);
            if checked.footer.size > 0 {
                get = get.range(format!("bytes=0-{}", checked.footer.size - 1));
            }
            match get.send().await {
                Ok(out) if checked.footer.size == 0 => {
                    drop(out);
                    return Ok(Opened::Sound(Source::Memory(None), checked.footer));
                }
                Ok(out) => return Ok(Opened::Sound(Source::Stream(out.body), checked.footer)),
                Err(err) if status(&err) == Some(404) => {
                    self.forget(key);
                    return Ok(Opened::Missing);
                }
                // Changed since it was checked: check it again.
                Err(err) if status(&err) == Some(412) => self.forget(key),
                Err(err) => return Err(self.error("read", key, err)),
            }
        }
        self.check_in_full(key).await
    }

    async fn check_in_full(&self, key: &str) -> io::Result<Opened> {
        let out = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => out,
            Err(err) if status(&err) == Some(404) => return Ok(Opened::Missing),
            Err(err) => return Err(self.error("read", key, err)),
        };
        let stored = out.content_length.unwrap_or(0).max(0) as u64;
        let etag = out.e_tag.clone();
        let mut body = out.body;
        if stored < FOOTER_LEN {
            return Ok(Opened::Damaged(Damage::NoFooter(stored)));
        }
        let payload = stored - FOOTER_LEN;
        let mut hasher = blake3::Hasher::new();
        let mut kept = Vec::with_capacity(if stored <= SMALL { stored as usize } else { 0 });
        // The last FOOTER_LEN bytes seen, as they stream by.
        let mut tail: Vec<u8> = Vec::with_capacity(2 * FOOTER_LEN as usize);
        let mut seen = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| io::Error::other(format!("{}: reading {key}: {e}", self.describe())))?;
            let hashed = chunk.len().min(payload.saturating_sub(seen) as usize);
            hasher.update(&chunk[..hashed]);
            if stored <= SMALL {
                kept.extend_from_slice(&chunk);
            }
            tail.extend_from_slice(&chunk);
            if tail.len() > FOOTER_LEN as usize {
                tail.drain(..tail.len() - FOOTER_LEN as usize);
            }
            seen += chunk.len() as u64;
        }
        if seen != stored {
            return Ok(Opened::Damaged(Damage::WrongSize { said: payload, stored: seen.saturating_sub(FOOTER_LEN) }));
        }
        let footer = match Footer::decode(&tail, stored) {
            Ok(footer) => footer,
            Err(damage) => return Ok(Opened::Damaged(damage)),
        };
        if *hasher.finalize().as_bytes() != footer.digest {
            return Ok(Opened::Damaged(Damage::WrongDigest));
        }
        if let Some(etag) = etag {
            self.remember(key, Checked { etag, footer });
        }
        if stored <= SMALL {
            kept.truncate(payload as usize);
            return Ok(Opened::Sound(Source::Memory(Some(Bytes::from(kept))), footer));
        }
        // Large: fetched again, streamed. Gone or changed in between reads as a miss.
        Box::pin(self.open(key)).await
    }

    fn remember(&self, key: &str, checked: Checked) {
        let mut verified = self.verified.lock().expect("the verified map");
        if verified.len() >= VERIFIED_MAX && !verified.contains_key(key) {
            let forgotten = verified.keys().next().cloned();
            if let Some(forgotten) = forgotten {
                verified.remove(&forgotten);
            }
        }
        verified.insert(key.to_string(), checked);
    }

    fn forget(&self, key: &str) {
        self.verified.lock().expect("the verified map").remove(key);
    }

    pub async fn exists(&self, key: &str) -> io::Result<bool> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(err) if status(&err) == Some(404) => Ok(false),
            Err(err) => Err(self.error("read", key, err)),
        }
    }

    /// Starts the upload of `length` bytes under `key`: one streaming `PutObject`.
    pub fn upload(&self, key: &str, length: u64) -> S3Upload {
        let (tx, rx) = mpsc::channel(UPLOAD_QUEUE);
        let body = ByteStream::from_body_1_x(Feed { rx, length: length + FOOTER_LEN });
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .content_type("application/octet-stream")
            .content_length((length + FOOTER_LEN) as i64)
            .body(body)
            .send();
        S3Upload {
            tx: Some(tx),
            put: Some(tokio::spawn(put)),
            hasher: blake3::Hasher::new(),
            written: 0,
            key: key.to_string(),
        }
    }

    /// Copies what is stored under `key` to `.damaged/` and deletes it, so the hash reads as a miss.
    pub async fn set_aside(&self, key: &str) -> io::Result<()> {
        self.forget(key);
        let stamp = super::folder_store::stamp_ms();
        let aside = format!(".damaged/{}.{stamp}", key.replace('/', "_"));
        let copied =
            self.client.copy_object().bucket(&self.bucket).copy_source(format!("{}/{key}", self.bucket)).key(&aside);
        match copied.send().await {
            Ok(_) => {}
            Err(err) if status(&err) == Some(404) => return Ok(()),
            Err(err) => {
                tracing::warn!(target: "nxops", "cache serve: failed to keep a copy of damaged {key}: {}", DisplayErrorContext(&err))
            }
        }
        self.remove(key).await
    }

    /// Deletes `key` (gone already is no error).
    pub async fn remove(&self, key: &str) -> io::Result<()> {
        self.forget(key);
        match self.client.delete_object().bucket(&self.bucket).key(key).send().await {
            Ok(_) => Ok(()),
            Err(err) if status(&err) == Some(404) => Ok(()),
            Err(err) => Err(self.error("delete", key, err)),
        }
    }

    /// Every artifact in the bucket (the store's own `.` keys left out): key, stored bytes, and its
    /// modification time in ms since the epoch.
    pub async fn list(&self) -> io::Result<Vec<(String, u64, i64)>> {
        let mut found = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("list", "", e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if key.starts_with('.') || key.split('/').any(|s| s.starts_with('.')) {
                    continue;
                }
                let at_ms = object.last_modified().and_then(|t| t.to_millis().ok()).unwrap_or(0);
                found.push((key.to_string(), object.size().unwrap_or(0).max(0) as u64, at_ms));
            }
        }
        Ok(found)
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        what: &str,
        key: &str,
        err: SdkError<E, HttpResponse>,
    ) -> io::Error {
        let code = err.code().map(|c| format!("{c}: ")).unwrap_or_default();
        let message = err.message().map(str::to_string).unwrap_or_else(|| DisplayErrorContext(&err).to_string());
        let what = if key.is_empty() { what.to_string() } else { format!("{what} {key}") };
        io::Error::other(format!("{}: {what}: {code}{message}", self.describe()))
    }
}

/// The HTTP status of a service's answer, if the error is one.
fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// An upload in progress; dropped without [`S3Upload::commit`], its request is dropped unfinished
/// and the service stores nothing.
pub struct S3Upload {
    tx: Option<mpsc::Sender<io::Result<Bytes>>>,
    put: Option<tokio::task::JoinHandle<PutResult>>,
    hasher: blake3::Hasher,
    written: u64,
    key: String,
}

type PutResult = Result<
    aws_sdk_s3::operation::put_object::PutObjectOutput,
    SdkError<aws_sdk_s3::operation::put_object::PutObjectError, HttpResponse>,
>;

/// Why an upload could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the hash is already stored")]
    Exists,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl S3Upload {
    pub async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        self.hasher.update(&chunk);
        self.written += chunk.len() as u64;
        self.send(chunk).await
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    async fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        let tx = self.tx.as_ref().expect("an upload is written until committed");
        if tx.send(Ok(chunk)).await.is_ok() {
            return Ok(());
        }
        // The request ended before its body: its own error says why.
        match self.finish().await {
            Err(PutError::Io(err)) => Err(err),
            _ => Err(io::Error::other(format!("the store ended the upload of {} early", self.key))),
        }
    }

    async fn finish(&mut self) -> Result<aws_sdk_s3::operation::put_object::PutObjectOutput, PutError> {
        self.tx = None;
        let put = self.put.take().expect("an upload finishes once");
        match put.await.map_err(io::Error::other)? {
            Ok(out) => Ok(out),
            Err(err) if status(&err) == Some(412) => Err(PutError::Exists),
            Err(err) => {
                let code = err.code().map(|c| format!("{c}: ")).unwrap_or_default();
                let message =
                    err.message().map(str::to_string).unwrap_or_else(|| DisplayErrorContext(&err).to_string());
                Err(PutError::Io(io::Error::other(format!("write {}: {code}{message}", self.key))))
            }
        }
    }

    /// Sends the footer and waits for the service to store the object.
    pub async fn commit(mut self, store: &S3Store) -> Result<(), PutError> {
        let footer = Footer { size: self.written, digest: *self.hasher.finalize().as_bytes() };
        self.send(Bytes::copy_from_slice(&footer.encode())).await?;
        let out = self.finish().await?;
        if let Some(etag) = out.e_tag {
            store.remember(&self.key, Checked { etag, footer });
        }
        Ok(())
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if let Some(put) = self.put.take() {
            put.abort();
        }
    }
}

/// The body of a streaming `PutObject`: what the client's upload sends, chunk by chunk.
struct Feed {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    length: u64,
}

impl http_body::Body for Feed {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        self.rx.poll_recv(cx).map(|next| next.map(|chunk| chunk.map(http_body::Frame::data)))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.length)
    }
}
