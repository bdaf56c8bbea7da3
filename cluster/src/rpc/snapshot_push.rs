//! A leader's snapshot to a member that fell behind the purged log, over Flight `DoPut`, in
//! chunks: neither node holds the snapshot in memory, however large the shard.
//!
//! The first message's `app_metadata` is the postcard-encoded `(group, vote, meta)`; then
//! come the snapshot stream's 1 MiB chunks as `data_body`s, written by the leader's shard on a
//! blocking thread into a bounded channel (8 chunks), and the end of the request stream is the
//! end of the snapshot. The receiver writes each chunk to a spool file beside its replica while
//! a blocking thread reads them through [`snapshot_check::check`] (every checksum, the
//! manifest, the schema, the metadata), so the stream is checked by the time it has arrived;
//! only then does Raft see it (`install_full_snapshot`), and the state machine installs it from
//! the file. The one `PutResult`'s `app_metadata` carries openraft's answer.
//!
//! A transfer that breaks (either node dies, the connection drops, the leader's disk fails)
//! leaves a stream that ends short, which the check refuses; the spool file goes with it, and
//! openraft sends the snapshot again from the start.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use arrow_flight::{FlightData, PutResult};
use openraft::error::Fatal;
use openraft::raft::SnapshotResponse;
use openraft::{BasicNode, Snapshot, SnapshotMeta, Vote};
use tokio::sync::mpsc::{Receiver, Sender, channel};
use tonic::codegen::Bytes;
use tonic::{Status, Streaming};
use vecraft_storage::error::Refusal;
use vecraft_storage::schema::CollectionSchema;

use super::server::{decode, encode, refused};
use super::{CallError, Failure, GroupId, Peers, RaftService, snapshot_check};
use crate::chunks::{ChunkSink, ChunkWriter, gone};
use crate::raft::{NodeId, SnapshotData, Spool};

const CHUNKS_IN_FLIGHT: usize = 8;
/// Time a receiver is given to install what it received, per 10 MB of it, beyond the deadline.
const INSTALL_SECS_PER_10_MB: u64 = 1;

/// What the first message names: the group, the leader's vote and the snapshot's metadata.
pub type Header = (GroupId, Vote<NodeId>, SnapshotMeta<NodeId, BasicNode>);
/// The receiving member's answer.
pub type Installed = Result<SnapshotResponse<NodeId>, Fatal<NodeId>>;

impl Peers {
    /// Streams a snapshot to the member of `header`'s group on the node at `addr`: what
    /// `write` writes (on a blocking thread). Gives up when the transport has taken nothing for
    /// `idle`, or, once all is sent, when the member has not answered within `idle` and a
    /// second per 10 MB sent.
    pub async fn push_snapshot(
        &self,
        addr: &str,
        header: &Header,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static,
        idle: Duration,
    ) -> Result<Installed, CallError> {
        let mut client = self
            .client(addr)
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let head = postcard::to_stdvec(header).map_err(|e| CallError::Lost(e.to_string()))?;
        let (tx, mut rx) = channel(CHUNKS_IN_FLIGHT);
        let first = FlightData {
            app_metadata: Bytes::from(head),
            ..Default::default()
        };
        tx.try_send(first).expect("a new channel has room");
        let writer = tokio::task::spawn_blocking(move || {
            let mut out = ChunkWriter::new(Chunks(tx));
            write(&mut out).and_then(|()| out.flush())
        });
        let progress = Arc::new(Progress::default());
        let requests = {
            let progress = Arc::clone(&progress);
            futures::stream::poll_fn(move |cx| progress.saw(rx.poll_recv(cx)))
        };
        let mut request = tonic::Request::new(requests);
        self.secret.sign(&mut request);
        let call = async {
            let mut replies = client
                .do_put(request)
                .await
                .map_err(|s| CallError::of(&s))?
                .into_inner();
            let reply = replies.message().await.map_err(|s| CallError::of(&s))?;
            let reply = reply.ok_or_else(|| CallError::Lost("the peer sent no reply".into()))?;
            postcard::from_bytes(&reply.app_metadata).map_err(|e| CallError::Lost(e.to_string()))
        };
        let answer = tokio::select! {
            answer = call => answer,
            () = progress.stalled(idle) => Err(CallError::Timeout),
        };
        self.forget_if_broken(addr, &answer);
        if answer.is_err() && writer.is_finished() {
            // A stream that broke on this side ended short: say why it broke.
            if let Ok(Err(e)) = writer.await
                && e.kind() != io::ErrorKind::BrokenPipe
            {
                return Err(CallError::Lost(format!("writing the snapshot: {e}")));
            }
        }
        answer
    }
}

/// How far the transport has taken the request stream.
#[derive(Default)]
struct Progress {
    /// Bytes taken, and one per message (so the header counts).
    taken: AtomicU64,
    ended: AtomicBool,
}

impl Progress {
    fn saw(&self, polled: Poll<Option<FlightData>>) -> Poll<Option<FlightData>> {
        match &polled {
            Poll::Ready(Some(message)) => {
                let size = message.data_body.len() as u64 + 1;
                self.taken.fetch_add(size, Ordering::AcqRel);
            }
            Poll::Ready(None) => self.ended.store(true, Ordering::Release),
            Poll::Pending => {}
        }
        polled
    }

    /// Returns once the stream has made no progress for `idle`, or has been sent whole and
    /// the receiver's install window has passed.
    async fn stalled(&self, idle: Duration) {
        loop {
            let ended = self.ended.load(Ordering::Acquire);
            let taken = self.taken.load(Ordering::Acquire);
            let install_secs = taken.div_ceil(10_000_000) * INSTALL_SECS_PER_10_MB;
            let wait = match ended {
                true => idle + Duration::from_secs(install_secs),
                false => idle,
            };
            tokio::time::sleep(wait).await;
            if ended || self.taken.load(Ordering::Acquire) == taken {
                return;
            }
        }
    }
}

/// Chunks as messages of the request stream, waiting while the transport is behind.
struct Chunks(Sender<FlightData>);

impl ChunkSink for Chunks {
    fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        let message = FlightData {
            data_body: Bytes::from(chunk),
            ..Default::default()
        };
        self.0.blocking_send(message).map_err(|_| gone())
    }
}

/// Receives a snapshot pushed to a member on this node, spooling and checking it as it
/// arrives, and has the member's group install it. The one result of the `DoPut`.
pub(super) async fn receive(
    service: &RaftService,
    mut stream: Streaming<FlightData>,
) -> Result<PutResult, Status> {
    let head = stream
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("a snapshot push without its header"))?;
    let (group, vote, meta): Header = decode(&head.app_metadata)?;
    let member = service
        .member(&group)
        .ok_or_else(|| refused(Failure::NoGroup))?;
    let (spool, file) =
        Spool::create(member.dir()).map_err(|e| Status::internal(format!("spool: {e}")))?;
    let (tx, rx) = channel(CHUNKS_IN_FLIGHT);
    let checking = {
        let (schema, meta) = (member.shard().schema(), meta.clone());
        tokio::task::spawn_blocking(move || check_while_spooling(&schema, &meta, rx, file))
    };
    let received = forward(&mut stream, &tx, || member.group().heard_from_leader()).await;
    drop(tx);
    let checked = checking
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    received?;
    checked.map_err(|why| {
        let why = format!("snapshot refused: {why}");
        refused(Failure::Refused(Refusal::InvalidArgument(why)))
    })?;
    let snapshot = Snapshot {
        meta,
        snapshot: Box::new(SnapshotData::Spooled(spool)),
    };
    // The install is the leader's doing too: it holds off this member's own campaign
    // (`raft/nudge.rs`) however long it takes.
    let installing = member.group().raft().install_full_snapshot(vote, snapshot);
    tokio::pin!(installing);
    let mut still = tokio::time::interval(Duration::from_millis(100));
    let installed: Installed = loop {
        tokio::select! {
            installed = &mut installing => break installed,
            _ = still.tick() => member.group().heard_from_leader(),
        }
    };
    Ok(PutResult {
        app_metadata: encode(&installed)?,
    })
}

/// Hands each chunk of `stream` to the check, until either ends; each chunk is word from
/// the leader (`heard`).
async fn forward(
    stream: &mut Streaming<FlightData>,
    tx: &Sender<Bytes>,
    heard: impl Fn(),
) -> Result<(), Status> {
    while let Some(message) = stream.message().await? {
        heard();
        if tx.send(message.data_body).await.is_err() {
            // The check stopped reading: it has its answer.
            return Ok(());
        }
    }
    Ok(())
}

/// Checks the stream of chunks from `rx` while writing each to `file`.
fn check_while_spooling(
    schema: &CollectionSchema,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    rx: Receiver<Bytes>,
    file: std::fs::File,
) -> Result<(), String> {
    let mut input = Spooling {
        rx,
        chunk: Bytes::new(),
        file,
    };
    snapshot_check::check(schema, meta, &mut input)
}

/// A `Read` over received chunks that writes each to the spool file as it arrives.
struct Spooling {
    rx: Receiver<Bytes>,
    chunk: Bytes,
    file: std::fs::File,
}

impl Read for Spooling {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.file.write_all(&chunk)?;
                    self.chunk = chunk;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
