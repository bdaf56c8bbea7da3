//! Operations a cluster goes through while it serves: a rolling restart (each node in turn
//! sent SIGTERM, which drains it, then started again) under steady writes and reads, and a
//! killed node that returns getting its share of shard leaderships (and, after a long
//! absence, of replicas) back from the balancer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_postgres::error::SqlState;

use super::*;

const WRITERS: i64 = 3;
const READERS: usize = 2;

/// The gateways clients may use now: node id → SQL port, `None` while it is down.
type Gateways = Arc<Mutex<Vec<Option<u16>>>>;

/// What the clients share: the gateways up, when to stop, how many writes were acknowledged.
#[derive(Clone)]
struct Load {
    gateways: Gateways,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
}

impl Load {
    /// `session` if it is still open, else a new one (on `preferred`'s gateway if it is up).
    async fn session(&self, session: Option<Client>, preferred: usize) -> Client {
        match session {
            Some(client) if !client.is_closed() => client,
            _ => gateway(&self.gateways, preferred).await,
        }
    }
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    acked: Vec<i64>,
    /// Statements answered with an error, or with a broken connection mid-statement.
    failed: Vec<String>,
    /// Statements sent to a session the drain had just ended (57P01 or a closed connection
    /// before any reply): never read by the server, so sent again elsewhere.
    resent: usize,
    statements: usize,
    slowest: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_fails_no_statement() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3, 60_000).joined().await;
    cluster
        .created("kv (id bigint PRIMARY KEY, v vector(2)) WITH (shards = 3, replicas = 3)")
        .await;
    let gateways: Gateways = Arc::new(Mutex::new(
        cluster
            .nodes
            .iter()
            .map(|n| n.as_ref().map(|n| n.sql_port))
            .collect(),
    ));
    let load = Load {
        gateways: gateways.clone(),
        stop: Arc::new(AtomicBool::new(false)),
        acked: Arc::new(AtomicU64::new(0)),
    };
    let (stop, acked_total) = (load.stop.clone(), load.acked.clone());
    let mut clients = Vec::new();
    for w in 0..WRITERS {
        clients.push(tokio::spawn(write_until(w, load.clone())));
    }
    for r in 0..READERS {
        clients.push(tokio::spawn(read_until(r, load.clone())));
    }
    let progressed = async |past: u64| {
        wait_until("the writers to go on", async || {
            acked_total.load(Ordering::Relaxed) >= past + 100
        })
        .await;
    };
    progressed(0).await;

    for id in 1..=3u64 {
        gateways.lock().unwrap()[id as usize - 1] = None;
        let (status, took, log) = cluster.terminate(id).await;
        assert!(status.success(), "node {id} exits cleanly: {status:?}");
        let said = |what: &str| log.iter().filter(|l| l.contains(what)).count();
        assert_eq!(said("drained in"), 1, "node {id} said it drained: {log:#?}");
        // Each leadership it held went to the follower it picked, none stayed behind.
        assert_eq!(said("was not handed over"), 0, "{log:#?}");
        eprintln!("node {id}: SIGTERM to exit in {took:?}");
        progressed(acked_total.load(Ordering::Relaxed)).await;
        cluster.restart(id);
        // Watched through the next node, which stays up meanwhile.
        let watcher = gateway(&gateways, id as usize).await;
        caught_up(&watcher, id).await;
        let port = cluster.nodes[id as usize - 1].as_ref().unwrap().sql_port;
        gateways.lock().unwrap()[id as usize - 1] = Some(port);
        progressed(acked_total.load(Ordering::Relaxed)).await;
    }

    stop.store(true, Ordering::Relaxed);
    let mut acked = BTreeSet::new();
    let (mut failed, mut resent, mut statements) = (Vec::new(), 0, 0);
    let mut slowest = Duration::ZERO;
    for client in clients {
        let seen = client.await.unwrap();
        acked.extend(seen.acked);
        failed.extend(seen.failed);
        resent += seen.resent;
        statements += seen.statements;
        slowest = slowest.max(seen.slowest);
    }
    eprintln!(
        "rolling restart: {statements} statements, {} writes acknowledged, {resent} sent \
         again after a drain ended their session, slowest {slowest:?}",
        acked.len()
    );
    assert_eq!(failed, Vec::<String>::new(), "no statement fails");
    let client = gateway(&gateways, 0).await;
    let present = ids(&client, "SELECT id FROM kv ORDER BY id").await;
    assert_eq!(
        present,
        acked.into_iter().collect::<Vec<_>>(),
        "every write, once"
    );
}

/// A writer: inserts ids never used before through a gateway that is up, sending a
/// statement again (same id) when a drain ended its session before it was read.
async fn write_until(w: i64, load: Load) -> Seen {
    let mut seen = Seen::default();
    let mut session: Option<Client> = None;
    let mut id = w * 1_000_000;
    while !load.stop.load(Ordering::Relaxed) {
        let client = load.session(session.take(), w as usize).await;
        let started = Instant::now();
        let answer = client
            .execute(insert("kv", id..id + 1, 2).as_str(), &[])
            .await;
        seen.statements += 1;
        match answer {
            Ok(1) => {
                seen.slowest = seen.slowest.max(started.elapsed());
                seen.acked.push(id);
                load.acked.fetch_add(1, Ordering::Relaxed);
                id += 1;
                session = Some(client);
            }
            Err(e) if ended_by_drain(&e) => seen.resent += 1,
            other => {
                seen.failed.push(format!("INSERT {id}: {other:?}"));
                id += 1;
                session = Some(client);
            }
        }
    }
    seen
}

/// A reader: counts the rows (a strong read sees every write acknowledged before it began)
/// and searches the nearest ones.
async fn read_until(r: usize, load: Load) -> Seen {
    let mut seen = Seen::default();
    let mut session: Option<Client> = None;
    let mut turn = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        let client = load.session(session.take(), r + 1).await;
        turn += 1;
        let before = load.acked.load(Ordering::Relaxed);
        let started = Instant::now();
        let answer = match turn % 2 {
            0 => client
                .query_one("SELECT count(*) FROM kv", &[])
                .await
                .map(|row| row.get::<_, i64>(0) as u64),
            _ => client
                .query("SELECT id FROM kv ORDER BY v <-> '[0.5,0.5]' LIMIT 5", &[])
                .await
                .map(|rows| rows.len() as u64),
        };
        seen.statements += 1;
        match answer {
            Ok(count) if turn.is_multiple_of(2) && count < before => {
                seen.failed
                    .push(format!("a count of {count} after {before} acknowledged"));
                session = Some(client);
            }
            Ok(_) => {
                seen.slowest = seen.slowest.max(started.elapsed());
                session = Some(client);
            }
            Err(e) if ended_by_drain(&e) => seen.resent += 1,
            Err(e) => {
                seen.failed.push(format!("read: {e:?}"));
                session = Some(client);
            }
        }
    }
    seen
}

/// Whether a statement met a session the drain ended: its 57P01 was the reply, or the
/// connection was closed before any. The server ends a session only between statements.
fn ended_by_drain(e: &tokio_postgres::Error) -> bool {
    e.is_closed() || e.code() == Some(&SqlState::ADMIN_SHUTDOWN)
}

/// A session on a gateway that is up, trying `preferred` first.
async fn gateway(gateways: &Gateways, preferred: usize) -> Client {
    let started = Instant::now();
    loop {
        let ports: Vec<u16> = {
            let up = gateways.lock().unwrap();
            (0..up.len())
                .filter_map(|i| up[(preferred + i) % up.len()])
                .collect()
        };
        for port in ports {
            let dsn = format!("host=127.0.0.1 port={port} user=postgres connect_timeout=2");
            if let Ok((client, connection)) =
                tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await
            {
                tokio::spawn(connection);
                return client;
            }
        }
        assert!(started.elapsed() < DEADLINE, "no gateway accepts a session");
        tokio::time::sleep(Duration::from_millis(20)).await; // pace the retries
    }
}

/// Waits until node `id` holds a replica of every shard of `kv` applied at least as far as
/// the shard's leader had applied when this began.
async fn caught_up(client: &Client, id: u64) {
    let leaders = "SELECT shard, applied_index FROM vecraft_shards WHERE collection = 'kv'";
    let mut target = BTreeMap::new();
    wait_until("every shard's leader to answer", async || {
        let shards = rows(client, leaders).await;
        target = shards
            .iter()
            .filter_map(|r| Some((r[0].clone()?, r[1].as_deref()?.parse::<u64>().ok()?)))
            .collect();
        target.len() == 3
    })
    .await;
    let replicas = format!(
        "SELECT shard, applied_index FROM vecraft_replicas WHERE collection = 'kv' AND node = {id}"
    );
    wait_until("the restarted node to catch up", async || {
        let replicas = rows(client, &replicas).await;
        let applied: BTreeMap<String, u64> = replicas
            .iter()
            .filter_map(|r| Some((r[0].clone()?, r[1].as_deref()?.parse::<u64>().ok()?)))
            .collect();
        target
            .iter()
            .all(|(shard, at)| applied.get(shard).is_some_and(|a| a >= at))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_that_returns_gets_its_share_of_leaderships() {
    const SHARDS: usize = 6;
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3, 60_000).joined().await;
    let client = cluster
        .created("kv (id bigint PRIMARY KEY, v vector(2)) WITH (shards = 6, replicas = 3)")
        .await;
    let leads = async |client: &Client| -> BTreeMap<u64, usize> {
        let sql = "SELECT leader FROM vecraft_shards WHERE collection = 'kv'";
        let mut leads = BTreeMap::new();
        for row in rows(client, sql).await {
            if let Some(leader) = row[0].as_deref() {
                *leads.entry(leader.parse().unwrap()).or_default() += 1;
            }
        }
        leads
    };
    cluster.kill(3);
    wait_until("nodes 1 and 2 to lead every shard", async || {
        let leads = leads(&client).await;
        leads.values().sum::<usize>() == SHARDS && !leads.contains_key(&3)
    })
    .await;

    cluster.restart(3);
    let returned = Instant::now();
    let share = SHARDS.div_ceil(3);
    let mut last = BTreeMap::new();
    while returned.elapsed() < Duration::from_secs(60) {
        last = leads(&client).await;
        if last.values().sum::<usize>() == SHARDS && last.values().all(|n| *n <= share) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await; // pace the reads
    }
    eprintln!(
        "leaders balanced {:?} after node 3 returned: {last:?}",
        returned.elapsed()
    );
    assert_eq!(last.values().sum::<usize>(), SHARDS, "{last:?}");
    assert!(
        last.len() == 3 && last.values().all(|n| *n <= share),
        "within a minute no node leads more than {share} of {SHARDS} shards: {last:?}"
    );
}

/// A node away for longer than `--failover-after-ms` has its replicas rebuilt on the others;
/// when it returns, the balancer moves replicas back to it, one a round, until every node
/// holds its share, and no row is lost on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_returns_after_its_replicas_were_rebuilt_gets_its_share_back() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(4, 3_000).joined().await;
    // 4 shards of 3 replicas on 4 nodes: 3 each.
    let client = cluster
        .created("kv (id bigint PRIMARY KEY, v vector(2)) WITH (shards = 4, replicas = 3)")
        .await;
    client
        .batch_execute(&insert("kv", 0..200, 2))
        .await
        .unwrap();
    let held = async |client: &Client| -> BTreeMap<u64, usize> {
        let sql = "SELECT nodes FROM vecraft_shards WHERE collection = 'kv'";
        let mut held = BTreeMap::new();
        for row in rows(client, sql).await {
            for node in row[0].as_deref().unwrap_or("").split(',') {
                *held.entry(node.parse().unwrap()).or_default() += 1;
            }
        }
        held
    };
    assert_eq!(held(&client).await.values().sum::<usize>(), 12);
    cluster.kill(4);
    wait_until(
        "node 4's replicas to be rebuilt on nodes 1 to 3",
        async || {
            let held = held(&client).await;
            held.values().sum::<usize>() == 12 && !held.contains_key(&4)
        },
    )
    .await;

    cluster.restart(4);
    let returned = Instant::now();
    let even = BTreeMap::from([(1, 3), (2, 3), (3, 3), (4, 3)]);
    let mut last = BTreeMap::new();
    while returned.elapsed() < Duration::from_secs(90) && last != even {
        last = held(&client).await;
        tokio::time::sleep(Duration::from_millis(200)).await; // pace the reads
    }
    eprintln!(
        "replicas balanced {:?} after node 4 returned: {last:?}",
        returned.elapsed()
    );
    assert_eq!(last, even, "each node holds 3 of the 12 replicas");
    let present = ids(&client, "SELECT id FROM kv ORDER BY id").await;
    assert_eq!(present, (0..200).collect::<Vec<i64>>());
}
