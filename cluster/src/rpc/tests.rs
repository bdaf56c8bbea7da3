//! A shard's group of three members on three in-process nodes, talking over Flight on
//! loopback: writes replicate, a new leader takes over when the leader stops, and a member
//! that was away while the log was purged catches up through a snapshot.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::BasicNode;
use vecraft_storage::log::{Log, LogOptions};
use vecraft_storage::shard::{SearchRequest, Shard};

use super::{FlightNetwork, Peers, RaftService, search, serve};
use crate::raft::{Group, NodeId};
use crate::tests::{opts, row, schema};

const GROUP: &str = "items/0";
const DEADLINE: Duration = Duration::from_secs(30);

/// One node: its Flight server and its member of the group.
struct Node {
    id: NodeId,
    service: RaftService,
    shard: Arc<Shard>,
    group: Option<Group>,
}

impl Node {
    fn start(
        id: NodeId,
        dir: &Path,
        service: RaftService,
        initial: Option<BTreeMap<NodeId, BasicNode>>,
    ) -> Node {
        let (log, _) = Log::open(&dir.join("log"), LogOptions::default()).unwrap();
        let shard = Arc::new(Shard::open(&dir.join("shard"), Some(schema()), opts()).unwrap());
        let network = FlightNetwork::new(GROUP.into(), Peers::default());
        let group =
            Group::start_member(dir, Arc::new(log), Arc::clone(&shard), id, network, initial)
                .unwrap();
        service.register(GROUP.into(), group.raft().clone(), Arc::clone(&shard));
        Node {
            id,
            service,
            shard,
            group: Some(group),
        }
    }

    fn group(&self) -> &Group {
        self.group.as_ref().expect("running")
    }

    /// Stops this member (its server stays up and answers "no such group").
    fn stop(&mut self) {
        self.service.unregister(GROUP);
        self.group = None;
    }
}

/// Waits for `condition`, failing the test after the deadline.
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The running member every running member agrees leads.
fn leader(nodes: &[Node]) -> usize {
    let mut found = None;
    wait_for("a leader", || {
        let running: Vec<&Node> = nodes.iter().filter(|n| n.group.is_some()).collect();
        let claimed = running[0].group().leader();
        found = claimed.filter(|l| {
            running.iter().all(|n| n.group().leader() == Some(*l))
                && running.iter().any(|n| n.id == *l)
        });
        found.is_some()
    });
    let id = found.unwrap();
    nodes.iter().position(|n| n.id == id).unwrap()
}

fn write_rows(node: &Node, ids: std::ops::Range<i64>) {
    for id in ids {
        node.group().write(row(id).encode().unwrap()).unwrap();
    }
}

#[test]
fn a_group_replicates_fails_over_and_catches_up_by_snapshot() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let services: Vec<RaftService> = (0..3).map(|_| RaftService::default()).collect();
    let addrs: Vec<String> = services
        .iter()
        .map(|s| {
            serve(TcpListener::bind("127.0.0.1:0").unwrap(), s.clone())
                .unwrap()
                .to_string()
        })
        .collect();
    let members: BTreeMap<NodeId, BasicNode> = (0..3)
        .map(|i| (i as NodeId + 1, BasicNode::new(&addrs[i])))
        .collect();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let initial = (i == 0).then(|| members.clone());
            Node::start(
                i as NodeId + 1,
                dirs[i].path(),
                services[i].clone(),
                initial,
            )
        })
        .collect();

    // Writes through the leader reach every member.
    let first = leader(&nodes);
    write_rows(&nodes[first], 0..100);
    wait_for("100 rows on every member", || {
        nodes.iter().all(|n| n.shard.count() == 100)
    });
    let follower = (first + 1) % 3;
    let refused = nodes[follower].group().write(row(1000).encode().unwrap());
    assert!(refused.is_err(), "a follower does not take writes");

    // The leader stops; the other two elect one of themselves and go on.
    nodes[first].stop();
    let second = leader(&nodes);
    assert_ne!(second, first);
    write_rows(&nodes[second], 100..200);
    wait_for("200 rows on the two running members", || {
        nodes
            .iter()
            .filter(|n| n.group.is_some())
            .all(|n| n.shard.count() == 200)
    });

    // The new leader checkpoints: the log the stopped member lacks is purged, so it can only
    // catch up by installing a snapshot when it comes back.
    let purged_to = nodes[second].group().checkpoint().unwrap();
    assert!(
        purged_to >= 200,
        "the whole log up to the snapshot is purged: {purged_to}"
    );
    let back = Node::start(
        nodes[first].id,
        dirs[first].path(),
        services[first].clone(),
        None,
    );
    nodes[first] = back;
    wait_for("the returning member to catch up", || {
        nodes[first].shard.count() == 200
    });
    write_rows(&nodes[leader(&nodes)], 200..210);
    wait_for("210 rows everywhere", || {
        nodes.iter().all(|n| n.shard.count() == 210)
    });
}
