//! The nemesis's clients, on every gateway: a writer per table inserting ids never used
//! before, a strong reader, and a `SELECT 1` probe, each recording what it did and saw in
//! the `History`. A client whose gateway is away (killed, paused) connects again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use super::history::{History, Outcome, Probe, Read, Write};
use super::net::Id;
use super::{CLIENT_TIMEOUT, Cluster, TABLES};

/// How often each writer starts a write (a writer per table and gateway).
const WRITE_EVERY: Duration = Duration::from_millis(80);
/// How often each reader starts a strong read (one per gateway).
const READ_EVERY: Duration = Duration::from_millis(100);

/// Connects to node `id`'s gateway if it is up and answers within a second.
async fn try_connect(ports: &Mutex<BTreeMap<Id, u16>>, id: Id) -> Option<Client> {
    let port = *ports.lock().unwrap().get(&id)?;
    let dsn = format!("host=127.0.0.1 port={port} user=postgres");
    let connected =
        tokio::time::timeout(Duration::from_secs(1), tokio_postgres::connect(&dsn, NoTls));
    let (client, connection) = connected.await.ok()?.ok()?;
    tokio::spawn(connection);
    Some(client)
}

/// The clients: for each gateway, a writer per table, a reader and a probe.
pub(super) struct Clients {
    pub(super) history: Arc<History>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    probes: std::thread::JoinHandle<()>,
}

impl Clients {
    pub(super) fn start(cluster: &Cluster) -> Clients {
        let history = Arc::new(History::default());
        let stop = Arc::new(AtomicBool::new(false));
        let ids = Arc::new(AtomicI64::new(0));
        let mut tasks = Vec::new();
        for &node in cluster.nodes.keys() {
            let ports = cluster.sql_ports.clone();
            for table in 0..TABLES {
                let (history, stop, ports, ids) =
                    (history.clone(), stop.clone(), ports.clone(), ids.clone());
                tasks.push(tokio::spawn(async move {
                    write_loop(node, table, &ports, &ids, &history, &stop).await
                }));
            }
            let (h, s) = (history.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                read_loop(node, &ports, &h, &s).await
            }));
        }
        let nodes = cluster.nodes.keys().copied().collect();
        let probes = start_probes(nodes, &cluster.sql_ports, &history, &stop);
        Clients {
            history,
            stop,
            tasks,
            probes,
        }
    }

    pub(super) async fn stop(self) -> Arc<History> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let probes = self.probes;
        tokio::task::spawn_blocking(move || probes.join().unwrap())
            .await
            .unwrap();
        self.history
    }
}

/// Runs every gateway's probe on a thread of its own. The test's runtime also carries the
/// writers, the readers and every byte between the nodes (`net.rs`); a probe queued behind
/// them there measured the harness, not the gateway.
fn start_probes(
    nodes: Vec<Id>,
    ports: &Arc<Mutex<BTreeMap<Id, u16>>>,
    history: &Arc<History>,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (ports, history, stop) = (ports.clone(), history.clone(), stop.clone());
    std::thread::Builder::new()
        .name("nemesis-probes".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the probes' runtime");
            runtime.block_on(async move {
                let probes: Vec<_> = nodes
                    .into_iter()
                    .map(|node| {
                        let (ports, history, stop) = (ports.clone(), history.clone(), stop.clone());
                        tokio::spawn(async move { probe_loop(node, &ports, &history, &stop).await })
                    })
                    .collect();
                for probe in probes {
                    probe.await.expect("a probe");
                }
            });
        })
        .expect("the probes' thread")
}

async fn write_loop(
    node: Id,
    table: usize,
    ports: &Mutex<BTreeMap<Id, u16>>,
    ids: &AtomicI64,
    history: &History,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(client) = try_connect(ports, node).await else {
            tokio::time::sleep(Duration::from_millis(50)).await; // the gateway is away
            continue;
        };
        // Prepared once per connection, as applications do: each write is planned once.
        let sql = format!("INSERT INTO t{table} VALUES ($1, '[1,2]')");
        let Ok(Ok(insert)) = tokio::time::timeout(CLIENT_TIMEOUT, client.prepare(&sql)).await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await; // a fail-over under way
            continue;
        };
        while !stop.load(Ordering::Relaxed) && !client.is_closed() {
            let id = ids.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let params: [&(dyn ToSql + Sync); 1] = [&id];
            let answer = client.execute(&insert, &params);
            let outcome = match tokio::time::timeout(CLIENT_TIMEOUT, answer).await {
                Ok(Ok(1)) => Outcome::Acked,
                Ok(Err(e)) if e.code().is_some_and(|c| c.code() == "23505") => Outcome::Duplicate,
                Ok(answer) => {
                    history.failed(&answer.map_err(|e| match e.as_db_error() {
                        Some(db) => format!("{}: {}", db.code().code(), db.message()),
                        None => e.to_string(),
                    }));
                    Outcome::Unknown
                }
                Err(_) => {
                    history.failed(&Err("no answer within the client's timeout".into()));
                    record_write(history, table, id, started, Outcome::Unknown);
                    break; // the gateway does not answer: connect again
                }
            };
            record_write(history, table, id, started, outcome);
            pace(started, WRITE_EVERY).await;
        }
    }
}

fn record_write(history: &History, table: usize, id: i64, started: Instant, outcome: Outcome) {
    if outcome == Outcome::Acked {
        history.latest_acked.lock().unwrap().insert(table, id);
    }
    history.writes.lock().unwrap().push(Write {
        table,
        id,
        started,
        ended: Instant::now(),
        outcome,
    });
}

async fn read_loop(
    node: Id,
    ports: &Mutex<BTreeMap<Id, u16>>,
    history: &History,
    stop: &AtomicBool,
) {
    let mut table = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some(client) = try_connect(ports, node).await else {
            tokio::time::sleep(Duration::from_millis(50)).await; // the gateway is away
            continue;
        };
        // Per table, prepared once per connection: two scans the shards answer without
        // sending rows, the count and the row looked up by its id (a filter the replicas
        // apply).
        let mut counts = Vec::new();
        for table in 0..TABLES {
            let sql = format!(
                "SELECT (SELECT count(*) FROM t{table}), \
                 (SELECT count(*) FROM t{table} WHERE id = $1::bigint)"
            );
            match tokio::time::timeout(CLIENT_TIMEOUT, client.prepare(&sql)).await {
                Ok(Ok(statement)) => counts.push(statement),
                _ => break,
            }
        }
        if counts.len() < TABLES {
            tokio::time::sleep(Duration::from_millis(50)).await; // a fail-over under way
            continue;
        }
        while !stop.load(Ordering::Relaxed) && !client.is_closed() {
            table = (table + 1) % TABLES;
            // The row acknowledged last, before the read begins: a strong read must see it.
            let required = history.latest_acked.lock().unwrap().get(&table).copied();
            let started = Instant::now();
            let id = required.unwrap_or(-1);
            let params: [&(dyn ToSql + Sync); 1] = [&id];
            let answer = client.query_one(&counts[table], &params);
            match tokio::time::timeout(CLIENT_TIMEOUT, answer).await {
                Ok(Ok(row)) => history.reads.lock().unwrap().push(Read {
                    node,
                    table,
                    started,
                    ended: Instant::now(),
                    count: row.get::<_, i64>(0) as u64,
                    required: required.map(|id| (id, row.get::<_, i64>(1) == 1)),
                }),
                Ok(Err(_)) => {}
                Err(_) => break,
            }
            pace(started, READ_EVERY).await;
        }
    }
}

/// Waits until `every` after `started`: the clients run at a fixed pace, as Jepsen's do,
/// and leave the machine room. Unpaced, they took every core of a 2-core machine running 5
/// nodes, and then every answer is late, during a fault or not.
async fn pace(started: Instant, every: Duration) {
    tokio::time::sleep_until((started + every).into()).await;
}

async fn probe_loop(
    node: Id,
    ports: &Mutex<BTreeMap<Id, u16>>,
    history: &History,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let Some(client) = try_connect(ports, node).await else {
            history.probes.lock().unwrap().push(Probe {
                node,
                started,
                took: None,
            });
            tokio::time::sleep(Duration::from_millis(50)).await; // the gateway is away
            continue;
        };
        while !stop.load(Ordering::Relaxed) && !client.is_closed() {
            let started = Instant::now();
            let answer =
                tokio::time::timeout(Duration::from_secs(1), client.simple_query("SELECT 1"));
            let took = matches!(answer.await, Ok(Ok(_))).then(|| started.elapsed());
            history.probes.lock().unwrap().push(Probe {
                node,
                started,
                took,
            });
            if took.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // pace the probes
        }
    }
}
