//! A replica's shard snapshot over `DoGet`, in chunks: what a backup of a cluster's collection
//! reads from each shard's leader. The shard writes its snapshot stream on a blocking thread
//! into a bounded channel (8 chunks of 1 MiB), which the response drains as the client reads,
//! so neither side holds the snapshot. Each chunk is one message's `data_body`; the last message
//! carries only the `SnapshotInfo` (postcard) in its `app_metadata`, so a stream without it was
//! cut short.

use std::io::{self, Write};
use std::sync::Arc;

use arrow_flight::FlightData;
use futures::stream::BoxStream;
use tokio::sync::mpsc::{Sender, channel};
use tonic::Status;
use tonic::codegen::Bytes;
use vecraft_storage::shard::SnapshotInfo;

use super::Failure;
use super::server::refused;
use crate::local::LocalShard;

const CHUNK_BYTES: usize = 1 << 20;
const CHUNKS_IN_FLIGHT: usize = 8;

/// The response stream of `member`'s snapshot.
pub(super) fn serve(member: Arc<LocalShard>) -> BoxStream<'static, Result<FlightData, Status>> {
    let (tx, mut rx) = channel(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkSender {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK_BYTES),
        };
        let last = match member.shard().write_snapshot(&mut out) {
            Ok(info) => Ok(info_message(&info)),
            Err(e) => Err(refused(Failure::Unavailable(format!("snapshot: {e}")))),
        };
        // The client may have gone: then nobody reads the end either.
        let _ = tx.blocking_send(last);
    });
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// The message that ends a snapshot stream.
fn info_message(info: &SnapshotInfo) -> FlightData {
    let metadata = postcard::to_stdvec(info).expect("snapshot info serialises");
    FlightData {
        app_metadata: Bytes::from(metadata),
        ..Default::default()
    }
}

/// The `SnapshotInfo` a message carries, if it is the last one.
pub(super) fn info_of(message: &FlightData) -> Option<Result<SnapshotInfo, postcard::Error>> {
    (!message.app_metadata.is_empty()).then(|| postcard::from_bytes(&message.app_metadata))
}

/// Sends what is written as messages of `CHUNK_BYTES`, waiting while the channel is full.
struct ChunkSender {
    tx: Sender<Result<FlightData, Status>>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        let message = FlightData {
            data_body: Bytes::from(chunk),
            ..Default::default()
        };
        self.tx
            .blocking_send(Ok(message))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader went away"))
    }
}

impl Write for ChunkSender {
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
