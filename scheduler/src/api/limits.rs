//! The HTTP server's limits, and the accept loop that enforces them.
//!
//! `server.listen` defaults to `0.0.0.0:8080`: anything that reaches the pod can connect,
//! so no client may hold a connection, a request or memory for long. [`Limits::default`]
//! (every value is a constant below, so tests can shorten them):
//!
//! - **Header read timeout, 5 s** ([`HEADER_READ_TIMEOUT`]): the request line and headers
//!   must arrive within it (slowloris). hyper restarts the same timer while a keep-alive
//!   connection waits for its next request, so it is also the **idle keep-alive bound**.
//! - **Request timeout, 10 s** ([`REQUEST_TIMEOUT`]): reading the body and answering; the
//!   API does nothing long. Past it the answer is `408 {"error": ...}`.
//! - **Body limit, 64 KiB** ([`MAX_BODY_BYTES`]): the largest body is a pause request of a
//!   few hundred bytes. Larger: `413`. **Headers**: at most 64 of them in 16 KiB
//!   ([`MAX_HEADERS`], [`MAX_HEADER_BYTES`]); larger: `431`.
//! - **Connection lifetime, 60 s** ([`CONNECTION_LIFETIME`]): then the connection is closed
//!   after its current answer (a client that never reads its answer is cut off a request
//!   timeout later).
//! - **At most 256 connections** ([`MAX_CONNECTIONS`]). Excess connections **wait**: the
//!   accept loop takes a slot before it accepts, so they stay in the kernel's listen
//!   backlog (tokio's 1024), cost havoc no memory and no file descriptor, and are served in
//!   order as slots free up, which the timeouts above guarantee within seconds. Refusing
//!   them instead would fail probes and scrapes just as surely, and noisily.
//!
//! On shutdown the listener is closed first, idle connections are closed, and answers in
//! progress get up to one request timeout to complete.

use std::{io, pin::pin, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 64;
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
pub const MAX_CONNECTIONS: usize = 256;
/// Pause after an accept error that is not about one connection (e.g. out of file
/// descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the server allows one client (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub connection_lifetime: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            max_body_bytes: MAX_BODY_BYTES,
            max_header_bytes: MAX_HEADER_BYTES,
            max_headers: MAX_HEADERS,
            connection_lifetime: CONNECTION_LIFETIME,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Adds the per-request limits (body size, request timeout) to a router; the accept loop
/// ([`serve_with`]) enforces the rest.
pub fn harden(router: Router, limits: &Limits) -> Router {
    router
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            limits.request_timeout,
            request_timeout,
        ))
}

async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(answer) => answer,
        Err(_) => super::error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request was not completed within {}s",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// Serves `router` on `listener` within `limits` until `stop` is cancelled, then shuts
/// down gracefully (see the module docs).
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers)
        .max_header_size(limits.max_header_bytes)
        .keep_alive(true);
    loop {
        let slot = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
        };
        let stream = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        let (stream, peer) = stream;
        let _ = stream.set_nodelay(true);
        // The client's address, for the console's login rate limit and identity.
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let http = http.clone();
        let (limits, stop) = (limits.clone(), stop.clone());
        connections.spawn(async move {
            let _slot = slot;
            let mut conn = pin!(http.serve_connection(TokioIo::new(stream), service));
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "HTTP connection ended");
                    }
                    return;
                }
                () = stop.cancelled() => {}
                () = tokio::time::sleep(limits.connection_lifetime) => {}
            }
            // Ends after the answer in progress; idle connections close at once.
            conn.as_mut().graceful_shutdown();
            if tokio::time::timeout(limits.request_timeout, conn)
                .await
                .is_err()
            {
                tracing::debug!("HTTP connection closed before its answer was read");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Errors that concern one connection only: the loop goes on at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Instant};

    use axum::{
        body::Bytes,
        routing::{get, post},
    };
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
        sync::{Notify, oneshot},
        task::JoinHandle,
    };

    use super::*;

    /// A bound on anything the tests wait for, so that a broken limit fails, not hangs.
    const PATIENCE: Duration = Duration::from_secs(5);

    struct Server {
        addr: SocketAddr,
        stop: CancellationToken,
        task: JoinHandle<io::Result<()>>,
    }

    async fn start(router: Router, limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let router = harden(router, &limits);
        let task = tokio::spawn(serve_with(listener, router, limits, stop.clone()));
        Server { addr, stop, task }
    }

    fn hello() -> Router {
        Router::new()
            .route("/", get(|| async { "hello" }))
            .route("/echo", post(|body: Bytes| async move { body }))
            .route("/never", get(std::future::pending::<&'static str>))
    }

    fn short(limits: Limits) -> Limits {
        Limits {
            header_read_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(300),
            ..limits
        }
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

    /// Reads one answer (status line, headers, `Content-Length` bytes of body).
    async fn answer(stream: &mut TcpStream) -> io::Result<(u16, String)> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]);
                    return Ok((status, body.to_string()));
                }
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// How long until the server closes the connection (EOF or reset).
    async fn closed_after(stream: &mut TcpStream, since: Instant) -> Duration {
        let mut sink = [0u8; 1024];
        let closed = tokio::time::timeout(PATIENCE, async {
            loop {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the server kept the connection open");
        since.elapsed()
    }

    #[tokio::test]
    async fn a_client_that_stalls_in_its_headers_is_disconnected() {
        let server = start(hello(), short(Limits::default())).await;
        let mut c = TcpStream::connect(server.addr).await.expect("connect");
        let sent = Instant::now();
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow")
            .await
            .expect("write");
        let took = closed_after(&mut c, sent).await;
        assert!(
            took >= Duration::from_millis(250),
            "closed too early: {took:?}"
        );
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed() {
        let server = start(hello(), short(Limits::default())).await;
        let mut c = TcpStream::connect(server.addr).await.expect("connect");
        c.write_all(GET).await.expect("write");
        assert_eq!(answer(&mut c).await.expect("answer"), (200, "hello".into()));
        let idle = Instant::now();
        let took = closed_after(&mut c, idle).await;
        assert!(
            took >= Duration::from_millis(250),
            "closed too early: {took:?}"
        );
    }

    #[tokio::test]
    async fn a_slow_body_or_handler_gets_408() {
        let server = start(hello(), short(Limits::default())).await;
        let mut c = TcpStream::connect(server.addr).await.expect("connect");
        c.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten..")
            .await
            .expect("write");
        let (status, body) = tokio::time::timeout(PATIENCE, answer(&mut c))
            .await
            .expect("answered in time")
            .expect("answer");
        assert_eq!(status, 408, "{body}");
        assert!(body.contains("\"error\""), "{body}");

        let mut c = TcpStream::connect(server.addr).await.expect("connect");
        c.write_all(b"GET /never HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        let (status, _) = tokio::time::timeout(PATIENCE, answer(&mut c))
            .await
            .expect("answered in time")
            .expect("answer");
        assert_eq!(status, 408);
    }

    #[tokio::test]
    async fn oversized_bodies_and_headers_are_refused() {
        let server = start(hello(), Limits::default()).await;
        let mut c = TcpStream::connect(server.addr).await.expect("connect");
        let body = vec![b'x'; MAX_BODY_BYTES];
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).await.expect("write");
        c.write_all(&body).await.expect("write");
        let (status, echoed) = answer(&mut c).await.expect("answer");
        assert_eq!(
            (status, echoed.len()),
            (200, MAX_BODY_BYTES),
            "the limit itself is fine"
        );

        let mut c = TcpStream::connect(server.addr).await.expect("connect");
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        c.write_all(head.as_bytes()).await.expect("write");
        let _ = c.write_all(&vec![b'x'; MAX_BODY_BYTES + 1]).await;
        assert_eq!(answer(&mut c).await.expect("answer").0, 413);

        let mut c = TcpStream::connect(server.addr).await.expect("connect");
        let big = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            "y".repeat(MAX_HEADER_BYTES)
        );
        let _ = c.write_all(big.as_bytes()).await;
        assert_eq!(answer(&mut c).await.expect("answer").0, 431);
    }

    #[tokio::test]
    async fn connections_over_the_cap_wait_for_a_free_slot() {
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let server = start(hello(), limits).await;
        // Two connections, served and then idle: they hold both slots.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = TcpStream::connect(server.addr).await.expect("connect");
            c.write_all(GET).await.expect("write");
            assert_eq!(answer(&mut c).await.expect("answer").0, 200);
            held.push(c);
        }
        // The third is queued in the backlog: connected, but not served.
        let mut third = TcpStream::connect(server.addr).await.expect("connect");
        third.write_all(GET).await.expect("write");
        let early = tokio::time::timeout(Duration::from_millis(300), answer(&mut third)).await;
        assert!(early.is_err(), "served over the cap: {early:?}");
        // A slot frees up: the third is served.
        drop(held.pop());
        let (status, _) = tokio::time::timeout(PATIENCE, answer(&mut third))
            .await
            .expect("served once a slot was free")
            .expect("answer");
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn shutdown_completes_answers_in_progress_and_closes_idle_connections() {
        let entered = Arc::new(Notify::new());
        let (release, released) = oneshot::channel::<()>();
        let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
        let router = {
            let entered = entered.clone();
            Router::new().route("/", get(|| async { "hello" })).route(
                "/slow",
                get(move || async move {
                    entered.notify_one();
                    if let Some(rx) = released.lock().await.take() {
                        let _ = rx.await;
                    }
                    "done"
                }),
            )
        };
        let server = start(router, Limits::default()).await;
        let mut idle = TcpStream::connect(server.addr).await.expect("connect");
        idle.write_all(GET).await.expect("write");
        assert_eq!(answer(&mut idle).await.expect("answer").0, 200);
        let mut busy = TcpStream::connect(server.addr).await.expect("connect");
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        tokio::time::timeout(PATIENCE, entered.notified())
            .await
            .expect("the handler runs");

        server.stop.cancel();
        closed_after(&mut idle, Instant::now()).await;
        let _ = release.send(());
        let (status, body) = tokio::time::timeout(PATIENCE, answer(&mut busy))
            .await
            .expect("answered")
            .expect("answer");
        assert_eq!((status, body.as_str()), (200, "done"));
        let served = tokio::time::timeout(PATIENCE, server.task)
            .await
            .expect("serve returns after shutdown")
            .expect("no panic");
        assert!(served.is_ok(), "{served:?}");
    }
}
