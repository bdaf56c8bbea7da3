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
use vecraft_storage::command::Command;
use vecraft_storage::key::Key;
use vecraft_storage::shard::{Applied, SearchRequest, Shard};
use vecraft_storage::txn::TxnWrite;

use super::{
    ClusterSecret, Failure, GroupId, Peers, RaftService, ReadKind, ReadTicket, WRITE, serve,
};
use crate::local::LocalShard;
use crate::raft::{Group, NodeId, Spool};
use crate::read::Consistency;
use crate::tests::{opts, row, schema};

const GROUP: &str = "items.1.0";

/// The test cluster's secret.
fn secret() -> ClusterSecret {
    ClusterSecret::new("rpc-tests-cluster-secret-0123456789").unwrap()
}
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
            Peers::new(secret()),
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

/// Three nodes serving Flight on loopback, each with its member of the group.
struct Group3 {
    dirs: Vec<tempfile::TempDir>,
    services: Vec<RaftService>,
    addrs: Vec<String>,
    nodes: Vec<Node>,
}

fn start_group() -> Group3 {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let services: Vec<RaftService> = (0..3).map(|_| RaftService::default()).collect();
    let addrs: Vec<String> = services
        .iter()
        .map(|s| {
            serve(
                TcpListener::bind("127.0.0.1:0").unwrap(),
                s.clone(),
                secret(),
            )
            .unwrap()
            .to_string()
        })
        .collect();
    let members: BTreeMap<NodeId, BasicNode> = (0..3)
        .map(|i| (i as NodeId + 1, BasicNode::new(&addrs[i])))
        .collect();
    let nodes: Vec<Node> = (0..3)
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
    Group3 {
        dirs,
        services,
        addrs,
        nodes,
    }
}

#[test]
fn a_group_replicates_fails_over_and_catches_up_by_snapshot() {
    let Group3 {
        dirs,
        services,
        addrs,
        mut nodes,
    } = start_group();

    // Writes through the leader reach every member.
    let first = leader(&nodes);
    write_rows(&nodes[first], 0..100);
    wait_for("100 rows on every member", || {
        nodes.iter().all(|n| n.shard().count() == 100)
    });
    let follower = (first + 1) % 3;
    let refused = nodes[follower].group().write(row(1000).encode().unwrap());
    assert!(refused.is_err(), "a follower does not take writes");
    let peers = Peers::new(secret());
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
    // The rows show as the snapshot is installed; openraft publishes its metrics a moment
    // later: wait for both.
    wait_for("the returning member to catch up", || {
        let snapshot = nodes[first].group().raft().metrics().borrow().snapshot;
        nodes[first].shard().count() == 201 && snapshot.is_some()
    });
    let installed = nodes[first].group().raft().metrics().borrow().snapshot;
    assert!(
        installed.is_some_and(|id| id.index >= purged_to),
        "it caught up by a snapshot: {installed:?}"
    );
    assert_eq!(
        Spool::count(dirs[first].path()),
        0,
        "whose spool file is gone"
    );
    write_rows(&nodes[leader(&nodes)], 200..210);
    wait_for("211 rows everywhere", || {
        nodes.iter().all(|n| n.shard().count() == 211)
    });
}

#[test]
fn a_leader_cut_off_from_its_quorum_gives_up_the_writes_waiting_on_it() {
    // The directories are kept to the end.
    let Group3 {
        dirs: _dirs,
        mut nodes,
        ..
    } = start_group();
    let first = leader(&nodes);
    write_rows(&nodes[first], 0..10);
    // Both followers go; the leader, still reachable, cannot commit anything.
    for i in (0..3).filter(|i| *i != first) {
        nodes[i].stop();
    }
    let peers = Peers::new(secret());
    let body = (GROUP.to_string(), row(10).encode().unwrap());
    let sent = Instant::now();
    let answer = write(&peers, &nodes[first].addr, &body);
    let waited = sent.elapsed();
    let Err(Failure::Unavailable(why)) = answer else {
        panic!("the write is given up: {answer:?}");
    };
    assert!(why.contains("heard from no quorum"), "{why}");
    // At the cut-off (2 s after the last acknowledgement, which came just before the
    // followers went), far inside the call's deadline.
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "answered after {waited:?}"
    );
    // What was committed before stays.
    assert_eq!(nodes[first].shard().count(), 10);
}

/// The leader hands its leadership to the follower it is told: every member then names that
/// follower, the old leader refuses writes for it, and writes sent throughout are each either
/// taken or refused as "not the leader" (never proposed, so retried), none of unknown
/// outcome, none lost.
#[test]
fn leadership_is_handed_to_the_follower_chosen() {
    let Group3 {
        dirs: _dirs,
        addrs,
        nodes,
        ..
    } = start_group();
    let first = leader(&nodes);
    let peers = Peers::new(secret());
    let to = (first + 1) % 3;
    let to_id = nodes[to].id;

    // Refused: by a follower, and for a member that is not another voter.
    let refused = hand_over(&peers, &addrs[to], nodes[first].id);
    assert!(
        matches!(refused, Err(Failure::NotLeader(Some(id))) if id == nodes[first].id),
        "{refused:?}"
    );
    for not_another_voter in [nodes[first].id, 9] {
        let refused = hand_over(&peers, &addrs[first], not_another_voter);
        assert!(
            matches!(refused, Err(Failure::Unavailable(_))),
            "{refused:?}"
        );
    }

    // A writer keeps writing, following "not the leader" answers, as the router does.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (peers, addrs, stop) = (peers.clone(), addrs.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let (mut at, mut acked, mut refused) = (first, Vec::new(), 0);
            let mut id = 1_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = (GROUP.to_string(), row(id).encode().unwrap());
                match write(&peers, &addrs[at], &body) {
                    Ok(_) => {
                        acked.push(id);
                        id += 1;
                    }
                    Err(Failure::NotLeader(leader)) => {
                        refused += 1;
                        at = leader.map_or((at + 1) % 3, |l| l as usize - 1);
                    }
                    Err(other) => panic!("write {id}: {other:?}"),
                }
            }
            (acked, refused)
        })
    };
    wait_for("the writer to take 50 rows", || {
        nodes[first].shard().count() >= 50
    });
    let started = Instant::now();
    let handed = hand_over(&peers, &addrs[first], to_id);
    let took = started.elapsed();
    assert_eq!(handed, Ok(to_id), "handed over in {took:?}");
    // A leader that was elected less than a lease ago waits out the rest of it first.
    assert!(took < Duration::from_secs(3), "handed over in {took:?}");
    assert_eq!(nodes[leader(&nodes)].id, to_id, "every member names it");
    let before = nodes[to].shard().count();
    wait_for("the writer to write through the new leader", || {
        nodes[to].shard().count() >= before + 50
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, refused) = writer.join().unwrap();
    assert!(refused > 0, "the old leader sent the writer on");
    let body = (GROUP.to_string(), row(1).encode().unwrap());
    assert_eq!(
        write(&peers, &addrs[first], &body),
        Err(Failure::NotLeader(Some(to_id))),
        "the old leader names the new one"
    );
    let want = acked.len() as u64;
    wait_for("every acknowledged write on every member", || {
        nodes.iter().all(|n| n.shard().count() == want)
    });
}

fn hand_over(peers: &Peers, addr: &str, to: NodeId) -> Result<NodeId, Failure> {
    let (peers, addr) = (peers.clone(), addr.to_string());
    let body = (GROUP.to_string(), to);
    run(async move { peers.call(&addr, super::HAND_OVER, &body, DEADLINE).await })
}

/// Replicas that sealed and merged at different entries judge a transaction's commit alike:
/// a row's version is the index that wrote it, not where the replica keeps it.
#[test]
fn replicas_that_sealed_at_different_entries_decide_commits_alike() {
    let group = start_group();
    let nodes = &group.nodes;
    let first = leader(nodes);
    write_rows(&nodes[first], 0..20);
    wait_for("20 rows on every member", || {
        nodes.iter().all(|n| n.shard().count() == 20)
    });
    let follower = &nodes[(first + 1) % 3];
    follower.group().checkpoint().unwrap(); // seals rows 0..20 there alone
    write_rows(&nodes[first], 20..40);
    wait_for("40 rows on every member", || {
        nodes.iter().all(|n| n.shard().count() == 40)
    });
    follower.group().checkpoint().unwrap();
    let segments = follower.shard().segments();
    let sealed: Vec<u64> = segments
        .iter()
        .filter(|s| s.state == "sealed")
        .map(|s| s.id)
        .collect();
    assert_eq!(sealed.len(), 2, "{segments:?}");
    follower.shard().compact(&sealed).unwrap();

    // A transaction updates row 5 as it read it on the leader, then one with a stale version.
    let version = |shard: &Shard| versions(shard)[5].1;
    let read = version(nodes[first].shard());
    let update = |version: u64| {
        let Command::Upsert(batch) = row(5) else {
            unreachable!("row makes an upsert")
        };
        Command::Atomic(TxnWrite {
            upserts: Some(batch),
            read_versions: vec![(Key::Int(5), version)],
            ..TxnWrite::default()
        })
        .encode()
        .unwrap()
    };
    nodes[first].group().write(update(read)).unwrap();
    let stale = nodes[first].group().write(update(read));
    assert!(stale.is_err(), "a commit on a changed row is refused");
    write_rows(&nodes[first], 40..41);
    wait_for("every member applied the last write", || {
        nodes.iter().all(|n| n.shard().count() == 41)
    });
    let want = versions(nodes[first].shard());
    assert_ne!(want[5].1, read, "the update gave row 5 a new version");
    for node in nodes {
        assert_eq!(versions(node.shard()), want, "node {}", node.id);
    }
}

/// Every row's (id, version), by id.
fn versions(shard: &Shard) -> Vec<(i64, u64)> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Int64Type, UInt64Type};

    let projection = [
        "id".to_string(),
        vecraft_storage::shard::VERSION_COLUMN.to_string(),
    ];
    let mut out = Vec::new();
    for batch in shard.scan(Some(&projection), None).unwrap() {
        let ids = batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        let versions = batch
            .column(1)
            .as_primitive::<UInt64Type>()
            .values()
            .to_vec();
        out.extend(ids.into_iter().zip(versions));
    }
    out.sort_unstable();
    out
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
        assert_eq!(got, std::slice::from_ref(&want), "node {}", node.id);
    }
    let follower = &nodes[(leader + 1) % nodes.len()];
    let refused = read(peers, &follower.addr, &strong);
    let leader_id = nodes[leader].id;
    assert!(
        matches!(refused, Err(super::CallError::Failed(Failure::NotLeader(Some(id)))) if id == leader_id),
        "{refused:?}"
    );
}

/// Without the cluster's secret, or with another cluster's, no call gets past the headers:
/// not a read, not a write, not a Raft message.
#[test]
fn calls_without_the_cluster_secret_are_refused() {
    use arrow_flight::flight_service_client::FlightServiceClient;
    use arrow_flight::{Action, Ticket};

    let service = RaftService::default();
    let addr = serve(TcpListener::bind("127.0.0.1:0").unwrap(), service, secret()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = FlightServiceClient::new(channel);
        let body = postcard::to_stdvec(&(GROUP.to_string(), row(1).encode().unwrap())).unwrap();
        let write = Action {
            r#type: WRITE.into(),
            body: body.into(),
        };
        let refused = client.do_action(write.clone()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
        let ticket = Ticket {
            ticket: vec![0u8; 16].into(),
        };
        let refused = client.do_get(ticket).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
        let mut forged = tonic::Request::new(write);
        ClusterSecret::generate().sign(&mut forged);
        let refused = client.do_action(forged).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
    });
    // The cluster's own peers get through (the node answers, here: no such group).
    let peers = Peers::new(secret());
    let answer = write(
        &peers,
        &addr.to_string(),
        &(GROUP.to_string(), row(1).encode().unwrap()),
    );
    assert_eq!(answer, Err(Failure::NoGroup));
}

/// A member of the cluster that sends a snapshot of garbage bytes, with a newer vote, gets a
/// final refusal; the replica keeps its term and its data and goes on taking writes. So does
/// a snapshot of well-formed bytes whose metadata claims more than its data holds, and one
/// cut short; no spool file stays behind.
#[test]
fn a_crafted_snapshot_is_refused_and_the_replica_serves_on() {
    use openraft::{CommittedLeaderId, LogId, Membership, SnapshotMeta, StoredMembership, Vote};

    let dir = tempfile::tempdir().unwrap();
    let service = RaftService::default();
    let addr = serve(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        service.clone(),
        secret(),
    )
    .unwrap()
    .to_string();
    let members = BTreeMap::from([(1, BasicNode::new(&addr))]);
    let node = Node::start(1, &addr, dir.path(), service, Some(members.clone()));
    leader(std::slice::from_ref(&node));
    write_rows(&node, 0..10);
    let term = node.group().raft().metrics().borrow().current_term;
    let peers = Peers::new(secret());
    let membership = Membership::new(vec![std::collections::BTreeSet::from([1])], members);
    let last = LogId::new(CommittedLeaderId::new(term + 100, 1), 1_000);
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: StoredMembership::new(Some(last), membership),
        snapshot_id: "forged".into(),
    };
    let vote = Vote::new_committed(term + 100, 1);
    // A real snapshot of this shard, which holds its 10 rows up to a much lower index.
    let mut real = Vec::new();
    node.shard().write_snapshot(&mut real).unwrap();
    let cut_short = real[..real.len() / 2].to_vec();
    for bytes in [b"garbage".to_vec(), real, cut_short] {
        let header = (GROUP.to_string(), vote, meta.clone());
        let write = move |out: &mut dyn std::io::Write| out.write_all(&bytes);
        let answer = block_on({
            let (peers, addr) = (peers.clone(), addr.clone());
            async move { peers.push_snapshot(&addr, &header, write, DEADLINE).await }
        });
        assert!(
            matches!(answer, Err(super::CallError::Failed(Failure::Refused(_)))),
            "{answer:?}"
        );
        assert_eq!(
            Spool::count(dir.path()),
            0,
            "the refused stream is not kept"
        );
    }
    // A sender whose disk fails halfway: the stream ends short, and the sender says why.
    let header = (GROUP.to_string(), vote, meta.clone());
    let failing = |out: &mut dyn std::io::Write| {
        out.write_all(&[0; 3 << 20])?;
        Err(std::io::Error::other("the disk is gone"))
    };
    let answer = block_on({
        let (peers, addr) = (peers.clone(), addr.clone());
        async move { peers.push_snapshot(&addr, &header, failing, DEADLINE).await }
    });
    assert!(
        matches!(&answer, Err(super::CallError::Lost(m)) if m.contains("the disk is gone")),
        "{answer:?}"
    );
    assert_eq!(Spool::count(dir.path()), 0);
    assert_eq!(node.group().raft().metrics().borrow().current_term, term);
    write_rows(&node, 10..20);
    assert_eq!(node.shard().count(), 20);
}

/// Tickets and action bodies as a peer might send them, mangled: decoding never panics.
#[test]
fn fuzz_flight_tickets_and_actions() {
    use crate::meta::MetaOp;
    let mut search = SearchRequest::new("v", vec![0.5, 1.0, 2.0], 5);
    search.filter = Some(vecraft_storage::filter::Filter::Not(Box::new(
        vecraft_storage::filter::Filter::Literal(true),
    )));
    let ticket = ReadTicket {
        group: GroupId::from(GROUP),
        read: Consistency::Bounded,
        min_applied: 7,
        kind: ReadKind::Search(search),
    };
    let scan = ReadTicket {
        kind: ReadKind::Scan {
            projection: Some(vec!["id".into()]),
            filter: None,
        },
        ..ticket.clone()
    };
    let create = MetaOp::Create {
        name: "items".into(),
        schema: schema(),
        shards: 2,
        replicas: 3,
        restoring: None,
    };
    let write = (GROUP.to_string(), row(1).encode().unwrap());
    let seeds: Vec<Vec<u8>> = vec![
        postcard::to_stdvec(&ticket).unwrap(),
        postcard::to_stdvec(&scan).unwrap(),
        postcard::to_stdvec(&create).unwrap(),
        postcard::to_stdvec(&write).unwrap(),
    ];
    let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    vecraft_storage::fuzz::run("flight", &seeds, |input| {
        let _ = postcard::from_bytes::<ReadTicket>(input);
        let _ = postcard::from_bytes::<MetaOp>(input);
        if let Ok((_, command)) = postcard::from_bytes::<(GroupId, Vec<u8>)>(input) {
            let _ = vecraft_storage::command::Command::decode(&command);
        }
    });
}
