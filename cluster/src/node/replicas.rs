//! The replica keeper of a storage node: makes the replicas running on this node match the
//! placement in the metadata. A shard placed here and not running is opened (created empty
//! when new: the group's founding member initialises it, a replica added by fail-over waits
//! for the leader to bring it up to date); a replica here that the placement no longer names
//! is stopped and its files removed once that is safe: its collection was dropped, or the
//! shard's leader no longer counts this node among the voters (it was moved off this node
//! while the node was away). A document older than the group never removes it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::BasicNode;
use vecraft_storage::schema::CollectionSchema;
use vecraft_storage::shard::ShardOptions;

use super::ClusterNode;
use crate::local::LocalShard;
use crate::meta::{META_GROUP, MetaState, ShardMeta};
use crate::rpc::GroupId;

/// How often the keeper looks again when nothing changed (a failed open is retried then).
const RECHECK: Duration = Duration::from_secs(1);
/// How long a removed replica may stay in use by calls still answering.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn keep(node: Arc<ClusterNode>) {
    let mut changes = node.subscribe();
    loop {
        let state = node.view();
        // Only a document this node is in is trusted to say what it should hold.
        if state.nodes.contains_key(&node.id()) {
            reconcile(&node, &state).await;
        }
        let _ = tokio::time::timeout(RECHECK, changes.changed()).await;
    }
}

async fn reconcile(node: &Arc<ClusterNode>, state: &MetaState) {
    let me = node.id();
    let wanted: BTreeMap<&GroupId, (&CollectionSchema, &ShardMeta)> = state
        .collections
        .values()
        .flat_map(|c| c.shards.iter().map(move |s| (&c.schema, s)))
        .filter(|(_, s)| s.replicas.contains(&me))
        .map(|(schema, s)| (&s.group, (schema, s)))
        .collect();
    let running: BTreeSet<GroupId> = node
        .service
        .groups()
        .into_iter()
        .filter(|g| g != META_GROUP)
        .collect();
    for group in &running {
        if !wanted.contains_key(group) && may_remove(node, state, group).await {
            remove(node, group).await;
        }
    }
    remove_leftovers(node, state, &wanted).await;
    for (group, (schema, shard)) in wanted {
        if !running.contains(group) {
            open(node, state, schema.clone(), shard.clone()).await;
        }
    }
}

/// Opens (or creates) this node's replica of `shard` and serves it.
async fn open(
    node: &Arc<ClusterNode>,
    state: &MetaState,
    schema: CollectionSchema,
    shard: ShardMeta,
) {
    let me = node.id();
    // The founding member initialises a group that never changed members; a replica added
    // later joins through the leader.
    let founding = shard.initial.first() == Some(&me) && shard.replicas == shard.initial;
    let initial = founding.then(|| {
        shard
            .initial
            .iter()
            .filter_map(|id| state.addr(*id).map(|a| (*id, BasicNode::new(a))))
            .collect::<BTreeMap<_, _>>()
    });
    if initial
        .as_ref()
        .is_some_and(|m| m.len() != shard.initial.len())
    {
        return; // a founding member not registered yet: next round
    }
    let Some(dir) = node.replica_dir(&shard.group) else {
        eprintln!(
            "vecraft: refusing replica {:?}: not a group name",
            shard.group
        );
        return;
    };
    let peers = node.peers.clone();
    let group = shard.group.clone();
    let opened = tokio::task::spawn_blocking(move || {
        LocalShard::open_member(
            &dir,
            Some(schema),
            ShardOptions::default(),
            (group, me),
            peers,
            initial,
        )
    })
    .await;
    match opened {
        Ok(Ok(member)) => node.service.register(shard.group, Arc::new(member)),
        Ok(Err(e)) => eprintln!("vecraft: cannot open replica {}: {e}", shard.group),
        Err(e) => eprintln!("vecraft: cannot open replica {}: {e}", shard.group),
    }
}

/// Stops this node's replica of `group` and removes its files.
async fn remove(node: &Arc<ClusterNode>, group: &str) {
    let Some(dir) = node.replica_dir(group) else {
        return; // never opened: `open` refuses such names
    };
    let Some(member) = node.service.unregister(group) else {
        return;
    };
    let removed = tokio::task::spawn_blocking(move || {
        // Calls still answering hold it; the files go once it is closed.
        let started = Instant::now();
        let mut member = member;
        loop {
            match Arc::try_unwrap(member) {
                Ok(member) => break drop(member),
                Err(_) if started.elapsed() > RELEASE_TIMEOUT => {
                    return Err(std::io::Error::other("the replica is still in use"));
                }
                Err(still_used) => {
                    member = still_used;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        std::fs::remove_dir_all(&dir)
    })
    .await;
    match removed {
        Ok(Ok(())) => eprintln!("vecraft: replica {group} is no longer placed here; removed"),
        Ok(Err(e)) => eprintln!("vecraft: cannot remove replica {group}: {e}"),
        Err(e) => eprintln!("vecraft: cannot remove replica {group}: {e}"),
    }
}

/// Removes replica directories neither wanted nor running (a collection dropped, or a
/// replica moved, while this node was down), when that is safe.
async fn remove_leftovers(
    node: &Arc<ClusterNode>,
    state: &MetaState,
    wanted: &BTreeMap<&GroupId, (&CollectionSchema, &ShardMeta)>,
) {
    let root = node.options.data_dir.join("replicas");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if wanted.contains_key(&name)
            || node.service.member(&name).is_some()
            || !may_remove(node, state, &name).await
        {
            continue;
        }
        let path = entry.path();
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(path)).await;
        if let Ok(Ok(())) = removed {
            eprintln!("vecraft: replica {name} is no longer placed here; removed");
        }
    }
}

/// Whether this node's replica of `group`, which `state` does not place here, may go: the
/// document is at least as new as the group, and the group is gone or its leader no longer
/// counts this node as a voter (so its data is not needed for a quorum).
async fn may_remove(node: &Arc<ClusterNode>, state: &MetaState, group: &str) -> bool {
    // Group ids are `<collection>.<version of the document that created it>.<shard>`.
    let version = group.rsplit('.').nth(1).and_then(|v| v.parse::<u64>().ok());
    if version.is_none_or(|v| v > state.version) {
        return false;
    }
    let shard = state
        .collections
        .values()
        .flat_map(|c| &c.shards)
        .find(|s| s.group == group);
    match shard {
        None => true,
        Some(shard) => super::failover::leader_status(node, state, shard)
            .await
            .is_some_and(|status| !status.group.voter_ids.contains(&node.id())),
    }
}
