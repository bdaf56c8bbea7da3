//! The listener: one task per client connection, each with its own session; one registry of
//! cancel keys for all of them; every socket and session counted against the node's
//! [`Limits`], so that running out of descriptors or slots refuses a client, never the node.

use std::sync::Arc;
use std::time::Duration;

use pgwire::api::ConnectionManager;
use tokio::net::TcpListener;

use crate::auth::hba::Access;
use crate::catalog::Catalog;
use crate::drain::Drain;
use crate::handler::{Connection, Handlers};
use crate::limits::{Admission, Limits, socket_budget};
use crate::memory::NodeMemory;
use crate::socket::serve_connection;
use crate::tls::ServerTls;

/// How long the listener waits before accepting again after the process ran out of
/// descriptors (EMFILE) or memory for a socket: long enough for connections to end, short
/// enough that a client retrying is served.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `listener` with the default limits until the task is dropped.
pub async fn serve(listener: TcpListener, catalog: Arc<Catalog>) -> std::io::Result<()> {
    serve_with(listener, catalog, Limits::default()).await
}

/// Serves `listener` with `limits` until the task is dropped. Raises the process's descriptor
/// limit first, and holds no more sockets than it leaves room for.
pub async fn serve_with(
    listener: TcpListener,
    catalog: Arc<Catalog>,
    limits: Limits,
) -> std::io::Result<()> {
    let guard = Guard::default();
    serve_until(listener, catalog, limits, guard, Drain::new()).await
}

/// Who may connect and how: the access rules, and TLS when the node has a certificate.
#[derive(Default)]
pub struct Guard {
    pub access: Access,
    pub tls: Option<Arc<ServerTls>>,
}

/// [`serve_with`] under `guard` until `drain` starts: then the listener closes (new
/// connections are refused) and this returns, while the sessions go on until each is idle
/// (`drain.rs`).
pub async fn serve_until(
    listener: TcpListener,
    catalog: Arc<Catalog>,
    limits: Limits,
    guard: Guard,
    drain: Arc<Drain>,
) -> std::io::Result<()> {
    let Guard { access, tls } = guard;
    let access = Arc::new(access);
    crate::metrics::watch(&catalog);
    crate::txn_resolver::spawn(&catalog);
    let memory = NodeMemory::new(&limits);
    let sockets = socket_budget();
    if sockets < limits.max_connections {
        eprintln!(
            "vecraft: warning: the open-file limit leaves room for {sockets} client sockets, \
             fewer than max_connections ({}); raise it (ulimit -n)",
            limits.max_connections
        );
    }
    let admission = Admission::new(limits, sockets);
    let cancels = Arc::new(ConnectionManager::new());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = drain.started() => return Ok(()),
        };
        let socket = match accepted {
            Ok((socket, _peer)) => socket,
            // Out of descriptors or buffers, or the client left before it was accepted: the
            // node goes on, and accepts again once something was given back.
            Err(e) if accept_error_is_transient(&e) => {
                crate::metrics::GATEWAY.refused("accept");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(slot) = admission.socket() else {
            crate::metrics::GATEWAY.refused("sockets");
            drop(socket); // at the descriptor budget: closed at once
            continue;
        };
        let connection = Connection::new(
            catalog.clone(),
            cancels.clone(),
            admission.clone(),
            memory.clone(),
            access.clone(),
        );
        let session = connection.session();
        let idle_in_transaction = move || session.idle_in_transaction_timeout();
        let handlers = Arc::new(Handlers(connection));
        let limits = admission.limits.clone();
        let (drain, counted) = (Arc::clone(&drain), drain.session());
        let tls = tls.clone();
        tokio::spawn(async move {
            // A connection's protocol errors end that connection only.
            let tls = tls.as_deref();
            let _ =
                serve_connection(socket, handlers, &limits, tls, idle_in_transaction, &drain).await;
            drop((slot, counted));
        });
    }
}

/// Whether `accept` failed for a reason that passes (PostgreSQL's postmaster logs these and
/// goes on): anything but a listener that is itself broken — descriptors or memory
/// exhausted, a connection reset or refused by the network before it was accepted, …
fn accept_error_is_transient(e: &std::io::Error) -> bool {
    !matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP | libc::EFAULT)
    )
}
