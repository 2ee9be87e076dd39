//! A JSON-RPC client over one LSP-framed connection, used by the CLI and by
//! sidecars that forward a workspace's requests to its owner.
//!
//! One reader thread per connection routes responses to their callers by id
//! (pending requests wait on a oneshot) and hands notifications to a callback.
//! When the connection ends every pending request fails with `Closed`, and
//! `closed()` resolves: that is how a follower notices its owner died. A
//! request future dropped before its answer sends `$/cancelRequest`, so a
//! cancellation a follower's client sends reaches the owner's handler.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use tower_lsp_server::jsonrpc::Error;

use super::frame::FrameReader;
use super::outbox::Outbox;

/// Why a call did not get a result.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{}", .0.message)]
    Rpc(Error),
    #[error("the connection closed before the answer came")]
    Closed,
    #[error("the peer stopped answering (a liveness check went unanswered for {0:?})")]
    Unresponsive(Duration),
}

type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<Result<Value, Error>>>>>;
type NotificationSink = Box<dyn Fn(&str, Value) + Send + Sync>;

#[derive(Clone)]
pub struct RpcClient {
    outbox: Outbox,
    pending: Pending,
    next_id: Arc<AtomicI64>,
    closed: watch::Receiver<bool>,
    stream: Arc<UnixStream>,
    /// Whether the peer answers liveness checks (kept by whoever checks; see `sidecar::core`).
    responsive: Arc<watch::Sender<bool>>,
}

impl RpcClient {
    /// Connects to a sidecar's socket. `on_notification` sees every notification it sends.
    pub fn connect(path: &Path, on_notification: NotificationSink) -> std::io::Result<RpcClient> {
        let stream = UnixStream::connect(path)?;
        let reader = stream.try_clone()?;
        let cut = stream.try_clone()?;
        // An owner that takes no request for the outbox's deadline is cut off:
        // every pending request then fails with `Closed`.
        let outbox = Outbox::new(stream.try_clone()?, move || {
            let _ = cut.shutdown(std::net::Shutdown::Both);
        });
        let pending: Pending = Arc::default();
        let (closed_tx, closed) = watch::channel(false);
        let routes = pending.clone();
        std::thread::Builder::new().name("nxops-rpc-client".into()).spawn(move || {
            read_loop(reader, &routes, &*on_notification);
            routes.lock().unwrap_or_else(|p| p.into_inner()).clear();
            let _ = closed_tx.send(true);
        })?;
        Ok(RpcClient {
            outbox,
            pending,
            next_id: Arc::new(AtomicI64::new(1)),
            closed,
            stream: Arc::new(stream),
            responsive: Arc::new(watch::channel(true).0),
        })
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        if *self.closed.borrow()
            || !self.outbox.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
        {
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            return Err(ClientError::Closed);
        }
        // A caller that stops waiting (its own client cancelled) cancels the request at the peer.
        let mut guard = CancelOnDrop { client: self, id, armed: true };
        let answer = rx.await;
        guard.armed = false;
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(ClientError::Rpc(err)),
            Err(_) => Err(ClientError::Closed),
        }
    }

    /// `request` that gives up when the peer stops answering: every `interval`
    /// while it waits, it sends `probe` (a cheap method the peer answers on its
    /// connection thread), and fails with `Unresponsive` when that goes
    /// unanswered for `limit`. A slow answer from a live peer is waited for.
    pub async fn request_watched(
        &self,
        method: &str,
        params: Value,
        probe: &str,
        interval: Duration,
        limit: Duration,
    ) -> Result<Value, ClientError> {
        let answer = self.request(method, params);
        tokio::pin!(answer);
        loop {
            tokio::select! {
                answered = &mut answer => return answered,
                () = tokio::time::sleep(interval) => {
                    match tokio::time::timeout(limit, self.request(probe, json!({}))).await {
                        Ok(_) => {}
                        Err(_) => return Err(ClientError::Unresponsive(limit)),
                    }
                }
            }
        }
    }

    /// `request_watched` for callers outside a runtime.
    pub fn request_watched_blocking(
        &self,
        method: &str,
        params: Value,
        probe: &str,
        interval: Duration,
        limit: Duration,
    ) -> Result<Value, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a current-thread runtime");
        rt.block_on(self.request_watched(method, params, probe, interval, limit))
    }

    pub fn notify(&self, method: &str, params: Value) -> bool {
        self.outbox.notify(method, params)
    }

    /// Resolves when the connection has ended.
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    pub fn is_responsive(&self) -> bool {
        *self.responsive.borrow()
    }

    pub fn set_responsive(&self, responsive: bool) {
        self.responsive.send_replace(responsive);
    }

    /// Resolves when the peer is marked unresponsive.
    pub async fn unresponsive(&self) {
        let mut responsive = self.responsive.subscribe();
        let _ = responsive.wait_for(|r| !*r).await;
    }

    /// Waits (bounded, blocking: not for a runtime's thread) until what was sent is written.
    pub fn flush(&self, limit: std::time::Duration) {
        self.outbox.flush(limit);
    }

    /// Ends the connection now (both directions); the reader thread then stops.
    pub fn close(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// The standard opening: `initialize` then `initialized`.
    pub async fn handshake(&self, client_name: &str) -> Result<Value, ClientError> {
        let params = json!({
            "processId": std::process::id(),
            "clientInfo": {"name": client_name, "version": env!("CARGO_PKG_VERSION")},
            "capabilities": {},
        });
        let result = self.request("initialize", params).await?;
        self.notify("initialized", json!({}));
        Ok(result)
    }
}

/// Sends `$/cancelRequest` for a request whose caller dropped it unanswered.
struct CancelOnDrop<'a> {
    client: &'a RpcClient,
    id: i64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed && self.client.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id).is_some() {
            self.client.outbox.notify("$/cancelRequest", json!({"id": self.id}));
        }
    }
}

fn read_loop(reader: impl Read, pending: &Pending, on_notification: &(dyn Fn(&str, Value) + Send + Sync)) {
    let mut frames = FrameReader::new(reader);
    while let Ok(Some(frame)) = frames.read_frame() {
        let Ok(body) = frame else { continue };
        let Ok(message) = serde_json::from_slice::<Value>(&body) else { continue };
        if let Some(method) = message.get("method").and_then(Value::as_str) {
            if message.get("id").is_none() {
                on_notification(method, message.get("params").cloned().unwrap_or(Value::Null));
            }
            continue;
        }
        let Some(id) = message.get("id").and_then(Value::as_i64) else { continue };
        let Some(waiter) = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) else { continue };
        let outcome = match message.get("error") {
            Some(err) => Err(serde_json::from_value(err.clone()).unwrap_or_else(|_| Error::internal_error())),
            None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
        };
        let _ = waiter.send(outcome);
    }
}
