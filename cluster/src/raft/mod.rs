//! A shard's Raft group (openraft 0.9). Every write to a shard is a Raft entry: proposed to
//! the group, made durable in the shard's storage `Log` (which is the Raft log), committed by
//! a quorum, and applied to the `Shard` (the state machine) before it is acknowledged.
//!
//! Today a group has one member, this node, so a quorum is one durable append; the cluster adds
//! members and a network (replacing `network::NoPeers`), not a second write path. openraft is
//! confined to this module.
//!
//! The groups run on a runtime of their own, so a caller may block on a write from anywhere
//! (a gateway task, a blocking thread, a test) without starving the tasks that complete it.

mod entry;
mod log_store;
mod network;
mod state_machine;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, mpsc};

use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use vecraft_storage::error::Refusal;
use vecraft_storage::log::Log;
use vecraft_storage::shard::{Applied, Shard};
use vecraft_storage::{Error, Result};

pub use state_machine::SnapshotData;

pub type NodeId = u64;

/// The single member's id.
const NODE_ID: NodeId = 1;

/// A write's payload: the command's bytes (`Command::encode`).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Request(pub Vec<u8>);

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Request({} bytes)", self.0.len())
    }
}

/// What applying an entry did; a command the shard refused is refused on every replica.
pub type Response = std::result::Result<Applied, Refusal>;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = BasicNode,
        SnapshotData = SnapshotData,
);

/// One shard's running group.
pub struct Group {
    raft: Raft<TypeConfig>,
}

impl Group {
    /// Starts the group of `shard` over `log` (initialising it the first time) and returns
    /// once this node leads it and has applied every entry the log held.
    pub fn start(log: Arc<Log>, shard: Arc<Shard>) -> Result<Group> {
        let fresh = log.last_index().is_none()
            && log.last_purged().is_none()
            && log.get_meta(log_store::VOTE_META)?.is_none();
        let last_index = log.last_index();
        let state_machine = state_machine::StateMachine::open(Arc::clone(&log), shard)
            .map_err(|e| unavailable("open the shard's state machine", e))?;
        let log_store = log_store::LogStore::new(log);
        run(async move {
            let raft = Raft::new(
                NODE_ID,
                config(),
                network::NoPeers,
                log_store,
                state_machine,
            )
            .await
            .map_err(|e| unavailable("start the shard's Raft group", e))?;
            if fresh {
                let members = BTreeMap::from([(NODE_ID, BasicNode::default())]);
                raft.initialize(members)
                    .await
                    .map_err(|e| unavailable("initialise the shard's Raft group", e))?;
            }
            let metrics = raft
                .wait(None)
                .metrics(
                    |m| {
                        m.running_state.is_err()
                            || m.current_leader == Some(NODE_ID)
                                && m.last_applied.map(|id| id.index) >= last_index
                    },
                    "leading, with the log replayed",
                )
                .await
                .map_err(|e| unavailable("start the shard's Raft group", e))?;
            if let Err(fatal) = metrics.running_state {
                return Err(unavailable("replay the shard's log", fatal));
            }
            Ok(Group { raft })
        })?
    }

    /// Proposes a command (its encoded bytes) and returns once it is committed and applied.
    pub fn write(&self, command: Vec<u8>) -> Result<Applied> {
        let raft = self.raft.clone();
        let written = run(async move { raft.client_write(Request(command)).await })?;
        match written {
            Ok(response) => response.data.map_err(Error::from),
            Err(e) => Err(unavailable("write", e)),
        }
    }

    /// Takes a snapshot (the shard seals and persists) and purges the log it covers. Returns
    /// the index up to which the log was purged.
    pub fn checkpoint(&self) -> Result<u64> {
        let raft = self.raft.clone();
        run(async move {
            let failed = |e| unavailable("checkpoint", e);
            let target = raft.metrics().borrow().last_applied.map(|id| id.index);
            raft.trigger().snapshot().await.map_err(failed)?;
            let metrics = raft
                .wait(None)
                .metrics(
                    |m| m.running_state.is_err() || m.snapshot.map(|id| id.index) >= target,
                    "snapshot taken",
                )
                .await
                .map_err(|e| unavailable("checkpoint", e))?;
            let Some(snapshot) = metrics.snapshot else {
                return Ok(0);
            };
            raft.trigger()
                .purge_log(snapshot.index)
                .await
                .map_err(failed)?;
            raft.wait(None)
                .metrics(
                    |m| m.running_state.is_err() || m.purged >= Some(snapshot),
                    "log purged",
                )
                .await
                .map_err(|e| unavailable("checkpoint", e))?;
            Ok(snapshot.index)
        })?
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let raft = self.raft.clone();
        let _ = run(async move { raft.shutdown().await });
    }
}

fn config() -> Arc<Config> {
    let config = Config {
        cluster_name: "vecraft-shard".into(),
        // A checkpoint is a snapshot, taken when Vecraft asks; the log it covers goes at once.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    };
    Arc::new(config.validate().expect("the Raft configuration is valid"))
}

/// The runtime every group's tasks run on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vecraft-raft")
            .enable_all()
            .build()
            .expect("start the Raft runtime")
    })
}

/// Runs `task` on the groups' runtime and waits for it from this (non-runtime) thread.
fn run<T: Send + 'static>(task: impl Future<Output = T> + Send + 'static) -> Result<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(task.await);
    });
    rx.recv().map_err(|_| Error::Closed)
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("cannot {what}: {e}"))
}
