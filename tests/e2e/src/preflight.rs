//! A preflight hook for end-to-end tests: the operator's change-freeze service, on
//! loopback. It answers `POST`s with 204 while open, with 423 and a JSON `message` while
//! closed, and records every request's body and signature header.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// A request the hook received.
#[derive(Debug, Clone)]
pub struct Asked {
    pub body: Vec<u8>,
    pub signature: Option<String>,
}

impl Asked {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Debug, Default)]
struct State {
    /// `Some(message)`: closed, refusing with it.
    closed: Option<String>,
    asked: Vec<Asked>,
}

/// The hook; stops when dropped.
#[derive(Debug)]
pub struct Hook {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hook {
    /// Starts the hook, open.
    pub async fn start() -> anyhow::Result<Hook> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/preflight", listener.local_addr()?);
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let Some(asked) = read_request(&mut conn).await else {
                    continue;
                };
                let (status, body) = {
                    let mut s = lock(&shared);
                    s.asked.push(asked);
                    match &s.closed {
                        Some(m) => (423, json!({"message": m}).to_string()),
                        None => (204, String::new()),
                    }
                };
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        Ok(Hook { url, state, task })
    }

    /// Refuses from now on, saying `message`.
    pub fn close(&self, message: &str) {
        lock(&self.state).closed = Some(message.to_string());
    }

    /// Lets experiments go from now on.
    pub fn open(&self) {
        lock(&self.state).closed = None;
    }

    /// What it was asked, in order.
    pub fn asked(&self) -> Vec<Asked> {
        lock(&self.state).asked.clone()
    }
}

/// One request: the headers, then as many body bytes as `Content-Length` says.
async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Asked> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return Some(Asked {
                body: buf[end + 4..end + 4 + len].to_vec(),
                signature: header(havoc_integrations::webhook::SIGNATURE_HEADER),
            });
        }
    }
}
