//! The metrics exporter: Prometheus `/metrics`, and `/healthz` (the process answers) and
//! `/readyz` (it serves SQL) for probes and load balancers, on the node's HTTP address.
//!
//! Each crate registers its own metrics in prometheus's default registry (the gateway's in
//! `vecraft_sql::metrics`, the write path's in [`crate::metrics`]); this serves whatever is
//! registered there, plus the process collector (CPU, resident memory, open files).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;

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

/// Serves the exporter on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, health: Arc<Health>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(health);
    axum::serve(listener, app).await
}

async fn metrics() -> Response {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&prometheus::gather(), &mut body) {
        Ok(()) => ([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn readyz(State(health): State<Arc<Health>>) -> Response {
    if health.is_ready() {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}
