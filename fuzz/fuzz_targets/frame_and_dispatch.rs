//! Fuzzes the transport's input path: bytes are fed to the frame decoder in chunks and every frame body
//! goes through `parse_message`.
//!
//! The first input byte picks the chunk sizes, so the fuzzer explores how frames split across reads. Beyond
//! "never panics", it checks the decoder's own invariants: it yields no more items than it was fed bytes,
//! and what it buffers stays within the header cap plus the body cap.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nxops::rpc::frame::{Decoder, MAX_HEADER_BYTES};
use nxops::rpc::message::{frame_error, parse_message};

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
                let _ = parse_message(&body);
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
