//! Frontend message frames checked before pgwire decodes them.
//!
//! pgwire 0.41's decoders trust a message's length field and its contents: a length under 4,
//! a Parse or Bind whose counts claim more bytes than the message holds, or a CopyData of
//! length 0 panic inside the decoder (the connection's task dies), and a Sync with a body
//! smuggles its body in as the next message. [`Guarded`] sits between the socket and pgwire's
//! framing and hands pgwire only whole frames that decode cleanly, checking the same fields in
//! the same order as pgwire's decoders; anything else ends the connection with PostgreSQL's
//! 08P01 text ("invalid message length", "insufficient data left in message", …).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Why a frame was refused: PostgreSQL's words for it (SQLSTATE 08P01).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation(pub &'static str);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Violation {}

/// The violation behind an I/O error of a [`Guarded`] stream, if that is what it was.
pub fn violation(e: &io::Error) -> Option<Violation> {
    e.get_ref()?.downcast_ref::<Violation>().copied()
}

/// PostgreSQL's limit for messages other than Query, Parse, Bind and CopyData (and for the
/// startup packet).
const SMALL_MESSAGE_BYTES: usize = 10_000;

/// A stream whose reads yield only whole, well-formed frontend messages.
pub struct Guarded<T> {
    pub inner: T,
    /// Bytes read and not yet checked (a frame still arriving).
    raw: BytesMut,
    /// Checked frames not yet read by pgwire.
    checked: BytesMut,
    /// Whether the startup packet was seen (later messages start with a type byte).
    typed: bool,
    max_message_bytes: usize,
    /// A malformed frame found after good ones: reported once those were read.
    refused: Option<Violation>,
}

impl<T> Guarded<T> {
    pub fn new(inner: T, max_message_bytes: usize) -> Guarded<T> {
        Guarded {
            inner,
            raw: BytesMut::new(),
            checked: BytesMut::new(),
            typed: false,
            max_message_bytes,
            refused: None,
        }
    }

    /// The stream under the guard, if nothing was read from it beyond what was passed on
    /// (`None`: bytes the client sent are still held).
    pub fn into_inner(self) -> Option<T> {
        let drained = self.raw.is_empty() && self.checked.is_empty() && self.refused.is_none();
        drained.then_some(self.inner)
    }
}

/// Reads a message body as pgwire's decoders do, refusing what would panic them.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Violation> {
        if n > self.0.len() {
            return Err(Violation("insufficient data left in message"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u16(&mut self) -> Result<usize, Violation> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }

    fn i32(&mut self) -> Result<i32, Violation> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn cstr(&mut self) -> Result<&'a [u8], Violation> {
        let Some(end) = self.0.iter().position(|&c| c == 0) else {
            return Err(Violation("invalid string in message"));
        };
        let s = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Ok(s)
    }

    fn end(&self) -> Result<(), Violation> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Violation("invalid message format"))
        }
    }
}

const SSL_REQUEST: i32 = 80877103;
const GSSENC_REQUEST: i32 = 80877104;
const CANCEL_REQUEST: i32 = 80877102;

/// The length of the whole frame at the start of `raw` and whether messages after it carry a
/// type byte, once the frame is all there; `None` while it is still arriving.
fn frame(
    raw: &[u8],
    typed: bool,
    max_message_bytes: usize,
) -> Result<Option<(usize, bool)>, Violation> {
    let header = if typed { 5 } else { 4 };
    if raw.len() < header {
        return Ok(None);
    }
    let len = i32::from_be_bytes([
        raw[header - 4],
        raw[header - 3],
        raw[header - 2],
        raw[header - 1],
    ]);
    let large = typed && matches!(raw[0], b'Q' | b'P' | b'B' | b'd');
    let max = if large {
        max_message_bytes
    } else {
        SMALL_MESSAGE_BYTES
    };
    let min = if typed { 4 } else { 8 };
    let Ok(len) = usize::try_from(len) else {
        return Err(Violation("invalid message length"));
    };
    if len < min || len > max {
        return Err(Violation(if typed {
            "invalid message length"
        } else {
            "invalid length of startup packet"
        }));
    }
    let total = len + header - 4;
    if raw.len() < total {
        return Ok(None);
    }
    let mut body = Body(&raw[header..total]);
    if !typed {
        return startup(&mut body, len).map(|typed| Some((total, typed)));
    }
    match raw[0] {
        b'S' | b'H' | b'c' | b'X' => body.end()?,
        b'd' | b'p' => {}
        b'Q' | b'f' => {
            body.cstr()?;
            body.end()?;
        }
        b'D' | b'C' => {
            body.take(1)?;
            body.cstr()?;
            body.end()?;
        }
        b'E' => {
            body.cstr()?;
            body.take(4)?;
            body.end()?;
        }
        b'P' => {
            body.cstr()?;
            body.cstr()?;
            let types = body.u16()?;
            body.take(4 * types)?;
            body.end()?;
        }
        b'B' => bind(&mut body)?,
        _ => return Err(Violation("invalid frontend message type")),
    }
    Ok(Some((total, true)))
}

/// The first packet: an SSL or GSS request (the next packet is untyped too), a cancel
/// request, or a startup message of `name\0value\0` pairs.
fn startup(body: &mut Body<'_>, len: usize) -> Result<bool, Violation> {
    let bad_length = Violation("invalid length of startup packet");
    match body.i32()? {
        SSL_REQUEST | GSSENC_REQUEST if len == 8 => Ok(false),
        CANCEL_REQUEST if (16..=268).contains(&len) => Ok(true),
        SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST => Err(bad_length),
        _ => {
            while !body.cstr()?.is_empty() {
                body.cstr()?;
            }
            body.end()?;
            Ok(true)
        }
    }
}

fn bind(body: &mut Body<'_>) -> Result<(), Violation> {
    body.cstr()?; // portal
    body.cstr()?; // statement
    let formats = body.u16()?;
    body.take(2 * formats)?;
    for _ in 0..body.u16()? {
        let len = body.i32()?;
        if len < -1 {
            return Err(Violation("insufficient data left in message"));
        }
        if len > 0 {
            body.take(len as usize)?;
        }
    }
    let result_formats = body.u16()?;
    body.take(2 * result_formats)?;
    body.end()
}

impl<T> Guarded<T> {
    /// Moves every whole, checked frame from `raw` to `checked`, up to a malformed one.
    fn check_frames(&mut self) {
        while self.refused.is_none() {
            match frame(&self.raw, self.typed, self.max_message_bytes) {
                Ok(Some((n, typed))) => {
                    let whole = self.raw.split_to(n);
                    self.checked.extend_from_slice(&whole);
                    self.typed = typed;
                }
                Ok(None) => return,
                Err(v) => self.refused = Some(v),
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.checked.is_empty() {
                let n = this.checked.len().min(out.remaining());
                out.put_slice(&this.checked.split_to(n));
                return Poll::Ready(Ok(()));
            }
            this.check_frames();
            if !this.checked.is_empty() {
                continue;
            }
            if let Some(v) = this.refused {
                // Every good frame before it was read: now the stream ends in an error.
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, v)));
            }
            this.raw.reserve(8192);
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.raw
            ))?;
            if read == 0 {
                return Poll::Ready(Ok(())); // end of stream: a partial frame never reaches pgwire
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn check(raw: &[u8]) -> Result<Option<(usize, bool)>, Violation> {
        frame(raw, true, MAX)
    }

    #[test]
    fn frames_that_panicked_pgwire_are_refused() {
        assert_eq!(
            check(b"P\0\0\0\x04"),
            Err(Violation("invalid string in message"))
        );
        assert_eq!(
            check(b"d\0\0\0\0"),
            Err(Violation("invalid message length"))
        );
        assert_eq!(
            check(b"p\0\0\0\x02"),
            Err(Violation("invalid message length"))
        );
        assert_eq!(
            check(b"Q\xff\xff\xff\xf0"),
            Err(Violation("invalid message length"))
        );
        // A Bind whose one parameter claims 100 bytes and brings 3.
        let mut bind = b"\0\0\0\0\0\x01\0\0\0\x64".to_vec();
        bind.extend_from_slice(b"abc\0\0");
        assert_eq!(
            check(&typed(b'B', &bind)),
            Err(Violation("insufficient data left in message"))
        );
        assert_eq!(
            check(&typed(b'E', b"\0")),
            Err(Violation("insufficient data left in message"))
        );
        assert_eq!(
            check(&typed(b'D', b"")),
            Err(Violation("insufficient data left in message"))
        );
        assert_eq!(
            check(&typed(b'S', b"x")),
            Err(Violation("invalid message format"))
        );
        assert_eq!(
            check(&typed(b'Z', b"")),
            Err(Violation("invalid frontend message type"))
        );
        let huge = (MAX as i32 + 1).to_be_bytes();
        assert_eq!(
            check(&[b'd', huge[0], huge[1], huge[2], huge[3]]),
            Err(Violation("invalid message length"))
        );
    }

    #[test]
    fn good_frames_pass_whole_and_partial_ones_wait() {
        let query = typed(b'Q', b"SELECT 1\0");
        assert_eq!(check(&query), Ok(Some((query.len(), true))));
        assert_eq!(check(&query[..7]), Ok(None));
        let mut bind = b"\0s1\0\0\x01\0\x01\0\x02\0\0\0\x01a\xff\xff\xff\xff\0\x01\0\0".to_vec();
        assert_eq!(check(&typed(b'B', &bind)), Ok(Some((bind.len() + 5, true))));
        bind.push(0);
        assert!(check(&typed(b'B', &bind)).is_err(), "a byte too many");
        let parse = typed(b'P', b"s\0SELECT $1\0\0\x01\0\0\0\x17");
        assert_eq!(check(&parse), Ok(Some((parse.len(), true))));
        assert_eq!(check(&typed(b'd', b"")), Ok(Some((5, true))));
        assert_eq!(check(&typed(b'X', b"")), Ok(Some((5, true))));
    }

    /// Frames as clients send them, and mangled: the check never panics, and every frame it
    /// passes decodes in pgwire without panicking (which is what it is for).
    #[test]
    fn fuzz_frames_then_pgwire() {
        use pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion};
        let mut bind = b"\0s1\0\0\x01\0\x01\0\x02\0\0\0\x01a\xff\xff\xff\xff\0\x01\0\0".to_vec();
        bind = typed(b'B', &bind);
        let seeds: Vec<Vec<u8>> = vec![
            typed(b'Q', b"SELECT 1\0"),
            typed(b'P', b"s\0SELECT $1\0\0\x01\0\0\0\x17"),
            bind,
            typed(b'E', b"\0\0\0\0\0"),
            typed(b'D', b"Ss\0"),
            typed(b'C', b"Pp\0"),
            typed(b'd', b"1\t[1,2]\n"),
            typed(b'f', b"oops\0"),
            typed(b'S', b""),
        ];
        let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
        vecraft_storage::fuzz::run("frames", &seeds, |input| {
            let Ok(Some((n, _))) = frame(input, true, MAX) else {
                return;
            };
            let mut buf = bytes::BytesMut::from(&input[..n]);
            let mut context = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
            context.awaiting_frontend_ssl = false;
            context.awaiting_frontend_startup = false;
            let _ = PgWireFrontendMessage::decode(&mut buf, &context);
        });
    }

    #[test]
    fn startup_packets_are_checked_untyped() {
        let packet = |body: &[u8]| {
            let mut m = (body.len() as i32 + 4).to_be_bytes().to_vec();
            m.extend_from_slice(body);
            m
        };
        let ssl = packet(&SSL_REQUEST.to_be_bytes());
        assert_eq!(frame(&ssl, false, MAX), Ok(Some((8, false))));
        let mut start = 196608i32.to_be_bytes().to_vec();
        start.extend_from_slice(b"user\0postgres\0\0");
        let start = packet(&start);
        assert_eq!(frame(&start, false, MAX), Ok(Some((start.len(), true))));
        let mut cancel = CANCEL_REQUEST.to_be_bytes().to_vec();
        cancel.extend_from_slice(&[0; 8]);
        assert_eq!(frame(&packet(&cancel), false, MAX), Ok(Some((16, true))));
        assert!(frame(b"\0\0\0\x04", false, MAX).is_err());
        let mut open = 196608i32.to_be_bytes().to_vec();
        open.extend_from_slice(b"user");
        assert!(
            frame(&packet(&open), false, MAX).is_err(),
            "an unterminated name"
        );
    }
}
