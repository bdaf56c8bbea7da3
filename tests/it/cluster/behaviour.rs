//! A shard leader killed in the middle of a load loses no acknowledged row and comes back
//! through a snapshot; strong reads see every acknowledged write across a leader change; a
//! node killed for good has its replicas rebuilt elsewhere without anyone acting; and a
//! cluster answers searches as a single node does.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_leader_killed_during_a_load_loses_no_acknowledged_row() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3, 60_000).joined().await;
    let setup = cluster
        .created("docs (id bigint PRIMARY KEY, v vector(8)) WITH (shards = 2, replicas = 3)")
        .await;
    let victim = leader_of(&setup, "docs", 0).await;
    let gateway = (1..=3).find(|n| *n != victim).unwrap();
    let client = cluster.client(gateway).await;

    // 20,000 rows in statements of 100; the leader of shard 0 dies after 4,000.
    let (mut acked, mut failed) = (BTreeSet::new(), 0);
    for batch in 0..200i64 {
        if batch == 40 {
            cluster.kill(victim);
        }
        let range = batch * 100..(batch + 1) * 100;
        match client
            .execute(insert("docs", range.clone(), 8).as_str(), &[])
            .await
        {
            Ok(n) => {
                assert_eq!(n, 100);
                acked.extend(range);
            }
            Err(e) => {
                // Only a statement in flight when the leader died may fail, and says so.
                let code = e.code().map(|c| c.code().to_string());
                assert_eq!(code.as_deref(), Some("57P03"), "{e}");
                failed += 1;
            }
        }
    }
    assert!(failed <= 2, "{failed} statements failed");
    let present = ids(&client, "SELECT id FROM docs").await;
    let unique: BTreeSet<i64> = present.iter().copied().collect();
    assert_eq!(unique.len(), present.len(), "no row twice");
    assert!(acked.is_subset(&unique), "every acknowledged row is there");
    assert!(unique.iter().all(|id| (0..20_000).contains(id)));

    // The logs are purged while the victim is away: it can only catch up by a snapshot.
    client.batch_execute("CHECKPOINT").await.unwrap();
    cluster.restart(victim);
    let replicas = format!(
        "SELECT r.applied_index, r.snapshot_index, r.rows, s.rows FROM vecraft_replicas r \
         JOIN vecraft_shards s ON r.collection = s.collection AND r.shard = s.shard \
         WHERE r.collection = 'docs' AND r.node = {victim}"
    );
    wait_until("the returning node to catch up", async || {
        let replicas = rows(&client, &replicas).await;
        replicas.len() == 2
            && replicas
                .iter()
                .all(|r| r[1].is_some() && r[2].is_some() && r[2] == r[3])
    })
    .await;
    let total: i64 = rows(&client, "SELECT count(*) FROM docs").await[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(total as usize, unique.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strong_reads_see_acknowledged_writes_across_a_leader_change() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3, 60_000).joined().await;
    let setup = cluster
        .created("kv (id bigint PRIMARY KEY, v vector(2)) WITH (shards = 1, replicas = 3)")
        .await;
    let leader = leader_of(&setup, "kv", 0).await;
    let others: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    let writer = cluster.client(others[0]).await;
    let reader = cluster.client(others[1]).await;
    let (mut acked, mut failed) = (0, 0);
    for i in 0..60i64 {
        if i == 20 {
            cluster.kill(leader);
        }
        let written = writer
            .execute(insert("kv", i..i + 1, 2).as_str(), &[])
            .await;
        if let Err(e) = written {
            // Only a write in flight when the leader died may fail, and says so.
            let code = e.code().map(|c| c.code().to_string());
            assert_eq!(code.as_deref(), Some("57P03"), "{e}");
            failed += 1;
            continue;
        }
        acked += 1;
        let seen = ids(&reader, &format!("SELECT id FROM kv WHERE id = {i}")).await;
        assert_eq!(
            seen,
            [i],
            "a strong read after the acknowledgement sees row {i}"
        );
    }
    assert!(acked >= 58, "{acked} of 60 acknowledged");
    let new_leader = leader_of(&reader, "kv", 0).await;
    assert_ne!(new_leader, leader);
    // The new leader's log says so, naming the group and the node.
    let log = cluster.nodes[new_leader as usize - 1]
        .as_ref()
        .unwrap()
        .log
        .clone();
    let told = format!("node={new_leader} term=");
    let elected = format!("leader={new_leader}");
    wait_until("the new leader to log its election", async || {
        log.lock().unwrap().iter().any(|line| {
            line.contains("INFO")
                && line.contains("leader changed")
                && line.contains("group=\"kv.")
                && line.contains(&told)
                && line.ends_with(&elected)
        })
    })
    .await;
    // Eventual and bounded reads may lag (any replica answers), but get there.
    for level in ["eventual", "bounded"] {
        let set = format!("SET vecraft.consistency = {level}");
        reader.batch_execute(&set).await.unwrap();
        wait_until("every replica to have the rows", async || {
            let counts = rows(&reader, "SELECT count(*) FROM kv").await;
            let count: i64 = counts[0][0].as_deref().unwrap().parse().unwrap();
            // A write that failed with its leader may or may not have been applied.
            (acked..=acked + failed).contains(&count)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_for_good_has_its_replicas_rebuilt() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(4, 3_000).joined().await;
    cluster
        .created("docs (id bigint PRIMARY KEY, v vector(4)) WITH (shards = 2, replicas = 3)")
        .await;
    // Node 1 goes below: talk through node 2.
    let client = cluster.client(2).await;
    for batch in 0..10 {
        let sql = insert("docs", batch * 100..(batch + 1) * 100, 4);
        client.execute(sql.as_str(), &[]).await.unwrap();
    }
    let held = rows(
        &client,
        "SELECT nodes FROM vecraft_shards WHERE collection = 'docs'",
    )
    .await;
    assert!(held.iter().any(|r| r[0].as_deref().unwrap().contains('1')));
    // Node 1 is a meta member and holds replicas; it goes for good.
    cluster.kill(1);
    let healthy = "SELECT s.shard, s.replicas, s.nodes, count(*) FROM vecraft_shards s \
                   JOIN vecraft_replicas r ON r.collection = s.collection AND r.shard = s.shard \
                   WHERE s.collection = 'docs' AND r.rows = s.rows AND r.state <> 'unavailable' \
                   GROUP BY s.shard, s.replicas, s.nodes ORDER BY s.shard";
    wait_until(
        "three healthy replicas per shard, none on node 1",
        async || {
            let shards = rows(&client, healthy).await;
            shards.len() == 2
                && shards.iter().all(|s| {
                    s[1].as_deref() == Some("3")
                        && !s[2].as_deref().unwrap().split(',').any(|n| n == "1")
                        && s[3].as_deref() == Some("3")
                })
        },
    )
    .await;
    let count = rows(&client, "SELECT count(*) FROM docs").await;
    assert_eq!(count[0][0].as_deref(), Some("1000"));
}

/// The `k` nearest ids and distances of `q` on `client`.
async fn nearest(client: &Client, q: &str, k: usize) -> Vec<(i64, String)> {
    let sql = format!("SELECT id, v <-> '{q}' FROM docs ORDER BY v <-> '{q}' LIMIT {k}");
    rows(client, &sql)
        .await
        .into_iter()
        .map(|r| {
            let id = r[0].as_deref().unwrap().parse().unwrap();
            (id, r[1].clone().unwrap())
        })
        .collect()
}

fn recall(got: &[(i64, String)], truth: &[(i64, String)]) -> f64 {
    let truth: BTreeSet<i64> = truth.iter().map(|(id, _)| *id).collect();
    got.iter().filter(|(id, _)| truth.contains(id)).count() as f64 / truth.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_answers_searches_as_a_single_node_does() {
    let _turn = ONE_AT_A_TIME.lock().await;
    const DIMS: usize = 16;
    let single_dir = tempfile::tempdir().unwrap();
    let single = single_node(single_dir.path());
    let cluster = Cluster::start(3, 60_000).joined().await;
    let one = connect(single.sql_port).await;
    let three = cluster.client(3).await;
    let create = "CREATE COLLECTION docs (id bigint PRIMARY KEY, v vector(16))";
    one.batch_execute(create).await.unwrap();
    three
        .batch_execute(&format!("{create} WITH (shards = 2, replicas = 3)"))
        .await
        .unwrap();
    for client in [&one, &three] {
        for batch in 0..6 {
            let sql = insert("docs", batch * 500..(batch + 1) * 500, DIMS);
            client.execute(sql.as_str(), &[]).await.unwrap();
        }
        // Sealed segments are searched through their HNSW graphs.
        client.batch_execute("CHECKPOINT").await.unwrap();
    }
    let (mut recall_one, mut recall_three) = (0.0, 0.0);
    let queries = 30;
    for q in 0..queries {
        let q = vector(1_000_000 + q, DIMS);
        for client in [&one, &three] {
            client
                .batch_execute("SET vecraft.exact_search = on")
                .await
                .unwrap();
        }
        let truth = nearest(&one, &q, 10).await;
        assert_eq!(nearest(&three, &q, 10).await, truth, "exact: identical");
        for client in [&one, &three] {
            client
                .batch_execute("SET vecraft.exact_search = off")
                .await
                .unwrap();
        }
        recall_one += recall(&nearest(&one, &q, 10).await, &truth);
        recall_three += recall(&nearest(&three, &q, 10).await, &truth);
    }
    let (recall_one, recall_three) = (recall_one / 30.0, recall_three / 30.0);
    assert!(
        recall_three >= recall_one - 0.01,
        "index recall@10: cluster {recall_three}, single node {recall_one}"
    );
}

/// `vecraft local-cluster` prints a URL per gateway once every node joined, and stops them
/// all on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_starts_nodes_prints_their_urls_and_stops_them() {
    local_cluster(false).await;
}

/// `vecraft local-cluster --tls`: the same over TLS, between the nodes (they join) and to
/// clients (the URLs name the CA to verify against, and a client trusting it gets in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_with_tls_runs_its_nodes_over_tls() {
    local_cluster(true).await;
}

async fn local_cluster(tls: bool) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (sql, rpc, http) = (free_ports(2), free_ports(2), free_ports(2));
    let mut launcher = Command::new(env!("CARGO_BIN_EXE_vecraft"))
        .args(["local-cluster", "--nodes", "2", "--data-dir"])
        .arg(dir.path())
        .args(tls.then_some("--tls"))
        .args([
            "--sql-port",
            &sql.to_string(),
            "--rpc-port",
            &rpc.to_string(),
        ])
        .args(["--http-port", &http.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = launcher.stdout.take().unwrap();
    let urls = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(2)
            .map(|l| l.unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let ca = dir.path().join("tls").join("ca.crt");
    let options = match tls {
        true => format!("?sslmode=verify-full&sslrootcert={}", ca.display()),
        false => String::new(),
    };
    let want: Vec<String> = [sql, sql + 1]
        .iter()
        .map(|p| format!("postgresql://postgres@127.0.0.1:{p}/postgres{options}"))
        .collect();
    assert_eq!(urls, want);
    if tls {
        let dsn = format!("host=127.0.0.1 port={sql} user=postgres sslmode=require");
        let verified = crate::support::select_one(&dsn, crate::tls::trusting(&ca)).await;
        assert_eq!(verified, Ok(()));
    }
    let client = connect(sql + 1).await;
    wait_until("both nodes joined", async || {
        let count = rows(&client, "SELECT count(*) FROM vecraft_nodes").await;
        count[0][0].as_deref() == Some("2")
    })
    .await;
    drop(client);
    let term = Command::new("kill")
        .args(["-TERM", &launcher.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::task::spawn_blocking(move || launcher.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    for port in [sql, sql + 1] {
        let refused = std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
        assert!(refused, "node on {port} stopped with the launcher");
    }
}

/// The nodes' Flight port over the wire: a caller without the cluster's secret is refused
/// before anything is read; a member's meta operation naming `../../x` changes nothing and
/// creates no directory; the cluster serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flight_port_refuses_outsiders_and_paths_for_names() {
    use vecraft_cluster::meta::{META_ACTION, MetaOp, MetaReply, meta_schema};
    use vecraft_cluster::rpc::{CallError, ClusterSecret, Failure, Peers};
    type Answer = Result<Result<MetaReply, Failure>, CallError>;

    let cluster = Cluster::start(1, 30_000).joined().await;
    let addr = format!("127.0.0.1:{}", cluster.rpc_ports[0]);
    let create = |name: &str| MetaOp::Create {
        name: name.into(),
        schema: meta_schema(),
        shards: 1,
        replicas: 1,
        restoring: None,
    };
    let ttl = Duration::from_secs(10);
    let outsider = Peers::new(ClusterSecret::generate());
    let refused: Answer = outsider
        .call(&addr, META_ACTION, &create("stolen"), ttl)
        .await;
    assert!(
        matches!(&refused, Err(CallError::Unreachable(m)) if m.contains("cluster secret")),
        "{refused:?}"
    );
    let member = Peers::new(ClusterSecret::new(TEST_SECRET).unwrap());
    for name in ["../../x", "a/b", "a.b"] {
        let answer: Answer = member.call(&addr, META_ACTION, &create(name), ttl).await;
        assert!(!matches!(answer, Ok(Ok(_))), "{name}: {answer:?}");
    }
    let mut entries: Vec<String> = std::fs::read_dir(cluster.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        ["node-1"],
        "nothing beside the node's data directory"
    );
    let client = cluster.client(1).await;
    client
        .batch_execute(
            "CREATE COLLECTION fine (id bigint PRIMARY KEY, v vector(2)) WITH (replicas = 1)",
        )
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "SELECT count(*) FROM fine").await,
        [[Some("0".to_string())]]
    );
}

/// Schemas are part of the meta document: made through one gateway, used through another;
/// one with a table in it is dropped only with CASCADE, and then it is gone everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_and_sequences_are_the_clusters() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3, 60_000).joined().await;
    let (one, two) = (cluster.client(1).await, cluster.client(2).await);
    one.batch_execute(
        "CREATE SCHEMA vecs;
         CREATE TABLE vecs.docs (id text PRIMARY KEY, v vector(2), meta jsonb)",
    )
    .await
    .unwrap();
    let insert = "INSERT INTO vecs.docs VALUES ('a', '[1,0]', '{\"year\": 1973}')";
    wait_until("gateway 2 sees vecs.docs", async || {
        sqlstate(&two, insert).await.is_empty()
    })
    .await;
    let found = "SELECT id FROM vecs.docs WHERE meta @> '{\"year\": 1973}'";
    assert_eq!(rows(&one, found).await, [[Some("a".to_string())]]);
    assert_eq!(sqlstate(&two, "CREATE SCHEMA vecs").await, "42P06");
    // A serial column's sequence is the cluster's: two gateways never give one value twice,
    // and each gives increasing values.
    one.batch_execute("CREATE TABLE vecs.ids (id bigserial PRIMARY KEY, at text)")
        .await
        .unwrap();
    let insert =
        |at: &str| format!("INSERT INTO vecs.ids (at) VALUES ('{at}'), ('{at}') RETURNING id");
    wait_until("gateway 2 sees vecs.ids", async || {
        sqlstate(&two, "SELECT 1 FROM vecs.ids").await.is_empty()
    })
    .await;
    let mut given = Vec::new();
    for round in 0..3 {
        for (client, at) in [(&one, "one"), (&two, "two")] {
            let ids: Vec<i64> = rows(client, &insert(at))
                .await
                .into_iter()
                .map(|r| r[0].as_deref().unwrap().parse().unwrap())
                .collect();
            assert!(ids.len() == 2 && ids[0] < ids[1], "round {round}: {ids:?}");
            given.extend(ids);
        }
    }
    let distinct: std::collections::BTreeSet<_> = given.iter().collect();
    assert_eq!(distinct.len(), given.len(), "a value came twice: {given:?}");
    assert_eq!(
        rows(&two, "SELECT count(DISTINCT id) FROM vecs.ids").await,
        [[Some("12".to_string())]]
    );
    assert_eq!(sqlstate(&two, "DROP SCHEMA vecs").await, "2BP01");
    two.batch_execute("DROP SCHEMA vecs CASCADE").await.unwrap();
    wait_until("gateway 1 sees vecs gone", async || {
        sqlstate(&one, "CREATE TABLE vecs.t (id bigint PRIMARY KEY)").await == "3F000"
    })
    .await;
}

/// A TCP forwarder from a port of its own to `127.0.0.1:to`, counting the connections it
/// passed on; dropping it closes them all.
struct Forwarder {
    port: u16,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(to: u16) -> Forwarder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            let mut open = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                open.spawn(async move {
                    let outbound = tokio::net::TcpStream::connect(("127.0.0.1", to)).await;
                    if let Ok(mut outbound) = outbound {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Forwarder {
            port,
            connections,
            task,
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reached_only_at_its_advertised_addresses_keeps_a_replica() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3, 30_000).joined().await;
    // Node 4 listens on `rpc`, but its peers know it only as the forwarder, by a DNS name.
    let (rpc, sql) = (free_port(), free_port());
    let forwarder = Forwarder::start(rpc).await;
    let dir = cluster.dir.path().join("node-4");
    let args = [
        "node".to_string(),
        "--id=4".to_string(),
        format!("--listen=127.0.0.1:{sql}"),
        format!("--rpc=127.0.0.1:{rpc}"),
        format!("--advertise-rpc=localhost:{}", forwarder.port),
        format!("--advertise-sql=localhost:{sql}"),
        "--http=127.0.0.1:0".to_string(),
        format!("--data-dir={}", dir.display()),
        format!("--meta-peers={}", cluster.meta_peers()),
        "--roles=gateway,storage".to_string(),
        format!("--cluster-secret={TEST_SECRET}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.rpc_ports.push(rpc);
    cluster.nodes.push(Some(Node::start(&args)));
    let cluster = cluster.joined().await;

    let client = cluster.client(1).await;
    let node4 = rows(
        &client,
        "SELECT rpc_address, sql_address FROM vecraft_nodes WHERE node = 4",
    )
    .await;
    let advertised = [
        Some(format!("localhost:{}", forwarder.port)),
        Some(format!("localhost:{sql}")),
    ];
    assert_eq!(node4, vec![advertised.to_vec()]);

    client
        .batch_execute(
            "CREATE COLLECTION docs (id bigint PRIMARY KEY, v vector(4)) \
             WITH (shards = 1, replicas = 4)",
        )
        .await
        .unwrap();
    client
        .execute(insert("docs", 0..200, 4).as_str(), &[])
        .await
        .unwrap();
    wait_until("node 4's replica to hold every row", async || {
        let held = rows(
            &client,
            "SELECT rows FROM vecraft_replicas WHERE collection = 'docs' AND node = 4",
        )
        .await;
        held == vec![vec![Some("200".to_string())]]
    })
    .await;
    assert!(forwarder.connections.load(Ordering::SeqCst) > 0);
    // Its gateway reaches the others at their own addresses.
    let count = rows(&cluster.client(4).await, "SELECT count(*) FROM docs").await;
    assert_eq!(count, vec![vec![Some("200".to_string())]]);
}
