//! LSP work-done progress (`$/progress`) for long operations, when the client
//! passed a `workDoneToken` with its request. Without a token it does nothing.

use serde_json::{Value, json};

use crate::rpc::outbox::Outbox;

pub struct Progress {
    target: Option<(Value, Outbox)>,
}

impl Progress {
    pub fn none() -> Progress {
        Progress { target: None }
    }

    /// Progress for a request whose params may carry `workDoneToken`.
    pub fn for_request(params: &Value, outbox: &Outbox) -> Progress {
        match params.get("workDoneToken") {
            Some(token @ (Value::String(_) | Value::Number(_))) => {
                Progress { target: Some((token.clone(), outbox.clone())) }
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
        if let Some((token, outbox)) = &self.target {
            outbox.notify("$/progress", json!({"token": token, "value": value}));
        }
    }
}
