//! What a member does as its group's leader when the Flight server hands it a call: propose a
//! write (given up, outcome unknown, once it stops leading or hears from no quorum), and say
//! whether it may answer a read at the consistency the read asks for.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, RaftError};
use openraft::{BasicNode, Raft, ServerState};
use vecraft_storage::shard::Applied;

use super::Failure;
use super::server::Reply;
use crate::local::LocalShard;
use crate::raft::{MAX_COMMAND_BYTES, NodeId, Request as Proposal, TypeConfig};
use crate::read::{BOUNDED_WAIT_MS, Consistency};

/// Proposes `command` to the group this member leads; returns what it did and its index.
pub(super) async fn write(member: &LocalShard, command: Vec<u8>) -> Reply<(Applied, u64)> {
    if command.is_empty() || command.len() > MAX_COMMAND_BYTES {
        let e = format!(
            "a write of {} bytes does not fit one log record",
            command.len()
        );
        return Err(Failure::Refused(
            vecraft_storage::error::Refusal::InvalidArgument(e),
        ));
    }
    // A hand-over waits for this write, or this write for the hand-over.
    let _pass = member.group().write_pass().await;
    let raft = member.group().raft();
    let leading = raft.metrics().borrow().state == ServerState::Leader;
    if leading && (member.stands_aside() || cut_off(&raft.metrics().borrow())) {
        // Not proposed, so surely not applied: the router tries the other replicas until
        // one leads, or this one hears from its quorum again.
        return Err(Failure::NotLeader(None));
    }
    let proposed = raft.client_write(Proposal(command));
    let answer = if leading {
        tokio::select! {
            answer = proposed => answer,
            () = stopped_leading(raft) => return Err(Failure::Unavailable(format!(
                "this node stopped leading the shard's group, or heard from no quorum for \
                 {LEADER_CUT_OFF_MS} ms, with the write in flight"
            ))),
        }
    } else {
        // Refused at once ("not the leader").
        proposed.await
    };
    match answer {
        Ok(response) => {
            let index = response.log_id.index;
            response.data.map(|a| (a, index)).map_err(Failure::Refused)
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(Failure::NotLeader(f.leader_id))
        }
        Err(RaftError::Fatal(Fatal::StorageError(e))) => Err(Failure::Stopped(e.to_string())),
        Err(e) => Err(Failure::Unavailable(e.to_string())),
    }
}

/// How long a leader may go without a quorum's acknowledgement before the writes waiting on
/// it are given up: by then its followers' lease and election timeout (1.2 to 1.6 s) have
/// passed, and another leader is being elected.
const LEADER_CUT_OFF_MS: u64 = 2_000;

/// Returns once this member no longer leads, or leads without hearing from a quorum for
/// `LEADER_CUT_OFF_MS`. A write waiting on such a leader is answered only when it hears from
/// the new one (which may be never, if it is cut off): its caller is told now that the outcome
/// is unknown, instead of at the end of its call's deadline. openraft publishes metrics on
/// every turn of the group's core, heartbeat ticks included.
async fn stopped_leading(raft: &Raft<TypeConfig>) {
    let mut metrics = raft.metrics();
    loop {
        {
            let m = metrics.borrow_and_update();
            if m.state != ServerState::Leader || cut_off(&m) {
                return;
            }
        }
        if metrics.changed().await.is_err() {
            return; // the group stopped; its writes fail on their own
        }
    }
}

/// How long a strong read waits for the leader to apply the entries already in its log
/// before it commits a no-op of its own to make them commit.
const OWN_LOG_WAIT: Duration = Duration::from_millis(300);

/// Returns once this leader has applied every entry its log held when the read came.
///
/// openraft's read index is the commit index as the leader knows it. A leader restored from
/// its files after a crash (openraft restarts a node that led as leader when no other was
/// elected meanwhile) knows no commit past what its state machine had applied, which may be
/// well behind what it had committed and acknowledged before the crash: a read at that index
/// misses acknowledged writes (the nemesis found such reads, seconds stale). Every committed
/// entry is in the leader's log, so a read that waits until the whole log is applied sees
/// them all; entries still in flight commit within a round trip. A leader whose last entry
/// is of an older term never commits it by counting replicas: after `OWN_LOG_WAIT` it
/// writes a no-op of its own term, whose commit commits everything before it.
async fn applied_own_log(raft: &Raft<TypeConfig>) -> Reply<()> {
    let last = raft.metrics().borrow().last_log_index;
    let applied = |m: &openraft::RaftMetrics<NodeId, BasicNode>| {
        m.last_applied.map(|id| id.index) >= last || m.state != ServerState::Leader
    };
    let wait = raft.wait(Some(OWN_LOG_WAIT));
    if wait.metrics(applied, "own log applied").await.is_err() {
        let noop = raft.client_write(Proposal(Vec::new()));
        match tokio::time::timeout(Duration::from_millis(LEADER_CUT_OFF_MS), noop).await {
            Ok(Ok(_)) => {}
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                return Err(Failure::NotLeader(f.leader_id));
            }
            Ok(Err(e)) => return Err(Failure::Unavailable(e.to_string())),
            Err(_) => {
                let e = "the leader could not commit an entry of its term in time";
                return Err(Failure::Unavailable(e.into()));
            }
        }
    }
    match raft.metrics().borrow().state {
        ServerState::Leader => Ok(()),
        _ => Err(Failure::NotLeader(None)),
    }
}

/// Whether a leader has heard from no quorum for `LEADER_CUT_OFF_MS`. One that only cannot
/// hear its followers (they hear it) stands aside before that (`step_aside.rs`), so that
/// they elect another; it leads in name until a higher term reaches it.
fn cut_off(m: &openraft::RaftMetrics<NodeId, BasicNode>) -> bool {
    m.millis_since_quorum_ack
        .is_some_and(|ms| ms > LEADER_CUT_OFF_MS)
}

/// Whether this replica may answer a read at `read` now; waits (briefly) as the level asks.
pub(super) async fn may_read(
    member: &LocalShard,
    read: Consistency,
    min_applied: u64,
) -> Reply<()> {
    let raft = member.group().raft();
    match read {
        Consistency::Strong => {
            match raft.ensure_linearizable().await {
                Ok(_) => {}
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    return Err(Failure::NotLeader(f.leader_id));
                }
                Err(e) => return Err(Failure::Unavailable(e.to_string())),
            }
            applied_own_log(raft).await
        }
        Consistency::Bounded => raft
            .wait(Some(Duration::from_millis(BOUNDED_WAIT_MS)))
            .applied_index_at_least(Some(min_applied), "bounded read")
            .await
            .map(|_| ())
            .map_err(|_| Failure::Stale),
        Consistency::Eventual => Ok(()),
    }
}
