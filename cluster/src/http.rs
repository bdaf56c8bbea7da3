//! The metrics exporter: Prometheus `/metrics`, and `/healthz` (the process answers) and
//! `/readyz` (it serves SQL) for probes and load balancers, on the node's HTTP address.
//!
//! Each crate registers its own metrics in prometheus's default registry (the gateway's in
//! `vecraft_sql::metrics`, the write path's in [`crate::metrics`]); this serves whatever is
//! registered there, plus the process collector (CPU, resident memory, open files).
//!
//! With a token configured, `/metrics` answers only a request that carries it
//! (`Authorization: Bearer <token>`, as Prometheus sends `credentials_file`); the probes stay
//! open, so a load balancer needs no secret.
//!
//! The port is bounded like the SQL port: at most [`MAX_HTTP_CONNECTIONS`] at once (more are
//! closed when accepted), and a connection that sends nothing for [`HTTP_IDLE_TIMEOUT`] —
//! before its first request or between two — is closed, so idle or slow clients cannot hold
//! the node's descriptors; none lasts longer than [`HTTP_CONNECTION_LIFETIME`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::Listener;
use prometheus::{Encoder, TextEncoder};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// What `/readyz` reports: false until the node has opened its data and accepts SQL.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// HTTP connections served at once (scrapers and probes need a few).
pub const MAX_HTTP_CONNECTIONS: usize = 64;

/// How long an HTTP connection may stay silent.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an HTTP connection may last at all (a client sending a byte now and then is not
/// silent, yet must not keep its slot): scrapers reconnect.
pub const HTTP_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The secret `/metrics` asks for, kept as its SHA-256 (compared digest to digest, so the
/// time a comparison takes says nothing about the secret).
#[derive(Clone)]
pub struct MetricsToken([u8; 32]);

impl MetricsToken {
    /// The token in the file at `path` (surrounding whitespace and a final newline dropped);
    /// an empty one is refused.
    pub fn from_file(path: &std::path::Path) -> Result<MetricsToken, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("metrics token file {}: {e}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("metrics token file {} is empty", path.display()));
        }
        Ok(MetricsToken::new(token))
    }

    pub fn new(token: &str) -> MetricsToken {
        MetricsToken(sha2::Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `header` (an `Authorization` value) carries the token.
    fn admits(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        MetricsToken::new(given.trim()).0 == self.0
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

/// What the routes share.
#[derive(Clone)]
struct Exporter {
    health: Arc<Health>,
    token: Option<MetricsToken>,
}

/// Serves the exporter on `listener` until the task is dropped; `/metrics` open to all.
pub async fn serve(listener: TcpListener, health: Arc<Health>) -> std::io::Result<()> {
    serve_with_token(listener, health, None).await
}

/// [`serve`], `/metrics` asking for `token` when there is one.
pub async fn serve_with_token(
    listener: TcpListener,
    health: Arc<Health>,
    token: Option<MetricsToken>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Exporter { health, token });
    let listener = Bounded {
        listener,
        open: Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS)),
    };
    axum::serve(listener, app).await
}

/// The HTTP listener with its connection limit.
struct Bounded {
    listener: TcpListener,
    open: Arc<Semaphore>,
}

impl Listener for Bounded {
    type Io = Quiet;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Quiet, SocketAddr) {
        loop {
            let (socket, addr) = Listener::accept(&mut self.listener).await;
            // Beyond the limit the socket is closed at once.
            if let Ok(permit) = Arc::clone(&self.open).try_acquire_owned() {
                let idle = Box::pin(tokio::time::sleep(HTTP_IDLE_TIMEOUT));
                let ends = tokio::time::Instant::now() + HTTP_CONNECTION_LIFETIME;
                return (
                    Quiet {
                        socket,
                        idle,
                        ends,
                        _permit: permit,
                    },
                    addr,
                );
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection that fails its reads once it has been silent for [`HTTP_IDLE_TIMEOUT`], or
/// has lasted [`HTTP_CONNECTION_LIFETIME`].
struct Quiet {
    socket: TcpStream,
    idle: Pin<Box<Sleep>>,
    /// When the connection's lifetime is up.
    ends: tokio::time::Instant,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Quiet {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.socket).poll_read(cx, buf) {
            Poll::Ready(read) => {
                let deadline = (tokio::time::Instant::now() + HTTP_IDLE_TIMEOUT).min(this.ends);
                this.idle.as_mut().reset(deadline);
                Poll::Ready(read)
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::ErrorKind::TimedOut.into())),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Quiet {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

async fn metrics(State(exporter): State<Exporter>, headers: HeaderMap) -> Response {
    if let Some(token) = &exporter.token {
        let header = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        if !token.admits(header) {
            let challenge = [(WWW_AUTHENTICATE, "Bearer")];
            return (StatusCode::UNAUTHORIZED, challenge, "unauthorized\n").into_response();
        }
    }
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&prometheus::gather(), &mut body) {
        Ok(()) => ([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn readyz(State(exporter): State<Exporter>) -> Response {
    if exporter.health.is_ready() {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_admits_only_its_bearer() {
        let token = MetricsToken::new("s3cret");
        assert!(token.admits(Some("Bearer s3cret")));
        for refused in [
            None,
            Some("Bearer other"),
            Some("s3cret"),
            Some("Basic s3cret"),
        ] {
            assert!(!token.admits(refused), "{refused:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert!(
            MetricsToken::from_file(&path)
                .unwrap()
                .admits(Some("Bearer s3cret"))
        );
        std::fs::write(&path, " \n").unwrap();
        assert!(MetricsToken::from_file(&path).is_err());
    }
}
