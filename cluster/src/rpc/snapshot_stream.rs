//! A replica's shard snapshot over `DoGet`, in chunks: what a backup of a cluster's collection
//! reads from each shard's leader. The shard writes its snapshot stream on a blocking thread
//! into a bounded channel (8 chunks of 1 MiB), which the response drains as the client reads,
//! so neither side holds the snapshot. Each chunk is one message's `data_body`; the last message
//! carries only the `SnapshotInfo` (postcard) in its `app_metadata`, so a stream without it was
//! cut short.

use std::io;
use std::sync::Arc;

use arrow_flight::FlightData;
use futures::stream::BoxStream;
use tokio::sync::mpsc::{Sender, channel};
use tonic::Status;
use tonic::codegen::Bytes;
use vecraft_storage::shard::SnapshotInfo;

use super::Failure;
use super::server::refused;
use crate::chunks::{ChunkSink, ChunkWriter, gone};
use crate::local::LocalShard;

const CHUNKS_IN_FLIGHT: usize = 8;

/// The response stream of `member`'s snapshot.
pub(super) fn serve(member: Arc<LocalShard>) -> BoxStream<'static, Result<FlightData, Status>> {
    let (tx, mut rx) = channel(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter::new(Messages(tx.clone()));
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

/// Chunks as messages of the response, waiting while the client is behind.
struct Messages(Sender<Result<FlightData, Status>>);

impl ChunkSink for Messages {
    fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        let message = FlightData {
            data_body: Bytes::from(chunk),
            ..Default::default()
        };
        self.0.blocking_send(Ok(message)).map_err(|_| gone())
    }
}
