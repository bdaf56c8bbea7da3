//! A bounded byte pipe between two threads: one side writes a snapshot stream
//! (`Shard::write_snapshot`, `SnapshotWriter`) while the other reads it (`split_snapshot`,
//! `Shard::restore_snapshot`, `Shard::install_snapshot`), so no side holds more than a few
//! chunks of it. Backups and restores use it, and a replica installing a snapshot of another
//! replica in the same process.
//!
//! The reader sees the end of the stream only after the writer's `flush`: a writer dropped
//! without one (it failed halfway) leaves its last bytes unsent, and the reader a stream that
//! ends early, which it refuses. A reader dropped early makes the writer's next write fail.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::chunks::{ChunkSink, ChunkWriter, gone};

/// The writing end: chunks of 1 MiB into a channel.
pub type PipeWriter = ChunkWriter<SyncSender<Vec<u8>>>;

pub struct PipeReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChunkSink for SyncSender<Vec<u8>> {
    fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        SyncSender::send(self, chunk).map_err(|_| gone())
    }
}

/// A pipe holding at most `chunks` chunks of 1 MiB in flight.
pub fn pipe(chunks: usize) -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(chunks);
    let reader = PipeReader {
        rx,
        chunk: Vec::new(),
        at: 0,
    };
    (ChunkWriter::new(tx), reader)
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
    use std::io::Write;

    use super::*;
    use crate::chunks::CHUNK_BYTES;

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
