//! How any node reaches the meta manager: an operation goes to the meta member believed to
//! lead, follows "not the leader, node N is" answers, and waits out elections. A lost answer
//! is retried only for operations that may be done twice. The members are `--meta-peers`
//! until the document says a lost member was replaced (`MetaState::meta_members`); every
//! document read teaches the client (`MetaClient::learn`).

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::RwLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vecraft_storage::{Error, Result};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{META_ACTION, META_MEMBERS, MetaMembersChange, MetaOp, MetaReply, MetaState};
use crate::raft::NodeId;
use crate::rpc::{CallError, Failure, Peers};

/// How long an operation may wait for a meta leader.
const DEADLINE: Duration = Duration::from_secs(30);
const CALL_TTL: Duration = Duration::from_secs(10);
/// How long a change of meta members may take: a new member opens and catches up.
const MEMBERS_TTL: Duration = Duration::from_secs(120);
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How one kind of call to the meta group travels.
struct Call {
    kind: &'static str,
    ttl: Duration,
    /// Whether it may be sent again when its answer was lost.
    idempotent: bool,
    /// Whether only the leader answers it (the member that did is remembered as leading).
    leader_only: bool,
}

pub struct MetaClient {
    peers: Peers,
    /// The meta group's members and their Flight addresses.
    members: RwLock<BTreeMap<NodeId, String>>,
    /// The member last seen leading (0: none known).
    leader: AtomicU64,
    /// Where the next call any member may answer begins, round robin.
    next: AtomicUsize,
}

impl MetaClient {
    pub fn new(peers: Peers, members: BTreeMap<NodeId, String>) -> MetaClient {
        assert!(!members.is_empty(), "a cluster has meta members");
        MetaClient {
            peers,
            members: RwLock::new(members),
            leader: AtomicU64::new(0),
            next: AtomicUsize::new(0),
        }
    }

    /// Takes the meta members `state` names, once a replacement changed them.
    pub fn learn(&self, state: &MetaState) {
        let members: BTreeMap<NodeId, String> = state
            .meta_members
            .iter()
            .filter_map(|id| Some((*id, state.nodes.get(id)?.rpc.clone())))
            .collect();
        if members.is_empty() || members.len() != state.meta_members.len() {
            return;
        }
        let mut known = self.members.write();
        if *known != members {
            *known = members;
        }
    }

    /// The meta group's members as this client knows them.
    pub fn members(&self) -> BTreeMap<NodeId, String> {
        self.members.read().clone()
    }

    /// Does `op` on the meta leader (a non-strong read: on any member).
    pub async fn call(&self, op: &MetaOp) -> Result<MetaReply> {
        let call = Call {
            kind: META_ACTION,
            ttl: CALL_TTL,
            idempotent: op.idempotent(),
            leader_only: !matches!(op, MetaOp::Read { strong: false }),
        };
        self.route(&call, op).await
    }

    /// Makes the meta leader add or remove a meta member (`node/meta_change.rs`); the
    /// members after it.
    pub async fn change_members(&self, change: MetaMembersChange) -> Result<BTreeSet<NodeId>> {
        let call = Call {
            kind: META_MEMBERS,
            ttl: MEMBERS_TTL,
            idempotent: true,
            leader_only: true,
        };
        self.route(&call, &change).await
    }

    /// Sends `body` as `call` says to the member believed to lead, following "not the
    /// leader" answers and trying the others while none answers, for up to `DEADLINE`.
    async fn route<B: Serialize, R: DeserializeOwned>(&self, call: &Call, body: &B) -> Result<R> {
        let started = Instant::now();
        let mut target = self.leader.load(Ordering::Relaxed);
        if !call.leader_only {
            // Each member in turn: one the group removed (or that fell behind) answers with
            // an old document, which the node's view ignores once it saw a newer one, and
            // would otherwise be all a node restarted with old `--meta-peers` ever heard.
            let ids: Vec<NodeId> = self.members().into_keys().collect();
            target = ids[self.next.fetch_add(1, Ordering::Relaxed) % ids.len()];
        }
        loop {
            let members = self.members();
            let ids: Vec<NodeId> = members.keys().copied().collect();
            if !members.contains_key(&target) {
                target = ids[0];
            }
            let addr = &members[&target];
            let reply = self
                .peers
                .call::<_, std::result::Result<R, Failure>>(addr, call.kind, body, call.ttl)
                .await;
            let e = match reply {
                Ok(Ok(reply)) => {
                    if call.leader_only {
                        self.leader.store(target, Ordering::Relaxed);
                    }
                    return Ok(reply);
                }
                Ok(Err(Failure::Refused(refusal))) => return Err(refusal.into()),
                Ok(Err(Failure::NotLeader(Some(leader))))
                    if leader != target && members.contains_key(&leader) =>
                {
                    target = leader;
                    continue;
                }
                Ok(Err(failure @ (Failure::Unavailable(_) | Failure::Stopped(_))))
                    if !call.idempotent =>
                {
                    return Err(Error::Unavailable(format!(
                        "the meta manager failed ({failure}); the change may or may not have \
                         been made"
                    )));
                }
                Ok(Err(failure)) => failure.to_string(),
                Err(e @ (CallError::Lost(_) | CallError::Timeout)) if !call.idempotent => {
                    return Err(Error::Unavailable(format!(
                        "the meta manager did not answer ({e}); the change may or may not \
                         have been made"
                    )));
                }
                Err(e) => e.to_string(),
            };
            if started.elapsed() > DEADLINE {
                return Err(Error::Unavailable(format!(
                    "no meta manager answered within {} s: {e}",
                    DEADLINE.as_secs()
                )));
            }
            let i = ids.iter().position(|id| *id == target).unwrap_or(0);
            target = ids[(i + 1) % ids.len()];
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// The metadata; `strong`: as of now, from the leader.
    pub async fn read(&self, strong: bool) -> Result<MetaState> {
        match self.call(&MetaOp::Read { strong }).await? {
            MetaReply::State(state) => Ok(state),
            _ => Err(Error::Unavailable(
                "the meta manager answered a read with no document".into(),
            )),
        }
    }

    /// Reserves `count` values of `sequence`; the first of them.
    pub async fn reserve(&self, sequence: &str, count: u64) -> Result<i64> {
        let op = MetaOp::Reserve {
            sequence: sequence.to_string(),
            count,
        };
        match self.call(&op).await? {
            MetaReply::Reserved(first) => Ok(first),
            _ => Err(Error::Unavailable(
                "the meta manager answered a reservation with no value".into(),
            )),
        }
    }

    /// The next value of every sequence whose name starts with `prefix`, by the rest of
    /// its name.
    pub async fn sequences(&self, prefix: &str) -> Result<BTreeMap<String, i64>> {
        let op = MetaOp::Sequences {
            prefix: prefix.to_string(),
        };
        match self.call(&op).await? {
            MetaReply::Sequences(found) => Ok(found),
            _ => Err(Error::Unavailable(
                "the meta manager answered a sequence read with something else".into(),
            )),
        }
    }

    /// Does a change; whether it changed anything.
    pub async fn change(&self, op: MetaOp) -> Result<bool> {
        match self.call(&op).await? {
            MetaReply::Done(changed) => Ok(changed),
            _ => Err(Error::Unavailable(
                "the meta manager answered a change with a document".into(),
            )),
        }
    }
}
