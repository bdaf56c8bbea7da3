//! Starts the campaigns of a cluster's member: one that hears nothing from a leader for
//! `FIRST_AFTER_MS` (and a random part of `FIRST_JITTER_MS`, drawn afresh each time) asks
//! the other voters first (`prevote.rs`), and campaigns when a majority would vote for it;
//! while no leader is heard it tries again every `RETRY_AFTER_MS` and a fresh random part of
//! `RETRY_JITTER_MS`. openraft's own election timer is off for such members
//! (`Group::start_member`): it draws each member's timeout once, at start, and makes a member
//! once refused for a shorter log wait twice the longest election timeout more, until its
//! timer (not a triggered campaign) next fires.
//!
//! "Heard" is any message of a leader: entries, heartbeats, snapshot chunks and the install
//! that follows them (`Heard::touch`, called by the Flight server). Leaders and learners never
//! campaign, nor does a member of a draining node or a member its group replaced
//! (`Group::campaigns`); a leader counts as hearing itself, so it says no to a pre-vote for
//! a lease after it stops leading.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::sync::{Arc, Weak};

use openraft::{Raft, ServerState};
use vecraft_storage::log::Log;

use super::handoff::Handoff;
use super::prevote::{PreVote, SharedCanvass};
use super::{NodeId, TypeConfig};

/// The first campaign comes this long after the last word of a leader, past the voters'
/// lease on it (800 ms; four heartbeats missed), and a random part of `FIRST_JITTER_MS`, so
/// that the followers of one leader do not all ask at once.
const FIRST_AFTER_MS: u64 = 1_000;
const FIRST_JITTER_MS: u64 = 300;
/// While still no leader is heard, the next try comes this long after the last one, and a
/// random part of `RETRY_JITTER_MS`.
const RETRY_AFTER_MS: u64 = 300;
const RETRY_JITTER_MS: u64 = 400;
/// How often the silence is checked (and a leadership noted, `Handoff::saw_leading`).
pub(super) const CHECK_EVERY_MS: u64 = 100;

/// When this member last heard from a leader.
#[derive(Debug)]
pub struct Heard {
    since: Instant,
    at_ms: AtomicU64,
}

impl Heard {
    pub fn new() -> Heard {
        Heard {
            since: Instant::now(),
            at_ms: AtomicU64::new(0),
        }
    }

    /// A leader's message arrived.
    pub fn touch(&self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.at_ms.fetch_max(now, Ordering::Relaxed);
    }

    pub(super) fn silent_ms(&self) -> u64 {
        let now = self.since.elapsed().as_millis() as u64;
        now.saturating_sub(self.at_ms.load(Ordering::Relaxed))
    }
}

/// What the nudge of one member works with.
pub(super) struct Nudge {
    pub raft: Raft<TypeConfig>,
    /// The member's log, to read its last entry's id from.
    pub log: Weak<Log>,
    pub heard: Arc<Heard>,
    pub handoff: Arc<Handoff>,
    pub canvass: SharedCanvass,
    pub group: String,
    pub node: NodeId,
}

/// Watches the member until its core stops, campaigning when it has heard nothing from a
/// leader for too long and a majority would vote for it.
pub(super) fn watch(nudge: Nudge) {
    let metrics = nudge.raft.metrics();
    super::spawn(async move {
        nudge.heard.touch();
        let mut tick = tokio::time::interval(Duration::from_millis(CHECK_EVERY_MS));
        // The silence (in ms) at which the next try is due; reset when a leader is heard.
        let mut due_ms = first_due_ms();
        let mut last_silent_ms = 0;
        loop {
            tick.tick().await;
            // A stopped core drops its metrics' sender.
            if metrics.has_changed().is_err() {
                return;
            }
            let candidate = {
                let m = metrics.borrow();
                let voter = m
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == nudge.node);
                if m.state == ServerState::Leader {
                    nudge.handoff.saw_leading(m.current_term);
                    nudge.heard.touch();
                }
                m.state != ServerState::Leader && voter && !nudge.handoff.quiet()
            };
            let silent_ms = nudge.heard.silent_ms();
            if silent_ms < last_silent_ms {
                due_ms = first_due_ms(); // a leader spoke since the last look
            }
            last_silent_ms = silent_ms;
            if !candidate || silent_ms < due_ms {
                continue;
            }
            due_ms = silent_ms + RETRY_AFTER_MS + rand::random_range(0..RETRY_JITTER_MS);
            let (others, needed) = super::fellow_voters(&metrics.borrow(), nudge.node);
            if nudge.would_win(others, needed).await {
                tracing::info!(
                    group = nudge.group,
                    node = nudge.node,
                    silent_ms,
                    "no word from a leader, and a majority would vote for this member: campaigning"
                );
                let _ = nudge.raft.trigger().elect().await;
            }
        }
    });
}

fn first_due_ms() -> u64 {
    FIRST_AFTER_MS + rand::random_range(0..FIRST_JITTER_MS)
}

impl Nudge {
    /// Whether a majority of the voters (this member included) would vote for it now:
    /// `needed` of the `others`.
    async fn would_win(&self, others: Vec<(NodeId, String)>, needed: usize) -> bool {
        if needed == 0 {
            return true;
        }
        let Ok(last_log_id) = super::prevote::last_log_id(&self.log) else {
            return false;
        };
        let ask = PreVote {
            candidate: self.node,
            last_log_id,
        };
        let yes = self.canvass.canvass(others, ask, needed).await;
        if !yes {
            tracing::debug!(
                group = self.group,
                node = self.node,
                "a pre-vote found no majority"
            );
        }
        yes
    }
}
