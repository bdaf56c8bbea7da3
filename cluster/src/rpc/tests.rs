//! A shard's group of three members on three in-process nodes, talking over Flight on
//! loopback: writes replicate, a new leader takes over when the leader stops, and a member
//! that was away while the log was purged catches up through a snapshot.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use openraft::BasicNode;
use vecraft_storage::shard::{Applied, SearchRequest, Shard};

use super::{Failure, GroupId, Peers, RaftService, ReadKind, ReadTicket, WRITE, serve};
use crate::local::LocalShard;
use crate::raft::{Group, NodeId};
use crate::read::Consistency;
use crate::tests::{opts, row, schema};

const GROUP: &str = "items.1.0";
const DEADLINE: Duration = Duration::from_secs(30);

/// One node: its Flight server and its member of the group.
struct Node {
    id: NodeId,
    addr: String,
    service: RaftService,
    member: Option<Arc<LocalShard>>,
}

impl Node {
    fn start(
        id: NodeId,
        addr: &str,
        dir: &Path,
        service: RaftService,
        initial: Option<BTreeMap<NodeId, BasicNode>>,
    ) -> Node {
        let member = LocalShard::open_member(
            dir,
            Some(schema()),
            opts(),
            (GROUP.into(), id),
            Peers::default(),
            initial,
        )
        .unwrap();
        let member = Arc::new(member);
        service.register(GROUP.into(), Arc::clone(&member));
        Node {
            id,
            addr: addr.to_string(),
            service,
            member: Some(member),
        }
    }

    fn group(&self) -> &Group {
        self.member.as_ref().expect("running").group()
    }

    fn shard(&self) -> &Arc<Shard> {
        self.member.as_ref().expect("running").shard()
    }

    /// Stops this member (its server stays up and answers "no such group").
    fn stop(&mut self) {
        self.service.unregister(GROUP);
        self.member = None;
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
        let running: Vec<&Node> = nodes.iter().filter(|n| n.member.is_some()).collect();
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
                &addrs[i],
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
        nodes.iter().all(|n| n.shard().count() == 100)
    });
    let follower = (first + 1) % 3;
    let refused = nodes[follower].group().write(row(1000).encode().unwrap());
    assert!(refused.is_err(), "a follower does not take writes");
    let peers = Peers::default();
    let body = (GROUP.to_string(), row(1000).encode().unwrap());
    let answer = write(&peers, &nodes[follower].addr, &body);
    let leader_id = nodes[first].id;
    assert_eq!(
        answer,
        Err(Failure::NotLeader(Some(leader_id))),
        "and names the leader"
    );
    let answer = write(&peers, &nodes[first].addr, &body);
    assert!(
        answer.unwrap().1 > 100,
        "the leader takes it, at its log index"
    );
    reads_agree(&nodes, first, &peers);

    // The leader stops; the other two elect one of themselves and go on.
    nodes[first].stop();
    let second = leader(&nodes);
    assert_ne!(second, first);
    write_rows(&nodes[second], 100..200);
    wait_for("201 rows on the two running members", || {
        nodes
            .iter()
            .filter(|n| n.member.is_some())
            .all(|n| n.shard().count() == 201)
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
        &addrs[first],
        dirs[first].path(),
        services[first].clone(),
        None,
    );
    nodes[first] = back;
    wait_for("the returning member to catch up", || {
        nodes[first].shard().count() == 201
    });
    write_rows(&nodes[leader(&nodes)], 200..210);
    wait_for("211 rows everywhere", || {
        nodes.iter().all(|n| n.shard().count() == 211)
    });
}

/// Waits for a call on the groups' runtime (where the pooled channels live).
fn block_on<T: Send + 'static>(call: impl Future<Output = T> + Send + 'static) -> T {
    crate::raft::run(call).unwrap()
}

fn run<T: Send + 'static>(
    call: impl Future<Output = Result<T, super::CallError>> + Send + 'static,
) -> T {
    block_on(call).unwrap()
}

fn write(peers: &Peers, addr: &str, body: &(String, Vec<u8>)) -> Result<(Applied, u64), Failure> {
    let (peers, addr, body) = (peers.clone(), addr.to_string(), body.clone());
    run(async move { peers.call(&addr, WRITE, &body, DEADLINE).await })
}

fn read(
    peers: &Peers,
    addr: &str,
    ticket: &ReadTicket,
) -> Result<Vec<RecordBatch>, super::CallError> {
    let (peers, addr, ticket) = (peers.clone(), addr.to_string(), ticket.clone());
    block_on(async move { peers.read(&addr, &ticket, DEADLINE).await })
}

/// Every replica answers an `eventual` search as the leader answers a `strong` one; a
/// follower refuses a `strong` read and names the leader.
fn reads_agree(nodes: &[Node], leader: usize, peers: &Peers) {
    let ticket = |read| ReadTicket {
        group: GroupId::from(GROUP),
        read,
        min_applied: 0,
        kind: ReadKind::Search(SearchRequest::new("v", vec![0.05, 1.0, 2.0, 3.0], 5)),
    };
    wait_for("every member applied the 101st row", || {
        nodes.iter().all(|n| n.shard().count() == 101)
    });
    let strong = ticket(Consistency::Strong);
    let want = read(peers, &nodes[leader].addr, &strong).unwrap().remove(0);
    let ReadKind::Search(request) = &strong.kind else {
        unreachable!()
    };
    let local = nodes[leader].shard().search(request).unwrap();
    assert_eq!(want.num_rows(), 5);
    assert_eq!(want, local, "over Flight as in process");
    for node in nodes {
        let got = read(peers, &node.addr, &ticket(Consistency::Eventual)).unwrap();
        assert_eq!(got, [want.clone()], "node {}", node.id);
    }
    let follower = &nodes[(leader + 1) % nodes.len()];
    let refused = read(peers, &follower.addr, &strong);
    let leader_id = nodes[leader].id;
    assert!(
        matches!(refused, Err(super::CallError::Failed(Failure::NotLeader(Some(id)))) if id == leader_id),
        "{refused:?}"
    );
}
