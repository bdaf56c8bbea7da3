//! Replica balancing, on the meta leader, a round after each leadership balancing: where the
//! live storage node holding the most replicas holds two or more than the one holding the
//! fewest, one replica moves from the first to the second. A node that joined, or that came
//! back after its replicas were rebuilt elsewhere, so fills up to its share, one replica a
//! round.
//!
//! A move is a placement change (`MetaOp::Replace`), which the fail-over loop carries out as
//! it does for a dead node's replicas: the new replica joins as a learner and catches up, the
//! voters swap, and the old node removes its copy (`replicas.rs`). A move waits until every
//! shard has a leader and its voters match its placement, so one move finishes before the
//! next begins; a shard led by the node it would leave is moved only if no other will do.

use std::collections::{BTreeMap, BTreeSet};

use super::balance::Led;
use crate::meta::{MetaManager, MetaOp, MetaState};
use crate::raft::NodeId;
use crate::rpc::GroupId;

/// A replica to move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Shift {
    pub group: GroupId,
    pub from: NodeId,
    pub to: NodeId,
}

/// The one replica to move now, if any. `led` is every shard's leader and voters as read
/// this round; `live` the storage nodes answering (and not draining).
pub(super) fn plan(state: &MetaState, led: &[Led], live: &BTreeSet<NodeId>) -> Option<Shift> {
    let shards: Vec<_> = state.collections.values().flat_map(|c| &c.shards).collect();
    let settled = shards.len() == led.len()
        && shards.iter().all(|s| {
            let mut placed = s.replicas.clone();
            placed.sort_unstable();
            led.iter()
                .any(|l| l.group == s.group && sorted(&l.voters) == placed)
        });
    if !settled {
        return None;
    }
    let load: BTreeMap<NodeId, usize> = state
        .load()
        .into_iter()
        .filter(|(id, _)| live.contains(id))
        .collect();
    let (&from, &most) = load
        .iter()
        .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))?;
    let (&to, &fewest) = load.iter().min_by_key(|(id, n)| (**n, **id))?;
    if most < fewest + 2 {
        return None;
    }
    let leader = |group: &GroupId| led.iter().find(|l| &l.group == group).map(|l| l.leader);
    let movable = shards
        .iter()
        .filter(|s| s.replicas.contains(&from) && !s.replicas.contains(&to));
    // Not the leader's replica when another will do: moving it costs an election.
    let shard = movable.min_by_key(|s| (leader(&s.group) == Some(from), s.group.clone()))?;
    Some(Shift {
        group: shard.group.clone(),
        from,
        to,
    })
}

/// Records `shift` in the placement; the fail-over loop moves the replica.
pub(super) async fn apply(manager: &MetaManager, shift: Shift) {
    let Shift { group, from, to } = shift;
    let op = MetaOp::Replace {
        group: group.clone(),
        dead: from,
        new: to,
    };
    match manager.apply(op).await {
        Ok(_) => tracing::info!(group, from, to, "a replica moves to balance replicas"),
        Err(e) => tracing::info!(group, from, to, "replica not moved: {e}"),
    }
}

fn sorted(ids: &[NodeId]) -> Vec<NodeId> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{CollectionMeta, NodeInfo, ShardMeta, meta_schema};

    /// A state with storage nodes `nodes` and one collection whose shards are placed so.
    fn state(nodes: &[NodeId], placements: &[&[NodeId]]) -> MetaState {
        let info = NodeInfo {
            rpc: "127.0.0.1:1".into(),
            sql: None,
            storage: true,
            incarnation: 0,
        };
        let shards = placements
            .iter()
            .enumerate()
            .map(|(i, replicas)| ShardMeta {
                group: format!("t.1.{i}"),
                replicas: replicas.to_vec(),
                initial: Vec::new(),
            });
        let collection = CollectionMeta {
            schema: meta_schema(),
            replicas: placements[0].len(),
            shards: shards.collect(),
            restoring: None,
        };
        MetaState {
            nodes: nodes.iter().map(|id| (*id, info.clone())).collect(),
            collections: BTreeMap::from([("t".to_string(), collection)]),
            ..MetaState::default()
        }
    }

    /// Every shard led by its first replica, its voters as placed.
    fn led(state: &MetaState) -> Vec<Led> {
        let shards = state.collections.values().flat_map(|c| &c.shards);
        shards
            .map(|s| Led {
                group: s.group.clone(),
                leader: s.replicas[0],
                term: 1,
                voters: s.replicas.clone(),
            })
            .collect()
    }

    #[test]
    fn a_node_that_joined_gets_replicas_one_a_round_until_counts_are_even() {
        // Four shards of three replicas on nodes 1-3, led by 1, 2, 3 and 1; node 4 joins
        // empty.
        let placed: [&[NodeId]; 4] = [&[1, 2, 3], &[2, 3, 1], &[3, 1, 2], &[1, 2, 3]];
        let before = state(&[1, 2, 3, 4], &placed);
        let mut meta = before.clone();
        let live = BTreeSet::from([1, 2, 3, 4]);
        let mut moves = Vec::new();
        while let Some(shift) = plan(&meta, &led(&meta), &live) {
            assert_eq!(shift.to, 4, "{shift:?}");
            let shard = meta
                .collections
                .values_mut()
                .flat_map(|c| c.shards.iter_mut())
                .find(|s| s.group == shift.group)
                .unwrap();
            for slot in shard.replicas.iter_mut().filter(|n| **n == shift.from) {
                *slot = shift.to;
            }
            moves.push(shift);
            assert!(moves.len() <= 3, "{moves:?}");
        }
        // 12 replicas on 4 nodes: 3 each, from 4-4-4-0.
        let load = meta.load();
        assert_eq!(load.values().copied().collect::<Vec<_>>(), [3, 3, 3, 3]);
        // No move took a leader's replica: another always would do here.
        for m in &moves {
            let was = led(&before)
                .into_iter()
                .find(|l| l.group == m.group)
                .unwrap();
            assert_ne!(was.leader, m.from, "{m:?}");
        }
    }

    #[test]
    fn nothing_moves_while_a_shard_is_unsettled_or_onto_a_node_that_is_down() {
        let all: &[NodeId] = &[1, 2, 3];
        let state = state(&[1, 2, 3, 4], &[all, all]);
        let mut led = led(&state);
        // Node 4 is down (or draining): nothing to balance among the others.
        assert_eq!(plan(&state, &led, &BTreeSet::from([1, 2, 3])), None);
        let live = BTreeSet::from([1, 2, 3, 4]);
        assert!(plan(&state, &led, &live).is_some());
        // A shard that has no leader this round, or whose voters differ from its placement
        // (a move under way), holds every move back.
        assert_eq!(plan(&state, &led[..1], &live), None);
        led[0].voters = vec![1, 2];
        assert_eq!(plan(&state, &led, &live), None);
    }
}
