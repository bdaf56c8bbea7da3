//! A follower that hears nothing from a leader campaigns within `NUDGE_AFTER_MS` or a little
//! more, whatever openraft's own timer says.
//!
//! openraft campaigns once a follower's lease and election timeout have passed (1.2 to 1.6 s
//! here), but a node whose earlier campaign was refused for a shorter log waits twice the
//! longest election timeout more before its next one, and keeps that penalty until it
//! campaigns again, however long after. In the nemesis, a follower penalised so during an
//! earlier fault waited 3 s after its leader was paused, while the only other follower had
//! the shorter log and could not win: writes stopped for 3 s instead of 1.5. Triggering the
//! election here skips the penalty; the vote itself still goes to the longer log.
//!
//! "Heard" is any message of a leader: entries, heartbeats, snapshot chunks and the install
//! that follows them (`Heard::touch`, called by the Flight server). Only a follower is
//! nudged: a candidate's next campaigns are openraft's (a node cut off from the others would
//! otherwise raise its term over and over, and depose the leader it rejoins the higher).
//! Leaders and learners never campaign, nor does a member of a draining node or a member
//! its group replaced (`Group::campaigns`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::{Raft, ServerState};

use super::handoff::Handoff;
use super::{NodeId, TypeConfig};

/// How long a voter may go without word from a leader before it campaigns itself: past its
/// lease and longest election timeout (1.6 s), plus a random part of `NUDGE_JITTER_MS`, so
/// the followers of one leader do not all campaign at once and split the vote.
const NUDGE_AFTER_MS: u64 = 1_600;
const NUDGE_JITTER_MS: u64 = 400;
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

    fn silent_ms(&self) -> u64 {
        let now = self.since.elapsed().as_millis() as u64;
        now.saturating_sub(self.at_ms.load(Ordering::Relaxed))
    }
}

/// Watches member `node` of `group` until its core stops, campaigning when it has heard
/// nothing from a leader for too long.
pub(super) fn watch(
    raft: Raft<TypeConfig>,
    heard: Arc<Heard>,
    handoff: Arc<Handoff>,
    group: String,
    node: NodeId,
) {
    let metrics = raft.metrics();
    let patience_ms = NUDGE_AFTER_MS + rand::random_range(0..NUDGE_JITTER_MS);
    super::spawn(async move {
        heard.touch();
        let mut tick = tokio::time::interval(Duration::from_millis(CHECK_EVERY_MS));
        loop {
            tick.tick().await;
            // A stopped core drops its metrics' sender.
            if metrics.has_changed().is_err() {
                return;
            }
            let campaigns = {
                let m = metrics.borrow();
                if m.state == ServerState::Leader {
                    handoff.saw_leading(m.current_term);
                }
                let voter = m
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == node);
                voter && m.state == ServerState::Follower && !handoff.quiet()
            };
            if !campaigns {
                heard.touch();
                continue;
            }
            let silent_ms = heard.silent_ms();
            if silent_ms < patience_ms {
                continue;
            }
            tracing::info!(group, node, silent_ms, "no word from a leader: campaigning");
            // The next nudge comes no sooner than the same silence again.
            heard.touch();
            let _ = raft.trigger().elect().await;
        }
    });
}
