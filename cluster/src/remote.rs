//! The shard router's view of one shard whose replicas are on other nodes: writes go to the
//! leader (a cached guess, corrected by the replicas' "not the leader, node N is" answers, and
//! retried while a new leader is elected), reads go to the replica the consistency level
//! allows, over Flight.
//!
//! A write is retried only when it surely was not applied: refused for not leading, or never
//! delivered. A write whose answer was lost (the leader died with it in flight) may or may not
//! have been applied; it fails with `Unavailable` saying so, and is not retried, so nothing is
//! applied twice behind the client's back. Reads are retried on any failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use arrow::array::RecordBatch;
use futures::future::BoxFuture;
use vecraft_storage::command::Command;
use vecraft_storage::filter::Filter;
use vecraft_storage::schema::CollectionSchema;
use vecraft_storage::shard::{Applied, SearchRequest, ShardStats, SnapshotInfo, check_shape};
use vecraft_storage::{Error, Result};

use crate::raft::NodeId;
use crate::read::{BOUNDED_LAG_ENTRIES, Consistency};
use crate::rpc::{
    CHECKPOINT, CallError, Failure, GroupId, Peers, ReadKind, ReadTicket, STATUS, WRITE,
};
use crate::shard_handle::{ShardHandle, ShardStatus};

/// How long a write may wait for a leader (an election takes 1.2 to 2 s).
const WRITE_DEADLINE: Duration = Duration::from_secs(20);
/// How long a read may go on retrying replicas.
const READ_DEADLINE: Duration = Duration::from_secs(20);
/// One call's deadline.
const CALL_TTL: Duration = Duration::from_secs(30);
/// A checkpoint seals segments, which builds HNSW graphs: minutes for millions of vectors.
const CHECKPOINT_TTL: Duration = Duration::from_secs(1800);
/// A snapshot stream for a backup: as long as a checkpoint, plus the transfer.
const SNAPSHOT_TTL: Duration = Duration::from_secs(3600);
/// Between tries while there is no leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long a replica whose call failed in transport (killed, paused, cut off) is passed
/// over, unless every replica is: long enough for its group to elect another leader if it
/// led (1.2 to 2 s), so calls go to the others instead of waiting on it again.
const SUSPECT_FOR: Duration = Duration::from_secs(2);

/// One shard of a collection in a cluster, as the router reaches it.
#[derive(Clone)]
pub struct RemoteShard(Arc<Inner>);

struct Inner {
    group: GroupId,
    schema: Arc<CollectionSchema>,
    /// The replicas' nodes and their Flight addresses, in placement order.
    replicas: Vec<(NodeId, String)>,
    peers: Peers,
    /// The node last seen leading (0: none known).
    leader: AtomicU64,
    /// The highest log index this router saw acknowledged or read at the leader.
    seen_index: AtomicU64,
    /// Round robin over replicas for `eventual` and `bounded` reads.
    next_reader: AtomicUsize,
    /// Replicas whose last call failed in transport, and until when each is passed over.
    suspects: Mutex<Vec<(NodeId, Instant)>>,
}

impl RemoteShard {
    pub fn new(
        group: GroupId,
        schema: Arc<CollectionSchema>,
        replicas: Vec<(NodeId, String)>,
        peers: Peers,
    ) -> RemoteShard {
        assert!(!replicas.is_empty(), "a shard has a replica");
        RemoteShard(Arc::new(Inner {
            group,
            schema,
            replicas,
            peers,
            leader: AtomicU64::new(0),
            seen_index: AtomicU64::new(0),
            next_reader: AtomicUsize::new(0),
            suspects: Mutex::default(),
        }))
    }

    pub fn group(&self) -> &str {
        &self.0.group
    }
}

impl Inner {
    fn addr(&self, node: NodeId) -> Option<&str> {
        self.replicas
            .iter()
            .find(|(id, _)| *id == node)
            .map(|(_, addr)| addr.as_str())
    }

    /// The leader if one is known and not suspect, else the first replica that is not.
    fn likely_leader(&self) -> NodeId {
        let known = self.leader.load(Ordering::Relaxed);
        if self.addr(known).is_some() && !self.is_suspect(known) {
            known
        } else {
            self.after(self.replicas[self.replicas.len() - 1].0)
        }
    }

    /// The replica after `node`, round the list, passing over suspects (unless all are).
    fn after(&self, node: NodeId) -> NodeId {
        let i = self.replicas.iter().position(|(id, _)| *id == node);
        let start = i.map_or(0, |i| i + 1);
        let n = self.replicas.len();
        let mut order = (0..n).map(|k| self.replicas[(start + k) % n].0);
        let first = self.replicas[start % n].0;
        order.find(|&id| !self.is_suspect(id)).unwrap_or(first)
    }

    /// Passes `node` over for a while: a call to it failed in transport.
    fn suspect(&self, node: NodeId) {
        let until = Instant::now() + SUSPECT_FOR;
        let mut suspects = self.suspects.lock();
        suspects.retain(|(id, until)| *id != node && *until > Instant::now());
        suspects.push((node, until));
        // A leader that cannot be reached is no longer the first guess.
        let _ = self
            .leader
            .compare_exchange(node, 0, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn is_suspect(&self, node: NodeId) -> bool {
        let now = Instant::now();
        self.suspects
            .lock()
            .iter()
            .any(|(id, until)| *id == node && *until > now)
    }

    /// Whether a replica's "node N leads" is worth following now.
    fn follows(&self, leader: NodeId, target: NodeId, redirects: usize) -> bool {
        leader != target
            && self.addr(leader).is_some()
            && !self.is_suspect(leader)
            && redirects < self.replicas.len()
    }

    /// A search's answer, which a replica may send in several batches, as one.
    fn one_batch(&self, batches: Vec<RecordBatch>) -> Result<RecordBatch> {
        let Some(first) = batches.first() else {
            return Err(self.unavailable("search", "the replica sent no answer"));
        };
        Ok(arrow::compute::concat_batches(&first.schema(), &batches)?)
    }

    fn unavailable(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Unavailable(format!("{what} on shard {}: {e}", self.group))
    }

    async fn write(&self, command: Vec<u8>) -> Result<Applied> {
        let started = Instant::now();
        let mut target = self.likely_leader();
        let mut redirects = 0;
        loop {
            let addr = self.addr(target).expect("targets are replicas");
            let body = (&self.group, &command);
            let reply = self
                .peers
                .call::<_, std::result::Result<(Applied, u64), Failure>>(
                    addr, WRITE, &body, CALL_TTL,
                )
                .await;
            let retry = match reply {
                Ok(Ok((applied, index))) => {
                    self.leader.store(target, Ordering::Relaxed);
                    self.seen_index.fetch_max(index, Ordering::Relaxed);
                    return Ok(applied);
                }
                Ok(Err(Failure::Refused(refusal))) => return Err(refusal.into()),
                // Followed at once, unless replicas with stale hints keep sending the write
                // round (then as any retry, paced and within the deadline).
                Ok(Err(Failure::NotLeader(Some(leader))))
                    if self.follows(leader, target, redirects) =>
                {
                    redirects += 1;
                    target = leader;
                    continue;
                }
                Ok(Err(Failure::NotLeader(_) | Failure::NoGroup)) => None,
                Err(CallError::Unreachable(e)) => {
                    self.suspect(target);
                    Some(e)
                }
                Ok(Err(failure)) => {
                    let e = format!("{failure}; the write may or may not have been applied");
                    return Err(self.unavailable("write", e));
                }
                Err(e) => {
                    self.suspect(target);
                    let e = format!("{e}; the write may or may not have been applied");
                    return Err(self.unavailable("write", e));
                }
            };
            if started.elapsed() > WRITE_DEADLINE {
                let why = retry.unwrap_or_else(|| "no leader".to_string());
                return Err(self.unavailable("write", format!("no leader took it: {why}")));
            }
            redirects = 0;
            target = self.after(target);
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn read(&self, kind: ReadKind, read: Consistency) -> Result<Vec<RecordBatch>> {
        let started = Instant::now();
        let mut level = read;
        let mut target = match read {
            Consistency::Strong => self.likely_leader(),
            _ => {
                let i = self.next_reader.fetch_add(1, Ordering::Relaxed);
                // The replica whose turn it is, or the next one that is not suspect.
                let turn = self.replicas[i % self.replicas.len()].0;
                match self.is_suspect(turn) {
                    true => self.after(turn),
                    false => turn,
                }
            }
        };
        let mut redirects = 0;
        loop {
            let addr = self.addr(target).expect("targets are replicas");
            let min_applied = self
                .seen_index
                .load(Ordering::Relaxed)
                .saturating_sub(BOUNDED_LAG_ENTRIES);
            let ticket = ReadTicket {
                group: self.group.clone(),
                read: level,
                min_applied,
                kind: kind.clone(),
            };
            let e = match self.peers.read(addr, &ticket, CALL_TTL).await {
                Ok(batches) => {
                    if level == Consistency::Strong {
                        self.leader.store(target, Ordering::Relaxed);
                    }
                    return Ok(batches);
                }
                Err(CallError::Failed(Failure::NotLeader(Some(leader))))
                    if self.follows(leader, target, redirects) =>
                {
                    redirects += 1;
                    target = leader;
                    continue;
                }
                Err(CallError::Failed(Failure::Stale)) => {
                    // Too far behind for `bounded`: the leader answers.
                    level = Consistency::Strong;
                    target = self.likely_leader();
                    continue;
                }
                Err(CallError::Failed(Failure::Refused(refusal))) => return Err(refusal.into()),
                Err(CallError::Failed(failure)) => CallError::Failed(failure),
                Err(e) => {
                    self.suspect(target);
                    e
                }
            };
            if started.elapsed() > READ_DEADLINE {
                return Err(self.unavailable("read", e));
            }
            redirects = 0;
            target = self.after(target);
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// The shard's snapshot from its leader (following redirects, trying each replica in
    /// turn until one leads), its bytes sent to `tx` as they come.
    async fn snapshot(&self, tx: tokio::sync::mpsc::Sender<Vec<u8>>) -> Result<SnapshotInfo> {
        let started = std::sync::atomic::AtomicBool::new(false);
        let mut target = self.likely_leader();
        let mut last = None;
        for _ in 0..self.replicas.len() * 2 {
            let addr = self.addr(target).expect("targets are replicas");
            let ticket = ReadTicket {
                group: self.group.clone(),
                read: Consistency::Strong,
                min_applied: 0,
                kind: ReadKind::Snapshot,
            };
            let e = match self
                .peers
                .read_snapshot(addr, &ticket, SNAPSHOT_TTL, &tx, &started)
                .await
            {
                Ok(info) => return Ok(info),
                Err(e) if started.load(Ordering::Acquire) => e,
                Err(CallError::Failed(Failure::NotLeader(Some(leader))))
                    if self.addr(leader).is_some() =>
                {
                    target = leader;
                    continue;
                }
                Err(e) => {
                    last = Some(e);
                    target = self.after(target);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            return Err(self.unavailable("snapshot", e));
        }
        Err(self.unavailable(
            "snapshot",
            last.map_or_else(|| "no leader".to_string(), |e| e.to_string()),
        ))
    }

    /// The status from the leader if one answers, else from any replica that does.
    async fn status(&self) -> Result<ShardStatus> {
        let mut answers = self.replicas().await;
        let leading = answers
            .iter()
            .position(|(_, s)| s.as_ref().is_ok_and(|s| s.group.state == "leader"));
        if let Some(i) = leading {
            let (node, status) = answers.swap_remove(i);
            self.leader.store(node, Ordering::Relaxed);
            return status;
        }
        let mut last_error = None;
        for (_, status) in answers {
            match status {
                Ok(status) => return Ok(status),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| self.unavailable("status", "no replica")))
    }

    /// Each replica's own status.
    async fn replicas(&self) -> Vec<(NodeId, Result<ShardStatus>)> {
        let asked = self.replicas.iter().map(|(node, addr)| async move {
            let reply = self
                .peers
                .call::<_, std::result::Result<ShardStatus, Failure>>(
                    addr,
                    STATUS,
                    &self.group,
                    Duration::from_secs(2),
                )
                .await;
            let status = match reply {
                Ok(Ok(status)) => Ok(status),
                Ok(Err(failure)) => Err(self.unavailable("status", failure)),
                Err(e) => Err(self.unavailable("status", e)),
            };
            (*node, status)
        });
        futures::future::join_all(asked).await
    }

    /// Every replica that answers checkpoints (at once: each seals and builds its graphs);
    /// the highest purge index comes back.
    async fn checkpoint(&self) -> Result<u64> {
        let asked = self.replicas.iter().map(|(_, addr)| {
            self.peers.call::<_, std::result::Result<u64, Failure>>(
                addr,
                CHECKPOINT,
                &self.group,
                CHECKPOINT_TTL,
            )
        });
        let mut purged = None;
        let mut last_error = String::new();
        for reply in futures::future::join_all(asked).await {
            match reply {
                Ok(Ok(index)) => purged = purged.max(Some(index)),
                Ok(Err(failure)) => last_error = failure.to_string(),
                Err(e) => last_error = e.to_string(),
            }
        }
        purged.ok_or_else(|| self.unavailable("checkpoint", last_error))
    }
}

impl ShardHandle for RemoteShard {
    fn schema(&self) -> Arc<CollectionSchema> {
        Arc::clone(&self.0.schema)
    }

    fn check(&self, command: &Command) -> Result<()> {
        check_shape(&self.0.schema, command)
    }

    fn propose(&self, command: &Command) -> Result<Applied> {
        let bytes = command.encode()?;
        let inner = Arc::clone(&self.0);
        crate::raft::run(async move { inner.write(bytes).await })?
    }

    fn propose_async<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<Applied>> {
        Box::pin(async move {
            let bytes = command.encode()?;
            let inner = Arc::clone(&self.0);
            crate::raft::run_async(async move { inner.write(bytes).await }).await?
        })
    }

    fn search(&self, request: &SearchRequest, read: Consistency) -> Result<RecordBatch> {
        let inner = Arc::clone(&self.0);
        let kind = ReadKind::Search(request.clone());
        let batches = crate::raft::run(async move { inner.read(kind, read).await })??;
        self.0.one_batch(batches)
    }

    fn scan(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        read: Consistency,
    ) -> Result<Vec<RecordBatch>> {
        let inner = Arc::clone(&self.0);
        let kind = ReadKind::scan(projection, filter);
        crate::raft::run(async move { inner.read(kind, read).await })?
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn search_async<'a>(
        &'a self,
        request: &'a SearchRequest,
        read: Consistency,
    ) -> BoxFuture<'a, Result<RecordBatch>> {
        let inner = Arc::clone(&self.0);
        let kind = ReadKind::Search(request.clone());
        Box::pin(async move {
            let batches = crate::raft::run_async(async move { inner.read(kind, read).await });
            self.0.one_batch(batches.await??)
        })
    }

    fn scan_async<'a>(
        &'a self,
        projection: Option<&'a [String]>,
        filter: Option<&'a Filter>,
        read: Consistency,
    ) -> BoxFuture<'a, Result<Vec<RecordBatch>>> {
        let inner = Arc::clone(&self.0);
        let kind = ReadKind::scan(projection, filter);
        Box::pin(async move {
            crate::raft::run_async(async move { inner.read(kind, read).await }).await?
        })
    }

    fn status(&self) -> Result<ShardStatus> {
        let inner = Arc::clone(&self.0);
        crate::raft::run(async move { inner.status().await })?
    }

    fn replicas(&self) -> Vec<(NodeId, Result<ShardStatus>)> {
        let inner = Arc::clone(&self.0);
        crate::raft::run(async move { inner.replicas().await }).unwrap_or_default()
    }

    fn stats(&self) -> Option<ShardStats> {
        None
    }

    fn checkpoint(&self) -> Result<u64> {
        let inner = Arc::clone(&self.0);
        crate::raft::run(async move { inner.checkpoint().await })?
    }

    /// Streams the leader's snapshot through the groups' runtime into `out`: the runtime's
    /// task sends chunks as they arrive, and this thread writes them.
    fn snapshot(&self, out: &mut dyn std::io::Write) -> Result<SnapshotInfo> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        let inner = Arc::clone(&self.0);
        crate::raft::spawn(async move {
            let _ = done_tx.send(inner.snapshot(tx).await);
        });
        let mut written = Ok(());
        while let Some(chunk) = rx.blocking_recv() {
            written = out.write_all(&chunk);
            if written.is_err() {
                break;
            }
        }
        drop(rx); // a failed write stops the transfer
        let info = done_rx.recv().map_err(|_| Error::Closed)??;
        let io = |e| Error::io("write snapshot", std::path::Path::new(&self.0.group), e);
        written.map_err(io)?;
        out.flush().map_err(io)?;
        Ok(info)
    }

    fn reindex(&self) -> Result<()> {
        Err(Error::InvalidArgument(
            "rebuilding the index of a collection in a cluster is not supported yet; \
             create the collection with its index (CREATE COLLECTION … WITH (m, ef_construction))"
                .into(),
        ))
    }
}

impl std::fmt::Debug for RemoteShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteShard")
            .field("group", &self.0.group)
            .field("replicas", &self.0.replicas)
            .finish()
    }
}
