//! A bounded byte pipe between two threads: one side writes a snapshot stream
//! (`Shard::write_snapshot`, `SnapshotWriter`) while the other reads it (`split_snapshot`,
//! `Shard::restore_snapshot`), so no side holds more than a few chunks of it.
//!
//! The reader sees the end of the stream only after the writer's `flush`: a writer dropped
//! without one (it failed halfway) leaves its last bytes unsent, and the reader a stream that
//! ends early, which it refuses. A reader dropped early makes the writer's next write fail.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

const CHUNK_BYTES: usize = 1 << 20;

pub struct PipeWriter {
    tx: SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

pub struct PipeReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

/// A pipe holding at most `chunks` chunks of 1 MiB in flight.
pub fn pipe(chunks: usize) -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(chunks);
    let writer = PipeWriter {
        tx,
        buf: Vec::with_capacity(CHUNK_BYTES),
    };
    let reader = PipeReader {
        rx,
        chunk: Vec::new(),
        at: 0,
    };
    (writer, reader)
}

impl PipeWriter {
    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader stopped"))
    }
}

impl Write for PipeWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = bytes.len().min(CHUNK_BYTES - self.buf.len());
        self.buf.extend_from_slice(&bytes[..n]);
        if self.buf.len() == CHUNK_BYTES {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => (self.chunk, self.at) = (chunk, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_and_flushed_is_read_whole() {
        let (mut w, mut r) = pipe(2);
        let data: Vec<u8> = (0..3 * CHUNK_BYTES + 17).map(|i| i as u8).collect();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            w.write_all(&sent).unwrap();
            w.flush().unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        assert_eq!(got, data);
    }

    #[test]
    fn a_writer_dropped_unflushed_sends_a_short_stream_and_a_dropped_reader_fails_the_writer() {
        let (mut w, mut r) = pipe(2);
        w.write_all(&[1, 2, 3]).unwrap();
        drop(w);
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert!(got.is_empty(), "unflushed bytes are not sent");

        let (mut w, r) = pipe(1);
        drop(r);
        let err = w.write_all(&vec![0u8; 2 * CHUNK_BYTES]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
