//! A `Write` that hands what is written on in chunks: the snapshot streams between threads
//! (`pipe`) and over Flight (`rpc::snapshot_stream` for backups, `rpc::snapshot_push` between
//! replicas) all cut a stream this way, so a sender never holds more than one chunk of it.

use std::io::{self, Write};

/// Chunks of at most this size (the last may be shorter).
pub const CHUNK_BYTES: usize = 1 << 20;

/// Where a [`ChunkWriter`]'s chunks go.
pub trait ChunkSink {
    /// Sends one chunk, waiting while the receiver is behind; fails once it has gone.
    fn send(&mut self, chunk: Vec<u8>) -> io::Result<()>;
}

/// Sends every `CHUNK_BYTES` written, and what is left at `flush`. Dropped without a flush,
/// it sends nothing more: a stream that failed halfway ends short, which readers refuse.
pub struct ChunkWriter<S: ChunkSink> {
    sink: S,
    buf: Vec<u8>,
}

impl<S: ChunkSink> ChunkWriter<S> {
    pub fn new(sink: S) -> ChunkWriter<S> {
        ChunkWriter {
            sink,
            buf: Vec::with_capacity(CHUNK_BYTES),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.sink.send(full)
    }
}

impl<S: ChunkSink> Write for ChunkWriter<S> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = bytes.len().min(CHUNK_BYTES - self.buf.len());
        self.buf.extend_from_slice(&bytes[..n]);
        if self.buf.len() == CHUNK_BYTES {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.buf.is_empty() {
            true => Ok(()),
            false => self.send(),
        }
    }
}

/// The error of a send whose receiver has gone.
pub fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the reader stopped")
}
