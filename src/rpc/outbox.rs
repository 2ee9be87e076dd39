//! The one writer of a connection. Every outgoing message is framed and written
//! whole under a lock, so responses, notifications and server-to-client
//! requests from any thread never interleave on the wire.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Value, json};

use super::frame;

#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Box<dyn Write + Send>>,
    /// Set after the first failed write: the peer is gone and nothing more is sent.
    broken: AtomicBool,
}

impl Outbox {
    pub fn new(writer: impl Write + Send + 'static) -> Outbox {
        Outbox { inner: Arc::new(Inner { writer: Mutex::new(Box::new(writer)), broken: AtomicBool::new(false) }) }
    }

    /// Frames and writes one JSON message. Returns false when the peer is gone.
    pub fn send(&self, message: &impl Serialize) -> bool {
        if self.is_broken() {
            return false;
        }
        let body = match serde_json::to_vec(message) {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(target: "nxops::rpc", "cannot serialize an outgoing message: {err}");
                return true;
            }
        };
        let mut bytes = Vec::with_capacity(body.len() + 32);
        frame::encode(&body, &mut bytes);
        let mut writer = self.inner.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let written = writer.write_all(&bytes).and_then(|()| writer.flush());
        if let Err(err) = written {
            tracing::debug!(target: "nxops::rpc", "peer stopped reading: {err}");
            self.inner.broken.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Sends a notification `{method, params}`.
    pub fn notify(&self, method: &str, params: Value) -> bool {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
    }

    pub fn is_broken(&self) -> bool {
        self.inner.broken.load(Ordering::Relaxed)
    }
}
