//! A node's part in a drain (SIGTERM): its members stop campaigning, and each group it leads
//! is handed to the follower that holds the most of its log (`raft/handoff.rs`), so the
//! shards take writes elsewhere before the node goes. The gateway's own drain (its sessions)
//! is the SQL server's (`vecraft_sql::drain`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use openraft::ServerState;

use super::ClusterNode;
use crate::local::LocalShard;
use crate::raft::NodeId;

/// What became of one leadership the node held.
#[derive(Debug)]
pub struct HandedOver {
    pub group: String,
    /// The leader after it, or why the hand-over failed.
    pub outcome: Result<NodeId, String>,
    pub took_ms: u128,
}

impl ClusterNode {
    /// Whether the node drains (no leadership is handed to it, the balancer rests).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Stops this node's members campaigning and hands every leadership it holds to a
    /// follower, all groups at once; returns what became of each.
    pub async fn drain(self: &Arc<Self>) -> Vec<HandedOver> {
        self.draining.store(true, Ordering::Relaxed);
        self.service.set_draining();
        let members: Vec<(String, Arc<LocalShard>)> = self
            .service
            .groups()
            .into_iter()
            .filter_map(|group| Some((group.clone(), self.service.member(&group)?)))
            .collect();
        for (_, member) in &members {
            member.group().campaigns(false);
        }
        let handed = members.into_iter().filter_map(|(group, member)| {
            let to = successor(&member)?;
            Some(async move {
                let started = std::time::Instant::now();
                let handing = async move { crate::rpc::hand_over(&member, to).await };
                let outcome = match crate::raft::run_async(handing).await {
                    Ok(reply) => reply.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let took_ms = started.elapsed().as_millis();
                HandedOver {
                    group,
                    outcome,
                    took_ms,
                }
            })
        });
        futures::future::join_all(handed).await
    }

    /// Stops serving peers once the calls in flight are answered (`RaftService::stop_serving`),
    /// waiting at most `timeout`: the last step of a drain before the process exits.
    pub async fn stop_serving_peers(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.service.stop_serving()).await;
    }
}

/// The voter that holds the most of the log of a group this member leads; `None` when it
/// does not lead or leads alone.
pub(super) fn successor(member: &LocalShard) -> Option<NodeId> {
    let metrics = member.group().raft().metrics();
    let m = metrics.borrow();
    if m.state != ServerState::Leader {
        return None;
    }
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != m.id)
        .max_by_key(|id| crate::raft::matched_index(&m, *id))
}
