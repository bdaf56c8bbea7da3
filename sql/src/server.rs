//! The listener: one task per client connection, each with its own session.

use std::sync::Arc;

use pgwire::tokio::process_socket;
use tokio::net::TcpListener;

use crate::catalog::Catalog;
use crate::handler::{Connection, Handlers};

/// Serves `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, catalog: Arc<Catalog>) -> std::io::Result<()> {
    loop {
        let (socket, _peer) = listener.accept().await?;
        let handlers = Arc::new(Handlers(Connection::new(catalog.clone())));
        tokio::spawn(async move {
            // A connection's protocol errors end that connection only.
            let _ = process_socket(socket, None, handlers).await;
        });
    }
}
