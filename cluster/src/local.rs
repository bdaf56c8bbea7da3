//! One shard on this node: the `Shard` behind its Raft group, whose log is the shard's storage
//! log, so every acknowledged write survives `kill -9`.
//!
//! Write: check the command against the schema, propose it to the group (merged with other
//! sessions' concurrent INSERTs, `batch.rs`), and return once it is durable, committed and
//! applied (`raft::Group`). Open: `Shard::open` comes back at its
//! durable index and the group replays the log after it before the shard is handed out.
//! `checkpoint` is a Raft snapshot: the shard seals and persists, then the log it covers is
//! purged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use openraft::BasicNode;
use parking_lot::{RwLock, RwLockReadGuard};
use vecraft_storage::Result;
use vecraft_storage::command::Command;
use vecraft_storage::filter::Filter;
use vecraft_storage::log::{Log, LogOptions};
use vecraft_storage::schema::CollectionSchema;
use vecraft_storage::shard::{
    Applied, SearchRequest, SegmentInfo, Shard, ShardOptions, ShardStats, SnapshotInfo,
};

use crate::batch::{Batcher, Propose};
use crate::raft::{Group, GroupStatus, NodeId, Spool};
use crate::read::Consistency;
use crate::rpc::{FlightCanvass, FlightNetwork, GroupId, Peers, Silence};
use crate::shard_handle::{ShardHandle, ShardStatus};

pub struct LocalShard {
    dir: PathBuf,
    shard: Arc<Shard>,
    group: Group,
    /// Merges concurrent INSERTs into one Raft entry (`batch.rs`).
    batcher: Batcher,
    /// Whether the shard was closed (its collection dropped). Every request holds a read
    /// guard while it runs, so [`LocalShard::close`] waits for the ones in flight and refuses
    /// the later ones with `Error::Dropped`.
    closed: RwLock<bool>,
    /// A cluster's member: its group's id and the node's peers (a hand-over calls the
    /// follower it picked). `None` on a single node.
    peers: Option<(GroupId, Peers)>,
    /// On while the member, a leader cut off from its quorum, stands aside
    /// (`rpc/step_aside.rs`).
    silence: Silence,
}

impl LocalShard {
    /// Opens (or creates, with `schema`) the shard in `dir` and replays its log.
    pub fn open(dir: &Path, schema: Option<CollectionSchema>, opts: ShardOptions) -> Result<Self> {
        let (log, shard) = LocalShard::open_parts(dir, schema, opts)?;
        let group = Group::start(dir, log, Arc::clone(&shard))?;
        Ok(LocalShard {
            dir: dir.to_path_buf(),
            shard,
            batcher: batcher(&group),
            group,
            closed: RwLock::new(false),
            peers: None,
            silence: Silence::default(),
        })
    }

    /// Opens (or creates) this node's replica `id` of `group`, whose other members are
    /// reached over Flight through `peers`; `initial` members initialise a group new
    /// everywhere (one member passes them). Returns at once: the replica catches up with its
    /// group in the background.
    ///
    /// Members seal, merge and checkpoint each on its own schedule: what every replica checks
    /// when it applies a commit (a row's version, the index that wrote it) does not depend on
    /// where the row lives.
    pub fn open_member(
        dir: &Path,
        schema: Option<CollectionSchema>,
        opts: ShardOptions,
        member: (GroupId, NodeId),
        peers: Peers,
        initial: Option<BTreeMap<NodeId, BasicNode>>,
    ) -> Result<Self> {
        let (group_id, id) = member;
        let (log, shard) = LocalShard::open_parts(dir, schema, opts)?;
        // Snapshots a crash interrupted (the log's lock is held: no transfer is running).
        Spool::clear(dir).map_err(|e| vecraft_storage::Error::io("clear spools in", dir, e))?;
        let silence = Silence::default();
        let network = FlightNetwork::new(group_id.clone(), peers.clone(), silence.clone());
        let canvass = Arc::new(FlightCanvass::new(group_id.clone(), peers.clone()));
        let group =
            Group::start_member(dir, log, Arc::clone(&shard), id, network, canvass, initial)?;
        crate::rpc::stand_aside_when_cut_off(
            group.raft().clone(),
            silence.clone(),
            peers.clone(),
            group_id.clone(),
            id,
        );
        Ok(LocalShard {
            dir: dir.to_path_buf(),
            shard,
            batcher: batcher(&group),
            group,
            closed: RwLock::new(false),
            peers: Some((group_id, peers)),
            silence,
        })
    }

    fn open_parts(
        dir: &Path,
        schema: Option<CollectionSchema>,
        opts: ShardOptions,
    ) -> Result<(Arc<Log>, Arc<Shard>)> {
        // The log's directory lock comes first: opening the shard removes files its manifest
        // does not name, which must never happen beside a live instance.
        let (log, _recovery) = Log::open(&dir.join("log"), LogOptions::default())?;
        let shard = Arc::new(Shard::open(&dir.join("shard"), schema, opts)?);
        Ok((Arc::new(log), shard))
    }

    /// The shard's Raft group.
    pub fn group(&self) -> &Group {
        &self.group
    }

    pub fn shard(&self) -> &Arc<Shard> {
        &self.shard
    }

    /// Whether the member, a leader cut off from its quorum, stands aside: it takes no
    /// writes, and another member is being elected.
    pub fn stands_aside(&self) -> bool {
        self.silence.is_on()
    }

    /// The group's id and the node's peers, for a member of a cluster's group.
    pub fn peers(&self) -> Option<&(GroupId, Peers)> {
        self.peers.as_ref()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the shard's Raft group says of itself.
    pub fn group_status(&self) -> GroupStatus {
        self.group.status()
    }

    /// The group's view with the replica's rows.
    pub fn shard_status(&self) -> ShardStatus {
        let group = self.group.status();
        let stats = self.shard.stats();
        ShardStatus {
            group,
            rows: stats.live_rows,
            durable_index: stats.durable_index,
            pending: self.shard.pending_txns(),
        }
    }

    /// Whether the shard would take `command` now (schema, types, dimensions, new keys).
    pub fn check(&self, command: &Command) -> Result<()> {
        let _open = self.entered()?;
        self.shard.check(command)
    }

    /// Makes `command` durable through the shard's Raft group, applies it, and only then
    /// returns. A command the schema refuses is refused here, before it reaches the log.
    pub fn write(&self, command: &Command) -> Result<Applied> {
        let _open = self.entered()?;
        self.shard.check(command)?;
        self.group.write(command.encode()?)
    }

    /// `write` for a command the caller has just checked (`check`).
    pub fn propose(&self, command: &Command) -> Result<Applied> {
        let _open = self.entered()?;
        self.batcher.propose_blocking(command.clone())
    }

    /// `propose`, awaited. The shard may be closed while the write is out (its group then
    /// stops and fails it): that write fails as one that came after the close.
    pub async fn propose_async(&self, command: &Command) -> Result<Applied> {
        let proposed = {
            let _open = self.entered()?;
            self.batcher.propose(command.clone())
        };
        match proposed.await {
            Err(_) if *self.closed.read() => Err(vecraft_storage::Error::Dropped),
            answered => answered,
        }
    }

    /// Seals and persists the shard, then drops the log it no longer needs. Returns the index
    /// up to which the log was purged.
    pub fn checkpoint(&self) -> Result<u64> {
        let _open = self.entered()?;
        self.group.checkpoint()
    }

    /// A guard that keeps the shard open while a request runs; `Error::Dropped` once closed.
    fn entered(&self) -> Result<RwLockReadGuard<'_, bool>> {
        let open = self.closed.read();
        if *open {
            return Err(vecraft_storage::Error::Dropped);
        }
        Ok(open)
    }

    /// Closes the shard for good: waits for the requests in flight, refuses the later ones,
    /// stops the Raft group and the shard's background work. Afterwards nothing writes in its
    /// directory, which may then be moved or removed.
    pub fn close(&self) {
        let mut closed = self.closed.write();
        if *closed {
            return;
        }
        *closed = true;
        self.group.shutdown();
        self.shard.close();
    }
}

/// The proposer of `group`'s writes, merging concurrent INSERTs (`batch.rs`).
fn batcher(group: &Group) -> Batcher {
    let writer = group.writer();
    let propose: Propose = Arc::new(move |command: Command| {
        let writer = writer.clone();
        Box::pin(async move { writer.write(command.encode()?).await })
    });
    Batcher::start(propose)
}

/// A replica on this node answers every read itself: it is the only one there is, or the
/// node's server decided it may (`rpc`).
impl ShardHandle for LocalShard {
    fn schema(&self) -> Arc<CollectionSchema> {
        self.shard.schema()
    }

    fn check(&self, command: &Command) -> Result<()> {
        LocalShard::check(self, command)
    }

    fn propose(&self, command: &Command) -> Result<Applied> {
        LocalShard::propose(self, command)
    }

    fn propose_async<'a>(
        &'a self,
        command: &'a Command,
    ) -> futures::future::BoxFuture<'a, Result<Applied>> {
        Box::pin(LocalShard::propose_async(self, command))
    }

    fn search(&self, request: &SearchRequest, _read: Consistency) -> Result<RecordBatch> {
        let _open = self.entered()?;
        self.shard.search(request)
    }

    fn scan(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        _read: Consistency,
    ) -> Result<Vec<RecordBatch>> {
        let _open = self.entered()?;
        self.shard.scan(projection, filter)
    }

    fn status(&self) -> Result<ShardStatus> {
        Ok(self.shard_status())
    }

    fn replicas(&self) -> Vec<(NodeId, Result<ShardStatus>)> {
        let status = self.shard_status();
        let node = status.group.voter_ids.first().copied().unwrap_or_default();
        vec![(node, Ok(status))]
    }

    fn stats(&self) -> Option<ShardStats> {
        Some(self.shard.stats())
    }

    fn segments(&self) -> Option<Vec<SegmentInfo>> {
        Some(self.shard.segments())
    }

    fn checkpoint(&self) -> Result<u64> {
        LocalShard::checkpoint(self)
    }

    fn reindex(&self) -> Result<()> {
        let _open = self.entered()?;
        self.shard.reindex()
    }

    fn snapshot(&self, out: &mut dyn std::io::Write) -> Result<SnapshotInfo> {
        let _open = self.entered()?;
        self.shard.write_snapshot(out)
    }

    fn close(&self) {
        LocalShard::close(self);
    }
}

impl std::fmt::Debug for LocalShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalShard")
            .field("dir", &self.dir)
            .finish()
    }
}
