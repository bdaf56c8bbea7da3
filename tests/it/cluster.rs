//! A cluster of real `vecraft node` processes on loopback, driven over the wire: the harness
//! that starts, kills and restarts them, and the scenarios (`behaviour.rs`: fail-over,
//! replicas, searches, the Flight port; `faults.rs`: a paused leader; `transactions.rs`:
//! atomic commits under `kill -9`;
//! `backup.rs`: a cluster's backup restored on a single node; `rolling.rs`: a rolling restart
//! under load, and leaderships balanced after a node returns; `meta.rs`: lost meta members
//! replaced by spares; `security.rs`: roles and grants on every gateway).

mod backup;
mod behaviour;
mod faults;
mod meta;
mod rolling;
mod security;
mod tls;
mod transactions;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::support::{Node, connect, single_node};

/// The test cluster's secret (every node is given it).
pub(super) const TEST_SECRET: &str = "vecraft-test-cluster-secret-0123456789";

/// Nodes `1..=n` (ids), the first three the meta group, every one a gateway and storage.
pub(super) struct Cluster {
    pub(super) dir: tempfile::TempDir,
    pub(super) rpc_ports: Vec<u16>,
    pub(super) failover_after_ms: u64,
    /// Arguments every node is started with beyond the harness's own.
    pub(super) extra_args: Vec<String>,
    pub(super) nodes: Vec<Option<Node>>,
}

pub(super) const DEADLINE: Duration = Duration::from_secs(90);

/// A port free now, below Linux's ephemeral range (32768 and up), so no outgoing connection
/// takes it before a node restarts on it.
pub(super) fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive ports free now (as `free_port`).
pub(super) fn free_ports(n: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % 1_000) as u16 * 10;
    loop {
        let first = 20_000 + (start + NEXT.fetch_add(n, Ordering::Relaxed)) % 12_000;
        if (first..first + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return first;
        }
    }
}

/// The cluster tests run one at a time: a dozen nodes at once on two cores would make
/// heartbeats late enough to look like failures.
pub(super) static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Cluster {
    pub(super) fn start(n: u64, failover_after_ms: u64) -> Cluster {
        Cluster::start_with(n, failover_after_ms, &[])
    }

    /// [`Cluster::start`], every node given `extra_args` too.
    pub(super) fn start_with(n: u64, failover_after_ms: u64, extra_args: &[&str]) -> Cluster {
        let mut cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            rpc_ports: (0..n).map(|_| free_port()).collect(),
            failover_after_ms,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            nodes: (0..n).map(|_| None).collect(),
        };
        for id in 1..=n {
            cluster.restart(id);
        }
        cluster
    }

    /// Waits until every node joined (a collection's replicas may then go anywhere).
    pub(super) async fn joined(self) -> Cluster {
        let client = self.client(1).await;
        let n = self.nodes.len().to_string();
        wait_until("every node to join", async || {
            let count = rows(&client, "SELECT count(*) FROM vecraft_nodes").await;
            count[0][0].as_deref() == Some(n.as_str())
        })
        .await;
        self
    }

    pub(super) fn meta_peers(&self) -> String {
        let peers: Vec<String> = (1..=self.rpc_ports.len().min(3))
            .map(|i| format!("{i}=127.0.0.1:{}", self.rpc_ports[i - 1]))
            .collect();
        peers.join(",")
    }

    /// Starts node `id` (again, on its directory and ports).
    pub(super) fn restart(&mut self, id: u64) {
        let i = id as usize - 1;
        let dir = self.dir.path().join(format!("node-{id}"));
        let roles = if id <= 3 {
            "gateway,meta,storage"
        } else {
            "gateway,storage"
        };
        let harness = [
            "node".to_string(),
            format!("--id={id}"),
            "--listen=127.0.0.1:0".to_string(),
            format!("--rpc=127.0.0.1:{}", self.rpc_ports[i]),
            "--http=127.0.0.1:0".to_string(),
            format!("--data-dir={}", dir.display()),
            format!("--meta-peers={}", self.meta_peers()),
            format!("--roles={roles}"),
            format!("--failover-after-ms={}", self.failover_after_ms),
            format!("--cluster-secret={TEST_SECRET}"),
        ];
        let args: Vec<&str> = harness
            .iter()
            .chain(&self.extra_args)
            .map(String::as_str)
            .collect();
        self.nodes[i] = Some(Node::start(&args));
    }

    /// `kill -9` of node `id`.
    pub(super) fn kill(&mut self, id: u64) {
        let mut node = self.nodes[id as usize - 1].take().expect("running");
        node.child.kill().unwrap();
        node.child.wait().unwrap();
    }

    /// SIGTERM to node `id`, then its exit (with a deadline): the node drains first. Its exit
    /// status, how long it took, and whether it said it drained.
    pub(super) async fn terminate(
        &mut self,
        id: u64,
    ) -> (std::process::ExitStatus, Duration, Vec<String>) {
        let sent = Instant::now();
        self.signal(id, libc::SIGTERM);
        let mut node = self.nodes[id as usize - 1].take().expect("running");
        let status = loop {
            if let Some(status) = node.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                sent.elapsed() < DEADLINE,
                "node {id} did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await; // pace the checks
        };
        let took = sent.elapsed();
        let log = node.log.lock().unwrap().clone();
        (status, took, log)
    }

    /// Stops node `id` where it is (`SIGSTOP`): its connections stay open, its kernel still
    /// accepts new ones, and nothing answers, as a node stalled on a disk or a long GC would.
    pub(super) fn pause(&self, id: u64) {
        self.signal(id, libc::SIGSTOP);
    }

    /// Lets a paused node go on (`SIGCONT`).
    pub(super) fn resume(&self, id: u64) {
        self.signal(id, libc::SIGCONT);
    }

    fn signal(&self, id: u64, signal: i32) {
        self.nodes[id as usize - 1]
            .as_ref()
            .expect("running")
            .signal(signal);
    }

    /// Creates a collection (`CREATE COLLECTION {definition}`) through node 1; its client.
    pub(super) async fn created(&self, definition: &str) -> Client {
        let client = self.client(1).await;
        let create = format!("CREATE COLLECTION {definition}");
        client.batch_execute(&create).await.unwrap();
        client
    }

    pub(super) async fn client(&self, id: u64) -> Client {
        let node = self.nodes[id as usize - 1].as_ref().expect("running");
        connect(node.sql_port).await
    }
}

/// The rows of a simple query, as text.
pub(super) async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = client.simple_query(sql).await.unwrap();
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The SQLSTATE a statement fails with ("" if it succeeds).
pub(super) async fn sqlstate(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => String::new(),
        Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_default(),
    }
}

/// Waits for `condition` with a deadline.
pub(super) async fn wait_until<F: AsyncFnMut() -> bool>(what: &str, mut condition: F) {
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node leading `shard` of `collection`.
pub(super) async fn leader_of(client: &Client, collection: &str, shard: u64) -> u64 {
    let sql = format!(
        "SELECT leader FROM vecraft_shards WHERE collection = '{collection}' AND shard = {shard}"
    );
    let mut leader = 0;
    wait_until("a leader", async || {
        // A node that just started may not know the collection yet: no row.
        leader = rows(client, &sql)
            .await
            .first()
            .and_then(|r| r[0].as_deref())
            .map_or(0, |l| l.parse().unwrap());
        leader != 0
    })
    .await;
    leader
}

pub(super) fn vector(i: i64, dims: usize) -> String {
    // A deterministic scatter (an LCG), the same for every run and server.
    let mut x = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let parts: Vec<String> = (0..dims)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            format!("{:.4}", (x >> 40) as f64 / (1u64 << 24) as f64)
        })
        .collect();
    format!("[{}]", parts.join(","))
}

pub(super) fn insert(table: &str, ids: std::ops::Range<i64>, dims: usize) -> String {
    let values: Vec<String> = ids
        .map(|i| format!("({i}, '{}')", vector(i, dims)))
        .collect();
    format!("INSERT INTO {table} VALUES {}", values.join(","))
}

pub(super) async fn ids(client: &Client, sql: &str) -> Vec<i64> {
    rows(client, sql)
        .await
        .iter()
        .map(|r| r[0].as_deref().unwrap().parse().unwrap())
        .collect()
}
