//! LSP framing for the benchmarks that drive `nxops serve --stdio` over its pipes
//! (`Content-Length` headers, then the JSON body).
// Each benchmark includes this file and uses part of it.
#![allow(dead_code)]

use std::io::BufRead;

use serde_json::Value;

/// One message, framed.
pub fn frame(message: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(message).unwrap();
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend(body);
    out
}

/// The next message; `None` at the end of the stream or on a body that is not JSON.
pub fn read_frame(reader: &mut impl BufRead) -> Option<Value> {
    serde_json::from_slice(&read_raw_frame(reader)?).ok()
}

/// The next frame's body bytes; `None` at the end of the stream.
pub fn read_raw_frame(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some(value) = trimmed.strip_prefix("Content-Length:") {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    std::io::Read::read_exact(reader, &mut body).ok()?;
    Some(body)
}
