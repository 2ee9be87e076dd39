//! Fuzzes the transport's input path: bytes are fed to the frame decoder in chunks, every frame body
//! goes through `parse_message`, and every `nxops/*` request it yields is dispatched to the method
//! handlers of an in-process core (no sidecar, no workspace attached; `nxops/system/info` is skipped
//! because it runs external programs).
//!
//! The first input byte picks the chunk sizes, so the fuzzer explores how frames split across reads. Beyond
//! "never panics", it checks the decoder's own invariants: it yields no more items than it was fed bytes,
//! and what it buffers stays within the header cap plus the body cap.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nxops::rpc::frame::{Decoder, MAX_HEADER_BYTES};
use nxops::rpc::message::{Incoming, frame_error, parse_message};
use nxops::sidecar::core::{Core, TransportKind};
use nxops::sidecar::methods::{self, CallCtx};
use nxops::sidecar::progress::Progress;

/// A small body cap, so that bodies over it are common and the skipping path gets exercised.
const MAX_BODY: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else { return };
    let mut decoder = Decoder::with_max_body(MAX_BODY);
    let mut round = 0usize;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(chunk_size(selector, round).min(rest.len()));
        rest = tail;
        round += 1;
        decoder.feed(chunk);
        drain(&mut decoder, chunk.len());
    }
    let _ = decoder.truncation();
});

/// The size of the `round`-th chunk: one byte at a time, a fixed size, or sizes that vary from round to round.
fn chunk_size(selector: u8, round: usize) -> usize {
    match selector % 4 {
        0 => 1,
        1 => usize::from(selector / 4) + 1,
        2 => (round * 7 + usize::from(selector)) % 97 + 1,
        _ => usize::MAX,
    }
}

fn drain(decoder: &mut Decoder, fed: usize) {
    for _ in 0..=fed {
        match decoder.next_frame() {
            Some(Ok(body)) => {
                if let Ok(Incoming::Request(request)) = parse_message(&body) {
                    dispatch(request);
                }
            }
            Some(Err(err)) => {
                let _ = frame_error(&err);
            }
            None => {
                assert!(decoder.buffered_len() <= MAX_HEADER_BYTES + MAX_BODY, "decoder buffers too much");
                return;
            }
        }
    }
    panic!("decoder yielded more items than the {fed} bytes it was fed");
}

/// Runs an nxops request through the one dispatcher; any answer is fine, a panic is a bug.
fn dispatch(request: tower_lsp_server::jsonrpc::Request) {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    }
    let (method, _, params) = request.into_parts();
    if !method.starts_with("nxops/") || method == "nxops/system/info" {
        return;
    }
    RUNTIME.with(|runtime| {
        let core = Core::in_process(nxops::environment::Environment::default(), runtime.handle().clone());
        let session = core.open_session(TransportKind::InProcess);
        let ctx = CallCtx { core, session, progress: Progress::none() };
        let params = params.unwrap_or(serde_json::json!({}));
        let _ = runtime.block_on(methods::call(&ctx, &method, params));
    });
}
