//! One client connection's message loop, with its replies sent the way PostgreSQL sends them:
//! gathered in a buffer and written when a reply is complete.
//!
//! pgwire's own loop (`process_socket`) flushes after BindComplete, after CommandComplete
//! and after ReadyForQuery, so each prepared-statement execution cost three `send` calls and
//! three wake-ups of the client: half the gateway's CPU time for small statements
//! (`SELECT 1`, a kNN query) went to them. PostgreSQL buffers its output and flushes it at
//! ReadyForQuery (after Sync or a simple Query), on a Flush message, when 8 KiB are waiting,
//! and before it blocks on a read. [`Coalescing`] holds pgwire's writes and [`serve_connection`]
//! (pgwire's loop) sends them at those same points.
//!
//! Before the loop, [`negotiate`] settles encryption as PostgreSQL does: an SSLRequest is
//! answered `S` when the node has a certificate (`N` otherwise), a GSSENCRequest `N`, and a
//! client that opens with a TLS handshake (`sslnegotiation=direct`) must name the
//! `postgresql` ALPN protocol.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::{SinkExt, StreamExt};
use pgwire::api::{
    ClientInfo, DefaultClient, ErrorHandler, PgWireConnectionState, PgWireServerHandlers,
};
use pgwire::messages::response::{GssEncResponse, SslResponse, TransactionStatus};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage, SslNegotiationMetaMessage};
use pgwire::tokio::server::{MaybeTls, PgWireMessageServerCodec, process_error, process_message};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use crate::drain::Drain;
use crate::frames::{Guarded, violation};
use crate::limits::{Limits, fatal_info};
use crate::tls::{POSTGRESQL_ALPN, ServerTls, note_end_point};

/// The framed socket: checked frames in, coalesced replies out.
type Socket<S> = Framed<Guarded<Coalescing>, PgWireMessageServerCodec<S>>;

/// Replies held beyond this are written at once, so a large result streams out in pieces of
/// this size (PostgreSQL's output buffer is as large).
const HELD_BYTES_MAX: usize = 8 * 1024;

/// How long the last replies may take to leave when the connection ends (a client that
/// stopped reading must not keep the task).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A TLS ClientHello, sent by clients that start TLS without asking (`sslnegotiation=direct`).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The socket under pgwire's framing. Writes and flushes are held; they go out on
/// [`Coalescing::send_held`], when the server reads again (it has answered everything the
/// client sent so far), when more than [`HELD_BYTES_MAX`] is held, or at shutdown.
pub struct Coalescing {
    socket: MaybeTls,
    held: BytesMut,
}

impl Coalescing {
    pub fn new(socket: MaybeTls) -> Coalescing {
        Coalescing {
            socket,
            held: BytesMut::new(),
        }
    }

    /// Writes out everything held.
    pub async fn send_held(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_send_held(cx)).await
    }

    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let written = ready!(Pin::new(&mut self.socket).poll_write(cx, &self.held))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.advance(written);
        }
        // TLS keeps records it could not write yet; TCP keeps nothing.
        Pin::new(&mut self.socket).poll_flush(cx)
    }
}

impl AsyncRead for Coalescing {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The server waits for the client: the client must have every reply first.
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Coalescing {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held.len() >= HELD_BYTES_MAX {
            ready!(this.poll_send_held(cx))?;
        }
        this.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held.len() >= HELD_BYTES_MAX {
            ready!(this.poll_send_held(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.socket).poll_shutdown(cx)
    }
}

/// Serves one client until it disconnects: encryption requests refused, then pgwire's
/// startup, simple, extended and COPY handling, message by message. A client that has not
/// logged in within the startup timeout, or stays idle past the idle timeout (outside a
/// block) or `idle_in_transaction()` (inside one), is dropped; a malformed message ends the
/// connection with 08P01. Once `drain` starts, the session ends (57P01) as soon as it is idle
/// outside a block.
pub async fn serve_connection<H: PgWireServerHandlers>(
    socket: TcpStream,
    handlers: H,
    limits: &Limits,
    tls: Option<&ServerTls>,
    idle_in_transaction: impl Fn() -> Duration,
    drain: &Drain,
) -> io::Result<()> {
    let peer = socket.peer_addr()?;
    socket.set_nodelay(true)?;
    let startup_timeout = tokio::time::sleep(limits.startup_timeout);
    tokio::pin!(startup_timeout);
    let mut socket = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        negotiated = negotiate(socket, peer, limits.max_message_bytes, tls) => match negotiated? {
            Some(socket) => socket,
            None => return Ok(()),
        },
    };
    socket.set_state(PgWireConnectionState::AwaitingStartup);

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    // Whether the last reply ended with ReadyForQuery (a simple query, a Sync, the login):
    // the only place a draining session may end.
    let mut ready = true;
    loop {
        let logging_in = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let message = if logging_in {
            tokio::select! {
                _ = &mut startup_timeout => None,
                message = socket.next() => message,
            }
        } else {
            // PostgreSQL's two idle limits: inside a block, and outside one.
            // Inside a COPY the client is sending data, not idle (PostgreSQL times the
            // idle-in-transaction wait at ReadyForQuery only).
            let copying = matches!(socket.state(), PgWireConnectionState::CopyInProgress(_));
            let (idle, code, reason) = match socket.transaction_status() {
                _ if copying => (Duration::ZERO, "", ""),
                TransactionStatus::Idle => (
                    limits.idle_session_timeout,
                    "57P05",
                    "terminating connection due to idle-session timeout",
                ),
                _ => (
                    idle_in_transaction(),
                    "25P03",
                    "terminating connection due to idle-in-transaction timeout",
                ),
            };
            let may_end =
                ready && !copying && socket.transaction_status() == TransactionStatus::Idle;
            match next_unless_drained(&mut socket, idle, may_end, drain).await {
                Idle::Message(message) => message,
                Idle::TimedOut => {
                    send_fatal(&mut socket, code, reason).await;
                    break;
                }
                Idle::Drained => {
                    send_fatal(&mut socket, "57P01", ADMIN_SHUTDOWN).await;
                    break;
                }
            }
        };
        let message = match message {
            Some(Ok(message)) => message,
            // A malformed message: PostgreSQL's words for it, then the connection ends (the
            // stream cannot be read on past it).
            Some(Err(pgwire::error::PgWireError::IoError(e))) if violation(&e).is_some() => {
                let v = violation(&e).expect("checked above");
                send_fatal(&mut socket, "08P01", v.0).await;
                break;
            }
            // A broken or undecodable stream ends the connection, as in pgwire.
            _ => break,
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let in_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        ready = logging_in
            || matches!(
                message,
                PgWireFrontendMessage::Sync(_) | PgWireFrontendMessage::Query(_)
            );
        // Where PostgreSQL flushes: its reply is complete (ReadyForQuery) or asked for.
        let reply_complete = matches!(
            message,
            PgWireFrontendMessage::Sync(_)
                | PgWireFrontendMessage::Query(_)
                | PgWireFrontendMessage::Flush(_)
        );
        let handled = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(mut e) = handled {
            errors.on_error(&socket, &mut e);
            process_error(&mut socket, e, in_extended_query).await?;
        }
        if reply_complete {
            socket.flush().await?;
            socket.get_mut().inner.send_held().await?;
        }
    }
    // Whatever is still held goes out before the socket closes.
    match tokio::time::timeout(CLOSE_TIMEOUT, socket.close()).await {
        Ok(closed) => closed,
        Err(_) => Ok(()),
    }
}

/// PostgreSQL's words for a session ended by a shutdown.
const ADMIN_SHUTDOWN: &str = "terminating connection due to administrator command";

/// What an idle session's wait for its next message ended with.
enum Idle<M> {
    Message(Option<M>),
    /// Idle past `idle` (zero: no limit).
    TimedOut,
    /// The gateway drains and the session `may_end` here.
    Drained,
}

/// The next message, unless the session stays idle for `idle` or, where it `may_end`, the
/// gateway drains first. A message already sent is taken before the drain is looked at.
async fn next_unless_drained<S: futures::Stream + Unpin>(
    socket: &mut S,
    idle: Duration,
    may_end: bool,
    drain: &Drain,
) -> Idle<S::Item> {
    let next = async {
        if idle.is_zero() {
            Idle::Message(socket.next().await)
        } else {
            match tokio::time::timeout(idle, socket.next()).await {
                Ok(message) => Idle::Message(message),
                Err(_) => Idle::TimedOut,
            }
        }
    };
    let drained = async {
        match may_end {
            true => drain.started().await,
            false => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        idle = next => idle,
        () = drained => Idle::Drained,
    }
}

/// Says why the connection ends (the caller then closes it); a client already gone is not
/// told.
async fn send_fatal<S>(socket: &mut Socket<S>, code: &str, message: &str) {
    let reply = PgWireBackendMessage::ErrorResponse(fatal_info(code, message).into());
    let _ = socket.send(reply).await;
}

/// The framed socket, once encryption is settled: over TLS when the client asked for it and
/// the node has a certificate. `None` ends the connection: a TLS handshake this node cannot
/// answer, or one without the `postgresql` ALPN protocol; bytes sent after an SSLRequest
/// before the handshake (PostgreSQL refuses them too: they would pass as if encrypted).
async fn negotiate<S>(
    socket: TcpStream,
    peer: std::net::SocketAddr,
    max_message_bytes: usize,
    tls: Option<&ServerTls>,
) -> io::Result<Option<Socket<S>>> {
    let mut first = [0u8; 1];
    if socket.peek(&mut first).await? > 0 && first[0] == TLS_HANDSHAKE_RECORD {
        let Some(tls) = tls else {
            return Ok(None);
        };
        return handshake(tls, socket, peer, max_message_bytes, true).await;
    }
    let mut socket = framed(MaybeTls::Plain(socket), peer, max_message_bytes);
    let Some(tls) = tls else {
        answer_encryption_requests(&mut socket, false).await?;
        return Ok(Some(socket));
    };
    if !answer_encryption_requests(&mut socket, true).await? {
        return Ok(Some(socket));
    }
    // The client was told `S`: that answer goes out, then the handshake.
    socket.flush().await?;
    socket.get_mut().inner.send_held().await?;
    let FramedParts { io, read_buf, .. } = socket.into_parts();
    let plain = match (io.into_inner(), read_buf.is_empty()) {
        (Some(coalescing), true) => coalescing.socket,
        _ => return Ok(None),
    };
    let MaybeTls::Plain(tcp) = plain else {
        unreachable!("framed over plain TCP above")
    };
    handshake(tls, tcp, peer, max_message_bytes, false).await
}

/// The TLS handshake on `tcp` with the node's certificate in use, then the socket framed
/// over it, the certificate's `tls-server-end-point` data noted for SCRAM-SHA-256-PLUS.
/// `None` when `direct` (no SSLRequest came first) and the client did not name the
/// `postgresql` ALPN protocol.
async fn handshake<S>(
    tls: &ServerTls,
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    max_message_bytes: usize,
    direct: bool,
) -> io::Result<Option<Socket<S>>> {
    let current = tls.current();
    let stream = current.acceptor.accept(tcp).await?;
    if direct && stream.get_ref().1.alpn_protocol() != Some(POSTGRESQL_ALPN) {
        return Ok(None);
    }
    let mut socket = framed(MaybeTls::Tls(Box::new(stream)), peer, max_message_bytes);
    note_end_point(socket.metadata_mut(), current.end_point.as_deref());
    Ok(Some(socket))
}

/// `socket`'s messages framed and checked, its replies coalesced.
fn framed<S>(socket: MaybeTls, peer: std::net::SocketAddr, max_message_bytes: usize) -> Socket<S> {
    let secure = matches!(socket, MaybeTls::Tls(_));
    let codec = PgWireMessageServerCodec::new(DefaultClient::new(peer, secure));
    let mut framed = Framed::new(
        Guarded::new(Coalescing::new(socket), max_message_bytes),
        codec,
    );
    if secure {
        // Inside TLS the client sends its startup packet next, nothing else.
        framed.set_state(PgWireConnectionState::AwaitingStartup);
    }
    framed
}

/// Answers an SSLRequest and a GSSENCRequest (one of each, in either order): GSS is refused
/// (`N`), and SSL too unless `tls_offered`, as PostgreSQL does. Returns `true` once an
/// SSLRequest was accepted (the handshake comes next), `false` at the first other message,
/// which stays unread.
async fn answer_encryption_requests<S>(
    socket: &mut Socket<S>,
    tls_offered: bool,
) -> io::Result<bool> {
    let (mut ssl_refused, mut gss_refused) = (false, false);
    loop {
        let answer = match socket.next().await {
            Some(Ok(PgWireFrontendMessage::SslNegotiation(
                SslNegotiationMetaMessage::PostgresSsl(_),
            ))) if !ssl_refused => match tls_offered {
                true => {
                    socket
                        .send(PgWireBackendMessage::SslResponse(SslResponse::Accept))
                        .await?;
                    return Ok(true);
                }
                false => {
                    ssl_refused = true;
                    PgWireBackendMessage::SslResponse(SslResponse::Refuse)
                }
            },
            Some(Ok(PgWireFrontendMessage::SslNegotiation(
                SslNegotiationMetaMessage::PostgresGss(_),
            ))) if !gss_refused => {
                gss_refused = true;
                PgWireBackendMessage::GssEncResponse(GssEncResponse::Refuse)
            }
            _ => return Ok(false),
        };
        socket.send(answer).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (Coalescing, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Coalescing::new(MaybeTls::Plain(server)), client)
    }

    #[tokio::test]
    async fn replies_wait_for_the_next_read_then_go_out_together() {
        let (mut server, mut client) = pair().await;
        server.write_all(b"one").await.unwrap();
        server.flush().await.unwrap();
        server.write_all(b"two").await.unwrap();
        server.flush().await.unwrap();
        let mut probe = [0u8; 16];
        assert!(
            client.try_read(&mut probe).is_err(),
            "nothing is sent on flush"
        );
        // The server reads: what it held reaches the client, in one piece.
        client.write_all(b"?").await.unwrap();
        let mut asked = [0u8; 1];
        server.read_exact(&mut asked).await.unwrap();
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"onetwo");
    }

    #[tokio::test]
    async fn large_replies_stream_and_shutdown_sends_the_rest() {
        let (mut server, mut client) = pair().await;
        let reply = vec![7u8; HELD_BYTES_MAX + 10];
        server.write_all(&reply).await.unwrap();
        server.write_all(b"end").await.unwrap();
        // Beyond the limit, the held bytes went out without a read.
        let mut first = vec![0u8; HELD_BYTES_MAX];
        client.read_exact(&mut first).await.unwrap();
        server.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest.len(), 10 + 3);
        assert!(rest.ends_with(b"end"));
    }
}
