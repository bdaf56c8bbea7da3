//! A leader that hears from no quorum stands aside, so that the members who still hear one
//! another elect a leader that can commit.
//!
//! openraft 0.9 has no check-quorum. A leader whose messages reach its followers but whose
//! followers' answers do not reach it (a one-way cut, a half-broken link) keeps leading: its
//! heartbeats renew the followers' leases, so they refuse every other candidate, and no write
//! commits until the cut heals. Here a leader that has heard from no quorum for
//! `STAND_ASIDE_AFTER_MS`, and whose followers do not answer its pings either (`probe`):
//!
//! 1. goes silent (`Silence`: its network sends no entries, heartbeats or snapshots), so the
//!    followers' leases run out; its writes are refused as "not the leader" meanwhile;
//! 2. once they did (`LEASE_MS`), asks a follower to campaign (`shard.elect`; the leader's
//!    own messages may still get through), the one it last knew to hold the most of its log
//!    first, another one a lease later, and so on. The request names the leader's term, and
//!    a follower that saw a later one (it follows the leader elected meanwhile) declines;
//! 3. speaks again once it no longer leads (a higher term reached it, and it follows), once
//!    a quorum answered its pings late (below), or after `ASIDE_MAX_MS` in any case: a
//!    follower that was only catching up when it stood aside cannot win without its
//!    entries, and a leader nobody replaces must not stay silent.
//!
//! A leader whose followers all died stands aside as well, which costs nothing: it could not
//! commit. When they return and hear no one, they campaign, and it grants their votes.
//!
//! The pings tell a cut-off leader from one whose followers are slow. An AppendEntries
//! must be answered within a heartbeat (openraft's deadline), and a follower that was just
//! restarted and catches up on a loaded machine misses it again and again, though it is
//! there and takes the entries. A leader that stood aside then starved that follower of the
//! entries it needed to be elected, and a 5-node run went 5.3 s without writes. A quorum
//! that answers pings keeps the leader leading. A busy follower may answer late (a 3-node
//! run went 5.1 s without writes when one answered after `PROBE_MS`): the pings go on for
//! `PROBE_LATE_MS`, each retried if its connection broke, and a leader that stood aside
//! speaks again as soon as a quorum answered.

use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use openraft::{Raft, ServerState};
use tokio::sync::oneshot;

use super::client::enough_say_yes;
use super::{ELECT, Failure, GroupId, Peers, Silence};
use crate::raft::{NodeId, TypeConfig};

/// How long a leader may go without a quorum's acknowledgement before it stands aside (past
/// a heartbeat's round trip), and then `CONFIRM_MS` more of the same as its process runs:
/// 600 ms in all, two heartbeats missed. A follower gives a silent leader 1 s or more before
/// it campaigns on its own.
const STAND_ASIDE_AFTER_MS: u64 = 450;
/// A leader whose process was paused (or starved) finds its last acknowledgement old when it
/// runs again, though its followers are there: it counts as cut off only once it has been so
/// for this long while its watcher kept time.
const CONFIRM_MS: u64 = 150;
/// A voter's lease on its leader (openraft's `election_timeout_max`), and a margin for the
/// messages sent before the silence.
const LEASE_MS: u64 = crate::raft::ELECTION_TIMEOUT_MAX_MS + 100;
const CHECK_EVERY_MS: u64 = 100;
/// The longest a leader stands aside before it speaks again (three leases, two followers
/// asked to campaign): where none could be elected, silence would leave the group without a
/// leader for good. A follower that was catching up (its acknowledgements late) needs the
/// leader's entries to become eligible; a higher term the leader has not heard of reaches
/// it in the answers to its next messages.
const ASIDE_MAX_MS: u64 = 3 * LEASE_MS;
/// After it speaks again, the leader gives its followers this long to answer before it
/// counts itself cut off anew (two heartbeats).
const RESUME_GRACE_MS: u64 = 500;
/// How long a follower has to answer that it campaigns.
const ELECT_TTL: Duration = Duration::from_secs(1);
/// How long the followers have to answer the pings of a leader that looks cut off: it
/// stands aside at most this long after it first looked so (past `CONFIRM_MS`) when they
/// are really gone.
const PROBE_MS: u64 = 200;
/// How long the pings go on after that: a quorum's answers that come this late end the
/// stand-aside they could not prevent (before any follower was asked to campaign).
const PROBE_LATE_MS: u64 = 1_000;
/// The pause before a ping whose call failed (its connection broke) is sent again.
const PING_AGAIN_MS: u64 = 20;

type Metrics = openraft::RaftMetrics<NodeId, openraft::BasicNode>;

/// Watches member `node` of `group` (its core is `raft`, its network's switch `silence`) for
/// as long as the core runs.
pub(crate) fn stand_aside_when_cut_off(
    raft: Raft<TypeConfig>,
    silence: Silence,
    peers: Peers,
    group: GroupId,
    node: NodeId,
) {
    let mut watch = Watch {
        silence,
        peers,
        group,
        node,
        cut_off_since: None,
        probe: None,
        said_slow: false,
        aside: None,
        grace_until: None,
    };
    crate::raft::spawn(async move {
        let metrics = raft.metrics();
        let every = ms(CHECK_EVERY_MS);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_tick = Instant::now();
        loop {
            tick.tick().await;
            let late = last_tick.elapsed() > every * 3;
            last_tick = Instant::now();
            // A stopped core drops its metrics' sender.
            if metrics.has_changed().is_err() {
                watch.silence.set(false);
                return;
            }
            watch.look(&metrics.borrow(), late);
        }
    });
}

/// One member's watch.
struct Watch {
    silence: Silence,
    peers: Peers,
    group: GroupId,
    node: NodeId,
    /// Since when the member, leading, has been seen cut off on every look.
    cut_off_since: Option<Instant>,
    /// Answers once a quorum answered the pings sent when it first looked cut off; dropped
    /// unanswered if none did within `PROBE_LATE_MS`.
    probe: Option<oneshot::Receiver<()>>,
    /// Whether it said its followers are slow (they answer pings, not entries) since it
    /// last heard from a quorum: said once.
    said_slow: bool,
    /// Set while it stands aside.
    aside: Option<Aside>,
    /// Until when it is not judged (it has just spoken again).
    grace_until: Option<Instant>,
}

impl Watch {
    /// Looks at the member's metrics once; `late` says the look came late (the process was
    /// paused or starved), so what it sees is not held against the leader yet.
    fn look(&mut self, m: &Metrics, late: bool) {
        let (group, node, term) = (&self.group, self.node, m.current_term);
        if m.state != ServerState::Leader {
            self.cut_off_since = None;
            if self.aside.take().is_some() {
                self.silence.set(false);
                tracing::info!(group, node, term, "no longer leads: speaks again");
            }
            return;
        }
        if let Some(aside) = &mut self.aside {
            let why = if aside.since.elapsed() >= ms(ASIDE_MAX_MS) {
                "stood aside for the longest allowed"
            } else if aside.quorum_answered() {
                "a quorum answered the leader's pings late"
            } else {
                if let Some(to) = aside.next_to_urge(m) {
                    urge(&self.peers, m, group, to);
                }
                return;
            };
            self.aside = None;
            self.silence.set(false);
            self.cut_off_since = None;
            self.grace_until = Some(Instant::now() + ms(RESUME_GRACE_MS));
            tracing::info!(group, node, term, "{why}: speaks again");
            return;
        }
        if self.grace_until.is_some_and(|until| Instant::now() < until) {
            return;
        }
        if !cut_off(m) || late {
            self.cut_off_since = None;
            self.probe = None;
            if !late {
                self.said_slow = false;
            }
            return;
        }
        let since = match self.cut_off_since {
            Some(since) => since,
            None => {
                self.probe = Some(probe(&self.peers, m));
                *self.cut_off_since.insert(Instant::now())
            }
        };
        if since.elapsed() < ms(CONFIRM_MS) {
            return;
        }
        let heard_ms = m.millis_since_quorum_ack;
        match self.probe.as_mut().map(|answers| answers.try_recv()) {
            Some(Ok(())) => {
                // Slow followers, not a cut: judged again after a grace.
                self.cut_off_since = None;
                self.probe = None;
                self.grace_until = Some(Instant::now() + ms(RESUME_GRACE_MS));
                if !self.said_slow {
                    self.said_slow = true;
                    tracing::info!(
                        group,
                        node,
                        term,
                        heard_ms,
                        "no quorum acknowledged the leader's entries in time, but a quorum \
                         answers its pings: keeps leading"
                    );
                }
                return;
            }
            Some(Err(oneshot::error::TryRecvError::Empty))
                if since.elapsed() < ms(CONFIRM_MS + PROBE_MS) =>
            {
                return;
            }
            _ => {}
        }
        self.cut_off_since = None;
        self.said_slow = false;
        self.silence.set(true);
        self.aside = Some(Aside::new(self.probe.take()));
        tracing::warn!(
            group,
            node,
            term,
            heard_ms,
            "the leader heard from no quorum: stands aside"
        );
    }
}

/// Pings the leader's fellow voters (`PROBE_MS` and `PROBE_LATE_MS` from now): answers once
/// enough of them did to make a quorum with it.
fn probe(peers: &Peers, m: &Metrics) -> oneshot::Receiver<()> {
    let (others, needed) = crate::raft::fellow_voters(m, m.id);
    let (tx, rx) = oneshot::channel();
    let peers = peers.clone();
    crate::raft::spawn(async move {
        let pongs: FuturesUnordered<_> = others
            .iter()
            .map(|(_, addr)| ping_until_answered(&peers, addr))
            .collect();
        let limit = ms(PROBE_MS + PROBE_LATE_MS);
        if let Ok(true) = tokio::time::timeout(limit, enough_say_yes(pongs, needed)).await {
            let _ = tx.send(());
        }
    });
    rx
}

/// Pings `addr` until it answers (the caller's timeout ends it): a call that failed at once
/// broke a connection the peer's restart left behind, and the next one connects afresh.
async fn ping_until_answered(peers: &Peers, addr: &str) -> bool {
    while super::ping(peers, addr).await.is_none() {
        tokio::time::sleep(ms(PING_AGAIN_MS)).await; // pace a peer that refuses at once
    }
    true
}

/// Whether a leader of more than one voter has heard from no quorum for too long.
fn cut_off(m: &Metrics) -> bool {
    let voters = m.membership_config.membership().voter_ids().count();
    voters > 1
        && m.millis_since_quorum_ack
            .is_some_and(|ms| ms > STAND_ASIDE_AFTER_MS)
}

/// A leader standing aside: since when, how many followers it asked to campaign, and the
/// pings that may still be answered.
struct Aside {
    since: Instant,
    urged: u64,
    probe: Option<oneshot::Receiver<()>>,
}

impl Aside {
    fn new(probe: Option<oneshot::Receiver<()>>) -> Aside {
        Aside {
            since: Instant::now(),
            urged: 0,
            probe,
        }
    }

    /// Whether a quorum answered the pings late, before any follower was asked to campaign
    /// (one asked may be elected; the leader then hears of its term).
    fn quorum_answered(&mut self) -> bool {
        self.urged == 0
            && self
                .probe
                .as_mut()
                .is_some_and(|answers| answers.try_recv().is_ok())
    }

    /// The follower to ask to campaign now, if one is due: one per lease, after the first,
    /// in the order of how much of the log the leader last knew each to hold.
    fn next_to_urge(&mut self, m: &Metrics) -> Option<NodeId> {
        let due_ms = LEASE_MS * (self.urged + 1);
        if self.since.elapsed() < ms(due_ms) {
            return None;
        }
        let mut followers: Vec<(u64, NodeId)> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != m.id)
            .map(|id| (crate::raft::matched_index(m, id), id))
            .collect();
        // Most caught up first; the lower id among equals.
        followers.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let pick = followers.get((self.urged as usize) % followers.len().max(1))?;
        self.urged += 1;
        Some(pick.1)
    }
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Asks follower `to` to campaign, without waiting for its answer (which a one-way cut may
/// swallow).
fn urge(peers: &Peers, m: &Metrics, group: &GroupId, to: NodeId) {
    let membership = m.membership_config.membership();
    let Some(addr) = membership.get_node(&to).map(|n| n.addr.clone()) else {
        return;
    };
    let (peers, group, node, term) = (peers.clone(), group.clone(), m.id, m.current_term);
    tracing::info!(group, node, to, "asks a follower to campaign");
    crate::raft::spawn(async move {
        // Refused by a follower that saw a later term: another leader was elected meanwhile.
        let body = (group, term);
        let _ = peers
            .call::<_, Result<(), Failure>>(&addr, ELECT, &body, ELECT_TTL)
            .await;
    });
}
