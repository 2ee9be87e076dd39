//! Frame bodies to JSON-RPC 2.0 messages, with a precise rejection for anything else.
//!
//! [`parse_message`] is the one place where bytes from the wire become `tower_lsp_server` messages. It checks,
//! in order: UTF-8, JSON syntax, that the value is a single object (batches are refused), and then the
//! JSON-RPC shape. An object with a `method` is a request or notification; an object with an `id` and a
//! `result` or `error` but no `method` is a response.
//!
//! # Invariants
//!
//! - Never panics, whatever the bytes.
//! - Every rejection carries a JSON-RPC error whose message says what was wrong: `-32700` when the body is not
//!   UTF-8 JSON, `-32600` when it is JSON but not a valid message. [`frame_error`] maps framing errors to
//!   `-32700` too, so all transport-level error codes are chosen in this module.
//! - A rejection carries the request's `id` whenever the raw JSON has one of a valid type, so the caller can
//!   answer that request instead of sending an error with a null id.

use serde_json::{Map, Value};
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Id, Request, Response};

use super::frame::FrameError;

/// A JSON-RPC message received from the peer.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request, or a notification when it has no id.
    Request(Request),
    Response(Response),
}

/// A body that is not a valid JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The message's id, recovered from the raw JSON when it has one of a valid type.
    pub id: Option<Id>,
    pub error: Error,
}

/// Parses one frame body into a JSON-RPC message.
pub fn parse_message(body: &[u8]) -> Result<Incoming, Rejected> {
    let text = std::str::from_utf8(body).map_err(|err| {
        let offset = err.valid_up_to();
        rejected(
            None,
            ErrorCode::ParseError,
            format!("message body is not valid UTF-8 (invalid byte at offset {offset})"),
        )
    })?;
    // Fast path: a well-formed request deserializes in one pass. Anything unusual (a response, a bad field, an
    // empty method) takes the checked path below. Only objects may take it: serde's derived `Deserialize` also
    // reads a struct from a JSON array, so `["2.0","exit"]` would pass for a notification.
    if text.trim_start().starts_with('{')
        && let Ok(request) = serde_json::from_str::<Request>(text)
        && !request.method().is_empty()
    {
        return Ok(Incoming::Request(request));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|err| rejected(None, ErrorCode::ParseError, format!("message body is not valid JSON: {err}")))?;
    match value {
        Value::Object(object) => parse_object(object),
        Value::Array(_) => Err(invalid(None, "batch requests are not supported")),
        other => Err(invalid(None, format!("a JSON-RPC message must be a JSON object, not {}", type_name(&other)))),
    }
}

/// The JSON-RPC error for a frame the decoder could not decode.
pub fn frame_error(err: &FrameError) -> Error {
    Error { code: ErrorCode::ParseError, message: err.to_string().into(), data: None }
}

fn parse_object(object: Map<String, Value>) -> Result<Incoming, Rejected> {
    let id = recover_id(&object);
    if let Some(method) = object.get("method") {
        if !method.is_string() {
            return Err(invalid(id, "\"method\" must be a string"));
        }
        check_common_fields(&object, id.as_ref())?;
        return deserialize(object, id, "request").map(Incoming::Request);
    }
    let has_result = object.contains_key("result");
    let has_error = object.contains_key("error");
    if object.contains_key("id") && (has_result || has_error) {
        check_common_fields(&object, id.as_ref())?;
        if has_result && has_error {
            return Err(invalid(id, "a response must not have both \"result\" and \"error\""));
        }
        return deserialize(object, id, "response").map(Incoming::Response);
    }
    Err(invalid(
        id,
        "not a JSON-RPC request or response: expected \"method\" (a request or notification) \
         or \"id\" with \"result\" or \"error\" (a response)",
    ))
}

/// Checks the `jsonrpc` version and the type of `id`, which requests and responses share.
fn check_common_fields(object: &Map<String, Value>, id: Option<&Id>) -> Result<(), Rejected> {
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(id.cloned(), "\"jsonrpc\" must be \"2.0\""));
    }
    if object.contains_key("id") && id.is_none() {
        return Err(invalid(None, "\"id\" must be an integer, a string or null"));
    }
    Ok(())
}

/// Deserializes a checked object; the remaining failures are in fields such as a response's `error`.
fn deserialize<T: serde::de::DeserializeOwned>(
    object: Map<String, Value>,
    id: Option<Id>,
    kind: &str,
) -> Result<T, Rejected> {
    serde_json::from_value(Value::Object(object)).map_err(|err| invalid(id, format!("invalid {kind}: {err}")))
}

/// The `id` member when it has a type JSON-RPC allows (an integer, a string or null).
fn recover_id(object: &Map<String, Value>) -> Option<Id> {
    match object.get("id")? {
        Value::Number(number) => number.as_i64().map(Id::Number),
        Value::String(text) => Some(Id::String(text.clone())),
        Value::Null => Some(Id::Null),
        _ => None,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid(id: Option<Id>, message: impl Into<std::borrow::Cow<'static, str>>) -> Rejected {
    rejected(id, ErrorCode::InvalidRequest, message)
}

fn rejected(id: Option<Id>, code: ErrorCode, message: impl Into<std::borrow::Cow<'static, str>>) -> Rejected {
    Rejected { id, error: Error { code, message: message.into(), data: None } }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(body: &str) -> (Option<Id>, i64, String) {
        let Err(Rejected { id, error }) = parse_message(body.as_bytes()) else {
            panic!("expected {body} to be rejected");
        };
        (id, error.code.code(), error.message.into_owned())
    }

    fn request(body: &str) -> Request {
        match parse_message(body.as_bytes()) {
            Ok(Incoming::Request(request)) => request,
            other => panic!("expected a request from {body}, got {other:?}"),
        }
    }

    fn response(body: &str) -> Response {
        match parse_message(body.as_bytes()) {
            Ok(Incoming::Response(response)) => response,
            other => panic!("expected a response from {body}, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_request_with_params() {
        let request = request(r#"{"jsonrpc":"2.0","id":7,"method":"nx/info","params":{"a":[1]}}"#);
        assert_eq!(request.method(), "nx/info");
        assert_eq!(request.id(), Some(&Id::Number(7)));
        assert_eq!(request.params(), Some(&serde_json::json!({"a": [1]})));
    }

    #[test]
    fn parses_a_notification_without_an_id() {
        let notification = request(r#"{"jsonrpc":"2.0","method":"exit"}"#);
        assert_eq!(notification.method(), "exit");
        assert_eq!(notification.id(), None);
        assert_eq!(notification.params(), None);
    }

    #[test]
    fn parses_string_ids() {
        assert_eq!(request(r#"{"jsonrpc":"2.0","id":"a-1","method":"m"}"#).id(), Some(&Id::String("a-1".into())));
    }

    #[test]
    fn parses_ok_and_error_responses() {
        let ok = response(r#"{"jsonrpc":"2.0","id":3,"result":{"x":null}}"#);
        assert_eq!(ok.id(), &Id::Number(3));
        assert_eq!(ok.result(), Some(&serde_json::json!({"x": null})));
        let failed = response(r#"{"jsonrpc":"2.0","id":"r","error":{"code":-32601,"message":"nope"}}"#);
        assert_eq!(failed.error().map(|e| e.code), Some(ErrorCode::MethodNotFound));
        assert_eq!(response(r#"{"jsonrpc":"2.0","id":null,"result":null}"#).id(), &Id::Null);
    }

    #[test]
    fn rejects_invalid_utf8_with_the_offset() {
        let Err(Rejected { id, error }) = parse_message(b"{\"jsonrpc\":\"2.0\",\xff}") else { panic!() };
        assert_eq!(id, None);
        assert_eq!(error.code, ErrorCode::ParseError);
        assert_eq!(error.message, "message body is not valid UTF-8 (invalid byte at offset 17)");
    }

    #[test]
    fn rejects_invalid_json_with_line_and_column() {
        let (id, code, message) = rejection("{\"id\": 1,\n \"method\": }");
        assert_eq!((id, code), (None, -32700));
        assert_eq!(message, "message body is not valid JSON: expected value at line 2 column 12");
        let (_, code, message) = rejection("");
        assert_eq!(code, -32700);
        assert!(message.starts_with("message body is not valid JSON: EOF while parsing"), "{message}");
    }

    /// Regression: the one-pass fast path read a JSON array as a request, because serde's derived
    /// `Deserialize` accepts a struct's fields as a sequence.
    #[test]
    fn arrays_are_batches_even_when_they_look_like_request_fields() {
        for body in [r#"["2.0","exit"]"#, r#" ["2.0","m",{},1]"#] {
            let (id, code, message) = rejection(body);
            assert_eq!((id, code, message.as_str()), (None, -32600, "batch requests are not supported"));
        }
    }

    #[test]
    fn rejects_batches() {
        let (id, code, message) = rejection(r#"[{"jsonrpc":"2.0","id":1,"method":"m"}]"#);
        assert_eq!((id, code, message.as_str()), (None, -32600, "batch requests are not supported"));
    }

    #[test]
    fn rejects_non_objects_naming_their_type() {
        for (body, name) in [("null", "null"), ("true", "a boolean"), ("1.5", "a number"), ("\"x\"", "a string")] {
            let (_, code, message) = rejection(body);
            assert_eq!(code, -32600);
            assert_eq!(message, format!("a JSON-RPC message must be a JSON object, not {name}"));
        }
    }

    #[test]
    fn rejects_a_wrong_or_missing_version_keeping_the_id() {
        let (id, code, message) = rejection(r#"{"jsonrpc":"1.0","id":4,"method":"m"}"#);
        assert_eq!((id, code, message.as_str()), (Some(Id::Number(4)), -32600, "\"jsonrpc\" must be \"2.0\""));
        let (id, _, message) = rejection(r#"{"id":"s","method":"m"}"#);
        assert_eq!((id, message.as_str()), (Some(Id::String("s".into())), "\"jsonrpc\" must be \"2.0\""));
        let (id, _, message) = rejection(r#"{"jsonrpc":2.0,"method":"m"}"#);
        assert_eq!((id, message.as_str()), (None, "\"jsonrpc\" must be \"2.0\""));
        let (id, _, _) = rejection(r#"{"id":9,"result":1}"#);
        assert_eq!(id, Some(Id::Number(9)));
    }

    #[test]
    fn rejects_a_method_that_is_not_a_string() {
        let (id, code, message) = rejection(r#"{"jsonrpc":"2.0","id":5,"method":42}"#);
        assert_eq!((id, code, message.as_str()), (Some(Id::Number(5)), -32600, "\"method\" must be a string"));
    }

    #[test]
    fn rejects_ids_of_the_wrong_type() {
        for body in [r#"{"jsonrpc":"2.0","id":1.5,"method":"m"}"#, r#"{"jsonrpc":"2.0","id":{},"result":1}"#] {
            let (id, code, message) = rejection(body);
            assert_eq!((id, code, message.as_str()), (None, -32600, "\"id\" must be an integer, a string or null"));
        }
    }

    #[test]
    fn rejects_objects_that_are_neither_requests_nor_responses() {
        for body in [r#"{"jsonrpc":"2.0","id":2}"#, r#"{"jsonrpc":"2.0","result":1}"#, "{}"] {
            let (_, code, message) = rejection(body);
            assert_eq!(code, -32600);
            assert!(message.starts_with("not a JSON-RPC request or response: expected \"method\""), "{message}");
        }
        assert_eq!(rejection(r#"{"jsonrpc":"2.0","id":2}"#).0, Some(Id::Number(2)));
    }

    #[test]
    fn rejects_malformed_responses_keeping_the_id() {
        let (id, code, message) = rejection(r#"{"jsonrpc":"2.0","id":6,"result":1,"error":{"code":1,"message":""}}"#);
        assert_eq!(id, Some(Id::Number(6)));
        assert_eq!((code, message.as_str()), (-32600, "a response must not have both \"result\" and \"error\""));
        let (id, code, message) = rejection(r#"{"jsonrpc":"2.0","id":"e","error":{"message":"no code"}}"#);
        assert_eq!((id, code), (Some(Id::String("e".into())), -32600));
        assert!(message.starts_with("invalid response: "), "{message}");
    }

    #[test]
    fn frame_errors_become_parse_errors_with_the_same_message() {
        let error = frame_error(&FrameError::TooLarge { length: 99_999_999, max: 16_777_216 });
        assert_eq!(error.code, ErrorCode::ParseError);
        assert_eq!(error.message, "Content-Length 99999999 exceeds the 16777216-byte cap");
        assert_eq!(error.data, None);
    }
}
