//! Property tests for the LSP framing decoder and the JSON-RPC message parser.
//!
//! They check that framing round-trips under any chunking, that garbage can neither crash, stall nor bloat
//! the decoder and that it recovers at the next frame, and that parsing arbitrary bodies never panics.
//! Case counts keep the whole file well under two seconds in a debug build.

use nxops::rpc::frame::{Decoder, FrameError, MAX_HEADER_BYTES, encode};
use nxops::rpc::message::{Incoming, parse_message};
use proptest::prelude::*;

/// The body cap used where garbage may declare bodies; it keeps the memory bound tight.
const TEST_MAX_BODY: usize = 4096;

/// Everything the decoder yields while `input` is fed in pieces of the given sizes (cycled).
///
/// After every piece it drains the decoder, failing if it yields more items than it holds bytes (each item
/// consumes at least one byte; an error in a line that arrived earlier may resume the search inside it), and
/// checks the buffered bytes stay within the documented bound.
fn feed_in_chunks(decoder: &mut Decoder, input: &[u8], sizes: &[usize]) -> Vec<Result<Vec<u8>, FrameError>> {
    let mut items = Vec::new();
    let mut rest = input;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(size.clamp(1, rest.len()));
        rest = tail;
        let held = decoder.buffered_len() + piece.len();
        decoder.feed(piece);
        drain(decoder, held, &mut items);
    }
    items
}

fn drain(decoder: &mut Decoder, fed: usize, items: &mut Vec<Result<Vec<u8>, FrameError>>) {
    for _ in 0..=fed {
        match decoder.next_frame() {
            Some(item) => items.push(item),
            None => {
                let buffered = decoder.buffered_len();
                assert!(buffered <= MAX_HEADER_BYTES + TEST_MAX_BODY, "{buffered} bytes buffered");
                return;
            }
        }
    }
    panic!("next_frame yielded more items than the {fed} bytes it held");
}

fn frames(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for body in bodies {
        encode(body, &mut out);
    }
    out
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1..8usize, 8..200usize, 200..20_000usize], 1..12)
}

fn bodies() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12)
}

/// Garbage biased towards the fragments the decoder reacts to.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(b"Content-Length: ".to_vec()),
        Just(b"content-length:12\r\n".to_vec()),
        Just(b"Content-Length: 99999999999999\r\n\r\n".to_vec()),
        Just(b"Content-Length: 5000\r\n\r\n".to_vec()),
        Just(b"Content-Type: a; charset=latin1\r\n".to_vec()),
        Just(b"X-Header: value\r\n".to_vec()),
        (0..3 * MAX_HEADER_BYTES).prop_map(|n| vec![b'z'; n]),
    ];
    prop::collection::vec(fragment, 0..8).prop_map(|parts| parts.concat())
}

/// A header block that is garbage but cannot pass for a frame: it never says `Content-Length`, in any case.
fn garbage_header_block() -> impl Strategy<Value = Vec<u8>> {
    garbage().prop_map(|bytes| {
        let mut out = Vec::with_capacity(bytes.len() + 8);
        for (i, &byte) in bytes.iter().enumerate() {
            out.push(byte);
            let rest = &bytes[i..];
            if rest.len() >= 14 && rest[..14].eq_ignore_ascii_case(b"content-length") {
                out.push(b'X');
            }
        }
        out.extend_from_slice(b"\r\n\r\n");
        out
    })
}

#[derive(Debug, Clone)]
enum Segment {
    Garbage(Vec<u8>),
    Frame(Vec<u8>),
}

fn segments() -> impl Strategy<Value = Vec<Segment>> {
    let segment = prop_oneof![
        garbage().prop_map(Segment::Garbage),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Segment::Frame),
    ];
    prop::collection::vec(segment, 0..10)
}

/// JSON-ish text built from the keys and values the message parser looks at.
fn json_like() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("jsonrpc"),
        Just("id"),
        Just("method"),
        Just("params"),
        Just("result"),
        Just("error"),
        Just("other")
    ];
    let value = prop_oneof![
        Just("\"2.0\"".to_string()),
        Just("null".to_string()),
        Just("1".to_string()),
        Just("-1.5".to_string()),
        Just("18446744073709551616".to_string()),
        Just("\"m\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("{\"code\":-32601,\"message\":\"x\"}".to_string()),
        Just("{\"code\":\"x\"}".to_string()),
        "[a-z0-9\"{}:,\\[\\] ]{0,12}",
    ];
    let member = (key, value.clone()).prop_map(|(k, v)| format!("\"{k}\":{v}"));
    prop_oneof![
        prop::collection::vec(member.clone(), 0..6).prop_map(|m| format!("{{{}}}", m.join(","))),
        prop::collection::vec(member, 0..4).prop_map(|m| format!("[{{{}}}]", m.join(","))),
        // Arrays of field values, which serde's derived `Deserialize` would read as a struct.
        prop::collection::vec(value, 0..4)
            .prop_map(|v| format!("[\"2.0\"{}]", v.iter().map(|x| format!(",{x}")).collect::<String>())),
    ]
}

/// A JSON-RPC request body whose only `}` is its last byte, so no proper prefix of it ends like an object.
fn request_body() -> impl Strategy<Value = Vec<u8>> {
    (0..1_000_000u32, "[a-z/]{1,300}")
        .prop_map(|(id, method)| format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"{method}\"}}").into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Regression: the rest of a body longer than its Content-Length swallowed the next frame's header.
    #[test]
    fn a_body_longer_than_its_content_length_costs_one_error_and_never_the_next_frame(
        body in request_body(),
        cut in any::<prop::sample::Index>(),
        next in request_body(),
        sizes in chunk_sizes(),
    ) {
        let declared = 1 + cut.index(body.len() - 1);
        let mut input = format!("Content-Length: {declared}\r\n\r\n").into_bytes();
        input.extend_from_slice(&body);
        encode(&next, &mut input);
        let mut decoder = Decoder::new();
        let whole = feed_in_chunks(&mut decoder, &input, &[input.len()]);
        prop_assert_eq!(whole, vec![Err(FrameError::BodyRunsOn { length: declared }), Ok(next.clone())]);
        let mut decoder = Decoder::new();
        let mut items = feed_in_chunks(&mut decoder, &input, &sizes);
        prop_assert_eq!(items.pop(), Some(Ok(next)));
        // Split exactly at the declared end, the prefix is handed over before what follows has arrived.
        prop_assert!(items.len() <= 2 && items.iter().filter(|i| i.is_ok()).count() <= 1, "{:?}", items);
        prop_assert!(!decoder.is_mid_frame());
    }

    /// Regression: a body sent without a header swallowed the header glued to its end.
    #[test]
    fn a_body_without_a_header_costs_one_error_and_never_the_next_frame(
        body in request_body(),
        next in request_body(),
        sizes in chunk_sizes(),
    ) {
        let mut input = body;
        encode(&next, &mut input);
        let mut decoder = Decoder::new();
        let mut items = feed_in_chunks(&mut decoder, &input, &sizes);
        prop_assert_eq!(items.pop(), Some(Ok(next)));
        prop_assert!(matches!(items[..], [Err(_)]), "{:?}", items);
        prop_assert!(!decoder.is_mid_frame());
    }

    #[test]
    fn encoded_bodies_decode_unchanged_under_any_chunking(bodies in bodies(), sizes in chunk_sizes()) {
        let mut decoder = Decoder::new();
        let items = feed_in_chunks(&mut decoder, &frames(&bodies), &sizes);
        let expected: Vec<_> = bodies.into_iter().map(Ok).collect();
        prop_assert_eq!(items, expected);
        prop_assert!(!decoder.is_mid_frame());
    }

    #[test]
    fn garbage_mixed_with_frames_never_panics_stalls_or_bloats(segments in segments(), sizes in chunk_sizes()) {
        let mut input = Vec::new();
        for segment in &segments {
            match segment {
                Segment::Garbage(bytes) => input.extend_from_slice(bytes),
                Segment::Frame(body) => encode(body, &mut input),
            }
        }
        let mut decoder = Decoder::with_max_body(TEST_MAX_BODY);
        let items = feed_in_chunks(&mut decoder, &input, &sizes);
        prop_assert!(items.len() <= input.len());
        let _ = decoder.truncation();
    }

    #[test]
    fn frame_after_a_garbage_header_block_still_decodes(
        garbage in garbage_header_block(),
        body in prop::collection::vec(any::<u8>(), 0..300),
        sizes in chunk_sizes(),
    ) {
        let mut input = garbage;
        encode(&body, &mut input);
        let mut decoder = Decoder::with_max_body(TEST_MAX_BODY);
        let mut items = feed_in_chunks(&mut decoder, &input, &sizes);
        prop_assert_eq!(items.pop(), Some(Ok(body)));
        prop_assert!(items.iter().all(Result::is_err), "garbage decoded as a frame: {:?}", items);
        prop_assert!(!decoder.is_mid_frame());
    }

    #[test]
    fn too_large_frames_are_skipped_and_the_next_frame_decodes(
        oversized in prop::collection::vec(any::<u8>(), TEST_MAX_BODY + 1..3 * TEST_MAX_BODY),
        body in prop::collection::vec(any::<u8>(), 0..300),
        sizes in chunk_sizes(),
    ) {
        let input = frames(&[oversized.clone(), body.clone()]);
        let mut decoder = Decoder::with_max_body(TEST_MAX_BODY);
        let items = feed_in_chunks(&mut decoder, &input, &sizes);
        let too_large = FrameError::TooLarge { length: oversized.len() as u64, max: TEST_MAX_BODY };
        prop_assert_eq!(items, vec![Err(too_large), Ok(body)]);
    }

    #[test]
    fn parse_message_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(rejected) = parse_message(&body) {
            prop_assert!([-32700, -32600].contains(&rejected.error.code.code()));
        }
    }

    #[test]
    fn parse_message_accepts_json_like_text_only_in_the_right_shape(text in json_like()) {
        let object = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v.as_object().cloned());
        let version_ok = object.as_ref().is_some_and(|o| o.get("jsonrpc") == Some(&"2.0".into()));
        match parse_message(text.as_bytes()) {
            Ok(Incoming::Request(_)) => {
                prop_assert!(version_ok, "accepted as a request: {}", text);
                prop_assert!(object.as_ref().is_some_and(|o| o.get("method").is_some_and(|m| m.is_string())));
            }
            Ok(Incoming::Response(_)) => {
                prop_assert!(version_ok, "accepted as a response: {}", text);
                prop_assert!(object.as_ref().is_some_and(|o| !o.contains_key("method") && o.contains_key("id")));
            }
            Err(rejected) => {
                prop_assert!([-32700, -32600].contains(&rejected.error.code.code()));
                prop_assert!(!rejected.error.message.is_empty());
            }
        }
    }
}
