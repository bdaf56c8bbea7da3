//! Handing a group's leadership to a chosen follower, which openraft 0.9 cannot do itself (it
//! has no `transfer_leader`, and a follower's `trigger().elect()` is refused by every voter
//! whose lease on the current leader holds).
//!
//! The leader makes the follower's campaign one it is sure to win, then lets it campaign:
//!
//! 1. It stops taking writes (`Handoff::gate`): the writes already proposed finish, later ones
//!    wait for the hand-over to end and then go to whoever leads (a write refused for "not
//!    the leader" was never proposed, so the router retries it there).
//! 2. It waits until the follower holds its whole log, so the follower's log is at least as
//!    long as any voter's and no vote is refused for it.
//! 3. Where the follower needs more votes than its own and the leader's (four voters and
//!    up), the leader stops its heartbeats for a lease, so the other voters' leases expire.
//! 4. It asks the follower to campaign (`elect`, a call the caller makes). The leader grants
//!    the vote (its own lease on itself dates from its election), which deposes it; the
//!    follower wins with it.
//!
//! The leader must have led for longer than a lease, or it refuses the vote itself: a
//! hand-over waits out what is left of it (a new leader's hand-over takes up to a second). Writes stop for about a
//! round trip and an election when the follower is current; a follower that is not current
//! within `CATCH_UP_MS` is not handed anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use openraft::{Raft, ServerState};
use parking_lot::Mutex;
use tokio::sync::{RwLock, RwLockReadGuard};

use super::{NodeId, TypeConfig};

/// How long a hand-over waits for the writes already proposed to finish.
const WRITES_IN_FLIGHT_MS: u64 = 2_000;
/// How long the follower may take to hold the leader's whole log.
const CATCH_UP_MS: u64 = 2_000;
/// How long the follower may take to win and be known as the leader.
const ELECTED_MS: u64 = 3_000;
/// A voter's lease on its leader (openraft's `election_timeout_max`), and a margin.
const LEASE_MS: u64 = super::ELECTION_TIMEOUT_MAX_MS + 100;

/// A member's part in hand-overs: the gate writes pass, and whether it may campaign.
#[derive(Debug, Default)]
pub struct Handoff {
    /// Writes hold it shared while they are proposed and committed; a hand-over holds it
    /// alone.
    gate: RwLock<()>,
    /// Set while the member must not campaign (`Group::campaigns`).
    quiet: AtomicBool,
    /// The term this member was last seen leading in, and since when (`Handoff::saw`).
    leading: Mutex<Option<(u64, Instant)>>,
}

/// Held by a write from its proposal to its answer; no hand-over starts meanwhile.
pub type WritePass<'a> = RwLockReadGuard<'a, ()>;

/// Why leadership was not handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoffError {
    /// This member does not lead; the leader it knows of.
    NotLeader(Option<NodeId>),
    /// `to` is not another voter of the group.
    NotAVoter(NodeId),
    /// It could not be done now (writes in flight, a follower behind, a lost campaign).
    Failed(String),
}

impl std::fmt::Display for HandoffError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandoffError::NotLeader(_) => f.write_str("this member does not lead its group"),
            HandoffError::NotAVoter(id) => write!(f, "node {id} is not another voter"),
            HandoffError::Failed(why) => f.write_str(why),
        }
    }
}

impl Handoff {
    /// A write's pass: at once, unless a hand-over is under way (then when it ends).
    pub async fn pass(&self) -> WritePass<'_> {
        self.gate.read().await
    }

    pub fn quiet(&self) -> bool {
        self.quiet.load(Ordering::Relaxed)
    }

    pub fn set_quiet(&self, quiet: bool) {
        self.quiet.store(quiet, Ordering::Relaxed);
    }

    /// Notes that the member leads in `term` now (the nudge's watcher calls it on each tick,
    /// every `CHECK_EVERY`), so a hand-over knows how long it has led.
    pub fn saw_leading(&self, term: u64) {
        let mut leading = self.leading.lock();
        if leading.is_none_or(|(seen, _)| seen != term) {
            *leading = Some((term, Instant::now()));
        }
    }

    /// How long a hand-over must wait before this leader (of `term`) grants another's vote:
    /// until its own lease from its election has run out. A leadership not seen yet is taken
    /// for new.
    fn own_lease_left(&self, term: u64) -> Duration {
        let lease = ms(LEASE_MS + super::nudge::CHECK_EVERY_MS);
        match *self.leading.lock() {
            Some((seen, since)) if seen == term => lease.saturating_sub(since.elapsed()),
            _ => lease,
        }
    }

    /// Hands `raft`'s leadership to voter `to`; `elect` asks `to` to campaign. Returns the
    /// leader the group has after it (`to`, unless another won).
    pub async fn hand_over<F>(
        &self,
        raft: &Raft<TypeConfig>,
        to: NodeId,
        elect: F,
    ) -> Result<NodeId, HandoffError>
    where
        F: Future<Output = Result<(), String>>,
    {
        let (me, term) = {
            let m = raft.metrics().borrow().clone();
            if m.state != ServerState::Leader {
                return Err(HandoffError::NotLeader(m.current_leader));
            }
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            if to == m.id || !voters.contains(&to) {
                return Err(HandoffError::NotAVoter(to));
            }
            (m.id, m.current_term)
        };
        // Within its lease the leader would refuse the vote itself, and the follower's
        // higher term would depose it all the same: an election's worth of no leader.
        tokio::time::sleep(self.own_lease_left(term)).await;
        let closed = tokio::time::timeout(ms(WRITES_IN_FLIGHT_MS), self.gate.write()).await;
        let Ok(_closed) = closed else {
            return Err(failed("the writes in flight did not finish in time"));
        };
        let last = raft.metrics().borrow().last_log_index.unwrap_or(0);
        let caught_up = raft
            .wait(Some(ms(CATCH_UP_MS)))
            .metrics(
                |m| m.state != ServerState::Leader || matched_index(m, to) >= last,
                "the follower holds the whole log",
            )
            .await
            .map_err(|_| failed(&format!("node {to} is behind the leader's log")))?;
        if caught_up.state != ServerState::Leader {
            return Err(HandoffError::NotLeader(caught_up.current_leader));
        }
        let voters = caught_up.membership_config.membership().voter_ids().count();
        // The follower's own vote and the leader's; the rest must have let their lease go.
        let silence = voters / 2 + 1 > 2;
        // Heartbeats come back however this ends, the caller giving up included.
        let _heartbeats = silence.then(|| Hushed::new(raft));
        if silence {
            tokio::time::sleep(ms(LEASE_MS)).await;
        }
        async {
            elect.await.map_err(|e| failed(&e))?;
            raft.wait(Some(ms(ELECTED_MS)))
                .metrics(
                    |m| m.current_leader.is_some_and(|l| l != me),
                    "another member leads",
                )
                .await
                .map(|m| m.current_leader.expect("waited for a leader"))
                .map_err(|_| failed(&format!("node {to} did not win its campaign in time")))
        }
        .await
    }
}

/// A leader's heartbeats, off while this lives.
struct Hushed<'a>(&'a Raft<TypeConfig>);

impl<'a> Hushed<'a> {
    fn new(raft: &'a Raft<TypeConfig>) -> Hushed<'a> {
        raft.runtime_config().heartbeat(false);
        Hushed(raft)
    }
}

impl Drop for Hushed<'_> {
    fn drop(&mut self) {
        self.0.runtime_config().heartbeat(true);
    }
}

/// The last log index a leader knows member `to` holds (0 for none, or if it does not lead).
pub(crate) fn matched_index(
    m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>,
    to: NodeId,
) -> u64 {
    let replication = m.replication.as_ref();
    let at = replication.and_then(|r| r.get(&to)).copied().flatten();
    at.map_or(0, |id| id.index)
}

fn failed(why: &str) -> HandoffError {
    HandoffError::Failed(why.to_string())
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
