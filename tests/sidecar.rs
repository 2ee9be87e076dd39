//! The sidecar over its real protocol: lifecycle, attach and detach, events,
//! progress and cancellation, settings from the client, and every kind of bad
//! input, each answered without the sidecar dying or lingering.

mod common;

use std::path::Path;

use common::{Scratch, Sidecar, alive};
use serde_json::{Value, json};

fn status_ok(sidecar: &mut Sidecar) -> Value {
    sidecar.request("nxops/status", json!({})).expect("status answers")
}

fn owner_socket(status: &Value) -> std::path::PathBuf {
    let role = &status["workspaces"][0]["role"];
    assert_eq!(role["kind"], "owner", "{status:#}");
    role["socket"].as_str().unwrap().into()
}

#[test]
fn lifecycle_attaches_the_root_and_releases_everything_on_exit() {
    let s = Scratch::new();
    let ws = s.workspace("life", "none");
    let mut sidecar = Sidecar::start(&s, &ws, &[]);
    let early = sidecar.request("nxops/status", json!({})).unwrap_err();
    assert_eq!(early["code"], -32002, "requests before initialize are refused: {early}");
    let init = sidecar.initialize(&ws);
    assert_eq!(init["serverInfo"]["name"], "nxops");
    assert!(
        init["capabilities"]["experimental"]["nxops"]["methods"].as_array().unwrap().contains(&json!("nxops/status"))
    );
    let status = status_ok(&mut sidecar);
    assert_eq!(status["pid"], sidecar.pid());
    assert_eq!(status["workspaces"][0]["root"], json!(ws));
    assert_eq!(status["sessions"][0]["clientName"], "nxops-tests");
    let socket = owner_socket(&status);
    assert!(socket.as_os_str().len() <= 107);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);

    assert_eq!(sidecar.request("shutdown", Value::Null).unwrap(), Value::Null);
    sidecar.notify("exit", Value::Null);
    assert_eq!(sidecar.wait().code(), Some(0));
    assert!(!socket.exists(), "the owner removes its socket when it exits");
}

#[test]
fn exit_without_shutdown_exits_1_and_eof_exits_0() {
    let s = Scratch::new();
    let ws = s.workspace("exit", "none");
    let mut sidecar = Sidecar::started(&s, &ws);
    sidecar.notify("exit", Value::Null);
    assert_eq!(sidecar.wait().code(), Some(1));

    let mut sidecar = Sidecar::started(&s, &ws);
    let socket = owner_socket(&status_ok(&mut sidecar));
    assert_eq!(sidecar.close_stdin_and_wait().code(), Some(0));
    assert!(!socket.exists());
}

#[test]
fn client_vanishing_mid_request_ends_the_sidecar() {
    let s = Scratch::new();
    let ws = s.workspace("vanish", "none");
    let mut sidecar = Sidecar::started(&s, &ws);
    sidecar.write_raw(b"Content-Length: 100\r\n\r\n{\"jsonrpc\":\"2.0\",");
    let status = sidecar.close_stdin_and_wait();
    assert!(status.success(), "{status}");
    assert!(!alive(sidecar.pid()));
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let s = Scratch::new();
    let ws = s.workspace("term", "none");
    let mut sidecar = Sidecar::started(&s, &ws);
    let socket = owner_socket(&status_ok(&mut sidecar));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(sidecar.pid() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert_eq!(sidecar.wait().code(), Some(0));
    assert!(!socket.exists());
}

#[test]
fn bad_input_gets_clear_errors_and_the_sidecar_keeps_serving() {
    let s = Scratch::new();
    let ws = s.workspace("bad", "none");
    let mut sidecar = Sidecar::start(&s, &ws, &[("NXOPS_FAULTS", "panic:nxops/workspace/list")]);
    sidecar.initialize(&ws);
    let expect_error = |sidecar: &mut Sidecar, raw: &[u8], code: i64, needle: &str| {
        sidecar.write_raw(raw);
        let message = sidecar.next_message().expect("an error response");
        assert_eq!(message["error"]["code"], code, "{message}");
        let text = message["error"]["message"].as_str().unwrap();
        assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        status_ok(sidecar);
    };
    expect_error(&mut sidecar, b"Content-Length: x1\r\n\r\n{}", -32700, "Content-Length");
    expect_error(&mut sidecar, b"Garbage-Without-Colon\r\n\r\n", -32700, "malformed header");
    expect_error(&mut sidecar, b"Content-Length: 9\r\n\r\n{\"a\": tru", -32700, "not valid JSON");
    expect_error(&mut sidecar, b"Content-Length: 4\r\n\r\n\"\xff\xfe\"", -32700, "not valid UTF-8");
    expect_error(&mut sidecar, b"Content-Length: 2\r\n\r\n[]", -32600, "batch");
    // Over the cap: answered as soon as the header is read; the body is then skipped unbuffered.
    let over = nxops::rpc::frame::MAX_BODY_BYTES + 1;
    sidecar.write_raw(format!("Content-Length: {over}\r\n\r\n").as_bytes());
    let message = sidecar.next_message().expect("an error before the body arrives");
    assert!(message["error"]["message"].as_str().unwrap().contains("exceeds"), "{message}");
    sidecar.write_raw(&vec![b'x'; over]);
    status_ok(&mut sidecar);
    expect_error(&mut sidecar, b"Content-Length: 30\r\n\r\n{\"jsonrpc\":\"1.0\",\"method\":\"x\"}", -32600, "2.0");

    // LSP: a `$/` notification may be ignored, a `$/` request must be answered -32601.
    sidecar.notify("$/unknownNotification", json!({}));
    let err = sidecar.request("$/unknownRequest", json!({})).unwrap_err();
    assert_eq!(err["code"], -32601, "{err}");
    assert_eq!(err["message"], "unknown method \"$/unknownRequest\"");
    let err = sidecar.request("nxops/does/not/exist", json!({})).unwrap_err();
    assert_eq!(err["code"], -32601);
    assert_eq!(err["message"], "unknown method \"nxops/does/not/exist\"");
    let err = sidecar.request("nxops/workspace/attach", json!({"pth": "/x"})).unwrap_err();
    assert_eq!(err["code"], -32602);
    assert!(err["message"].as_str().unwrap().contains("unknown field `pth`, expected `path`"), "{err}");
    let err = sidecar.request("nxops/workspace/attach", json!({})).unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("missing field `path`"), "{err}");
    let err = sidecar.request("nxops/workspace/attach", json!({"path": 5})).unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("expected path string"), "{err}");
    let err = sidecar.request("nxops/subscribe", json!({"events": ["workspaceAttachd"]})).unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("did you mean \"workspaceAttached\"?"), "{err}");
    let err = sidecar.request("nxops/workspace/attach", json!({"path": "/nonexistent/ws"})).unwrap_err();
    assert_eq!(err["code"], -32003);
    assert!(err["message"].as_str().unwrap().contains("/nonexistent/ws"), "{err}");

    let err = sidecar.request("nxops/workspace/list", json!({})).unwrap_err();
    assert_eq!(err["code"], -32603);
    assert!(err["message"].as_str().unwrap().contains("panicked"), "{err}");
    let err = sidecar.request("nxops/workspace/list", json!({})).unwrap_err();
    assert_eq!(err["code"], -32603, "a second panic is answered too");
    assert_eq!(status_ok(&mut sidecar)["pid"], sidecar.pid());
}

/// Regression: after a body longer than its Content-Length, or one with no header, the next request (its
/// header glued to the garbage) was dropped without an answer.
#[test]
fn a_frame_that_runs_on_costs_one_error_and_the_next_request_is_answered() {
    let s = Scratch::new();
    let ws = s.workspace("runon", "none");
    let mut sidecar = Sidecar::started(&s, &ws);
    let body = br#"{"jsonrpc":"2.0","id":5,"method":"nxops/status","params":{}}"#;
    let next = |id: u32| {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"nxops/status","params":{{}}}}"#);
        format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    };
    let short = [b"Content-Length: 12\r\n\r\n".as_slice(), body, &next(6)].concat();
    let headless = [body.as_slice(), &next(7)].concat();
    for (raw, id, needle) in [(short, 6, "shorter than the body"), (headless, 7, "malformed header")] {
        sidecar.write_raw(&raw);
        let error = sidecar.next_message().expect("one error for the garbage");
        assert_eq!((error["id"].clone(), error["error"]["code"].clone()), (Value::Null, json!(-32700)), "{error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(needle), "{error}");
        let answer = sidecar.next_message().expect("the next request is answered");
        assert_eq!(answer["id"], id, "no second error, and the request is not lost: {answer}");
        assert_eq!(answer["result"]["pid"], sidecar.pid(), "{answer}");
    }
}

#[test]
fn attach_detach_and_workspace_folder_changes() {
    let s = Scratch::new();
    let first = s.workspace("first", "none");
    let second = s.workspace("second", "local");
    let mut sidecar = Sidecar::started(&s, &first);
    sidecar.request("nxops/subscribe", json!({"events": ["workspaceAttached", "nxops/workspaceDetached"]})).unwrap();

    let view = sidecar.request("nxops/workspace/attach", json!({"path": second.join("packages/alpha")})).unwrap();
    assert_eq!(view["root"], json!(second));
    assert_eq!(sidecar.notification("nxops/workspaceAttached")["params"]["workspace"], json!(second));
    let list = sidecar.request("nxops/workspace/list", json!({})).unwrap();
    assert_eq!(list["workspaces"].as_array().unwrap().len(), 2);
    let err = sidecar.request("nxops/env/info", json!({})).unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("2 workspaces are attached"), "{err}");
    let info = sidecar.request("nxops/env/info", json!({"workspace": second})).unwrap();
    assert_eq!(info["workspaceRoot"], json!(second));

    sidecar.request("nxops/workspace/detach", json!({"path": second})).unwrap();
    assert_eq!(sidecar.notification("nxops/workspaceDetached")["params"]["workspace"], json!(second));
    let uri = |p: &Path| format!("file://{}", p.display());
    sidecar.notify(
        "workspace/didChangeWorkspaceFolders",
        json!({"event": {"added": [{"uri": uri(&second), "name": "second"}], "removed": [{"uri": uri(&first), "name": "first"}]}}),
    );
    assert_eq!(sidecar.notification("nxops/workspaceDetached")["params"]["workspace"], json!(first));
    assert_eq!(sidecar.notification("nxops/workspaceAttached")["params"]["workspace"], json!(second));
    let list = sidecar.request("nxops/workspace/list", json!({})).unwrap();
    let roots: Vec<&Value> = list["workspaces"].as_array().unwrap().iter().map(|w| &w["root"]).collect();
    assert_eq!(roots, [&json!(second)]);
}

#[test]
fn initialization_options_override_settings_and_are_validated() {
    let s = Scratch::new();
    let ws = s.workspace("opts", "none");
    let mut sidecar = Sidecar::start(&s, &ws, &[]);
    let params = |options: Value| json!({"processId": null, "rootUri": format!("file://{}", ws.display()), "capabilities": {}, "initializationOptions": options});
    let err = sidecar.request("initialize", params(json!({"settings": {"cache": {"maxSzie": "1GB"}}}))).unwrap_err();
    assert_eq!(err["code"], -32602);
    assert!(err["message"].as_str().unwrap().contains("did you mean \"cache.maxSize\"?"), "{err}");
    let err = sidecar.request("initialize", params(json!({"settings": {"cache.maxSize": "lots"}}))).unwrap_err();
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("initializationOptions.settings.cache.maxSize: \"lots\""), "names the key: {err}");
    sidecar.request("initialize", params(json!({"settings": {"cache": {"maxSize": "2GB"}}}))).unwrap();
    let info = sidecar.request("nxops/env/info", json!({})).unwrap();
    let setting = |info: &Value, key: &str| {
        info["settings"].as_array().unwrap().iter().find(|s| s["key"] == key).unwrap().clone()
    };
    let max_size = setting(&info, "cache.maxSize");
    assert_eq!(max_size["raw"], 2u64 << 30);
    assert_eq!(max_size["origin"], "initializationOptions cache.maxSize");
    // Neovim encodes empty params as `[]`: the same as `{}`.
    assert!(sidecar.request("nxops/status", json!([])).is_ok());
    drop(sidecar);

    // `--set` on `nxops serve` applies to the workspaces it owns, under the client's options.
    let mut cmd = s.nxops(&ws);
    cmd.args(["--set", "cache.maxAge=1d", "--set", "cache.maxSize=3GB", "serve", "--stdio"]);
    let mut sidecar = Sidecar::from_command(cmd, &s);
    sidecar.request("initialize", params(json!({"settings": {"cache.maxSize": "2GB"}}))).unwrap();
    let info = sidecar.request("nxops/env/info", json!({})).unwrap();
    assert_eq!(setting(&info, "cache.maxAge")["origin"], "--set cache.maxAge", "{info}");
    assert_eq!(setting(&info, "cache.maxSize")["raw"], 2u64 << 30, "the client's option wins");
}

#[test]
fn progress_is_reported_and_requests_can_be_cancelled() {
    let s = Scratch::new();
    let ws = s.workspace("progress", "none");
    let mut sidecar = Sidecar::started(&s, &ws);
    // The first system info in a fresh HOME asks `node --version` (milliseconds at
    // least; later reports read the answer from tool-versions.json): cancel it right away.
    sidecar.send(&json!({"jsonrpc": "2.0", "id": 77, "method": "nxops/system/info", "params": {}}));
    sidecar.notify("$/cancelRequest", json!({"id": 77}));
    let response = sidecar.response_to(&json!(77));
    assert_eq!(response["error"]["code"], -32800, "{response}");

    sidecar.request("nxops/system/info", json!({"workDoneToken": "tok-1"})).unwrap();
    let begin = sidecar.notification("$/progress");
    assert_eq!(begin["params"]["token"], "tok-1");
    assert_eq!(begin["params"]["value"]["kind"], "begin");
    assert_eq!(sidecar.notification("$/progress")["params"]["value"]["kind"], "end");
    status_ok(&mut sidecar);
}
