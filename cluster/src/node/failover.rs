//! The fail-over manager, on the meta leader: pings every node, and when a storage node has
//! not answered for `failover_after`, moves its replicas to the least loaded live storage
//! nodes that have none of that shard (a metadata change the storage nodes act on), one
//! replica of a shard at a time and only while a quorum of the shard's replicas lives.
//! It also brings every shard group's voters in line with the placement: the shard's leader
//! adds a new replica as a learner, waits until it caught up (log or snapshot), then swaps
//! the voter set, which drops the dead member. A meta member lost so is replaced by a spare
//! node (`meta_members.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{ClusterNode, meta_members};
use crate::meta::{MetaManager, MetaOp, MetaState, ShardMeta};
use crate::raft::NodeId;
use crate::rpc::{Failure, GroupId, MEMBERS, PING_TTL, STATUS};
use crate::shard_handle::ShardStatus;

const TICK: Duration = Duration::from_millis(500);
/// How long a membership change (with the new replica's catch-up) may take.
const MEMBERS_TTL: Duration = Duration::from_secs(600);

pub(super) async fn run(node: Arc<ClusterNode>, manager: Arc<MetaManager>) {
    let mut last_seen: HashMap<NodeId, Instant> = HashMap::new();
    let mut leading_since: Option<Instant> = None;
    let syncing: Arc<Mutex<BTreeSet<GroupId>>> = Arc::default();
    let replacing = Arc::new(AtomicBool::new(false));
    loop {
        tokio::time::sleep(TICK).await;
        if !manager.leads() {
            leading_since = None;
            continue;
        }
        // A new leader gives every node a full grace period before judging it.
        let since = *leading_since.get_or_insert_with(Instant::now);
        let Ok(state) = manager.state() else { continue };
        ping(&node, &state, &mut last_seen).await;
        if !replacing.swap(true, Ordering::Relaxed) {
            let (node, manager, state) = (Arc::clone(&node), Arc::clone(&manager), state.clone());
            let (last_seen, replacing) = (last_seen.clone(), Arc::clone(&replacing));
            crate::raft::spawn(async move {
                let seen = meta_members::Seen {
                    at: last_seen,
                    since,
                    alive_within: TICK * 2 + PING_TTL,
                };
                meta_members::replace_lost(&node, &manager, &state, &seen).await;
                replacing.store(false, Ordering::Relaxed);
            });
        }
        let dead: BTreeSet<NodeId> = state
            .nodes
            .iter()
            .filter(|(_, n)| n.storage)
            .map(|(id, _)| *id)
            .filter(|id| {
                let seen = last_seen.get(id).copied().unwrap_or(since).max(since);
                seen.elapsed() > node.options.failover_after
            })
            .collect();
        manager.set_dead(dead.clone());
        replace_dead(&node, &manager, &state, &dead).await;
        let Ok(state) = manager.state() else { continue };
        for shard in state.collections.values().flat_map(|c| &c.shards) {
            if !syncing.lock().insert(shard.group.clone()) {
                continue; // a change of this group is under way
            }
            let (node, shard, state, syncing) = (
                Arc::clone(&node),
                shard.clone(),
                state.clone(),
                Arc::clone(&syncing),
            );
            crate::raft::spawn(async move {
                sync_voters(&node, &state, &shard).await;
                syncing.lock().remove(&shard.group);
            });
        }
    }
}

async fn ping(node: &ClusterNode, state: &MetaState, last_seen: &mut HashMap<NodeId, Instant>) {
    let pings = state.nodes.iter().map(|(id, info)| async move {
        let answered = crate::rpc::ping(&node.peers, &info.rpc).await.is_some();
        (*id, answered)
    });
    for (id, answered) in futures::future::join_all(pings).await {
        if answered {
            last_seen.insert(id, Instant::now());
        }
    }
}

/// Moves replicas off `dead` nodes to live storage nodes without one of that shard: one
/// replica of a shard at a time, only once the group's voters are the placement's (the last
/// move finished), and only while a quorum of its replicas lives (a shard that lost its
/// quorum needs an operator: rebuilding it from a minority could lose acknowledged writes).
async fn replace_dead(
    node: &ClusterNode,
    manager: &MetaManager,
    state: &MetaState,
    dead: &BTreeSet<NodeId>,
) {
    let mut load = state.load();
    let live: Vec<NodeId> = load
        .keys()
        .copied()
        .filter(|id| !dead.contains(id))
        .collect();
    for shard in state.collections.values().flat_map(|c| &c.shards) {
        let Some(&gone) = shard.replicas.iter().find(|n| dead.contains(n)) else {
            continue;
        };
        let alive = shard.replicas.iter().filter(|n| !dead.contains(n)).count();
        if alive < shard.replicas.len() / 2 + 1 {
            continue;
        }
        let settled = leader_status(node, state, shard)
            .await
            .is_some_and(|status| status.voters_are(&shard.replicas));
        if !settled {
            continue;
        }
        let new = live
            .iter()
            .filter(|n| !shard.replicas.contains(n))
            .min_by_key(|n| (load.get(n).copied().unwrap_or(0), **n));
        let Some(&new) = new else {
            continue; // no node to move to: the shard runs with fewer replicas
        };
        let op = MetaOp::Replace {
            group: shard.group.clone(),
            dead: gone,
            new,
        };
        match manager.apply(op).await {
            Ok(_) => {
                *load.entry(new).or_default() += 1;
                eprintln!(
                    "vecraft: node {gone} is down; replica of {} moves to node {new}",
                    shard.group
                );
            }
            Err(e) => eprintln!("vecraft: cannot move {} off node {gone}: {e}", shard.group),
        }
    }
}

/// Makes the shard's voters the placement's replicas, through its leader.
async fn sync_voters(node: &ClusterNode, state: &MetaState, shard: &ShardMeta) {
    let wanted: BTreeSet<NodeId> = shard.replicas.iter().copied().collect();
    let Some(status) = leader_status(node, state, shard).await else {
        return;
    };
    if status.voters_are(&shard.replicas) {
        return;
    }
    let Some(leader) = status.group.leader.and_then(|l| state.addr(l)) else {
        return;
    };
    let voters: BTreeMap<NodeId, String> = wanted
        .iter()
        .filter_map(|id| state.addr(*id).map(|a| (*id, a.to_string())))
        .collect();
    if voters.len() != wanted.len() {
        return;
    }
    let body = (&shard.group, &voters);
    let reply = node
        .peers
        .call::<_, Result<(), Failure>>(leader, MEMBERS, &body, MEMBERS_TTL)
        .await;
    match reply {
        Ok(Ok(())) => eprintln!("vecraft: shard {} now has voters {:?}", shard.group, wanted),
        Ok(Err(e)) => eprintln!("vecraft: cannot change the voters of {}: {e}", shard.group),
        Err(e) => eprintln!("vecraft: cannot change the voters of {}: {e}", shard.group),
    }
}

/// The shard's status as its leader reports it (asking every replica the placement names,
/// then the members the group has).
pub(super) async fn leader_status(
    node: &ClusterNode,
    state: &MetaState,
    shard: &ShardMeta,
) -> Option<ShardStatus> {
    let mut asked = BTreeSet::new();
    let mut queue: Vec<NodeId> = shard.replicas.clone();
    while let Some(id) = queue.pop() {
        if !asked.insert(id) {
            continue;
        }
        let Some(addr) = state.addr(id) else { continue };
        let reply = node
            .peers
            .call::<_, Result<ShardStatus, Failure>>(addr, STATUS, &shard.group, PING_TTL)
            .await;
        if let Ok(Ok(status)) = reply {
            if status.group.state == "leader" {
                return Some(status);
            }
            queue.extend(status.group.leader);
            queue.extend(status.group.voter_ids.iter().copied());
        }
    }
    None
}
