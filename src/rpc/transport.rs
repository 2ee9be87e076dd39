//! The serve loop: LSP-framed JSON-RPC between one peer and one `LspService`.
//!
//! We use tower-lsp-server's `LspService` (lifecycle, routing, cancellation,
//! `Client`) but not its `Server`: its codec has no size cap, and tokio-util's
//! `FramedRead` ends the stream after the first undecodable frame, so one bad
//! frame would silently stop the sidecar. Here framing errors become JSON-RPC
//! errors and the loop goes on.
//!
//! Threading: the calling thread blocks on reads (the cheapest wake-up there
//! is). Each request's future is polled once right there; if it is ready, the
//! response is written at once (the fast path every cheap method takes), else
//! the future moves to the runtime and answers when done. So cheap requests are
//! answered in order, and a slow one never blocks those behind it. A panic in a
//! handler is caught per request and answered with -32603.

use std::io::Read;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::runtime::Handle;
use tower_lsp_server::jsonrpc::{Id, Request, Response};
use tower_lsp_server::{ClientSocket, LanguageServer, LspService};

use super::errors;
use super::frame::FrameReader;
use super::message::{Incoming, frame_error, parse_message};
use super::outbox::Outbox;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The peer sent `exit`; `after_shutdown` tells whether `shutdown` came first.
    Exit { after_shutdown: bool },
    /// The peer closed its end between two messages; `after_shutdown` as for `Exit`.
    Closed { after_shutdown: bool },
    /// The connection broke: a read error, or end of input in the middle of a frame.
    Lost,
}

/// Serves one connection until `exit` or end of input.
pub fn serve<S: LanguageServer>(
    reader: impl Read,
    outbox: Outbox,
    mut service: LspService<S>,
    socket: ClientSocket,
    runtime: &Handle,
) -> Ended {
    let _entered = runtime.enter();
    let (mut client_requests, mut client_responses) = socket.split();
    let pump_out = outbox.clone();
    let pump = runtime.spawn(async move {
        while let Some(request) = client_requests.next().await {
            if !pump_out.send(&request) {
                break;
            }
        }
    });
    let mut frames = FrameReader::new(reader);
    let mut shutdown_seen = false;
    let ended = loop {
        let body = match frames.read_frame() {
            Ok(None) => break Ended::Closed { after_shutdown: shutdown_seen },
            Err(err) => {
                tracing::info!(target: "nxops::rpc", "connection lost: {err}");
                break Ended::Lost;
            }
            Ok(Some(Err(bad_frame))) => {
                tracing::warn!(target: "nxops::rpc", "bad frame: {bad_frame}");
                outbox.send_now(&Response::from_error(Id::Null, frame_error(&bad_frame)));
                continue;
            }
            Ok(Some(Ok(body))) => body,
        };
        match parse_message(&body) {
            Err(rejected) => {
                tracing::warn!(target: "nxops::rpc", "rejected message: {}", rejected.error.message);
                outbox.send_now(&Response::from_error(rejected.id.unwrap_or(Id::Null), rejected.error));
            }
            Ok(Incoming::Response(response)) => {
                if runtime.block_on(client_responses.send(response)).is_err() {
                    tracing::debug!(target: "nxops::rpc", "a client response arrived after the service ended");
                }
            }
            Ok(Incoming::Request(request)) => {
                let method = request.method().to_string();
                shutdown_seen |= method == "shutdown";
                if !dispatch(&mut service, normalize(request), &method, &outbox, runtime) || method == "exit" {
                    break Ended::Exit { after_shutdown: shutdown_seen };
                }
            }
        }
    };
    pump.abort();
    ended
}

/// Sends one request into the service. Returns false once the service has exited.
fn dispatch<S: LanguageServer>(
    service: &mut LspService<S>,
    request: Request,
    method: &str,
    outbox: &Outbox,
    runtime: &Handle,
) -> bool {
    use tower::Service;
    if !wait_ready(service) {
        return false;
    }
    let id = request.id().cloned();
    let future = AssertUnwindSafe(service.call(request)).catch_unwind();
    let mut future = Box::pin(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        // Ready at once: this (the connection's own) thread writes the answer.
        Poll::Ready(outcome) => answer(outcome, id, method, |r| outbox.send_now(r)),
        Poll::Pending => {
            // Answered from the runtime, which only queues it.
            let outbox = outbox.clone();
            let method = method.to_string();
            runtime.spawn(async move { answer(future.await, id, &method, |r| outbox.send(r)) });
        }
    }
    true
}

type Outcome = std::thread::Result<Result<Option<Response>, tower_lsp_server::ExitedError>>;

fn answer(outcome: Outcome, id: Option<Id>, method: &str, send: impl Fn(&Response) -> bool) {
    match outcome {
        Ok(Ok(Some(response))) => {
            let response = match response.into_parts() {
                (id, Err(err)) => Response::from_error(id, errors::name_unknown_method(err)),
                (id, Ok(value)) => Response::from_ok(id, value),
            };
            send(&response);
        }
        // tower-lsp answers nothing for an unknown `$/` method, which LSP allows for notifications only.
        Ok(Ok(None)) if method.starts_with("$/") => {
            if let Some(id) = id {
                send(&Response::from_error(id, errors::unknown_method(method)));
            }
        }
        Ok(Ok(None)) | Ok(Err(_)) => {}
        Err(payload) => {
            tracing::error!(target: "nxops::rpc", "handler for {method} panicked");
            if let Some(id) = id {
                send(&Response::from_error(id, errors::panicked(method, payload.as_ref())));
            }
        }
    }
}

/// Waits until the service accepts a request. `LspService` reports "not ready"
/// without a wake-up while `initialize` runs, so this re-checks every millisecond;
/// `initialize` normally completes inline, so the wait is almost never taken.
fn wait_ready<S: LanguageServer>(service: &mut LspService<S>) -> bool {
    use tower::Service;
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => return true,
            Poll::Ready(Err(_)) => return false,
            Poll::Pending => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// nxops methods take an object; a missing or null `params` means "no options".
fn normalize(request: Request) -> Request {
    if !request.method().starts_with("nxops/") {
        return request;
    }
    let (method, id, params) = request.into_parts();
    let params = match params {
        None | Some(Value::Null) => json!({}),
        Some(other) => other,
    };
    let builder = Request::build(method).params(params);
    match id {
        Some(id) => builder.id(id).finish(),
        None => builder.finish(),
    }
}
