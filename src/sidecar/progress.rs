//! LSP work-done progress (`$/progress`) for long operations, when the client
//! passed a `workDoneToken` with its request; or, for the CLI working
//! in-process, the same values handed to a local callback (its progress bar).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::rpc::outbox::Outbox;

#[derive(Clone)]
pub struct Progress {
    target: Target,
}

#[derive(Clone)]
enum Target {
    None,
    Client(Value, Outbox),
    Local(Arc<dyn Fn(&Value) + Send + Sync>),
}

impl Progress {
    pub fn none() -> Progress {
        Progress { target: Target::None }
    }

    /// Progress values handed to `sink` (the `value` part of `$/progress`).
    pub fn local(sink: Arc<dyn Fn(&Value) + Send + Sync>) -> Progress {
        Progress { target: Target::Local(sink) }
    }

    /// Progress for a request whose params may carry `workDoneToken`.
    pub fn for_request(params: &Value, outbox: &Outbox) -> Progress {
        match params.get("workDoneToken") {
            Some(token @ (Value::String(_) | Value::Number(_))) => {
                Progress { target: Target::Client(token.clone(), outbox.clone()) }
            }
            _ => Progress::none(),
        }
    }

    pub fn begin(&self, title: &str, message: &str) {
        self.send(json!({"kind": "begin", "title": title, "message": message, "cancellable": true}));
    }

    pub fn report(&self, message: &str, percentage: Option<u32>) {
        self.send(json!({"kind": "report", "message": message, "percentage": percentage}));
    }

    pub fn end(&self, message: &str) {
        self.send(json!({"kind": "end", "message": message}));
    }

    fn send(&self, value: Value) {
        match &self.target {
            Target::None => {}
            Target::Client(token, outbox) => {
                outbox.notify("$/progress", json!({"token": token, "value": value}));
            }
            Target::Local(sink) => sink(&value),
        }
    }
}
