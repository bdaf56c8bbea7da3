//! openraft's state machine over a `Shard`: committed commands are applied to the shard at
//! their log index; blank and membership entries only move its applied index on.
//!
//! The shard persists itself (sealed segments, manifest) at times of its own choosing, so after
//! a restart it is at some durable index `A`, and openraft replays the log after it. The id of
//! entry `A` (its leader's term) comes from the log, or from the snapshot or purge point when
//! `A` is exactly there. Memberships are few: each applied one is kept, durably, until a
//! snapshot covers it. A snapshot is a checkpoint: the shard seals and persists, and its
//! metadata is recorded, so the log before it can be purged; its data is the shard itself,
//! streamed only when a peer needs it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, OptionalSend,
    RaftSnapshotBuilder, StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use vecraft_storage::command::Command;
use vecraft_storage::error::Refusal;
use vecraft_storage::log::Log;
use vecraft_storage::shard::{Applied, Shard};

use super::log_store::{Corrupt, PURGED_ID_META, get_json, put_json, stored_log_id};
use super::snapshot_data::SnapshotData;
use super::{NodeId, Request, Response, TypeConfig};

const SNAPSHOT_META: &str = "snapshot";
const MEMBERSHIPS_META: &str = "memberships";

type Membership = StoredMembership<NodeId, BasicNode>;

#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

/// Fields drop in order: the shard (waiting for its background work) before the log, whose
/// directory lock guards it, and the release signal last.
struct Inner {
    shard: Arc<Shard>,
    log: Arc<Log>,
    tracked: Mutex<Tracked>,
    /// Bytes of commands applied since the last snapshot began (or the open): what the
    /// group's automatic checkpoint watches (`raft::auto_checkpoint`).
    applied_bytes: Arc<AtomicU64>,
    _release: SyncSender<()>,
}

struct Tracked {
    last_applied: Option<LogId<NodeId>>,
    /// Where each leader's entries start, over every applied index from the last snapshot
    /// (or open) on: entry `i` was written by the leader of the last start at or below `i`.
    leaders: BTreeMap<u64, CommittedLeaderId<NodeId>>,
    /// Memberships applied since the one the last snapshot holds (that one included),
    /// oldest first; stored durably.
    memberships: Vec<Membership>,
    snapshot: Option<SnapshotMeta<NodeId, BasicNode>>,
}

impl StateMachine {
    /// The state machine of `shard`, whose entries are in `log`.
    pub fn open(
        log: Arc<Log>,
        shard: Arc<Shard>,
        release: SyncSender<()>,
    ) -> Result<StateMachine, StorageError<NodeId>> {
        let snapshot: Option<SnapshotMeta<NodeId, BasicNode>> = get_json(&log, SNAPSHOT_META)?;
        let memberships: Vec<Membership> = get_json(&log, MEMBERSHIPS_META)?.unwrap_or_default();
        let last_applied = durable_log_id(&log, shard.applied_index(), snapshot.as_ref())?;
        let leaders = last_applied
            .iter()
            .map(|id| (id.index, id.leader_id))
            .collect();
        let tracked = Tracked {
            last_applied,
            leaders,
            memberships,
            snapshot,
        };
        let inner = Inner {
            shard,
            log,
            tracked: Mutex::new(tracked),
            applied_bytes: Arc::default(),
            _release: release,
        };
        Ok(StateMachine {
            inner: Arc::new(inner),
        })
    }

    fn apply_one(&self, entry: Entry<TypeConfig>) -> Result<Response, StorageError<NodeId>> {
        let Inner { shard, log, .. } = &*self.inner;
        let id = entry.log_id;
        self.inner.tracked.lock().applied(id);
        match entry.payload {
            EntryPayload::Blank => {
                shard.skip(id.index);
                Ok(Ok(Applied::default()))
            }
            EntryPayload::Normal(Request(bytes)) if bytes.is_empty() => {
                shard.skip(id.index);
                Ok(Ok(Applied::default()))
            }
            EntryPayload::Normal(Request(bytes)) => {
                // Bytes that are not a command (a peer of another version, say) are refused
                // the same way on every replica; they must not stop the group at every start.
                let command = match Command::decode(&bytes) {
                    Ok(command) => command,
                    Err(e) => {
                        shard.skip(id.index);
                        let refusal = format!("log entry {} is not a command: {e}", id.index);
                        return Ok(Err(Refusal::InvalidArgument(refusal)));
                    }
                };
                let size_bytes = bytes.len() as u64;
                self.inner
                    .applied_bytes
                    .fetch_add(size_bytes, Ordering::Relaxed);
                match shard.apply(id.index, &command) {
                    Ok(applied) => Ok(Ok(applied)),
                    Err(e) => Refusal::of(&e).map(Err).ok_or_else(|| apply_error(id, e)),
                }
            }
            EntryPayload::Membership(membership) => {
                shard.skip(id.index);
                let mut tracked = self.inner.tracked.lock();
                // A replay after a restart applies memberships again: keep one per index.
                tracked.memberships.retain(|m| index_of(m) < Some(id.index));
                tracked
                    .memberships
                    .push(Membership::new(Some(id), membership));
                put_json(log, MEMBERSHIPS_META, &tracked.memberships)?;
                Ok(Ok(Applied::default()))
            }
        }
    }

    /// The count of bytes applied since the last snapshot began.
    pub fn applied_bytes(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.inner.applied_bytes)
    }

    /// Seals and persists the shard and records the snapshot that describes it.
    fn checkpoint(&self) -> Result<SnapshotMeta<NodeId, BasicNode>, StorageError<NodeId>> {
        let Inner { shard, log, .. } = &*self.inner;
        // What is applied from now on is for the next snapshot.
        self.inner.applied_bytes.store(0, Ordering::Relaxed);
        let durable = shard.flush().map_err(snapshot_error)?;
        let mut tracked = self.inner.tracked.lock();
        let last_log_id = tracked.id_at(durable);
        debug_assert!(
            last_log_id.is_some() || tracked.last_applied.is_none(),
            "an applied state has an id at its durable index"
        );
        let last_membership = tracked.membership_at(Some(durable));
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id: snapshot_id(last_log_id),
        };
        put_json(log, SNAPSHOT_META, &meta)?;
        tracked.covered_by(&meta);
        put_json(log, MEMBERSHIPS_META, &tracked.memberships)?;
        Ok(meta)
    }

    fn snapshot(&self, meta: SnapshotMeta<NodeId, BasicNode>) -> Snapshot<TypeConfig> {
        Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::Shard(Arc::clone(&self.inner.shard))),
        }
    }
}

impl Tracked {
    fn applied(&mut self, id: LogId<NodeId>) {
        debug_assert!(
            self.last_applied
                .is_none_or(|last| last.index < id.index || id.index == 0),
            "entries are applied in index order"
        );
        self.last_applied = Some(id);
        if self.leaders.last_key_value().map(|(_, leader)| leader) != Some(&id.leader_id) {
            self.leaders.insert(id.index, id.leader_id);
        }
    }

    /// The id of applied entry `index`, `None` when nothing was applied.
    fn id_at(&self, index: u64) -> Option<LogId<NodeId>> {
        let (_, leader) = self.leaders.range(..=index).next_back()?;
        Some(LogId::new(*leader, index))
    }

    fn membership_at(&self, index: Option<u64>) -> Membership {
        self.memberships
            .iter()
            .rev()
            .find(|m| index_of(m) <= index)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets what `meta` now covers.
    fn covered_by(&mut self, meta: &SnapshotMeta<NodeId, BasicNode>) {
        let at = meta.last_log_id.map(|id| id.index);
        if let Some(at) = at {
            let floor = self.leaders.range(..=at).next_back().map(|(i, _)| *i);
            self.leaders.retain(|i, _| Some(*i) >= floor);
        }
        let kept = meta.last_membership.clone();
        self.memberships.retain(|m| index_of(m) > at);
        self.memberships.insert(0, kept);
        self.snapshot = Some(meta.clone());
    }
}

/// The id of the entry at the shard's durable `index` after a restart.
fn durable_log_id(
    log: &Log,
    index: u64,
    snapshot: Option<&SnapshotMeta<NodeId, BasicNode>>,
) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
    if index == 0 {
        // Entry 0 (the first membership) carries no command: replaying it is harmless.
        return Ok(None);
    }
    if let Some(id) = stored_log_id(log, index)? {
        return Ok(Some(id));
    }
    let purged: Option<LogId<NodeId>> = get_json(log, PURGED_ID_META)?;
    let snapshot = snapshot.and_then(|s| s.last_log_id);
    match [snapshot, purged]
        .into_iter()
        .flatten()
        .find(|id| id.index == index)
    {
        Some(id) => Ok(Some(id)),
        None => Err(
            StorageIOError::read_state_machine(AnyError::new(&Corrupt(format!(
                "the shard is at log index {index}, which neither the log, the snapshot nor the \
             purge point holds"
            ))))
            .into(),
        ),
    }
}

fn index_of(m: &Membership) -> Option<u64> {
    m.log_id().map(|id| id.index)
}

fn snapshot_id(last: Option<LogId<NodeId>>) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    match last {
        Some(id) => format!("{}-{}-{nanos}", id.leader_id.term, id.index),
        None => format!("empty-{nanos}"),
    }
}

fn apply_error(id: LogId<NodeId>, e: vecraft_storage::Error) -> StorageError<NodeId> {
    StorageIOError::apply(id, AnyError::new(&e)).into()
}

fn snapshot_error(e: vecraft_storage::Error) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        // Sealing builds HNSW graphs: off the runtime the groups' cores share.
        let this = self.clone();
        let meta = tokio::task::spawn_blocking(move || this.checkpoint())
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))??;
        Ok(self.snapshot(meta))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let tracked = self.inner.tracked.lock();
        let last = tracked.last_applied;
        Ok((last, tracked.membership_at(last.map(|id| id.index))))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        entries.into_iter().map(|e| self.apply_one(e)).collect()
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    /// Only openraft's chunked transport asks for this: snapshots arrive whole, streamed
    /// over Flight into a spool file (`rpc::snapshot_push`).
    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<SnapshotData>, StorageError<NodeId>> {
        Ok(Box::new(SnapshotData::Empty))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<NodeId>> {
        let log = &self.inner.log;
        let shard = Arc::clone(&self.inner.shard);
        let failed = |e: &dyn std::fmt::Display| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(e.to_string()))
        };
        // Streaming and installing a shard is disk work: off the runtime the groups share.
        let installed = tokio::task::spawn_blocking(move || snapshot.install_into(&shard))
            .await
            .map_err(|e| failed(&e))?
            .map_err(|e| failed(&e))?;
        debug_assert!(
            meta.last_log_id
                .is_none_or(|id| installed.applied_index >= id.index),
            "a snapshot's data is at least as new as its metadata"
        );
        self.inner.applied_bytes.store(0, Ordering::Relaxed);
        let mut tracked = self.inner.tracked.lock();
        tracked.last_applied = meta.last_log_id;
        tracked.leaders = meta
            .last_log_id
            .iter()
            .map(|id| (id.index, id.leader_id))
            .collect();
        tracked.memberships.clear();
        tracked.covered_by(meta);
        put_json(log, SNAPSHOT_META, meta)?;
        put_json(log, MEMBERSHIPS_META, &tracked.memberships)
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let meta = self.inner.tracked.lock().snapshot.clone();
        Ok(meta.map(|meta| self.snapshot(meta)))
    }
}
