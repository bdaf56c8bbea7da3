//! The listener: one task per client connection, each with its own session; one registry of
//! cancel keys for all of them.

use std::sync::Arc;

use pgwire::api::ConnectionManager;
use tokio::net::TcpListener;

use crate::catalog::Catalog;
use crate::handler::{Connection, Handlers};
use crate::socket::serve_connection;

/// Serves `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, catalog: Arc<Catalog>) -> std::io::Result<()> {
    crate::metrics::watch(&catalog);
    let cancels = Arc::new(ConnectionManager::new());
    loop {
        let (socket, _peer) = listener.accept().await?;
        let connection = Connection::new(catalog.clone(), cancels.clone());
        let handlers = Arc::new(Handlers(connection));
        tokio::spawn(async move {
            // A connection's protocol errors end that connection only.
            let _ = serve_connection(socket, handlers).await;
        });
    }
}
