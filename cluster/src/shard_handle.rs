//! A shard as a collection sees it: the one narrow face of a shard replica on this node
//! (`local::LocalShard`) and of a shard whose replicas live on other nodes
//! (`remote::RemoteShard`, the router's part), so the collection's routing, fan-out and merge
//! are written once.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::RecordBatch;
use futures::future::BoxFuture;
use vecraft_storage::Result;
use vecraft_storage::command::Command;
use vecraft_storage::filter::Filter;
use vecraft_storage::schema::CollectionSchema;
use vecraft_storage::shard::{
    Applied, PendingTxn, SearchRequest, SegmentInfo, ShardStats, SnapshotInfo,
};

use crate::raft::{GroupStatus, NodeId};
use crate::read::Consistency;

/// What a shard's group and data look like, as one replica (the leader, when it answers)
/// reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardStatus {
    pub group: GroupStatus,
    pub rows: u64,
    pub durable_index: u64,
    /// Transactions prepared on the shard and not resolved yet (`txn::resolve_pending`).
    #[serde(default)]
    pub pending: Vec<PendingTxn>,
}

impl ShardStatus {
    /// Whether the group's voters are exactly `replicas` (in any order).
    pub fn voters_are(&self, replicas: &[NodeId]) -> bool {
        let voters: BTreeSet<NodeId> = self.group.voter_ids.iter().copied().collect();
        voters == replicas.iter().copied().collect()
    }
}

pub trait ShardHandle: Debug + Send + Sync {
    fn schema(&self) -> Arc<CollectionSchema>;

    /// Whether the shard would take `command` now, as far as can be told without sending it.
    fn check(&self, command: &Command) -> Result<()>;

    /// Makes a checked `command` durable through the shard's Raft group and applied; returns
    /// what it did.
    fn propose(&self, command: &Command) -> Result<Applied>;

    /// `propose`, awaited. A replica on this node answers the awaiting task with no thread
    /// waiting (`local`); by default `propose` runs where it may block.
    fn propose_async<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<Applied>> {
        Box::pin(async move { blocking(|| self.propose(command)) })
    }

    /// The `request.k` nearest rows of the shard, closest first.
    fn search(&self, request: &SearchRequest, read: Consistency) -> Result<RecordBatch>;

    /// Live rows passing `filter`.
    fn scan(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        read: Consistency,
    ) -> Result<Vec<RecordBatch>>;

    /// Whether this shard's answers come from other nodes: its `_async` methods then await
    /// the network with no thread waiting, and a collection fans out to its shards from one
    /// task. A replica on this node answers in place (its work is this node's CPU).
    fn is_remote(&self) -> bool {
        false
    }

    /// `search`, awaited; by default `search`, in place.
    fn search_async<'a>(
        &'a self,
        request: &'a SearchRequest,
        read: Consistency,
    ) -> BoxFuture<'a, Result<RecordBatch>> {
        Box::pin(async move { self.search(request, read) })
    }

    /// `scan`, awaited; by default `scan`, in place.
    fn scan_async<'a>(
        &'a self,
        projection: Option<&'a [String]>,
        filter: Option<&'a Filter>,
        read: Consistency,
    ) -> BoxFuture<'a, Result<Vec<RecordBatch>>> {
        Box::pin(async move { self.scan(projection, filter, read) })
    }

    fn status(&self) -> Result<ShardStatus>;

    /// Each replica the placement names, with its own status (or why it did not answer).
    fn replicas(&self) -> Vec<(NodeId, Result<ShardStatus>)>;

    /// The local replica's engine statistics (metrics); `None` for a shard elsewhere.
    fn stats(&self) -> Option<ShardStats>;

    /// The local replica's segments (`vecraft_segments`); `None` for a shard elsewhere.
    fn segments(&self) -> Option<Vec<SegmentInfo>> {
        None
    }

    /// Seals and persists the shard's replicas and purges the logs they cover; returns the
    /// index up to which the log was purged (where the leader is, for a remote shard).
    fn checkpoint(&self) -> Result<u64>;

    /// Rebuilds older segments with the current index parameters.
    fn reindex(&self) -> Result<()>;

    /// Streams a snapshot of the shard (`Shard::write_snapshot`'s format) into `out`: its
    /// data at one log index, which it returns with what it held.
    fn snapshot(&self, _out: &mut dyn std::io::Write) -> Result<SnapshotInfo> {
        Err(vecraft_storage::Error::InvalidArgument(
            "a backup of a collection whose shards are on other nodes is not supported yet".into(),
        ))
    }

    /// Stops this node's part of the shard for good (its collection is dropped): requests in
    /// flight finish, later ones fail with `Error::Dropped`, nothing writes its files any
    /// more. A shard kept by other nodes has nothing to stop here.
    fn close(&self) {}
}

/// Runs `f`, which waits on a disk or on other nodes, without stalling the runtime's other
/// tasks: on a multi-threaded runtime, another worker takes them over meanwhile. A write
/// waits for its Raft entry's fsync; on a node with 2 runtime workers, writes that held their
/// workers would let no more than 2 sessions write at once, and nothing else run meanwhile.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
