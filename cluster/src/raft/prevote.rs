//! Pre-vote (the Raft thesis, §9.6), which openraft 0.9 lacks: a member that hears no leader
//! first asks the other voters whether they would vote for it, and campaigns only when a
//! majority would. A voter says yes when it hears no leader either (it has heard none for a
//! lease) and the asker's log is at least as long as its own.
//!
//! Without it, the nemesis found elections taking 4 to 8 s where one election timeout should
//! do. A member that had just restarted, its log shorter than the others', campaigned again
//! and again, each time in a higher term; the member with the longest log, which alone could
//! win, kept campaigning in a term the other had already voted itself in, and lost. openraft
//! makes a member refused for a shorter log wait longer before its next campaign, but only
//! when its own timer starts that campaign, and it draws each member's election timeout once,
//! so two members whose timeouts are close collide round after round. Here the nudge
//! (`nudge.rs`) starts every campaign of a cluster's member, after a fresh random wait, and
//! a member that cannot win does not raise the group's term.
//!
//! The same question keeps a member that is cut off from the others (while they hear their
//! leader) from raising its term over and over, and deposing that leader when it returns.

use std::sync::{Arc, Weak};

use futures::future::BoxFuture;
use openraft::{LogId, ServerState};
use vecraft_storage::log::Log;

use super::{Group, NodeId};

/// A voter that heard from a leader this recently would not vote for another (openraft's
/// lease, `election_timeout_max`).
const LEASE_MS: u64 = super::ELECTION_TIMEOUT_MAX_MS;

/// What a member asks before it campaigns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PreVote {
    /// The member asking.
    pub candidate: NodeId,
    /// The last entry of its log.
    pub last_log_id: Option<LogId<NodeId>>,
}

/// How a member asks the other voters of its group (the cluster's network: `rpc`).
pub trait Canvass: Send + Sync + 'static {
    /// Asks `voters` (id and address) whether they would vote for `ask`'s candidate; returns
    /// once `needed` said yes (true), or every answer is in, or its time ran out (false).
    fn canvass(
        &self,
        voters: Vec<(NodeId, String)>,
        ask: PreVote,
        needed: usize,
    ) -> BoxFuture<'static, bool>;
}

/// A canvass shared by a group's tasks.
pub type SharedCanvass = Arc<dyn Canvass>;

/// The id of the last entry of a member's log; an error once its group was shut down.
pub(super) fn last_log_id(log: &Weak<Log>) -> vecraft_storage::Result<Option<LogId<NodeId>>> {
    let Some(log) = log.upgrade() else {
        return Err(super::unavailable(
            "read the log",
            "the group was shut down",
        ));
    };
    super::log_store::last_log_id(&log).map_err(|e| super::unavailable("read the log", e))
}

impl Group {
    /// Whether this member would vote for the candidate asking `ask` now. One that may not
    /// campaign itself says no as well: it drains, or the group no longer has it (a meta
    /// member removed or replaced), and a majority of such members must not elect one of
    /// theirs in the group's old configuration.
    pub async fn grants_pre_vote(&self, ask: PreVote) -> bool {
        if self.raft.metrics().borrow().state == ServerState::Leader
            || self.heard.silent_ms() < LEASE_MS
            || self.handoff.quiet()
        {
            return false;
        }
        matches!(last_log_id(&self.log), Ok(mine) if ask.last_log_id >= mine)
    }
}
