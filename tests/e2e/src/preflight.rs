//! A preflight hook for end-to-end tests: the operator's change-freeze service, on
//! loopback (havoc-integrations' scripted test server). It answers 204 while open, 423
//! with a JSON `message` while closed, and records every request.

use std::sync::{Arc, Mutex};

use havoc_integrations::test_server::{Reply, Request, Server};
use serde_json::json;

/// The hook; stops when dropped.
#[derive(Debug)]
pub struct Hook {
    pub url: String,
    server: Server,
    /// `Some(message)`: closed, refusing with it.
    closed: Arc<Mutex<Option<String>>>,
}

fn lock(closed: &Mutex<Option<String>>) -> std::sync::MutexGuard<'_, Option<String>> {
    closed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hook {
    /// Starts the hook, open.
    pub async fn start() -> Hook {
        let closed: Arc<Mutex<Option<String>>> = Arc::default();
        let state = closed.clone();
        let server = Server::start(move |_, _| match lock(&state).as_deref() {
            Some(m) => Reply::json(423, json!({"message": m})),
            None => Reply::text(204, ""),
        })
        .await;
        Hook {
            url: format!("{}/preflight", server.url),
            server,
            closed,
        }
    }

    /// Refuses from now on, saying `message`.
    pub fn close(&self, message: &str) {
        *lock(&self.closed) = Some(message.to_string());
    }

    /// Lets experiments go from now on.
    pub fn open(&self) {
        *lock(&self.closed) = None;
    }

    /// What it was asked, in order.
    pub fn asked(&self) -> Vec<Request> {
        self.server.requests()
    }
}
