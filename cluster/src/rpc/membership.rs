//! Changes of a group's members asked over Flight: handing the leadership to a chosen
//! follower, and swapping the set of voters (new ones catch up as learners first).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft};

use super::server::Reply;
use super::{ELECT, Failure};
use crate::local::LocalShard;
use crate::raft::{HandoffError, NodeId, TypeConfig};

/// How long the follower picked in a hand-over has to answer that it campaigns.
const ELECT_TTL: Duration = Duration::from_secs(1);

/// Hands `member`'s leadership to `to` (`raft/handoff.rs`), asking `to` over Flight to
/// campaign once it holds the whole log; the group's leader after it.
pub(crate) async fn hand_over(member: &LocalShard, to: NodeId) -> Reply<NodeId> {
    let Some((group, peers)) = member.peers() else {
        return Err(Failure::Unavailable(
            "a single node's group has no one to hand to".into(),
        ));
    };
    let addr = {
        let m = member.group().raft().metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .get_node(&to)
            .map(|n| n.addr.clone())
    };
    let Some(addr) = addr else {
        return Err(Failure::Unavailable(format!("node {to} is not a member")));
    };
    let term = member.group().raft().metrics().borrow().current_term;
    let elect = async {
        let reply = peers
            .call::<_, Reply<()>>(&addr, ELECT, &(group, term), ELECT_TTL)
            .await
            .map_err(|e| format!("node {to} was not asked to campaign: {e}"))?;
        reply.map_err(|e| format!("node {to} does not campaign: {e}"))
    };
    member
        .group()
        .hand_over(to, elect)
        .await
        .map_err(|e| match e {
            HandoffError::NotLeader(leader) => Failure::NotLeader(leader),
            e => Failure::Unavailable(format!("leadership not handed to node {to}: {e}")),
        })
}

/// Makes `voters` the group's voting members: new ones join as learners and catch up (log
/// or snapshot) first, then one membership change swaps the set.
pub(crate) async fn set_voters(
    raft: &Raft<TypeConfig>,
    voters: BTreeMap<NodeId, String>,
) -> Reply<()> {
    let leader_only = |e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            Failure::NotLeader(f.leader_id)
        }
        e => Failure::Unavailable(e.to_string()),
    };
    let membership = raft.metrics().borrow().membership_config.clone();
    let known: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
    for (id, addr) in &voters {
        if !known.contains(id) {
            raft.add_learner(*id, BasicNode::new(addr), true)
                .await
                .map_err(leader_only)?;
        }
    }
    let current: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
    let wanted: BTreeSet<NodeId> = voters.keys().copied().collect();
    if current != wanted {
        raft.change_membership(wanted, false)
            .await
            .map_err(leader_only)?;
    }
    Ok(())
}
