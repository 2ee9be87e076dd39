//! LSP base-protocol framing: `Content-Length` headers around opaque message bodies.
//!
//! A frame is a header block of `Name: value` lines, each ended by `\r\n` (a bare `\n` is tolerated),
//! closed by an empty line, followed by exactly `Content-Length` body bytes. Header names are matched
//! case-insensitively, unknown headers are ignored, and `Content-Type` is optional; when it names a charset,
//! that charset must be UTF-8. Blank lines before a header block are skipped.
//!
//! [`Decoder`] is pure and push-based: the caller feeds bytes as they arrive and pulls frames with
//! [`Decoder::next_frame`]. It knows nothing about I/O, UTF-8 or JSON; [`FrameReader`] wraps it around a
//! blocking reader, and `message.rs` turns bodies into JSON-RPC messages.
//!
//! # Invariants
//!
//! - The decoder never gets stuck and never loops: every item `next_frame` yields consumes at least one
//!   byte, and every error is yielded exactly once.
//! - After a header-level error (malformed line, missing or invalid `Content-Length`, header block over
//!   [`MAX_HEADER_BYTES`]) the decoder resynchronises: it discards everything up to the next `Content-Length`
//!   (case-insensitively, even mid-line), keeping at most a partial prefix of that name. The search starts
//!   one byte into the offending line, not after it, so a header glued to the end of the garbage is found:
//!   the refused frame's body is glued to the next header by a well-behaved peer, and a body sent without a
//!   header (or the rest of a body whose `Content-Length` was too small) ends on the line of the next one.
//! - A body whose `Content-Length` is smaller than what the peer sent runs on into the next header. When the
//!   bytes after a complete body are already buffered, do not start a header line (a name and a colon, or a
//!   blank line) and the body does not end like a JSON object (its last non-blank byte is not `}`), the body
//!   and the bytes after it are refused together as one [`FrameError::BodyRunsOn`], and decoding resumes at
//!   the next `Content-Length`. A body that looks complete is handed over and what follows it is judged as a
//!   header; when the bytes after a body have not arrived yet, the body is handed over (never waited on), so
//!   a run-on body split exactly at its declared end costs two errors instead of one.
//! - A frame whose framing is sound but whose body must be refused ([`FrameError::TooLarge`],
//!   [`FrameError::UnsupportedCharset`]) is reported as soon as its header block ends; its body bytes are then
//!   discarded as they arrive, without being buffered, and decoding resumes right after them.
//! - Once `next_frame` has returned `None`, the decoder holds at most [`MAX_HEADER_BYTES`] bytes of an
//!   unfinished header block or fewer bytes than the body cap of an unfinished body.
//!
//! # Performance
//!
//! Header lines are parsed once each, as they complete; the search for a line's end resumes where the last
//! search stopped, so feeding a header byte by byte stays linear. Bodies are never scanned. Consumed bytes
//! are tracked with a read offset and the buffer is compacted only when that costs no more than the bytes
//! already consumed. Bodies of 64 KiB and more are handed over without a copy when nothing follows them.

use std::io::{self, Read};

/// The largest body the decoder accepts by default (16 MiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The largest header block, counting every header line and its line ending.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// One frame that could not be decoded. The decoder has already recovered when it yields one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("header block exceeds {max} bytes without a blank line")]
    HeaderTooLong { max: usize },
    /// `line` is escaped and cut to about 80 characters.
    #[error("malformed header line \"{line}\": expected \"Name: value\"")]
    MalformedHeader { line: String },
    #[error("header block has no Content-Length header")]
    MissingContentLength,
    /// `value` is escaped and cut; conflicting duplicates are shown as `first, second`.
    #[error("invalid Content-Length value \"{value}\": expected one non-negative decimal integer")]
    InvalidContentLength { value: String },
    #[error("Content-Length {length} exceeds the {max}-byte cap")]
    TooLarge { length: u64, max: usize },
    /// `value` is escaped and cut.
    #[error("unsupported charset \"{value}\" in Content-Type: only utf-8 is accepted")]
    UnsupportedCharset { value: String },
    /// The body and the bytes after it were refused together; see the module documentation.
    #[error(
        "Content-Length {length} is shorter than the body: the bytes after those {length} do not start a header; \
         skipped to the next Content-Length"
    )]
    BodyRunsOn { length: usize },
}

/// What was missing when the stream ended inside a frame; see [`Decoder::truncation`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Truncated {
    #[error("stream ended inside a frame header after {received} bytes, before the blank line that ends it")]
    Header { received: usize },
    #[error("stream ended {} bytes short of a {expected}-byte frame body ({received} bytes received)", expected - received)]
    Body { received: usize, expected: usize },
    #[error("stream ended {missing} bytes short of the end of a refused frame body that was being skipped")]
    SkippedBody { missing: u64 },
}

/// Splits a byte stream into frame bodies; see the module documentation for the rules.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes before this offset in `buf` are consumed.
    pos: usize,
    max_body: usize,
    state: State,
    /// What the current header block said so far; back to its default whenever `state` is not `Header`.
    header: HeaderBlock,
}

/// Appends one frame carrying `body` to `out`.
pub fn encode(body: &[u8], out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let length = decimal(body.len(), &mut digits);
    out.reserve(CONTENT_LENGTH_PREFIX.len() + length.len() + HEADER_END.len() + body.len());
    out.extend_from_slice(CONTENT_LENGTH_PREFIX);
    out.extend_from_slice(length);
    out.extend_from_slice(HEADER_END);
    out.extend_from_slice(body);
}

/// A blocking frame reader over a [`Decoder`], reading up to 64 KiB at a time.
pub struct FrameReader<R: Read> {
    inner: R,
    decoder: Decoder,
    chunk: Box<[u8]>,
}

const CONTENT_LENGTH_PREFIX: &[u8] = b"Content-Length: ";
const HEADER_END: &[u8] = b"\r\n\r\n";
const CONTENT_LENGTH: &[u8] = b"content-length";
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Bodies at least this long are handed over without a copy when nothing is buffered after them.
const LARGE_BODY_BYTES: usize = 64 * 1024;
/// Consumed bytes are only compacted away once there are at least this many.
const COMPACT_MIN_BYTES: usize = 4 * 1024;
/// An empty buffer keeps at most this much capacity, so one huge frame does not pin its memory.
const RETAINED_CAPACITY: usize = 1024 * 1024;
/// Header lines and values quoted in errors are cut to about this many characters.
const QUOTED_CHARS: usize = 80;
/// How far the bytes after a body are looked at to tell whether they start a header line.
const LOOK_AHEAD_BYTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the lines of a header block; what they said so far is in `Decoder::header`.
    Header,
    /// The header block ended; waiting for `length` body bytes.
    Body { length: usize },
    /// A refused body is being discarded; `remaining` bytes of it have not arrived yet.
    Skip { remaining: u64 },
    /// After a header-level error: discarding bytes up to the next `Content-Length`.
    Resync,
}

/// What the header lines read so far have said.
#[derive(Debug, Default)]
struct HeaderBlock {
    /// Bytes of the header lines consumed so far, line endings included.
    bytes: usize,
    /// Bytes of the unfinished line already searched for its `\n`.
    scanned: usize,
    content_length: Option<u64>,
    /// The first charset other than UTF-8 that a `Content-Type` header named, escaped.
    bad_charset: Option<String>,
}

/// What one step of the state machine decided.
enum Step {
    Continue,
    NeedMore,
    Yield(Result<Vec<u8>, FrameError>),
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder that refuses bodies over [`MAX_BODY_BYTES`].
    pub fn new() -> Self {
        Self::with_max_body(MAX_BODY_BYTES)
    }

    /// A decoder that refuses bodies over `max` bytes.
    pub fn with_max_body(max: usize) -> Self {
        Decoder { buf: Vec::new(), pos: 0, max_body: max, state: State::Header, header: HeaderBlock::default() }
    }

    /// Appends received bytes. Bytes of a refused body are dropped here without being buffered.
    pub fn feed(&mut self, bytes: &[u8]) {
        let bytes = self.skip_incoming(bytes);
        if bytes.is_empty() {
            return;
        }
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Next complete frame body, or an error for one bad frame; None = need more bytes.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        loop {
            let step = match self.state {
                State::Header => self.step_header(),
                State::Body { length } => self.step_body(length),
                State::Skip { .. } => self.step_skip(),
                State::Resync => self.step_resync(),
            };
            match step {
                Step::Continue => {}
                Step::NeedMore => return None,
                Step::Yield(item) => return Some(item),
            }
        }
    }

    /// True when bytes of an unfinished frame are buffered (EOF now = truncated frame).
    ///
    /// Meaningful once `next_frame` has returned `None`.
    pub fn is_mid_frame(&self) -> bool {
        self.truncation().is_some()
    }

    /// What is missing if the stream ends now, or `None` when it would end cleanly between frames.
    ///
    /// Meaningful once `next_frame` has returned `None`. Bytes discarded while resynchronising after an error
    /// do not count, since their error was already reported, but a buffered partial `Content-Length` does.
    pub fn truncation(&self) -> Option<Truncated> {
        let buffered = self.buffered_len();
        match self.state {
            State::Header => {
                let tail = &self.buf[self.pos..];
                let started = self.header.bytes > 0 || tail.iter().any(|&b| b != b'\r' && b != b'\n');
                started.then_some(Truncated::Header { received: self.header.bytes + buffered })
            }
            State::Body { length } => Some(Truncated::Body { received: buffered.min(length), expected: length }),
            State::Skip { remaining } => Some(Truncated::SkippedBody { missing: remaining }),
            State::Resync => (buffered > 0).then_some(Truncated::Header { received: buffered }),
        }
    }

    /// Bytes received but not yet consumed.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn step_header(&mut self) -> Step {
        let tail = &self.buf[self.pos..];
        let scanned = self.header.scanned;
        let Some(newline) = find_byte(b'\n', &tail[scanned..]).map(|i| scanned + i) else {
            return self.wait_for_line(tail.len());
        };
        let consumed = newline + 1;
        let line = tail[..newline].strip_suffix(b"\r").unwrap_or(&tail[..newline]);
        self.header.scanned = 0;
        if line.is_empty() {
            self.pos += consumed;
            // A blank line before any header line is a stray separator, not the end of a block.
            return if self.header.bytes == 0 { Step::Continue } else { self.finish_header() };
        }
        self.header.bytes += consumed;
        let applied = if self.header.bytes > MAX_HEADER_BYTES {
            Err(FrameError::HeaderTooLong { max: MAX_HEADER_BYTES })
        } else {
            self.header.apply_line(line)
        };
        match applied {
            Ok(()) => {
                self.pos += consumed;
                Step::Continue
            }
            Err(err) => self.fail_line(err),
        }
    }

    /// Waits for the end of an unfinished header line of `buffered` bytes, unless the block is already too long.
    fn wait_for_line(&mut self, buffered: usize) -> Step {
        self.header.scanned = buffered;
        if self.header.bytes + buffered <= MAX_HEADER_BYTES {
            return Step::NeedMore;
        }
        self.fail_line(FrameError::HeaderTooLong { max: MAX_HEADER_BYTES })
    }

    /// Ends a header block at its blank line and decides what to do with the body.
    fn finish_header(&mut self) -> Step {
        let header = std::mem::take(&mut self.header);
        let Some(length) = header.content_length else {
            return self.fail_header(FrameError::MissingContentLength);
        };
        let Some(length_in_memory) = usize::try_from(length).ok().filter(|&n| n <= self.max_body) else {
            self.enter_skip(length);
            return Step::Yield(Err(FrameError::TooLarge { length, max: self.max_body }));
        };
        if let Some(value) = header.bad_charset {
            self.enter_skip(length);
            return Step::Yield(Err(FrameError::UnsupportedCharset { value }));
        }
        if length_in_memory >= LARGE_BODY_BYTES && self.buffered_len() < length_in_memory {
            // Start the buffer at the body so `step_body` can hand the buffer itself over. This moves fewer
            // bytes than the copy it saves.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.state = State::Body { length: length_in_memory };
        Step::Continue
    }

    fn start_header(&mut self) {
        self.header = HeaderBlock::default();
        self.state = State::Header;
    }

    /// Reports an error in the header line that starts at `pos`. Resynchronising starts one byte into that line
    /// (so it makes progress), not after it: a `Content-Length` later on the line starts the next frame.
    fn fail_line(&mut self, err: FrameError) -> Step {
        self.pos += 1;
        self.fail_header(err)
    }

    /// Reports a header-level error; the offending bytes are already consumed, so resynchronising makes progress.
    fn fail_header(&mut self, err: FrameError) -> Step {
        self.header = HeaderBlock::default();
        self.state = State::Resync;
        Step::Yield(Err(err))
    }

    fn step_body(&mut self, length: usize) -> Step {
        if self.buffered_len() < length {
            return Step::NeedMore;
        }
        let trailing = self.buffered_len() - length;
        let (body, after) = self.buf[self.pos..].split_at(length);
        if runs_on(body, after) {
            self.pos += length;
            return self.fail_header(FrameError::BodyRunsOn { length });
        }
        let body = if self.pos == 0 && length >= LARGE_BODY_BYTES && trailing <= READ_CHUNK_BYTES {
            let rest = self.buf.split_off(length);
            std::mem::replace(&mut self.buf, rest)
        } else {
            let body = self.buf[self.pos..self.pos + length].to_vec();
            self.pos += length;
            body
        };
        self.start_header();
        Step::Yield(Ok(body))
    }

    /// Starts discarding a refused body of `length` bytes, beginning with the bytes already buffered.
    fn enter_skip(&mut self, length: u64) {
        let buffered = self.buffered_len();
        let now = usize::try_from(length).map_or(buffered, |length| length.min(buffered));
        self.pos += now;
        self.set_skip_remaining(length - now as u64);
    }

    fn step_skip(&mut self) -> Step {
        let State::Skip { remaining } = self.state else { unreachable!("step_skip runs only in State::Skip") };
        self.enter_skip(remaining);
        if self.state == State::Header { Step::Continue } else { Step::NeedMore }
    }

    /// Drops the part of `bytes` that belongs to a refused body, when nothing is buffered ahead of it.
    fn skip_incoming<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let State::Skip { remaining } = self.state else { return bytes };
        if self.buffered_len() > 0 {
            return bytes;
        }
        let now = usize::try_from(remaining).map_or(bytes.len(), |remaining| remaining.min(bytes.len()));
        self.set_skip_remaining(remaining - now as u64);
        &bytes[now..]
    }

    fn set_skip_remaining(&mut self, remaining: u64) {
        self.state = if remaining == 0 { State::Header } else { State::Skip { remaining } };
    }

    /// Discards bytes up to the next `Content-Length` (in any case), keeping a partial prefix of that name.
    ///
    /// The name is searched for anywhere, not only at line starts: a refused frame's body rarely ends with a
    /// newline, so the next header usually starts mid-line, and so would every header after it.
    fn step_resync(&mut self) -> Step {
        let tail = &self.buf[self.pos..];
        let mut at = 0;
        while let Some(found) = find_byte_ignoring_case(b'c', &tail[at..]) {
            at += found;
            let rest = &tail[at..];
            let compared = rest.len().min(CONTENT_LENGTH.len());
            if rest[..compared].eq_ignore_ascii_case(&CONTENT_LENGTH[..compared]) {
                self.pos += at;
                if compared < CONTENT_LENGTH.len() {
                    return Step::NeedMore;
                }
                self.start_header();
                return Step::Continue;
            }
            at += 1;
        }
        self.pos = self.buf.len();
        Step::NeedMore
    }

    /// Drops consumed bytes when that is cheap: never more bytes moved than were consumed.
    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if self.buf.capacity() > RETAINED_CAPACITY {
                self.buf.shrink_to(RETAINED_CAPACITY);
            }
        } else if self.pos >= COMPACT_MIN_BYTES && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

impl HeaderBlock {
    /// Records what one non-empty header line (without its line ending) says.
    fn apply_line(&mut self, line: &[u8]) -> Result<(), FrameError> {
        let Some(colon) = find_byte(b':', line) else {
            return Err(FrameError::MalformedHeader { line: quote(line) });
        };
        let name = &line[..colon];
        if !is_header_name(name) {
            return Err(FrameError::MalformedHeader { line: quote(line) });
        }
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(CONTENT_LENGTH) {
            self.set_content_length(value)
        } else {
            if name.eq_ignore_ascii_case(b"content-type") && self.bad_charset.is_none() {
                self.bad_charset = unsupported_charset(value);
            }
            Ok(())
        }
    }

    fn set_content_length(&mut self, value: &[u8]) -> Result<(), FrameError> {
        let length = parse_length(value).ok_or_else(|| FrameError::InvalidContentLength { value: quote(value) })?;
        match self.content_length {
            Some(previous) if previous != length => {
                Err(FrameError::InvalidContentLength { value: format!("{previous}, {length}") })
            }
            _ => {
                self.content_length = Some(length);
                Ok(())
            }
        }
    }
}

impl<R: Read> FrameReader<R> {
    /// A reader that refuses bodies over [`MAX_BODY_BYTES`].
    pub fn new(inner: R) -> Self {
        FrameReader { inner, decoder: Decoder::new(), chunk: vec![0; READ_CHUNK_BYTES].into_boxed_slice() }
    }

    /// Ok(None) on clean EOF between frames; Err(io) on I/O errors and on EOF in the middle of a frame
    /// (`ErrorKind::UnexpectedEof`, wrapping a [`Truncated`] that says what was missing).
    pub fn read_frame(&mut self) -> io::Result<Option<Result<Vec<u8>, FrameError>>> {
        loop {
            if let Some(item) = self.decoder.next_frame() {
                return Ok(Some(item));
            }
            let read = match self.inner.read(&mut self.chunk) {
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if read == 0 {
                return match self.decoder.truncation() {
                    Some(truncated) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, truncated)),
                    None => Ok(None),
                };
            }
            self.decoder.feed(&self.chunk[..read]);
        }
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

/// Index of the first `needle` in `haystack`.
fn find_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    find_masked(needle, 0, haystack)
}

/// Index of the first `letter` (a lowercase ASCII letter) in `haystack`, in either case.
fn find_byte_ignoring_case(letter: u8, haystack: &[u8]) -> Option<usize> {
    find_masked(letter, 0x20, haystack)
}

/// Index of the first byte `b` with `b | mask == needle`, comparing eight bytes at a time.
fn find_masked(needle: u8, mask: u8, haystack: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let (pattern, masks) = (ONES * u64::from(needle), ONES * u64::from(mask));
    let mut words = haystack.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let word = (u64::from_le_bytes(word.try_into().expect("chunks_exact yields 8 bytes")) | masks) ^ pattern;
        // The lowest flagged byte is the first zero byte: borrows only ever flag bytes above a real zero.
        let zeros = word.wrapping_sub(ONES) & !word & HIGHS;
        if zeros != 0 {
            return Some(offset + (zeros.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    words.remainder().iter().position(|&b| b | mask == needle).map(|i| offset + i)
}

/// Whether a complete `body` ran on into `after`, the bytes buffered behind it: they do not start a header line
/// and the body does not end like the JSON object a JSON-RPC message is. Undecided (too few bytes) is false.
fn runs_on(body: &[u8], after: &[u8]) -> bool {
    !after.is_empty() && !starts_a_header_line(after) && body.trim_ascii_end().last() != Some(&b'}')
}

/// True when `bytes` start a blank line or `Name:`, or could still turn out to (a name not yet followed by
/// its colon within [`LOOK_AHEAD_BYTES`]).
fn starts_a_header_line(bytes: &[u8]) -> bool {
    if matches!(bytes.first(), Some(b'\r' | b'\n')) {
        return true;
    }
    for (i, &byte) in bytes.iter().take(LOOK_AHEAD_BYTES).enumerate() {
        if byte == b':' {
            return i > 0;
        }
        if !TOKEN_BYTES[usize::from(byte)] {
            return false;
        }
    }
    true
}

/// True for an HTTP token: letters, digits and ``!#$%&'*+-.^_`|~``.
fn is_header_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| TOKEN_BYTES[usize::from(b)])
}

/// Which bytes may appear in a header name. A table, because a per-byte `contains` on the symbol list calls
/// memchr for every byte and once took most of the decode time.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let symbols = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < symbols.len() {
        table[symbols[i] as usize] = true;
        i += 1;
    }
    table
};

/// A decimal `Content-Length` value, or `None` when it is not digits only or does not fit in a `u64`.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The escaped charset of a `Content-Type` value when one is named and it is not UTF-8.
fn unsupported_charset(value: &[u8]) -> Option<String> {
    for parameter in value.split(|&b| b == b';').skip(1) {
        let Some(equals) = find_byte(b'=', parameter) else { continue };
        if !parameter[..equals].trim_ascii().eq_ignore_ascii_case(b"charset") {
            continue;
        }
        let charset = parameter[equals + 1..].trim_ascii();
        let charset = charset.strip_prefix(b"\"").and_then(|c| c.strip_suffix(b"\"")).unwrap_or(charset);
        if !charset.eq_ignore_ascii_case(b"utf-8") && !charset.eq_ignore_ascii_case(b"utf8") {
            return Some(quote(charset));
        }
    }
    None
}

/// Escapes bytes from the wire for an error message, cut to about [`QUOTED_CHARS`] characters.
fn quote(raw: &[u8]) -> String {
    let mut text = String::new();
    for &byte in raw {
        let escaped = std::ascii::escape_default(byte);
        if text.len() + escaped.len() > QUOTED_CHARS {
            text.push_str("...");
            break;
        }
        text.extend(escaped.map(char::from));
    }
    text
}

/// Writes `n` in decimal into the end of `digits` and returns the written part.
fn decimal(mut n: usize, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the decoder yields for `input` fed in one piece.
    fn decode_all(input: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut decoder = Decoder::new();
        decoder.feed(input);
        std::iter::from_fn(|| decoder.next_frame()).collect()
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(body, &mut out);
        out
    }

    fn ok(body: &[u8]) -> Result<Vec<u8>, FrameError> {
        Ok(body.to_vec())
    }

    #[test]
    fn encode_writes_the_content_length_header_then_the_body() {
        assert_eq!(frame(b"{}"), b"Content-Length: 2\r\n\r\n{}");
        assert_eq!(frame(b""), b"Content-Length: 0\r\n\r\n");
        assert_eq!(frame(&[b'x'; 1234])[..24], *b"Content-Length: 1234\r\n\r\n");
    }

    #[test]
    fn decodes_back_to_back_frames_from_one_buffer() {
        let input = [frame(b"one"), frame(b""), frame(b"three")].concat();
        assert_eq!(decode_all(&input), vec![ok(b"one"), ok(b""), ok(b"three")]);
    }

    #[test]
    fn decodes_frames_fed_one_byte_at_a_time() {
        let input = [frame(b"{\"a\":1}"), frame(b"xyz")].concat();
        let mut decoder = Decoder::new();
        let mut frames = Vec::new();
        for byte in &input {
            decoder.feed(std::slice::from_ref(byte));
            frames.extend(std::iter::from_fn(|| decoder.next_frame()));
        }
        assert_eq!(frames, vec![ok(b"{\"a\":1}"), ok(b"xyz")]);
        assert!(!decoder.is_mid_frame());
    }

    #[test]
    fn header_names_are_case_insensitive_and_bare_newlines_are_tolerated() {
        assert_eq!(decode_all(b"content-length: 2\r\n\r\nab"), vec![ok(b"ab")]);
        assert_eq!(decode_all(b"CONTENT-LENGTH:2\n\nab"), vec![ok(b"ab")]);
        assert_eq!(decode_all(b"Content-Length: 2\r\n\nab"), vec![ok(b"ab")]);
        assert_eq!(decode_all(b"Content-Length: 2 \t\n\r\nab"), vec![ok(b"ab")]);
    }

    #[test]
    fn content_type_and_unknown_headers_are_accepted() {
        let input =
            b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nX-Trace: 1\r\nContent-Length: 2\r\n\r\nab";
        assert_eq!(decode_all(input), vec![ok(b"ab")]);
        for charset in ["utf8", "UTF-8", "\"utf-8\""] {
            let input = format!("Content-Length: 1\r\nContent-Type: text/json; charset={charset}\r\n\r\nx");
            assert_eq!(decode_all(input.as_bytes()), vec![ok(b"x")], "charset {charset}");
        }
    }

    #[test]
    fn leading_blank_lines_are_skipped() {
        let input = [b"\r\n\r\n\n".as_slice(), &frame(b"a"), b"\r\n", &frame(b"b")].concat();
        assert_eq!(decode_all(&input), vec![ok(b"a"), ok(b"b")]);
    }

    #[test]
    fn duplicate_content_length_must_agree() {
        assert_eq!(decode_all(b"Content-Length: 1\r\ncontent-length: 1\r\n\r\nx"), vec![ok(b"x")]);
        let conflicting = b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
        assert_eq!(decode_all(conflicting), vec![Err(FrameError::InvalidContentLength { value: "5, 6".into() })]);
    }

    #[test]
    fn invalid_content_length_values_are_rejected_and_quoted() {
        for value in ["abc", "", "-1", "+5", "1 2", "0x10", "99999999999999999999999"] {
            let input = format!("Content-Length: {value}\r\n\r\n{}", String::from_utf8(frame(b"next")).unwrap());
            let expected = FrameError::InvalidContentLength { value: value.into() };
            assert_eq!(decode_all(input.as_bytes()), vec![Err(expected), ok(b"next")], "value {value:?}");
        }
        let err = FrameError::InvalidContentLength { value: "abc".into() };
        assert_eq!(err.to_string(), "invalid Content-Length value \"abc\": expected one non-negative decimal integer");
    }

    #[test]
    fn malformed_header_is_reported_once_then_the_next_frame_decodes() {
        let input = [b"this is not a header\r\n\r\n".as_slice(), &frame(b"ok")].concat();
        let expected = FrameError::MalformedHeader { line: "this is not a header".into() };
        assert_eq!(decode_all(&input), vec![Err(expected), ok(b"ok")]);
        let bad_name = [b"Content Length: 2\r\n\r\nab\r\n".as_slice(), &frame(b"ok")].concat();
        assert!(matches!(decode_all(&bad_name)[..], [Err(FrameError::MalformedHeader { .. }), Ok(_)]));
    }

    #[test]
    fn malformed_header_message_is_escaped_and_cut() {
        let line = [b"\x00\xff\"".as_slice(), &[b'y'; 200]].concat();
        let input = [line.as_slice(), b"\r\n"].concat();
        let Some(Err(FrameError::MalformedHeader { line: quoted })) = decode_all(&input).pop() else {
            panic!("expected a malformed header error");
        };
        assert!(quoted.starts_with("\\x00\\xff\\\"yyy"), "{quoted}");
        assert!(quoted.ends_with("y..."), "{quoted}");
        assert!(quoted.len() <= QUOTED_CHARS + 3, "{quoted}");
        let err = FrameError::MalformedHeader { line: "abc".into() };
        assert_eq!(err.to_string(), "malformed header line \"abc\": expected \"Name: value\"");
    }

    #[test]
    fn missing_content_length_skips_to_the_next_content_length_line() {
        let input = [b"Content-Type: x\r\n\r\n{\"body\":\nwithout a length}\n".as_slice(), &frame(b"ok")].concat();
        assert_eq!(decode_all(&input), vec![Err(FrameError::MissingContentLength), ok(b"ok")]);
        assert_eq!(FrameError::MissingContentLength.to_string(), "header block has no Content-Length header");
    }

    #[test]
    fn too_large_is_reported_before_the_body_arrives_and_the_body_is_not_buffered() {
        let mut decoder = Decoder::with_max_body(10);
        decoder.feed(b"Content-Length: 20\r\n\r\n0123");
        assert_eq!(decoder.next_frame(), Some(Err(FrameError::TooLarge { length: 20, max: 10 })));
        assert_eq!(decoder.next_frame(), None);
        assert_eq!(decoder.truncation(), Some(Truncated::SkippedBody { missing: 16 }));
        decoder.feed(b"456789abcdef");
        assert_eq!(decoder.buffered_len(), 0);
        decoder.feed(&[b"ghij".as_slice(), &frame(b"next")].concat());
        assert_eq!(decoder.next_frame(), Some(ok(b"next")));
        assert_eq!(decoder.next_frame(), None);
        assert!(!decoder.is_mid_frame());
    }

    #[test]
    fn too_large_message_names_the_length_and_the_cap() {
        let err = FrameError::TooLarge { length: 99_999_999, max: MAX_BODY_BYTES };
        assert_eq!(err.to_string(), "Content-Length 99999999 exceeds the 16777216-byte cap");
        let huge = format!("Content-Length: {}\r\n\r\n", u64::MAX);
        let mut decoder = Decoder::new();
        decoder.feed(huge.as_bytes());
        assert_eq!(decoder.next_frame(), Some(Err(FrameError::TooLarge { length: u64::MAX, max: MAX_BODY_BYTES })));
        decoder.feed(&[0; 100_000]);
        assert_eq!(decoder.buffered_len(), 0);
    }

    #[test]
    fn unsupported_charset_skips_exactly_its_body() {
        let input = [
            b"Content-Type: application/json; charset=latin1\r\nContent-Length: 3\r\n\r\nabc".as_slice(),
            &frame(b"ok"),
        ]
        .concat();
        let expected = FrameError::UnsupportedCharset { value: "latin1".into() };
        assert_eq!(decode_all(&input), vec![Err(expected.clone()), ok(b"ok")]);
        assert_eq!(expected.to_string(), "unsupported charset \"latin1\" in Content-Type: only utf-8 is accepted");
    }

    #[test]
    fn header_too_long_without_a_newline_is_reported_once_and_discarded() {
        let mut decoder = Decoder::new();
        decoder.feed(&[b'x'; MAX_HEADER_BYTES]);
        assert_eq!(decoder.next_frame(), None);
        decoder.feed(b"x");
        assert_eq!(decoder.next_frame(), Some(Err(FrameError::HeaderTooLong { max: MAX_HEADER_BYTES })));
        assert_eq!(decoder.next_frame(), None, "resynchronising looks for a Content-Length in the line");
        assert_eq!(decoder.buffered_len(), 0);
        decoder.feed(&[b'x'; 3 * MAX_HEADER_BYTES]);
        assert_eq!(decoder.next_frame(), None);
        assert_eq!(decoder.buffered_len(), 0);
        decoder.feed(&[b"\r\n".as_slice(), &frame(b"ok")].concat());
        assert_eq!(decoder.next_frame(), Some(ok(b"ok")));
        assert_eq!(
            FrameError::HeaderTooLong { max: MAX_HEADER_BYTES }.to_string(),
            "header block exceeds 8192 bytes without a blank line"
        );
    }

    #[test]
    fn header_too_long_counts_every_line_of_the_block() {
        let mut input = b"X-Padding: 0123456789012345678901234567890123456789\r\n".repeat(MAX_HEADER_BYTES / 40);
        input.extend_from_slice(&frame(b"ok"));
        assert_eq!(decode_all(&input), vec![Err(FrameError::HeaderTooLong { max: MAX_HEADER_BYTES }), ok(b"ok")]);
    }

    #[test]
    fn overlong_content_length_line_cannot_make_resync_loop() {
        let input = [b"Content-Length: ".as_slice(), &[b'1'; 2 * MAX_HEADER_BYTES]].concat();
        let mut decoder = Decoder::new();
        decoder.feed(&input);
        assert_eq!(decoder.next_frame(), Some(Err(FrameError::HeaderTooLong { max: MAX_HEADER_BYTES })));
        assert_eq!(decoder.next_frame(), None);
    }

    #[test]
    fn resync_keeps_a_partial_content_length_prefix() {
        let mut decoder = Decoder::new();
        decoder.feed(b"garbage\nConte");
        assert!(matches!(decoder.next_frame(), Some(Err(FrameError::MalformedHeader { .. }))));
        assert_eq!(decoder.next_frame(), None);
        assert_eq!(decoder.buffered_len(), 5);
        decoder.feed(b"nt-LENGTH: 2\r\n\r\nhi");
        assert_eq!(decoder.next_frame(), Some(ok(b"hi")));
    }

    #[test]
    fn resync_finds_content_length_in_the_middle_of_a_line() {
        let input = [b"bad\r\nsee content-length: 1\r\n\r\nx".as_slice(), &frame(b"ok")].concat();
        assert!(matches!(decode_all(&input)[..], [Err(FrameError::MalformedHeader { .. }), Ok(ref x), Ok(ref ok)]
            if x == b"x" && ok == b"ok"));
    }

    /// Regression: resynchronising only at line starts lost every frame after a body without a length,
    /// because each body (JSON, no trailing newline) is glued to the next frame's header.
    #[test]
    fn frames_after_a_body_without_content_length_all_decode() {
        let bodies: Vec<Vec<u8>> = (0..5).map(|i| format!("{{\"id\":{i}}}").into_bytes()).collect();
        let mut input = b"Content-Type: x\r\n\r\n{\"jsonrpc\":\"2.0\"}".to_vec();
        bodies.iter().for_each(|body| encode(body, &mut input));
        let mut expected = vec![Err(FrameError::MissingContentLength)];
        expected.extend(bodies.into_iter().map(Ok));
        assert_eq!(decode_all(&input), expected);
    }

    const REQUEST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"nxops/status"}"#;

    /// Regression: the rest of a body longer than its `Content-Length` was read as a header line, and the
    /// next frame's header, glued to its end, was thrown away with it.
    #[test]
    fn a_body_longer_than_its_content_length_is_one_error_and_the_next_frame_decodes() {
        let input = [b"Content-Length: 10\r\n\r\n".as_slice(), REQUEST, &frame(REQUEST)].concat();
        assert_eq!(decode_all(&input), vec![Err(FrameError::BodyRunsOn { length: 10 }), ok(REQUEST)]);
        assert_eq!(
            FrameError::BodyRunsOn { length: 10 }.to_string(),
            "Content-Length 10 is shorter than the body: the bytes after those 10 do not start a header; \
             skipped to the next Content-Length"
        );
        // Cut right after a name: the colon that follows is not a header line either.
        let input = [b"Content-Length: 9\r\n\r\n".as_slice(), REQUEST, &frame(b"next")].concat();
        assert_eq!(decode_all(&input), vec![Err(FrameError::BodyRunsOn { length: 9 }), ok(b"next")]);
    }

    /// Regression: the same loss for a body sent with no header at all.
    #[test]
    fn a_body_without_a_header_is_one_error_and_the_next_frame_decodes() {
        let input = [REQUEST, &frame(REQUEST)].concat();
        let items = decode_all(&input);
        assert!(
            matches!(items[..], [Err(FrameError::MalformedHeader { .. }), Ok(ref body)] if body == REQUEST),
            "{items:?}"
        );
    }

    #[test]
    fn a_run_on_body_split_at_its_declared_end_still_lets_the_next_frame_decode() {
        let input = [b"Content-Length: 10\r\n\r\n".as_slice(), REQUEST, &frame(b"next")].concat();
        let mut decoder = Decoder::new();
        decoder.feed(&input[..22 + 10]);
        assert_eq!(decoder.next_frame(), Some(Ok(REQUEST[..10].to_vec())), "nothing after it yet: handed over");
        decoder.feed(&input[22 + 10..]);
        assert!(matches!(decoder.next_frame(), Some(Err(FrameError::MalformedHeader { .. }))));
        assert_eq!(decoder.next_frame(), Some(ok(b"next")));
        assert_eq!(decoder.next_frame(), None);
    }

    #[test]
    fn a_body_that_ends_like_an_object_is_handed_over_and_garbage_after_it_is_reported_apart() {
        let input = [frame(REQUEST), b"garbage \"x\"".to_vec(), frame(b"next")].concat();
        let items = decode_all(&input);
        assert!(
            matches!(items[..], [Ok(ref body), Err(FrameError::MalformedHeader { .. }), Ok(ref next)]
                if body == REQUEST && next == b"next"),
            "{items:?}"
        );
        // Blank lines and header lines after a body are not garbage.
        let input = [b"Content-Length: 3\r\n\r\nabc\r\nX-Extra: 1\r\nContent-Length: 1\r\n\r\nz".as_slice()].concat();
        assert_eq!(decode_all(&input), vec![ok(b"abc"), ok(b"z")]);
    }

    #[test]
    fn an_overlong_line_does_not_swallow_the_header_glued_to_its_end() {
        let input = [vec![b'z'; MAX_HEADER_BYTES + 10], frame(b"ok")].concat();
        assert_eq!(decode_all(&input), vec![Err(FrameError::HeaderTooLong { max: MAX_HEADER_BYTES }), ok(b"ok")]);
        let input = [b"Content-Length: abc".as_slice(), &frame(b"ok")].concat();
        let items = decode_all(&input);
        assert_eq!(items.last(), Some(&ok(b"ok")), "{items:?}");
    }

    #[test]
    fn short_body_waits_and_reports_what_is_missing() {
        let mut decoder = Decoder::new();
        decoder.feed(b"Content-Length: 10\r\n\r\n0123");
        assert_eq!(decoder.next_frame(), None);
        assert!(decoder.is_mid_frame());
        let truncated = decoder.truncation().unwrap();
        assert_eq!(truncated, Truncated::Body { received: 4, expected: 10 });
        assert_eq!(truncated.to_string(), "stream ended 6 bytes short of a 10-byte frame body (4 bytes received)");
        decoder.feed(b"456789");
        assert_eq!(decoder.next_frame(), Some(ok(b"0123456789")));
        assert!(!decoder.is_mid_frame());
    }

    #[test]
    fn is_mid_frame_tracks_header_bytes_but_not_stray_blank_lines() {
        let mut decoder = Decoder::new();
        assert!(!decoder.is_mid_frame());
        decoder.feed(b"\r\n\r");
        assert_eq!(decoder.next_frame(), None);
        assert!(!decoder.is_mid_frame());
        decoder.feed(b"\nContent-Len");
        assert_eq!(decoder.next_frame(), None);
        assert_eq!(decoder.truncation(), Some(Truncated::Header { received: 11 }));
        decoder.feed(b"gth: 1\r\n");
        assert_eq!(decoder.next_frame(), None);
        assert_eq!(decoder.truncation(), Some(Truncated::Header { received: 19 }));
    }

    #[test]
    fn large_bodies_survive_chunked_feeding_and_the_zero_copy_hand_over() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let input = [frame(&big), frame(b"after"), frame(&big)].concat();
        let mut decoder = Decoder::new();
        let mut frames = Vec::new();
        for chunk in input.chunks(READ_CHUNK_BYTES - 7) {
            decoder.feed(chunk);
            frames.extend(std::iter::from_fn(|| decoder.next_frame()));
        }
        assert_eq!(frames, vec![Ok(big.clone()), ok(b"after"), Ok(big)]);
        assert_eq!(decoder.buffered_len(), 0);
    }

    #[test]
    fn consumed_bytes_are_compacted_away() {
        let mut decoder = Decoder::new();
        let one = frame(&[b'a'; 80]);
        for _ in 0..10_000 {
            decoder.feed(&one[..50]);
            assert_eq!(decoder.next_frame(), None);
            decoder.feed(&one[50..]);
            assert_eq!(decoder.next_frame(), Some(Ok(vec![b'a'; 80])));
        }
        assert!(decoder.buf.capacity() <= 2 * COMPACT_MIN_BYTES + 2 * one.len(), "{}", decoder.buf.capacity());
    }

    #[test]
    fn find_byte_agrees_with_a_naive_search() {
        let haystack: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) | 1).collect();
        for start in 0..haystack.len() {
            for &needle in &[b'\n', 0x80, 0xff, 1, haystack[start]] {
                let slice = &haystack[start..];
                assert_eq!(find_byte(needle, slice), slice.iter().position(|&b| b == needle), "{start} {needle}");
            }
        }
        assert_eq!(find_byte(b'\n', b"\x0b\x0b\x0b\x0b\x0b\x0b\x0b\n"), Some(7));
        assert_eq!(find_byte(b'\n', b"\x09\x0a"), Some(1));
        for text in [b"xxxxxxxxxxxxC".as_slice(), b"xxxxxxxxc", b"\xe3\xc3C", b"C", b"#$%^&*()!c"] {
            let naive = text.iter().position(|b| b.eq_ignore_ascii_case(&b'c'));
            assert_eq!(find_byte_ignoring_case(b'c', text), naive, "{text:?}");
        }
    }

    /// A reader that returns at most one byte per call and is interrupted before every read.
    struct Trickle<'a> {
        data: &'a [u8],
        interrupt: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = self.data.len().min(buf.len()).min(1);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn frame_reader_reads_frames_then_clean_eof() {
        let input = [frame(b"a"), b"\r\n".to_vec(), frame(b"bc")].concat();
        let mut reader = FrameReader::new(Trickle { data: &input, interrupt: false });
        assert_eq!(reader.read_frame().unwrap(), Some(ok(b"a")));
        assert_eq!(reader.read_frame().unwrap(), Some(ok(b"bc")));
        assert_eq!(reader.read_frame().unwrap(), None);
        assert_eq!(reader.read_frame().unwrap(), None);
    }

    #[test]
    fn frame_reader_reports_eof_inside_a_frame() {
        let mut reader = FrameReader::new(io::Cursor::new(b"Content-Length: 10\r\n\r\nabc".to_vec()));
        let err = reader.read_frame().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(err.to_string(), "stream ended 7 bytes short of a 10-byte frame body (3 bytes received)");
        let mut reader = FrameReader::new(io::Cursor::new(b"Content-Length: 10\r\n".to_vec()));
        let err = reader.read_frame().unwrap_err();
        assert_eq!(
            err.to_string(),
            "stream ended inside a frame header after 20 bytes, before the blank line that ends it"
        );
    }

    #[test]
    fn frame_reader_passes_frame_errors_through_and_keeps_going() {
        let input = [b"nonsense\r\n\r\n".as_slice(), &frame(b"ok")].concat();
        let mut reader = FrameReader::new(input.as_slice());
        assert!(matches!(reader.read_frame(), Ok(Some(Err(FrameError::MalformedHeader { .. })))));
        assert_eq!(reader.read_frame().unwrap(), Some(ok(b"ok")));
        assert_eq!(reader.read_frame().unwrap(), None);
    }
}
