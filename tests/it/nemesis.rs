//! The nemesis: real `vecraft node` processes on loopback, clients writing and reading through
//! every gateway, and faults one after another: a node killed, a shard leader killed, a leader
//! paused, a leader that cannot hear its peers (one way), a leader cut off both ways, and
//! with five nodes a node lost for good. Every client operation is recorded; at the end a
//! checker looks for lost, phantom and duplicate rows and stale strong reads
//! (`nemesis/history.rs`), and in the long run every gateway whose process was running must
//! have answered `SELECT 1` within 100 ms throughout.
//!
//! Peers reach each node only through a forwarder of the harness, which cuts directions
//! between nodes (`nemesis/net.rs`); the clients are in `nemesis/clients.rs`.
//!
//! `.ci/run` runs a short seeded run (3 nodes, one cycle of each kind). The long run:
//!
//! ```sh
//! VECRAFT_NEMESIS_CYCLES=200 cargo test -p vecraft --test it -- nemesis --nocapture
//! VECRAFT_NEMESIS_CYCLES=200 VECRAFT_NEMESIS_NODES=5 … (adds a node lost for good)
//! ```
//!
//! `VECRAFT_NEMESIS_SEED` picks the sequence of faults (default 1). The report gives, for
//! each fault kind, the median and worst time from the fault to the next acknowledged write
//! on the slowest table (each table is one shard).

mod clients;
mod history;
mod load;
mod net;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

use crate::cluster::{ONE_AT_A_TIME, TEST_SECRET, free_port, rows, wait_until};
use crate::support::Node;
use clients::Clients;
use history::{History, Outcome};
use load::Load;
use net::{Id, Net};

/// Tables written and read, each a collection of one shard with 3 replicas.
const TABLES: usize = 2;
/// How long each fault lasts: longer than an election (1.2 to 2 s).
const HOLD: Duration = Duration::from_millis(3_000);
/// The longest a gateway may take to answer `SELECT 1` while its process runs, asserted in
/// the long run. The short run shares the machine with every other suite of `cargo test`
/// (client drivers, JVMs, other servers), which delayed one answer by 2.6 s in a CI run: it
/// reports its slowest answer, and `cluster/faults.rs` asserts a gateway's answers during a
/// fault there.
const SELECT_1_LIMIT: Duration = Duration::from_millis(100);
/// How long the cluster may take to acknowledge writes on every table again after a fault.
const SETTLE_DEADLINE: Duration = Duration::from_secs(90);
/// After a node comes back (restarted, or let go on after a pause), its own gateway is not
/// probed for this long.
const COMEBACK_GRACE: Duration = Duration::from_secs(1);
/// A client gives a statement this long (a paused gateway never answers).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Kill,
    LeaderKill,
    Pause,
    OneWay,
    Symmetric,
    /// A node (not a meta member) killed for good; its replicas are rebuilt elsewhere.
    Loss,
}

const FAULTS: [Fault; 5] = [
    Fault::Kill,
    Fault::LeaderKill,
    Fault::Pause,
    Fault::OneWay,
    Fault::Symmetric,
];

struct Settings {
    nodes: u64,
    cycles: usize,
    seed: u64,
    /// Whether this is the short run inside `cargo test` (no `VECRAFT_NEMESIS_CYCLES`).
    shared: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Settings {
            nodes: var("VECRAFT_NEMESIS_NODES", 3).max(3),
            cycles: var("VECRAFT_NEMESIS_CYCLES", FAULTS.len() as u64) as usize,
            seed: var("VECRAFT_NEMESIS_SEED", 1),
            shared: std::env::var_os("VECRAFT_NEMESIS_CYCLES").is_none(),
        }
    }
}

/// The nodes, their network, and when each was not running (for the probes' check).
struct Cluster {
    dir: tempfile::TempDir,
    rpc_ports: BTreeMap<Id, u16>,
    net: Net,
    nodes: BTreeMap<Id, Option<Node>>,
    /// The SQL port of each running, unpaused node, for the clients.
    sql_ports: Arc<Mutex<BTreeMap<Id, u16>>>,
    /// (node, from, to): times a node's process was not serving.
    away: Vec<(Id, Instant, Instant)>,
    /// The log lines of each node's processes that ended.
    logs: BTreeMap<Id, Vec<String>>,
    failover_after_ms: u64,
}

impl Cluster {
    async fn start(n: u64, failover_after_ms: u64) -> Cluster {
        let rpc_ports: BTreeMap<Id, u16> = (1..=n).map(|id| (id, free_port())).collect();
        let net = Net::start(&rpc_ports).await;
        let mut cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            rpc_ports,
            net,
            nodes: (1..=n).map(|id| (id, None)).collect(),
            sql_ports: Arc::default(),
            away: Vec::new(),
            logs: BTreeMap::new(),
            failover_after_ms,
        };
        for id in 1..=n {
            cluster.start_node(id);
        }
        cluster
    }

    fn start_node(&mut self, id: Id) {
        let meta_peers: Vec<String> = (1..=3)
            .map(|i| format!("{i}=127.0.0.1:{}", self.net.ports[&i]))
            .collect();
        let roles = if id <= 3 {
            "gateway,meta,storage"
        } else {
            "gateway,storage"
        };
        let args = [
            "node".to_string(),
            format!("--id={id}"),
            "--listen=127.0.0.1:0".to_string(),
            format!("--rpc=127.0.0.1:{}", self.rpc_ports[&id]),
            format!("--advertise-rpc=127.0.0.1:{}", self.net.ports[&id]),
            "--http=127.0.0.1:0".to_string(),
            format!(
                "--data-dir={}",
                self.dir.path().join(format!("node-{id}")).display()
            ),
            format!("--meta-peers={}", meta_peers.join(",")),
            format!("--roles={roles}"),
            format!("--failover-after-ms={}", self.failover_after_ms),
            format!("--cluster-secret={TEST_SECRET}"),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // VECRAFT_NEMESIS_RUST_LOG sets the nodes' log levels (their RUST_LOG), and
        // VECRAFT_NEMESIS_BIN the binary they run (a release build; this test's own by
        // default). The start waits for the node on this thread: the forwarders and clients
        // go on on others.
        let levels = std::env::var("VECRAFT_NEMESIS_RUST_LOG").ok();
        let env: Vec<(&str, &str)> = levels.iter().map(|l| ("RUST_LOG", l.as_str())).collect();
        let program = std::env::var_os("VECRAFT_NEMESIS_BIN").map_or_else(
            || env!("CARGO_BIN_EXE_vecraft").into(),
            std::path::PathBuf::from,
        );
        let node = tokio::task::block_in_place(|| Node::start_program(&program, &args, &env));
        self.net.set_pid(id, node.child.id());
        self.sql_ports.lock().unwrap().insert(id, node.sql_port);
        self.nodes.insert(id, Some(node));
    }

    fn kill(&mut self, id: Id) {
        self.sql_ports.lock().unwrap().remove(&id);
        let mut node = self.nodes.get_mut(&id).unwrap().take().expect("running");
        node.child.kill().unwrap();
        tokio::task::block_in_place(|| node.child.wait()).unwrap();
        let lines = node.log.lock().unwrap().clone();
        self.logs.entry(id).or_default().extend(lines);
    }

    /// Every line node `id`'s processes logged so far.
    fn log_of(&self, id: Id) -> Vec<String> {
        let mut lines = self.logs.get(&id).cloned().unwrap_or_default();
        if let Some(Some(node)) = self.nodes.get(&id) {
            lines.extend(node.log.lock().unwrap().iter().cloned());
        }
        lines
    }

    /// With `VECRAFT_NEMESIS_LOGS=DIR`, writes every node's log (all its processes) to
    /// `DIR/node-<id>.log`, to line up with the faults' times in the report.
    fn save_logs(&self) {
        let Some(dir) = std::env::var_os("VECRAFT_NEMESIS_LOGS") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for &id in self.nodes.keys() {
            let path = dir.join(format!("node-{id}.log"));
            std::fs::write(path, self.log_of(id).join("\n")).unwrap();
        }
    }

    /// Saves the logs, prints each node's last lines, and fails the run saying `why`.
    fn fail(&self, why: String) -> ! {
        self.save_logs();
        for &id in self.nodes.keys() {
            let lines = self.log_of(id);
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("nemesis: node {id}'s last log lines:\n{}", tail.join("\n"));
        }
        panic!("{why}");
    }

    fn signal(&self, id: Id, signal: i32) {
        self.nodes[&id].as_ref().expect("running").signal(signal);
    }

    fn running(&self) -> Vec<Id> {
        let running = self.nodes.iter().filter(|(_, n)| n.is_some());
        running.map(|(id, _)| *id).collect()
    }

    async fn client(&self, id: Id) -> Client {
        let port = self.nodes[&id].as_ref().expect("running").sql_port;
        crate::support::connect(port).await
    }

    /// The node leading `table`, asked through a running gateway.
    async fn leader_of(&self, table: usize) -> Id {
        let client = self.client(self.running()[0]).await;
        crate::cluster::leader_of(&client, &format!("t{table}"), 0).await
    }
}

/// One fault as it ran.
struct Cycle {
    fault: Fault,
    /// From the fault to the next write acknowledged on the slowest table.
    next_ack: Option<Duration>,
}

/// Applies `fault` to `node`, holds it, and ends it; returns when the fault began.
async fn inflict(cluster: &mut Cluster, fault: Fault, node: Id) -> Instant {
    let at = Instant::now();
    let others: Vec<Id> = cluster
        .nodes
        .keys()
        .copied()
        .filter(|n| *n != node)
        .collect();
    match fault {
        Fault::Kill | Fault::LeaderKill => {
            cluster.kill(node);
            tokio::time::sleep(HOLD).await; // the fault's duration
            cluster.start_node(node);
            cluster
                .away
                .push((node, at, Instant::now() + COMEBACK_GRACE));
        }
        Fault::Pause => {
            cluster.signal(node, libc::SIGSTOP);
            tokio::time::sleep(HOLD).await; // the fault's duration
            cluster.signal(node, libc::SIGCONT);
            cluster
                .away
                .push((node, at, Instant::now() + COMEBACK_GRACE));
        }
        Fault::OneWay | Fault::Symmetric => {
            let mut cut: Vec<(Id, Id)> = others.iter().map(|&o| (o, node)).collect();
            if fault == Fault::Symmetric {
                cut.extend(others.iter().map(|&o| (node, o)));
            }
            cluster.net.cut(&cut);
            tokio::time::sleep(HOLD).await; // the fault's duration
            cluster.net.heal();
        }
        Fault::Loss => {
            cluster.kill(node);
            cluster
                .away
                .push((node, at, Instant::now() + Duration::from_secs(86_400)));
        }
    }
    at
}

/// Waits until every table acknowledged a write that began after `since`; if that does not
/// happen in time, saves the nodes' logs and fails.
async fn settled(cluster: &Cluster, history: &History, since: Instant) {
    while !history.acked_on_every_table_since(since, TABLES) {
        if since.elapsed() > SETTLE_DEADLINE {
            cluster.fail(format!(
                "the tables took no writes for {SETTLE_DEADLINE:?} after a fault"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // pace the polls
    }
}

/// Waits until every shard has 3 voters, none of them `lost`.
async fn rebuilt_without(cluster: &Cluster, lost: Id) {
    let client = cluster.client(cluster.running()[0]).await;
    let lost = lost.to_string();
    wait_until("every shard to have 3 replicas again", async || {
        let shards = rows(&client, "SELECT replicas, nodes FROM vecraft_shards").await;
        shards.len() == TABLES
            && shards.iter().all(|s| {
                s[0].as_deref() == Some("3")
                    && !s[1].as_deref().unwrap_or("").split(',').any(|n| n == lost)
            })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_loses_nothing_and_every_gateway_keeps_answering() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let settings = Settings::from_env();
    let five = settings.nodes >= 5;
    let mut cluster = Cluster::start(settings.nodes, if five { 10_000 } else { 60_000 }).await;
    let admin = cluster.client(1).await;
    let n = settings.nodes.to_string();
    wait_until("every node to join", async || {
        rows(&admin, "SELECT count(*) FROM vecraft_nodes").await[0][0].as_deref() == Some(&n)
    })
    .await;
    for table in 0..TABLES {
        let create = format!(
            "CREATE COLLECTION t{table} (id bigint PRIMARY KEY, v vector(2)) \
             WITH (shards = 1, replicas = 3)"
        );
        admin.batch_execute(&create).await.unwrap();
    }
    drop(admin);
    let began = Instant::now();
    let load = Load::start(cluster.net.pids());
    let clients = Clients::start(&cluster);
    settled(&cluster, &clients.history, Instant::now()).await;

    let mut rng = StdRng::seed_from_u64(settings.seed);
    let mut cycles = Vec::new();
    let mut lost = None;
    for i in 0..settings.cycles {
        // The short run takes each kind once; the long run draws them.
        let mut fault = match settings.cycles <= FAULTS.len() {
            true => *FAULTS.get(i).expect("one of each kind"),
            false => FAULTS[rng.random_range(0..FAULTS.len())],
        };
        if five && lost.is_none() && i == settings.cycles / 2 {
            fault = Fault::Loss;
        }
        let table = rng.random_range(0..TABLES);
        let leader = cluster.leader_of(table).await;
        let node = match fault {
            Fault::Kill => {
                let running = cluster.running();
                running[rng.random_range(0..running.len())]
            }
            // Any node, a meta member too: a spare takes its place (`cluster/meta.rs`).
            Fault::Loss => {
                let running = cluster.running();
                running[rng.random_range(0..running.len())]
            }
            _ => leader,
        };
        let at = inflict(&mut cluster, fault, node).await;
        if fault == Fault::Loss {
            lost = Some(node);
            rebuilt_without(&cluster, node).await;
            eprintln!(
                "nemesis: node {node} lost; its replicas rebuilt after {:?}",
                at.elapsed()
            );
        }
        settled(&cluster, &clients.history, Instant::now()).await;
        let next_ack = clients.history.next_ack_on_slowest(at, TABLES);
        let into_run = at.duration_since(began);
        let wall = humantime::format_rfc3339_millis(std::time::SystemTime::now() - at.elapsed());
        eprintln!(
            "nemesis: cycle {i} at {into_run:?} ({wall}): {fault:?} of node {node} (table \
             {table}'s leader: {leader}): next write after {next_ack:?}"
        );
        cycles.push(Cycle { fault, next_ack });
    }

    let history = clients.stop().await;
    let reader = cluster.client(cluster.running()[0]).await;
    let mut stored = Vec::new();
    for table in 0..TABLES {
        let sql = format!("SELECT id FROM t{table}");
        stored.push(crate::cluster::ids(&reader, &sql).await);
    }
    report(&cycles, &history);
    cluster.save_logs();
    let anomalies = history.check(&stored);
    if !anomalies.none() {
        cluster.fail(format!("anomalies: {anomalies:#?}"));
    }
    let slow = slow_probes(&history, &cluster.away, SELECT_1_LIMIT, &load);
    for probe in &slow {
        eprintln!("nemesis: slow probe: {probe}");
    }
    if !settings.shared && !slow.is_empty() {
        cluster.fail(format!(
            "gateways that did not answer SELECT 1 in time: {slow:#?}"
        ));
    }
    let acked = history
        .writes
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.outcome == Outcome::Acked)
        .count();
    assert!(acked > 0);
    let checked = history
        .reads
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.required.is_some())
        .count();
    assert!(checked > 0, "strong reads were made and checked");
}

/// Probes of a running gateway that failed or took longer than `limit`, each with when it
/// began (wall clock, to line up with the cycles and the nodes' logs) and what the machine
/// was doing meanwhile.
fn slow_probes(
    history: &History,
    away: &[(Id, Instant, Instant)],
    limit: Duration,
    load: &Load,
) -> Vec<String> {
    let probes = history.probes.lock().unwrap();
    probes
        .iter()
        .filter(|p| p.took.is_none_or(|t| t > limit))
        .filter(|p| {
            let end = p.started + p.took.unwrap_or(Duration::from_secs(1));
            !away
                .iter()
                .any(|(node, from, to)| *node == p.node && p.started < *to && end > *from)
        })
        .map(|p| {
            let at = std::time::SystemTime::now() - p.started.elapsed();
            let at = humantime::format_rfc3339_millis(at);
            let end = p.started + p.took.unwrap_or(Duration::from_secs(1));
            let load = load.during(p.started, end);
            format!("node {} at {at}: {:?}; {load}", p.node, p.took)
        })
        .collect()
}

/// Prints, for each fault kind, the median and worst time to the next acknowledged write on
/// the slowest table, and the counts of what the clients did.
fn report(cycles: &[Cycle], history: &History) {
    let mut by_kind: BTreeMap<Fault, Vec<Duration>> = BTreeMap::new();
    for cycle in cycles {
        if let Some(d) = cycle.next_ack {
            by_kind.entry(cycle.fault).or_default().push(d);
        }
    }
    for (fault, mut times) in by_kind {
        times.sort_unstable();
        let median = times[times.len() / 2];
        let worst = times[times.len() - 1];
        eprintln!(
            "nemesis: {fault:?}: {} faults, next acknowledged write on the slowest table: \
             median {median:?}, worst {worst:?}",
            times.len()
        );
    }
    let mut failures: Vec<(usize, String)> = history
        .failures
        .lock()
        .unwrap()
        .iter()
        .map(|(why, n)| (*n, why.clone()))
        .collect();
    failures.sort_unstable_by(|a, b| b.cmp(a));
    for (n, why) in failures.iter().take(5) {
        eprintln!("nemesis: {n} writes failed with: {why}");
    }
    let writes = history.writes.lock().unwrap();
    let acked = writes
        .iter()
        .filter(|w| w.outcome == Outcome::Acked)
        .count();
    let probes = history.probes.lock().unwrap();
    let slowest = probes
        .iter()
        .filter_map(|p| p.took)
        .max()
        .unwrap_or_default();
    eprintln!(
        "nemesis: {} writes ({acked} acknowledged), {} strong reads, {} probes \
         (slowest answer {slowest:?})",
        writes.len(),
        history.reads.lock().unwrap().len(),
        probes.len()
    );
}
