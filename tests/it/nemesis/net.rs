//! The network between the nemesis's nodes: every node is reached by its peers only through a
//! forwarder of the harness (the node advertises the forwarder's address), so the harness can
//! cut any direction between any two nodes.
//!
//! A cut is a black hole, as a real partition is: bytes stop flowing, connections stay open
//! and new ones are accepted, and nothing tells either side. Which node opened a connection
//! is read from `/proc` (the process that owns the socket at the other end), so one
//! forwarder per node tells apart the traffic of every pair.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

/// A node id; 0 for a connection from no node of the cluster (the harness itself).
pub type Id = u64;

/// The forwarders, and which directions are cut.
pub struct Net {
    /// Each node's forwarder port (what it advertises), by node id.
    pub ports: BTreeMap<Id, u16>,
    /// Directions (from, to) that carry nothing.
    cuts: watch::Sender<HashSet<(Id, Id)>>,
    /// The pid of each node's running process.
    pids: Arc<Mutex<BTreeMap<Id, u32>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Net {
    /// A forwarder per node, to `127.0.0.1:rpc_ports[id]`.
    pub async fn start(rpc_ports: &BTreeMap<Id, u16>) -> Net {
        let (cuts, _) = watch::channel(HashSet::new());
        let pids = Arc::new(Mutex::new(BTreeMap::new()));
        let mut ports = BTreeMap::new();
        let mut tasks = Vec::new();
        for (&to, &rpc) in rpc_ports {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            ports.insert(to, port);
            let (cuts, pids) = (cuts.clone(), pids.clone());
            tasks.push(tokio::spawn(async move {
                while let Ok((inbound, from_addr)) = listener.accept().await {
                    let from = Arc::new(AtomicU64::new(0));
                    let found = (from.clone(), cuts.clone());
                    tokio::spawn(identify(found, from_addr.port(), port, pids.clone()));
                    tokio::spawn(forward(inbound, rpc, from, to, cuts.subscribe()));
                }
            }));
        }
        Net {
            ports,
            cuts,
            pids,
            tasks,
        }
    }

    /// Says which process is node `id` now (after each start).
    pub fn set_pid(&self, id: Id, pid: u32) {
        self.pids.lock().unwrap().insert(id, pid);
    }

    /// The pid of each node's running process, as the harness last set it.
    pub fn pids(&self) -> Arc<Mutex<BTreeMap<Id, u32>>> {
        self.pids.clone()
    }

    /// Cuts every direction in `directions`.
    pub fn cut(&self, directions: &[(Id, Id)]) {
        self.cuts
            .send_modify(|cuts| cuts.extend(directions.iter().copied()));
    }

    /// Lets everything through again.
    pub fn heal(&self) {
        self.cuts.send_modify(HashSet::clear);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Finds which node opened the connection from `port` to the forwarder at `forwarder_port`.
/// A node connects to its peers while it starts, before the harness knows its pid: the
/// lookup goes on until the harness does (or the connection is gone). Once found, the
/// connection's pumps look at the cuts again (they wait on changes of `cuts`): a direction
/// held only because its sender was unknown flows on at once, not at the next heal.
async fn identify(
    (from, cuts): (Arc<AtomicU64>, watch::Sender<HashSet<(Id, Id)>>),
    port: u16,
    forwarder_port: u16,
    pids: Arc<Mutex<BTreeMap<Id, u32>>>,
) {
    for _ in 0..1_200 {
        let owners = pids.lock().unwrap().clone();
        let owner = tokio::task::spawn_blocking(move || owner_of(port, forwarder_port, &owners));
        match owner.await.unwrap() {
            Some(0) => {}
            Some(id) => {
                from.store(id, Ordering::Relaxed);
                cuts.send_modify(|_| {}); // wakes every pump to look again
                return;
            }
            None => return, // closed already
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // until the harness knows the pid
    }
}

/// Passes one connection on from node `from` to node `to`, each direction stopping while it
/// is cut. Ends when either side closes.
async fn forward(
    inbound: TcpStream,
    to_port: u16,
    from: Arc<AtomicU64>,
    to: Id,
    cuts: watch::Receiver<HashSet<(Id, Id)>>,
) {
    let Ok(outbound) = TcpStream::connect(("127.0.0.1", to_port)).await else {
        return; // the node is down: the caller's connection closes, as if refused
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let (forth, back) = (
        Direction::Forth(from.clone(), to),
        Direction::Back(from, to),
    );
    tokio::select! {
        () = pump(in_read, out_write, forth, cuts.clone()) => {}
        () = pump(out_read, in_write, back, cuts) => {}
    }
}

/// Which way a pump's bytes go between the node that opened the connection (known once
/// `identify` finds it) and the node it reached.
enum Direction {
    Forth(Arc<AtomicU64>, Id),
    Back(Arc<AtomicU64>, Id),
}

impl Direction {
    /// Whether this direction carries nothing now. A connection whose node is not known yet
    /// is held whenever anything going to or from the node it reached is cut, so no bytes
    /// cross a partition before `identify` finds their sender.
    fn is_cut(&self, cuts: &HashSet<(Id, Id)>) -> bool {
        let (from, to, forth) = match self {
            Direction::Forth(from, to) => (from.load(Ordering::Relaxed), *to, true),
            Direction::Back(from, to) => (from.load(Ordering::Relaxed), *to, false),
        };
        match (from, forth) {
            (0, true) => cuts.iter().any(|(_, into)| *into == to),
            (0, false) => cuts.iter().any(|(out, _)| *out == to),
            (from, true) => cuts.contains(&(from, to)),
            (from, false) => cuts.contains(&(to, from)),
        }
    }
}

/// Copies bytes from `read` to `write` while `direction` is not cut; while it is, holds
/// them (neither reading more nor writing).
async fn pump(
    mut read: OwnedReadHalf,
    mut write: OwnedWriteHalf,
    direction: Direction,
    mut cuts: watch::Receiver<HashSet<(Id, Id)>>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if cuts.wait_for(|cuts| !direction.is_cut(cuts)).await.is_err() {
            return;
        }
        let n = match read.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cuts.wait_for(|cuts| !direction.is_cut(cuts)).await.is_err() {
            return;
        }
        if write.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// The node whose process owns the socket at local port `port` connected to `peer_port`
/// (the forwarder): 0 if none of `pids` does, `None` if there is no such socket.
fn owner_of(port: u16, peer_port: u16, pids: &BTreeMap<Id, u32>) -> Option<Id> {
    let inode = socket_inode(port, peer_port)?;
    let socket = format!("socket:[{inode}]");
    for (&id, &pid) in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let owns = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == &*socket));
        if owns {
            return Some(id);
        }
    }
    Some(0)
}

/// The inode of the TCP socket from local port `port` to remote port `peer_port`, read from
/// `/proc/net/tcp` (`local_address rem_address … inode`, ports in hex).
fn socket_inode(port: u16, peer_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port_of = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let matches = port_of(fields.get(1)?)? == port && port_of(fields.get(2)?)? == peer_port;
        matches.then(|| fields.get(9)?.parse().ok()).flatten()
    })
}
