//! Leadership balancing, on the meta leader: every `ROUND_EVERY` it reads which node leads
//! each shard, and where a node leads more than its share (⌈shards / live storage nodes⌉) it
//! has the leader hand some leaderships to other replicas of those shards that lead fewer
//! (`shard.hand_over`, `raft/handoff.rs`). After a node dies, the survivors win its shards'
//! elections; when it returns, this gives it its share back.
//!
//! A leadership is moved only once the balancer saw the same leader in the same term a round
//! before: a leader that has just won refuses to vote for another within its lease, and a
//! group in the middle of an election is better left to finish it. At most `MOVES_PER_ROUND`
//! hand-overs run at once; each stops its shard's writes for about an election's round trip.
//! A round that moved no leadership may move a replica (`spread.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::ClusterNode;
use super::failover::leader_status;
use crate::meta::{MetaManager, MetaState, ShardMeta};
use crate::raft::NodeId;
use crate::rpc::{Failure, GroupId, HAND_OVER};

const ROUND_EVERY: Duration = Duration::from_secs(5);
const MOVES_PER_ROUND: usize = 8;
/// A hand-over's longest run: writes in flight, the follower's catch-up, the election.
const HAND_OVER_TTL: Duration = Duration::from_secs(10);

/// One shard's leader and voters as a round read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Led {
    pub group: GroupId,
    pub leader: NodeId,
    pub term: u64,
    pub voters: Vec<NodeId>,
}

/// A leadership to hand over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Move {
    pub group: GroupId,
    pub from: NodeId,
    pub to: NodeId,
}

pub(super) async fn run(node: Arc<ClusterNode>, manager: Arc<MetaManager>) {
    let mut seen: HashMap<GroupId, (NodeId, u64)> = HashMap::new();
    loop {
        tokio::time::sleep(ROUND_EVERY).await;
        if !manager.leads() || node.draining() {
            seen.clear();
            continue;
        }
        let Ok(state) = manager.state() else { continue };
        let live = live_storage_nodes(&node, &state).await;
        let led = leaders(&node, &state).await;
        let stable: Vec<Led> = led
            .iter()
            .filter(|l| seen.get(&l.group) == Some(&(l.leader, l.term)))
            .cloned()
            .collect();
        seen = led
            .iter()
            .map(|l| (l.group.clone(), (l.leader, l.term)))
            .collect();
        let moves = plan(&led, &stable, &live, MOVES_PER_ROUND);
        let handed = moves.iter().map(|m| hand_over(&node, &state, m));
        futures::future::join_all(handed).await;
        // Replicas next, on what this round read (a move waits for a settled cluster).
        if moves.is_empty()
            && let Some(shift) = super::spread::plan(&state, &led, &live)
        {
            super::spread::apply(&manager, shift).await;
        }
    }
}

/// Which leaderships to move so that no live node leads more than ⌈shards / live nodes⌉:
/// from a node past that share, a `stable` leadership goes to the voter of its shard that
/// leads fewest, if it leads fewer than the share. `led` is every shard's leader now.
pub(super) fn plan(
    led: &[Led],
    stable: &[Led],
    live: &BTreeSet<NodeId>,
    max_moves: usize,
) -> Vec<Move> {
    if live.is_empty() {
        return Vec::new();
    }
    let share = led.len().div_ceil(live.len());
    let mut leads: BTreeMap<NodeId, usize> = live.iter().map(|id| (*id, 0)).collect();
    for l in led {
        *leads.entry(l.leader).or_default() += 1;
    }
    let mut moves = Vec::new();
    for l in stable {
        if moves.len() == max_moves {
            break;
        }
        if leads[&l.leader] <= share {
            continue;
        }
        let to = l
            .voters
            .iter()
            .filter(|v| **v != l.leader && live.contains(v) && leads[*v] < share)
            .min_by_key(|v| (leads[*v], **v));
        if let Some(&to) = to {
            *leads.get_mut(&l.leader).expect("counted") -= 1;
            *leads.get_mut(&to).expect("live") += 1;
            moves.push(Move {
                group: l.group.clone(),
                from: l.leader,
                to,
            });
        }
    }
    moves
}

/// The storage nodes that answer a ping now and do not drain.
async fn live_storage_nodes(node: &ClusterNode, state: &MetaState) -> BTreeSet<NodeId> {
    let pings = state
        .nodes
        .iter()
        .filter(|(_, info)| info.storage)
        .map(|(id, info)| async move {
            let pong = crate::rpc::ping(&node.peers, &info.rpc).await;
            pong.is_some_and(|p| !p.draining).then_some(*id)
        });
    let answered = futures::future::join_all(pings).await;
    answered.into_iter().flatten().collect()
}

/// Every shard's leader, for the shards that have one.
async fn leaders(node: &ClusterNode, state: &MetaState) -> Vec<Led> {
    let shards: Vec<&ShardMeta> = state.collections.values().flat_map(|c| &c.shards).collect();
    let statuses = shards.iter().map(|shard| leader_status(node, state, shard));
    let statuses = futures::future::join_all(statuses).await;
    let mut led: Vec<Led> = statuses
        .into_iter()
        .zip(&shards)
        .filter_map(|(status, shard)| {
            let status = status?;
            Some(Led {
                group: shard.group.clone(),
                leader: status.group.leader?,
                term: status.group.term,
                voters: status.group.voter_ids,
            })
        })
        .collect();
    led.sort_by(|a, b| a.group.cmp(&b.group));
    led
}

async fn hand_over(node: &ClusterNode, state: &MetaState, m: &Move) {
    let Some(addr) = state.addr(m.from) else {
        return;
    };
    let body = (&m.group, m.to);
    let reply = node
        .peers
        .call::<_, Result<NodeId, Failure>>(addr, HAND_OVER, &body, HAND_OVER_TTL)
        .await;
    let (group, from, to) = (&m.group, m.from, m.to);
    match reply {
        Ok(Ok(leader)) if leader == to => {
            tracing::info!(group, from, to, "leadership handed over to balance leaders");
        }
        Ok(Ok(leader)) => tracing::info!(group, from, to, leader, "another node won"),
        Ok(Err(e)) => tracing::info!(group, from, to, "leadership not handed over: {e}"),
        Err(e) => tracing::info!(group, from, to, "leadership not handed over: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(group: &str, leader: NodeId, voters: &[NodeId]) -> Led {
        Led {
            group: group.into(),
            leader,
            term: 1,
            voters: voters.to_vec(),
        }
    }

    #[test]
    fn a_returning_node_gets_its_share_of_leaderships() {
        // Six shards on three nodes; node 3 was away, so 1 and 2 lead three each.
        let all = [1, 2, 3];
        let led: Vec<Led> = (0..6)
            .map(|s| shard(&format!("t.1.{s}"), 1 + s % 2, &all))
            .collect();
        let live = BTreeSet::from(all);
        let moves = plan(&led, &led, &live, 8);
        assert_eq!(moves.len(), 2, "{moves:?}");
        assert!(moves.iter().all(|m| m.to == 3), "{moves:?}");
        assert_ne!(moves[0].from, moves[1].from, "one from each: {moves:?}");

        // Only leaderships seen held for a round move; a node that is down gets none.
        assert_eq!(plan(&led, &led[..1], &live, 8).len(), 1);
        assert!(plan(&led, &led, &BTreeSet::from([1, 2]), 8).is_empty());
        // Balanced already: nothing moves; a node leads its shards' share at most.
        let balanced: Vec<Led> = (0..6)
            .map(|s| shard(&format!("t.1.{s}"), 1 + s % 3, &all))
            .collect();
        assert!(plan(&balanced, &balanced, &live, 8).is_empty());
        // A shard moves only to one of its own replicas: node 3 holds none of these.
        let elsewhere: Vec<Led> = (0..3)
            .map(|s| shard(&format!("u.1.{s}"), 1, &[1, 2]))
            .collect();
        let moves = plan(&elsewhere, &elsewhere, &live, 8);
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!(moves[0].to, 2);
        let capped = plan(&led, &led, &live, 1);
        assert_eq!(capped.len(), 1);
    }
}
