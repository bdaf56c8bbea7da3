//! Replacing a meta member lost for good, without an operator. The meta group starts as
//! `--meta-peers`; with three members it survives one loss, and a second would stop every
//! DDL and fail-over. So once a member has not answered for `--failover-after-ms`, the meta
//! leader makes a spare node (a live node that is not a member, the lowest id first) a
//! member in its place:
//!
//! 1. it asks the spare to open a meta member (`meta.join`); the spare keeps its files, so it
//!    opens it again after a restart whatever its flags say (`was_made_a_member`);
//! 2. it adds the spare as a learner, waits until it caught up, and swaps the voters
//!    (openraft's joint consensus: the old and the new majority both agree);
//! 3. it records the voters in the document (`MetaState::meta_members`), from which every
//!    node's `MetaClient` learns where the meta group is now.
//!
//! One member is replaced at a time, and only by the leader; a replacement that does not
//! finish within `REPLACE_TIMEOUT` (the spare died, the leader lost its quorum) is given up
//! and tried again, and voters that changed without being recorded are recorded then. A
//! node that was replaced should not come back with its old files: it would hold a member
//! the group no longer has. Once it reads the document it stops that member campaigning
//! (`campaign_while_a_member`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use openraft::BasicNode;
use tonic::Status;
use tonic::codegen::Bytes;
use vecraft_storage::Result;

use super::{ClusterNode, balance, failover, start_meta_member};
use crate::meta::{META_GROUP, META_JOIN, MetaManager, MetaOp, MetaState};
use crate::raft::NodeId;
use crate::rpc::{ActionHandler, Failure};

/// How long a spare may take to open its meta member.
const JOIN_TTL: Duration = Duration::from_secs(60);
/// How long a whole replacement may take: the spare joins, catches up, and the voters swap.
const REPLACE_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether this node holds the files of a meta member (it was made one, or has the role).
pub(super) fn was_made_a_member(data_dir: &Path) -> bool {
    data_dir.join(META_GROUP).join("log").exists()
}

impl ClusterNode {
    /// Opens this node's meta member (once; `initial` founds a new group), serves meta
    /// operations, and runs the meta leader's chores (fail-over, balancing) whenever it
    /// leads.
    pub(super) fn join_meta(
        self: &Arc<Self>,
        initial: Option<BTreeMap<NodeId, BasicNode>>,
    ) -> Result<()> {
        let _turn = self.joining_meta.lock();
        if self.meta.get().is_some() {
            return Ok(());
        }
        let manager = start_meta_member(&self.options, &self.service, &self.peers, initial)?;
        let _ = self.meta.set(Arc::clone(&manager));
        crate::raft::spawn(failover::run(Arc::clone(self), Arc::clone(&manager)));
        crate::raft::spawn(balance::run(Arc::clone(self), manager));
        Ok(())
    }

    /// The meta group's members as this node knows them.
    pub fn meta_members(&self) -> BTreeSet<NodeId> {
        self.meta_client.members().into_keys().collect()
    }
}

/// A meta member the group replaced (its node came back with its old files) must not
/// campaign: its log may look current to the members it still knows, and winning would
/// depose the group's real leader. It may again once the document names it (a spare joining
/// is a voter a moment before the document says so).
pub(super) fn campaign_while_a_member(node: &ClusterNode, state: &MetaState) {
    let Some(manager) = node.meta.get() else {
        return;
    };
    if node.draining() {
        return;
    }
    let id = node.options.id;
    let member = state.meta_members.is_empty() || state.meta_members.contains(&id);
    manager.member().group().campaigns(member);
    // A drain that began meanwhile (after the check above) silenced the member first.
    if node.draining() {
        manager.member().group().campaigns(false);
    }
}

/// Answers `meta.join`: the meta leader asks this node to become a member.
pub(super) fn serve_joins(node: &Arc<ClusterNode>) {
    node.service
        .handle(META_JOIN, Arc::new(JoinHandler(Arc::downgrade(node))));
}

struct JoinHandler(Weak<ClusterNode>);

impl ActionHandler for JoinHandler {
    fn handle(&self, _body: Bytes) -> BoxFuture<'static, std::result::Result<Bytes, Status>> {
        let node = self.0.upgrade();
        Box::pin(async move {
            let reply: std::result::Result<(), Failure> = match node {
                Some(node) if !node.draining() => {
                    let joined = tokio::task::spawn_blocking(move || node.join_meta(None)).await;
                    match joined {
                        Ok(joined) => joined.map_err(|e| Failure::Unavailable(e.to_string())),
                        Err(e) => Err(Failure::Unavailable(e.to_string())),
                    }
                }
                _ => Err(Failure::Unavailable("the node is stopping".into())),
            };
            crate::rpc::encode(&reply)
        })
    }
}

/// What the fail-over manager's pings tell.
pub(super) struct Seen {
    /// When each node last answered.
    pub at: HashMap<NodeId, Instant>,
    /// Since when this member leads: no node is judged on less.
    pub since: Instant,
    /// A node that answered this recently is alive.
    pub alive_within: Duration,
}

impl Seen {
    fn lost(&self, id: NodeId, after: Duration) -> bool {
        let at = self.at.get(&id).copied().unwrap_or(self.since);
        at.max(self.since).elapsed() > after
    }

    fn alive(&self, id: NodeId) -> bool {
        self.at
            .get(&id)
            .is_some_and(|at| at.elapsed() <= self.alive_within)
    }
}

/// On the meta leader: replaces one voter that has not answered for `failover_after` with a
/// spare, if there is one.
pub(super) async fn replace_lost(
    node: &ClusterNode,
    manager: &MetaManager,
    state: &MetaState,
    seen: &Seen,
) {
    // A change of members an operator asked for is under way (`meta_change.rs`).
    let Ok(_turn) = node.meta_change.try_lock() else {
        return;
    };
    if record_voters(manager, state).await {
        return;
    }
    let voters = Voters::of(manager).ids;
    // A member never registered (still starting) is not judged.
    let lost = voters
        .iter()
        .copied()
        .filter(|id| state.nodes.contains_key(id))
        .find(|id| seen.lost(*id, node.options.failover_after));
    let spare = state
        .nodes
        .keys()
        .copied()
        .find(|id| !voters.contains(id) && seen.alive(*id));
    let (Some(lost), Some(spare)) = (lost, spare) else {
        return;
    };
    eprintln!("vecraft: meta member node {lost} is down; node {spare} replaces it");
    // A spare that dies while it joins, or a leader that loses its quorum meanwhile, would
    // otherwise hold the replacement (and every later one) up for good.
    let replaced = tokio::time::timeout(
        REPLACE_TIMEOUT,
        replace(node, manager, state, &voters, lost, spare),
    );
    match replaced.await {
        Ok(Ok(members)) => eprintln!("vecraft: the meta group's members are now {members:?}"),
        Ok(Err(e)) => eprintln!("vecraft: meta member node {lost} not replaced yet: {e}"),
        Err(_) => eprintln!(
            "vecraft: meta member node {lost} not replaced yet: node {spare} did not join \
             within {REPLACE_TIMEOUT:?}"
        ),
    }
}

/// The meta group's voters as this member sees them.
pub(super) struct Voters {
    pub ids: BTreeSet<NodeId>,
    /// A change of members is under way (joint consensus: the old and new voters both vote).
    pub joint: bool,
    pub leader: Option<NodeId>,
}

impl Voters {
    pub fn of(manager: &MetaManager) -> Voters {
        let metrics = manager.member().group().raft().metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        Voters {
            ids: membership.voter_ids().collect(),
            joint: membership.get_joint_config().len() > 1,
            leader: m.current_leader,
        }
    }
}

/// Records the group's voters in the document where they differ from it, unless a change of
/// members is under way: a replacement whose last step failed (or timed out) after the
/// voters changed is recorded on the next round. Returns whether it had to.
async fn record_voters(manager: &MetaManager, state: &MetaState) -> bool {
    let Voters {
        ids: voters, joint, ..
    } = Voters::of(manager);
    if joint || state.meta_members.is_empty() || state.meta_members == voters {
        return false;
    }
    let op = MetaOp::SetMetaMembers { members: voters };
    if let Err(e) = manager.apply(op).await {
        eprintln!("vecraft: the meta group's members not recorded yet: {e}");
    }
    true
}

async fn replace(
    node: &ClusterNode,
    manager: &MetaManager,
    state: &MetaState,
    voters: &BTreeSet<NodeId>,
    lost: NodeId,
    spare: NodeId,
) -> std::result::Result<BTreeSet<NodeId>, String> {
    let mut wanted = voters.clone();
    wanted.remove(&lost);
    wanted.insert(spare);
    change_voters(node, manager, state, voters, wanted).await
}

/// On the meta leader: makes `wanted` the meta group's voters (they are `voters` now). Each
/// new one opens a meta member (`meta.join`), is added as a learner and catches up; then
/// the voters swap (joint consensus), and the document records them.
pub(super) async fn change_voters(
    node: &ClusterNode,
    manager: &MetaManager,
    state: &MetaState,
    voters: &BTreeSet<NodeId>,
    wanted: BTreeSet<NodeId>,
) -> std::result::Result<BTreeSet<NodeId>, String> {
    assert!(!wanted.is_empty(), "the meta group keeps a member");
    let addr = |id: NodeId| {
        state
            .addr(id)
            .map(str::to_string)
            .ok_or(format!("node {id} has no address"))
    };
    for id in wanted.difference(voters).copied() {
        let joined = node
            .peers
            .call::<_, std::result::Result<(), Failure>>(&addr(id)?, META_JOIN, &(), JOIN_TTL)
            .await
            .map_err(|e| format!("node {id} did not answer: {e}"))?;
        joined.map_err(|e| format!("node {id} cannot join: {e}"))?;
    }
    let mut members: BTreeMap<NodeId, String> = BTreeMap::new();
    for id in wanted.iter().copied() {
        members.insert(id, addr(id)?);
    }
    let raft = manager.member().group().raft();
    crate::rpc::set_voters(raft, members)
        .await
        .map_err(|e| e.to_string())?;
    let op = MetaOp::SetMetaMembers {
        members: wanted.clone(),
    };
    manager.apply(op).await.map_err(|e| e.to_string())?;
    Ok(wanted)
}
