//! A fake Grafana for end-to-end tests: Grafana cannot run on this project's machines, so
//! this loopback server speaks the annotations API havoc uses (`POST /api/annotations`,
//! `PATCH /api/annotations/{id}`), checks every request against the documented contract
//! (bearer token, JSON, field names and types, `timeEnd` not before `time`, a known id)
//! and records what it accepted. Anything else is answered 404 and noted as a problem.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// An accepted request.
#[derive(Debug, Clone)]
pub struct Annotation {
    pub method: String,
    /// The annotation's id (assigned by POST, named in the PATCH path).
    pub id: u64,
    pub body: Value,
}

#[derive(Debug, Default)]
struct State {
    accepted: Vec<Annotation>,
    problems: Vec<String>,
}

/// The fake; stops when dropped.
#[derive(Debug)]
pub struct FakeGrafana {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGrafana {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn check(
    token: &str,
    auth: Option<&str>,
    ctype: Option<&str>,
    body: &Value,
    create: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    if auth != Some(&format!("Bearer {token}")) {
        out.push(format!("authorization {auth:?}"));
    }
    if ctype != Some("application/json") {
        out.push(format!("content-type {ctype:?}"));
    }
    let Some(map) = body.as_object() else {
        out.push(format!("body is not an object: {body}"));
        return out;
    };
    for k in map.keys() {
        if !["dashboardUID", "panelId", "time", "timeEnd", "tags", "text"].contains(&k.as_str()) {
            out.push(format!("unknown field {k}"));
        }
    }
    let int = |k: &str| map.get(k).is_some_and(Value::is_i64);
    if create && !(int("time") && int("timeEnd") && map.get("text").is_some_and(Value::is_string)) {
        out.push(format!(
            "a new annotation needs time, timeEnd and text: {body}"
        ));
    }
    if let (Some(a), Some(b)) = (
        map.get("time").and_then(Value::as_i64),
        map.get("timeEnd").and_then(Value::as_i64),
    ) && b < a
    {
        out.push(format!("timeEnd before time: {body}"));
    }
    if map
        .get("tags")
        .is_some_and(|t| !t.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
    {
        out.push(format!("tags must be strings: {body}"));
    }
    out
}

impl FakeGrafana {
    /// Starts the fake on a free loopback port; requests must carry `token`.
    pub async fn start(token: &str) -> anyhow::Result<FakeGrafana> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state: Arc<Mutex<State>> = Arc::default();
        let (st, token) = (state.clone(), token.to_string());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (st, token) = (st.clone(), token.clone());
                tokio::spawn(async move {
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let (method, path) = (
                            parts.next().unwrap_or_default().to_string(),
                            parts.next().unwrap_or_default().to_string(),
                        );
                        let mut headers: Vec<(String, String)> = Vec::new();
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':') {
                                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                            }
                        }
                        let header = |n: &str| {
                            headers
                                .iter()
                                .find(|(k, _)| k == n)
                                .map(|(_, v)| v.as_str())
                        };
                        let len: usize = header("content-length")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; len];
                        if reader.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let (status, answer) = {
                            let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                            let id_of = |p: &str| {
                                p.strip_prefix("/api/annotations/")
                                    .and_then(|i| i.parse::<u64>().ok())
                            };
                            match (method.as_str(), path.as_str()) {
                                ("POST", "/api/annotations") => {
                                    let problems = check(
                                        &token,
                                        header("authorization"),
                                        header("content-type"),
                                        &body,
                                        true,
                                    );
                                    if problems.is_empty() {
                                        let id = s
                                            .accepted
                                            .iter()
                                            .filter(|a| a.method == "POST")
                                            .count()
                                            as u64
                                            + 1;
                                        s.accepted.push(Annotation { method, id, body });
                                        (200, json!({"message": "Annotation added", "id": id}))
                                    } else {
                                        s.problems.extend(problems);
                                        (400, json!({"message": "bad request"}))
                                    }
                                }
                                ("PATCH", p) if id_of(p).is_some() => {
                                    let id = id_of(p).unwrap_or_default();
                                    let problems = check(
                                        &token,
                                        header("authorization"),
                                        header("content-type"),
                                        &body,
                                        false,
                                    );
                                    if !s.accepted.iter().any(|a| a.method == "POST" && a.id == id)
                                    {
                                        s.problems
                                            .push(format!("PATCH of unknown annotation {id}"));
                                        (
                                            404,
                                            json!({"message": "Could not find annotation to update"}),
                                        )
                                    } else if problems.is_empty() {
                                        s.accepted.push(Annotation { method, id, body });
                                        (200, json!({"message": "Annotation patched"}))
                                    } else {
                                        s.problems.extend(problems);
                                        (400, json!({"message": "bad request"}))
                                    }
                                }
                                _ => {
                                    s.problems.push(format!("unexpected {method} {path}"));
                                    (404, json!({"message": "Not found"}))
                                }
                            }
                        };
                        let answer = answer.to_string();
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        if reader.get_mut().write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(FakeGrafana { url, state, task })
    }

    /// The requests accepted so far.
    pub fn accepted(&self) -> Vec<Annotation> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .accepted
            .clone()
    }

    /// Requests that broke the contract.
    pub fn problems(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .problems
            .clone()
    }
}
