//! `vecraft local-cluster`: N nodes (`vecraft node`) as child processes on loopback ports,
//! for tests and demos — every one a gateway and a storage node, the first three the meta
//! group, optionally over TLS with a CA made on the spot.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use vecraft_cluster::rpc::ClusterSecret;

use crate::cluster::{DEFAULT_FAILOVER_AFTER_MS, SECRET_VARIABLE};

/// N nodes on loopback ports, every one a gateway and a storage node, the first three (or
/// all, when fewer) the meta group.
#[derive(Debug, Args)]
pub struct LocalClusterArgs {
    /// How many nodes to start
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Where the nodes keep their data: node N in DIR/node-N
    #[arg(long, value_name = "DIR", default_value = "vecraft-cluster")]
    data_dir: PathBuf,
    /// Node N accepts PostgreSQL clients on this port + N - 1
    #[arg(long, value_name = "PORT", default_value_t = 5433)]
    sql_port: u16,
    /// Node N listens for peers on this port + N - 1
    #[arg(long, value_name = "PORT", default_value_t = 7433)]
    rpc_port: u16,
    /// Node N serves metrics on this port + N - 1
    #[arg(long, value_name = "PORT", default_value_t = 9090)]
    http_port: u16,
    /// Rebuild a node's replicas elsewhere once it has been unreachable this long
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_FAILOVER_AFTER_MS)]
    failover_after_ms: u64,
    /// Run the nodes over TLS: a CA (kept in DIR/tls and reused) and a node certificate
    /// made as `vecraft cert` makes them, mutual TLS between the nodes, TLS offered to
    /// clients (the printed URLs ask for verify-full against DIR/tls/ca.crt)
    #[arg(long)]
    tls: bool,
}

/// The children of `local-cluster`, stopped when it stops.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the nodes, prints one `postgresql://` URL per gateway, and stops them all on
/// Ctrl-C or SIGTERM. A node that exits (or is killed, to watch fail-over) is reported; the
/// others go on.
pub async fn run_local_cluster(args: LocalClusterArgs) -> Result<(), String> {
    if !(1..=64).contains(&args.nodes) {
        return Err("--nodes must be between 1 and 64".into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let port = |base: u16, i: u64| {
        base.checked_add(i as u16 - 1)
            .ok_or_else(|| format!("port {base} + {} is out of range", i - 1))
    };
    let mut meta_peers = Vec::new();
    for i in 1..=args.nodes.min(3) {
        meta_peers.push(format!("{i}=127.0.0.1:{}", port(args.rpc_port, i)?));
    }
    // The nodes' shared secret: made here, handed to each in its environment.
    let secret = ClusterSecret::generate();
    let tls_dir = args.data_dir.join("tls");
    let (tls_flags, url_options) = match args.tls {
        false => (Vec::new(), String::new()),
        true => {
            for line in crate::cert::make(&tls_dir, &["node".to_string()], Vec::new())? {
                eprintln!("vecraft: {line}");
            }
            let file = |name: &str| tls_dir.join(name).display().to_string();
            let flags = vec![
                format!("--cluster-ca={}", file("ca.crt")),
                format!("--tls-cert={}", file("node.crt")),
                format!("--tls-key={}", file("node.key")),
            ];
            let ca = std::path::absolute(tls_dir.join("ca.crt")).map_err(|e| e.to_string())?;
            (
                flags,
                format!("?sslmode=verify-full&sslrootcert={}", ca.display()),
            )
        }
    };
    let (tx, rx) = mpsc::channel();
    let mut children = Children(Vec::new());
    for i in 1..=args.nodes {
        let dir = args.data_dir.join(format!("node-{i}"));
        let argv = [
            "node".to_string(),
            format!("--id={i}"),
            format!("--listen=127.0.0.1:{}", port(args.sql_port, i)?),
            format!("--rpc=127.0.0.1:{}", port(args.rpc_port, i)?),
            format!("--http=127.0.0.1:{}", port(args.http_port, i)?),
            format!("--data-dir={}", dir.display()),
            format!("--meta-peers={}", meta_peers.join(",")),
            match i <= 3 {
                true => "--roles=gateway,meta,storage".to_string(),
                false => "--roles=gateway,storage".to_string(),
            },
            format!("--failover-after-ms={}", args.failover_after_ms),
        ];
        let argv: Vec<String> = argv.into_iter().chain(tls_flags.clone()).collect();
        children
            .0
            .push(spawn_node(&exe, &argv, &secret, i, tx.clone())?);
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut urls = BTreeMap::new();
    while urls.len() < args.nodes as usize {
        let left = deadline.saturating_duration_since(Instant::now());
        let (i, sql) = rx
            .recv_timeout(left)
            .map_err(|_| "the nodes did not all start within 120 s".to_string())?;
        urls.insert(i, sql);
    }
    for sql in urls.values() {
        println!("postgresql://postgres@{sql}/postgres{url_options}");
    }
    let stopped = tokio::select! {
        () = watch(&mut children) => Err("every node exited".to_string()),
        signal = crate::shutdown_signal() => {
            eprintln!("vecraft: {signal}, stopping the cluster");
            Ok(())
        }
    };
    drop(children); // kills the nodes left
    stopped
}

/// Starts node `i`; its stderr is passed on, prefixed, and its SQL address sent on `tx`.
fn spawn_node(
    exe: &Path,
    argv: &[String],
    secret: &ClusterSecret,
    i: u64,
    tx: mpsc::Sender<(u64, String)>,
) -> Result<Child, String> {
    let mut child = Command::new(exe)
        .args(argv)
        .env(SECRET_VARIABLE, secret.expose())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start node {i}: {e}"))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("vecraft: serving PostgreSQL on ")
                && let Some((sql, _)) = rest.split_once(", ")
            {
                let _ = tx.send((i, sql.to_string()));
            }
            eprintln!("[node {i}] {line}");
        }
    });
    Ok(child)
}

/// Reports each child that exits; returns when none is left.
async fn watch(children: &mut Children) {
    let mut running: Vec<usize> = (0..children.0.len()).collect();
    while !running.is_empty() {
        running.retain(|&i| match children.0[i].try_wait() {
            Ok(Some(status)) => {
                eprintln!("vecraft: node {} exited ({status})", i + 1);
                false
            }
            _ => true,
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
