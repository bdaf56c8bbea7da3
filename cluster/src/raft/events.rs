//! What a member of a cluster's Raft group tells the node's log: elections, leader changes,
//! membership changes and snapshots, each line with the group and the node, read from
//! openraft's metrics as they change. An operator reading a node's log after a fault sees who
//! led which group when, and which replicas came and went. Levels follow `RUST_LOG` (the
//! binary sets the subscriber). A member first logs the state it started from (a restarted
//! node's saved term and leader are history, not news), then each change; a member whose core
//! stopped on an error says so at error level. `vecraft serve`'s one-member groups log nothing.
//!
//! openraft publishes its metrics on every turn of its core (heartbeats, appends), so a
//! reading is first compared on the few fields told apart, without allocating.

use openraft::Raft;

use super::{NodeId, TypeConfig};

type Metrics = openraft::RaftMetrics<NodeId, openraft::BasicNode>;

/// What the log tells apart, from one reading of a member's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Seen {
    pub term: u64,
    pub leader: Option<NodeId>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// The index of the member's last snapshot (built here or installed from the leader).
    pub snapshot: Option<u64>,
}

impl Seen {
    fn read(m: &Metrics) -> Seen {
        let membership = m.membership_config.membership();
        Seen {
            term: m.current_term,
            leader: m.current_leader,
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            snapshot: m.snapshot.map(|id| id.index),
        }
    }
}

/// The fields `Seen` is made of, as cheap to compare: the membership by the entry that set it.
type Key = (u64, Option<NodeId>, Option<u64>, Option<u64>, bool);

fn key(m: &Metrics) -> Key {
    let membership_at = m.membership_config.log_id().map(|id| id.index);
    let snapshot = m.snapshot.map(|id| id.index);
    let stopped = m.running_state.is_err();
    (
        m.current_term,
        m.current_leader,
        membership_at,
        snapshot,
        stopped,
    )
}

/// What one line of the log tells (`log` words it, at info).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// A new term began and no leader is known yet: an election runs.
    Election {
        term: u64,
    },
    LeaderChanged {
        term: u64,
        leader: NodeId,
    },
    MembershipChanged {
        voters: Vec<NodeId>,
        learners: Vec<NodeId>,
    },
    Snapshot {
        index: u64,
    },
}

/// The events between two readings of one member's metrics, in the order they are told.
pub(super) fn events(before: &Seen, now: &Seen) -> Vec<Event> {
    let mut events = Vec::new();
    let leader_changed = now.leader != before.leader;
    if now.term != before.term && now.leader.is_none() {
        events.push(Event::Election { term: now.term });
    }
    if let Some(leader) = now.leader
        && (leader_changed || now.term != before.term)
    {
        events.push(Event::LeaderChanged {
            term: now.term,
            leader,
        });
    }
    if now.voters != before.voters || now.learners != before.learners {
        events.push(Event::MembershipChanged {
            voters: now.voters.clone(),
            learners: now.learners.clone(),
        });
    }
    if let Some(index) = now.snapshot
        && now.snapshot != before.snapshot
    {
        events.push(Event::Snapshot { index });
    }
    events
}

/// Logs the events of member `node` of `group` for as long as it runs.
pub(super) fn watch(raft: &Raft<TypeConfig>, group: String, node: NodeId) {
    let mut metrics = raft.metrics();
    super::spawn(async move {
        let (mut last, mut seen) = {
            let m = metrics.borrow_and_update();
            (key(&m), Seen::read(&m))
        };
        tracing::info!(group, node, term = seen.term, leader = ?seen.leader,
            voters = ?seen.voters, learners = ?seen.learners, "member started");
        // A stopped group drops its metrics' sender.
        while metrics.changed().await.is_ok() {
            let (now, stopped) = {
                let m = metrics.borrow_and_update();
                let now = key(&m);
                if now == last {
                    continue;
                }
                last = now;
                (
                    Seen::read(&m),
                    m.running_state.as_ref().err().map(|e| e.to_string()),
                )
            };
            for event in events(&seen, &now) {
                log(&group, node, event);
            }
            seen = now;
            if let Some(error) = stopped {
                tracing::error!(group, node, error, "member stopped");
                return;
            }
        }
    });
}

fn log(group: &str, node: NodeId, event: Event) {
    match event {
        Event::Election { term } => tracing::info!(group, node, term, "election"),
        Event::LeaderChanged { term, leader } => {
            tracing::info!(group, node, term, leader, "leader changed")
        }
        Event::MembershipChanged { voters, learners } => {
            tracing::info!(group, node, ?voters, ?learners, "membership changed")
        }
        Event::Snapshot { index } => tracing::info!(group, node, index, "snapshot taken"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(term: u64, leader: Option<NodeId>, voters: &[NodeId]) -> Seen {
        Seen {
            term,
            leader,
            voters: voters.to_vec(),
            ..Seen::default()
        }
    }

    #[test]
    fn a_failover_reads_as_an_election_then_a_new_leader() {
        let led = seen(3, Some(1), &[1, 2, 3]);
        let electing = seen(4, None, &[1, 2, 3]);
        let new = seen(4, Some(2), &[1, 2, 3]);
        assert_eq!(events(&led, &led), vec![]);
        assert_eq!(events(&led, &electing), vec![Event::Election { term: 4 }]);
        assert_eq!(
            events(&electing, &new),
            vec![Event::LeaderChanged { term: 4, leader: 2 }]
        );
        // A leader re-elected in a later term is told too; a snapshot and a new member are.
        let mut again = seen(5, Some(2), &[2, 3, 4]);
        again.snapshot = Some(120);
        assert_eq!(
            events(&new, &again),
            vec![
                Event::LeaderChanged { term: 5, leader: 2 },
                Event::MembershipChanged {
                    voters: vec![2, 3, 4],
                    learners: vec![]
                },
                Event::Snapshot { index: 120 },
            ]
        );
    }
}
