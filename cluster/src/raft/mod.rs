//! A shard's Raft group (openraft 0.9). Every write to a shard is a Raft entry: proposed to
//! the group, made durable in the shard's storage `Log` (which is the Raft log), committed by
//! a quorum, and applied to the `Shard` (the state machine) before it is acknowledged.
//!
//! On one node a group has one member (`Group::start`, network `network::NoPeers`), so a
//! quorum is one durable append. Across nodes (`Group::start_member`) the members talk over
//! Arrow Flight (`crate::rpc`): the same write path with more members. openraft is confined to
//! this module and `rpc`.
//!
//! The groups run on a runtime of their own, so a caller may block on a write from anywhere
//! outside it (a gateway task, a blocking thread, a test) without starving the tasks that
//! complete it.

mod auto_checkpoint;
mod entry;
mod events;
mod handoff;
// openraft's storage traits return its `StorageError` (224 bytes) as the error.
#[allow(clippy::result_large_err)]
mod log_store;
mod network;
mod nudge;
mod prevote;
mod snapshot_data;
#[allow(clippy::result_large_err)]
mod state_machine;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

use openraft::error::{Fatal, RaftError};
use openraft::metrics::WaitError;
use openraft::network::RaftNetworkFactory;
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use vecraft_storage::error::Refusal;
use vecraft_storage::log::{Log, MAX_PAYLOAD_SIZE_BYTES};
use vecraft_storage::shard::{Applied, Shard};
use vecraft_storage::{Error, Result};

pub(crate) use handoff::matched_index;
pub use handoff::{HandoffError, WritePass};
pub use prevote::{Canvass, PreVote, SharedCanvass};
pub use snapshot_data::{SnapshotData, Spool};

pub type NodeId = u64;

/// The single member's id.
const NODE_ID: NodeId = 1;
/// How long a starting group may take to elect itself (it is immediate unless a crash
/// interrupted its last election; then it is an election timeout).
const LEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a dropped group may take to release its log and shard.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest command a write may carry: a log record, less the entry's header.
/// How long a checkpoint waits for its snapshot before it asks for one again.
const SNAPSHOT_RETRIGGER: Duration = Duration::from_secs(1);

pub(crate) const MAX_COMMAND_BYTES: usize = MAX_PAYLOAD_SIZE_BYTES - entry::HEADER_BYTES;

/// A write's payload: the command's bytes (`Command::encode`); empty for the no-op a new
/// leader writes.
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

/// A member's view of its group (`vecraft_shards`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupStatus {
    /// `leader`, `follower`, `candidate`, `learner`, `shutdown`, or `stopped` (by a failure).
    pub state: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// The node ids of the members that vote: the shard's replicas.
    pub voter_ids: Vec<NodeId>,
    pub applied_index: u64,
    /// The index of the last snapshot this member took or installed.
    pub snapshot_index: Option<u64>,
}

/// One shard's running group.
pub struct Group {
    raft: Raft<TypeConfig>,
    /// Where the group's log lives, for errors.
    dir: PathBuf,
    /// Disconnected once the log store and the state machine are both dropped.
    released: Mutex<mpsc::Receiver<()>>,
    /// The group's log, held by openraft's log store (weakly here: a group shut down lets
    /// go of its log's files at once), for the pre-votes' answers.
    log: std::sync::Weak<Log>,
    /// When this member last heard from a leader (`nudge.rs`).
    heard: Arc<nudge::Heard>,
    /// The gate of its writes, and whether it campaigns (`handoff.rs`).
    handoff: Arc<handoff::Handoff>,
}

impl Group {
    /// Starts the one-member group of `shard` over `log` in `dir` (initialising it the first
    /// time) and returns once this node leads it and has applied every entry the log held.
    pub fn start(dir: &Path, log: Arc<Log>, shard: Arc<Shard>) -> Result<Group> {
        let (group, fresh) = Group::open(dir, log, shard, NODE_ID, network::NoPeers)?;
        // On failure the group is dropped, which shuts it down.
        group.lead(fresh)?;
        Ok(group)
    }

    /// Starts member `id` of a group whose other members are reached through `network`
    /// (and asked before it campaigns through `canvass`, `prevote.rs`). A group that is new
    /// everywhere is initialised by one member, with `initial` members; the others pass
    /// `None` and learn the membership from the leader.
    pub fn start_member<N: RaftNetworkFactory<TypeConfig>>(
        dir: &Path,
        log: Arc<Log>,
        shard: Arc<Shard>,
        id: NodeId,
        network: N,
        canvass: SharedCanvass,
        initial: Option<BTreeMap<NodeId, BasicNode>>,
    ) -> Result<Group> {
        let (group, fresh) = Group::open(dir, log, shard, id, network)?;
        // Every campaign is the nudge's (after a pre-vote), none openraft's timer's.
        group.raft.runtime_config().elect(false);
        // Named as its directory is: the group's id, or `meta`.
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        events::watch(&group.raft, name.clone(), id);
        nudge::watch(nudge::Nudge {
            raft: group.raft.clone(),
            log: group.log.clone(),
            heard: Arc::clone(&group.heard),
            handoff: Arc::clone(&group.handoff),
            canvass,
            group: name,
            node: id,
        });
        if let (true, Some(members)) = (fresh, initial) {
            let raft = group.raft.clone();
            run(async move { raft.initialize(members).await })?
                .map_err(|e| unavailable("initialise the shard's Raft group", e))?;
        }
        group.recommit_if_restored_as_leader();
        Ok(group)
    }

    /// Starts the group's core; returns it and whether the log was new.
    fn open<N: RaftNetworkFactory<TypeConfig>>(
        dir: &Path,
        log: Arc<Log>,
        shard: Arc<Shard>,
        id: NodeId,
        network: N,
    ) -> Result<(Group, bool)> {
        let fresh = log.last_index().is_none()
            && log.last_purged().is_none()
            && log.get_meta(log_store::VOTE_META)?.is_none();
        let (release, released) = mpsc::sync_channel(0);
        let limit_bytes = shard.options().checkpoint_log_bytes;
        let state_machine =
            state_machine::StateMachine::open(Arc::clone(&log), shard, release.clone())
                .map_err(|e| unavailable("open the shard's state machine", e))?;
        let applied_bytes = state_machine.applied_bytes();
        let weak_log = Arc::downgrade(&log);
        let log_store = log_store::LogStore::new(log, release);
        let raft =
            run(async move { Raft::new(id, config(), network, log_store, state_machine).await })?
                .map_err(|e| unavailable("start the shard's Raft group", e))?;
        auto_checkpoint::watch(raft.clone(), applied_bytes, limit_bytes);
        let group = Group {
            raft,
            dir: dir.to_path_buf(),
            released: Mutex::new(released),
            log: weak_log,
            heard: Arc::new(nudge::Heard::new()),
            handoff: Arc::default(),
        };
        Ok((group, fresh))
    }

    /// openraft restarts a member that led before a crash as the leader (when no other was
    /// elected meanwhile), knowing no commit past what its state machine had applied. As a
    /// newly elected leader does, it writes a no-op of its term at once: its commit commits
    /// (and applies) every entry before it, so the state that was acknowledged before the
    /// crash is served again without waiting for the next client write. A restored leader
    /// that was deposed meanwhile learns so from its peers, and the no-op is dropped.
    fn recommit_if_restored_as_leader(&self) {
        let raft = self.raft.clone();
        spawn(async move {
            // The core publishes the state it restored once it runs; until then the metrics
            // show openraft's initial follower.
            let mut metrics = raft.metrics();
            let restored = tokio::time::timeout(LEAD_TIMEOUT, metrics.changed()).await;
            let leads = metrics.borrow().state == ServerState::Leader;
            if matches!(restored, Ok(Ok(()))) && leads {
                let _ = raft.client_write(Request(Vec::new())).await;
            }
        });
    }

    /// The group's openraft handle (to serve its messages, to watch its metrics).
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// A write's pass, held from its proposal to its answer: at once, unless the leadership
    /// is being handed over (then once that ended).
    pub async fn write_pass(&self) -> WritePass<'_> {
        self.handoff.pass().await
    }

    /// Hands this member's leadership to voter `to`, whom `elect` asks to campaign
    /// (`handoff.rs`); the leader the group has after it.
    pub async fn hand_over(
        &self,
        to: NodeId,
        elect: impl Future<Output = std::result::Result<(), String>>,
    ) -> std::result::Result<NodeId, HandoffError> {
        self.handoff.hand_over(&self.raft, to, elect).await
    }

    /// Asks this member to campaign now: the leader of `term` asks so, handing its
    /// leadership over or standing aside. A member that saw a later term (another leader was
    /// elected since), one that may not campaign, a leader or a learner does nothing.
    pub async fn campaign(&self, term: u64) -> std::result::Result<(), String> {
        if self.handoff.quiet() {
            return Err(
                "the member does not campaign (its node drains, or it was replaced)".into(),
            );
        }
        let now = self.raft.metrics().borrow().current_term;
        if now > term {
            return Err(format!("the group is in term {now} already, past {term}"));
        }
        self.raft.trigger().elect().await.map_err(|e| e.to_string())
    }

    /// Whether the member may campaign. One that may not (its node drains, or it was
    /// replaced in its group) starts no election (the nudge starts them all: openraft's
    /// timer is off), and [`Group::campaign`] is refused. It still votes, but refuses
    /// pre-votes (`prevote.rs`), so no campaign the nudge starts counts on it.
    pub fn campaigns(&self, may: bool) {
        self.handoff.set_quiet(!may);
    }

    /// A leader's message (entries, a heartbeat, a snapshot chunk) reached this member.
    pub fn heard_from_leader(&self) {
        self.heard.touch();
    }

    /// The leader this member knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// What this member knows of its group now.
    pub fn status(&self) -> GroupStatus {
        let m = self.raft.metrics().borrow().clone();
        GroupStatus {
            state: match m.state {
                // A group whose core stopped (on a storage failure) keeps its last metrics.
                _ if m.running_state.is_err() => "stopped",
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .to_string(),
            leader: m.current_leader,
            term: m.current_term,
            voter_ids: m.membership_config.membership().voter_ids().collect(),
            applied_index: m.last_applied.map_or(0, |id| id.index),
            snapshot_index: m.snapshot.map(|id| id.index),
        }
    }

    /// Becomes the leader and applies the whole log: a no-op entry of this leader's term
    /// commits every entry before it (a leader that restarted may hold only entries of
    /// earlier terms, which Raft never commits by counting replicas), and once it is applied,
    /// so is everything before it.
    fn lead(&self, fresh: bool) -> Result<()> {
        let raft = self.raft.clone();
        let led = run(async move {
            if fresh {
                let members = BTreeMap::from([(NODE_ID, BasicNode::default())]);
                raft.initialize(members).await.map_err(|e| e.to_string())?;
            }
            let metrics = raft
                .wait(Some(LEAD_TIMEOUT))
                .metrics(
                    |m| m.running_state.is_err() || m.current_leader == Some(NODE_ID),
                    "leading",
                )
                .await
                .map_err(|e| e.to_string())?;
            metrics.running_state.map_err(|e| e.to_string())?;
            raft.client_write(Request(Vec::new()))
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        })?;
        led.map_err(|e| unavailable("start the shard's Raft group", e))
    }

    /// Proposes a command (its encoded bytes) and returns once it is committed and applied.
    pub fn write(&self, command: Vec<u8>) -> Result<Applied> {
        let writer = self.writer();
        run(async move { writer.write(command).await })?
    }

    /// A handle that proposes writes from async code, on any runtime (`Writer::write`).
    pub fn writer(&self) -> Writer {
        Writer {
            raft: self.raft.clone(),
            dir: Arc::from(self.dir.as_path()),
        }
    }

    /// Takes a snapshot (the shard seals and persists) and purges the log it covers. Returns
    /// the index up to which the log was purged.
    pub fn checkpoint(&self) -> Result<u64> {
        let raft = self.raft.clone();
        run(async move {
            let failed = |e: Fatal<NodeId>| e.to_string();
            let target = raft.metrics().borrow().last_applied.map(|id| id.index);
            // A trigger while another snapshot is being built is dropped, and that one may
            // end short of `target` (writes applied meanwhile): trigger again until one
            // reaches it.
            let metrics = loop {
                raft.trigger().snapshot().await.map_err(failed)?;
                let taken = raft
                    .wait(Some(SNAPSHOT_RETRIGGER))
                    .metrics(
                        |m| m.running_state.is_err() || m.snapshot.map(|id| id.index) >= target,
                        "snapshot taken",
                    )
                    .await;
                match taken {
                    Ok(metrics) => break metrics,
                    Err(WaitError::Timeout(..)) => continue,
                    Err(e) => return Err(e.to_string()),
                }
            };
            metrics.running_state.map_err(|e| e.to_string())?;
            let Some(snapshot) = metrics.snapshot else {
                return Ok(0);
            };
            loop {
                raft.trigger()
                    .purge_log(snapshot.index)
                    .await
                    .map_err(failed)?;
                let purged = raft
                    .wait(Some(SNAPSHOT_RETRIGGER))
                    .metrics(
                        |m| m.running_state.is_err() || m.purged >= Some(snapshot),
                        "log purged",
                    )
                    .await;
                match purged {
                    Ok(_) => break,
                    Err(WaitError::Timeout(..)) => continue,
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok::<_, String>(snapshot.index)
        })?
        .map_err(|e| unavailable("checkpoint", e))
    }
}

/// A failed proposal: a group stopped by a storage failure is an I/O error in `dir` (it
/// stays stopped until the node restarts); anything else may pass (no leader yet, shutting
/// down), and says it could not do `what`.
fn failed<E: std::fmt::Display>(dir: &Path, what: &str, e: RaftError<NodeId, E>) -> Error {
    match e {
        RaftError::Fatal(Fatal::StorageError(e)) => Error::io(
            "the shard's Raft group stopped on a storage failure in",
            dir,
            std::io::Error::other(e.to_string()),
        ),
        e => unavailable(what, e),
    }
}

/// Proposes writes to one group and awaits them, without a thread waiting on each: the
/// group's core answers the awaiting task directly. Cheap to clone; it does not keep a
/// stopped group alive (a write to one fails).
#[derive(Clone)]
pub struct Writer {
    raft: Raft<TypeConfig>,
    dir: Arc<Path>,
}

impl Writer {
    /// Makes `command` durable through the group, applies it, and only then returns what it
    /// did (`Group::write`).
    pub async fn write(&self, command: Vec<u8>) -> Result<Applied> {
        if command.is_empty() || command.len() > MAX_COMMAND_BYTES {
            return Err(Error::InvalidArgument(format!(
                "a write of {} bytes does not fit one log record (at most {MAX_COMMAND_BYTES}); \
                 write fewer rows at a time",
                command.len()
            )));
        }
        match self.raft.client_write(Request(command)).await {
            Ok(response) => response.data.map_err(Error::from),
            Err(e) => Err(failed(&self.dir, "write", e)),
        }
    }
}

impl Group {
    /// Stops the group and waits until its log and shard are released, so the collection's
    /// directory can be opened again (or removed) as soon as this returns. Stopping a stopped
    /// group does nothing.
    pub fn shutdown(&self) {
        let raft = self.raft.clone();
        let _ = run(async move { raft.shutdown().await });
        let released = self.released.lock().recv_timeout(RELEASE_TIMEOUT);
        debug_assert!(
            matches!(released, Err(mpsc::RecvTimeoutError::Disconnected)),
            "a stopped group releases its log and shard"
        );
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The longest election timeout, which is also a voter's lease on its leader.
pub(crate) const ELECTION_TIMEOUT_MAX_MS: u64 = 800;

fn config() -> Arc<Config> {
    let config = Config {
        cluster_name: "vecraft-shard".into(),
        // Loopback and LAN timings: a leader's death is noticed within two seconds. The
        // heartbeat interval is also openraft's deadline for one AppendEntries, so a batch of
        // entries (at most `max_payload_entries`) must cross within it.
        heartbeat_interval: 250,
        // A voter refuses other candidates for election_timeout_max after it last heard
        // its leader (its lease). A cluster's members campaign through the nudge, after a
        // pre-vote, 1.0 to 1.3 s after the last word of a leader (`nudge.rs`); openraft's
        // own timer (lease and an election timeout) serves only one-member groups.
        election_timeout_min: 400,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        max_payload_entries: 64,
        // The base deadline of a snapshot transfer; the network adds time for its size.
        install_snapshot_timeout: 10_000,
        // A checkpoint is a snapshot, taken when Vecraft asks (CHECKPOINT, or a member's log
        // past `checkpoint_log_bytes`: `auto_checkpoint.rs`); the log it covers goes at once.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    };
    Arc::new(config.validate().expect("the Raft configuration is valid"))
}

/// Threads of the groups' runtime, unless `set_runtime_workers` said otherwise first.
const DEFAULT_RUNTIME_WORKERS: usize = 2;
static RUNTIME_WORKERS: OnceLock<usize> = OnceLock::new();

/// Sets how many threads run every group's tasks (cores, state machines, proposers, the
/// node's Flight server). Takes effect only before the first group starts; returns whether
/// it did. A process whose groups never wait on one another (one node, no peers) does best
/// with fewer: a write is a chain of short hand-offs between a group's tasks, and on a 2-core
/// machine two workers spent more waking each other than they ran in parallel (8 sessions of
/// single-row INSERTs: 102 against 123 µs of CPU per row, 7,900 against 6,900 rows/s).
pub fn set_runtime_workers(workers: usize) -> bool {
    RUNTIME_WORKERS.set(workers.max(1)).is_ok()
}

/// The runtime every group's tasks run on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(*RUNTIME_WORKERS.get_or_init(|| DEFAULT_RUNTIME_WORKERS))
            .thread_name("vecraft-raft")
            .enable_all()
            .build()
            .expect("start the Raft runtime")
    })
}

/// The voters of the group `m` describes other than `me` (id and address), and how many of
/// them must agree to make a majority with `me` (who counts only if a voter).
pub(crate) fn fellow_voters(
    m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>,
    me: NodeId,
) -> (Vec<(NodeId, String)>, usize) {
    let membership = m.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let majority = voters.len() / 2 + 1;
    let others: Vec<(NodeId, String)> = voters
        .iter()
        .copied()
        .filter(|id| *id != me)
        .filter_map(|id| Some((id, membership.get_node(&id)?.addr.clone())))
        .collect();
    (others, majority - usize::from(voters.contains(&me)))
}

/// Runs `task` on the groups' runtime in the background.
pub(crate) fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    runtime().spawn(task);
}

/// Runs `task` on the groups' runtime and waits for it from this thread. Called on a worker
/// of a multi-threaded runtime (a gateway's statement), the worker hands its other tasks to
/// another thread first (`shard_handle::blocking`), so a wait on another node holds up no
/// other session.
pub(crate) fn run<T: Send + 'static>(task: impl Future<Output = T> + Send + 'static) -> Result<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(task.await);
    });
    crate::shard_handle::blocking(|| rx.recv()).map_err(|_| Error::Closed)
}

/// Runs `task` on the groups' runtime and awaits it from any runtime, with no thread waiting.
/// Dropping the returned future (a cancelled or timed-out statement) aborts the task, so its
/// calls to other nodes stop with it.
pub(crate) async fn run_async<T: Send + 'static>(
    task: impl Future<Output = T> + Send + 'static,
) -> Result<T> {
    /// Aborts the task when dropped; aborting a finished task does nothing.
    struct Aborting<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for Aborting<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = Aborting(runtime().spawn(task));
    (&mut task.0).await.map_err(|_| Error::Closed)
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("cannot {what}: {e}"))
}
