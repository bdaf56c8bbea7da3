//! `vecraft node`: one node of a cluster, its roles and peers from flags or a TOML file.
//! (`vecraft local-cluster`, in `local_cluster.rs`, runs N of them on one machine.)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::Deserialize;
use vecraft_cluster::http::Health;
use vecraft_cluster::node::{ClusterNode, NodeOptions};
use vecraft_cluster::rpc::{ClusterSecret, ClusterTls};

use crate::config::{DEFAULT_DATA_DIR, DEFAULT_HTTP, DEFAULT_LISTEN};

pub const DEFAULT_RPC: &str = "127.0.0.1:7433";
pub const DEFAULT_FAILOVER_AFTER_MS: u64 = 30_000;
/// Kubernetes' default grace period between SIGTERM and SIGKILL.
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 30_000;

/// The environment variable a node reads its cluster secret from, when not given otherwise.
pub const SECRET_VARIABLE: &str = "VECRAFT_CLUSTER_SECRET";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accepts PostgreSQL clients and routes their statements
    Gateway,
    /// Keeps the cluster's metadata (a member of the meta Raft group)
    Meta,
    /// Keeps shard replicas
    Storage,
}

/// One node of a cluster. Every setting may also come from `--config` (TOML, same names with
/// `_` for `-`; `roles` and `meta_peers` as arrays of strings); flags override the file.
#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeArgs {
    /// This node's id: a positive number, unique in the cluster
    #[arg(long)]
    id: Option<u64>,
    /// Where to accept PostgreSQL clients (gateway role) [default: 127.0.0.1:5433]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Where other nodes reach this one over Arrow Flight [default: 127.0.0.1:7433]
    #[arg(long, value_name = "ADDR")]
    rpc: Option<SocketAddr>,
    /// Where other nodes reach this one over Arrow Flight, when not at --rpc (behind NAT, a
    /// container's mapped port, a proxy): HOST:PORT, an IP or a DNS name [default: --rpc]
    #[arg(long, value_name = "HOST:PORT")]
    advertise_rpc: Option<String>,
    /// Where clients are told this node's gateway is (vecraft_nodes), when not at --listen:
    /// HOST:PORT [default: --listen]
    #[arg(long, value_name = "HOST:PORT")]
    advertise_sql: Option<String>,
    /// Where to serve /metrics, /healthz and /readyz over HTTP [default: 127.0.0.1:9090]
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// A file holding a secret that /metrics then asks for (Authorization: Bearer …); the
    /// probes stay open
    #[arg(long, value_name = "FILE")]
    metrics_token_file: Option<PathBuf>,
    /// Where this node keeps its data [default: ./vecraft-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The roles this node plays, comma-separated [default: gateway,meta,storage]
    #[arg(long, value_enum, value_delimiter = ',')]
    roles: Option<Vec<Role>>,
    /// The meta group's members, the same list on every node: ID=HOST:PORT,… (their --rpc
    /// addresses) [default: this node alone]
    #[arg(long, value_name = "ID=ADDR", value_delimiter = ',')]
    meta_peers: Option<Vec<String>>,
    /// Rebuild a storage node's replicas on other nodes once it has been unreachable this
    /// long [default: 30000]
    #[arg(long, value_name = "MS")]
    failover_after_ms: Option<u64>,
    /// On SIGTERM or Ctrl-C the node drains: it refuses new sessions, hands the shards it
    /// leads to other replicas, and ends each session once its statement or transaction
    /// block is done. This long at most, then it exits anyway [default: 30000]
    #[arg(long, value_name = "MS")]
    drain_timeout_ms: Option<u64>,
    /// The cluster's shared secret (at least 32 visible characters), the same on every node:
    /// every call between nodes carries it and a call without it is refused. Also read from
    /// the environment variable VECRAFT_CLUSTER_SECRET, which keeps it out of `ps`
    #[arg(long, value_name = "SECRET")]
    cluster_secret: Option<String>,
    /// The cluster's CA certificate (PEM): nodes then talk to each other over TLS, each
    /// showing its --tls-cert (which must name its advertised host and allow client use, as
    /// `vecraft cert` makes them) and taking only peers whose certificate this CA signed
    #[arg(long, value_name = "FILE")]
    cluster_ca: Option<PathBuf>,
    /// A TOML file with these settings (and [limits], [tls] and [backup_schedule] tables);
    /// flags override it
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,
    #[command(flatten)]
    #[serde(default)]
    limits: crate::limits::LimitArgs,
    #[command(flatten)]
    #[serde(default)]
    backup_schedule: crate::schedule::ScheduleArgs,
    #[command(flatten)]
    #[serde(default)]
    tls: crate::tls::TlsArgs,
    /// Who may connect: `[[access]]` entries of the config file (README "Security")
    #[arg(skip)]
    #[serde(default)]
    access: Vec<vecraft_sql::auth::hba::RuleConfig>,
}

/// A node's settings, resolved.
#[derive(Debug)]
struct NodeConfig {
    options: NodeOptions,
    gateway: bool,
    listen: SocketAddr,
    advertise_sql: Option<String>,
    http: SocketAddr,
    limits: vecraft_sql::limits::Limits,
    access: vecraft_sql::auth::hba::Access,
    tls: Option<Arc<vecraft_sql::tls::ServerTls>>,
    metrics_token: Option<vecraft_cluster::http::MetricsToken>,
    backup_schedule: Option<vecraft_sql::backup_schedule::BackupSchedule>,
    drain_timeout: Duration,
}

impl NodeArgs {
    fn resolve(self) -> Result<NodeConfig, String> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("config file {}: {e}", path.display()))?;
                toml::from_str::<NodeArgs>(&text)
                    .map_err(|e| format!("config file {}: {}", path.display(), e.message()))?
            }
            None => NodeArgs::default(),
        };
        let id = self.id.or(file.id).ok_or("a node needs an --id")?;
        if id == 0 {
            return Err("--id must be a positive number".into());
        }
        let rpc = self.rpc.or(file.rpc).unwrap_or(parse_addr(DEFAULT_RPC));
        let roles = self
            .roles
            .or(file.roles)
            .unwrap_or_else(|| vec![Role::Gateway, Role::Meta, Role::Storage]);
        let meta_peers = match self.meta_peers.or(file.meta_peers) {
            Some(peers) => parse_peers(&peers)?,
            None => BTreeMap::from([(id, rpc.to_string())]),
        };
        let failover_after_ms = self
            .failover_after_ms
            .or(file.failover_after_ms)
            .unwrap_or(DEFAULT_FAILOVER_AFTER_MS);
        let listen = self
            .listen
            .or(file.listen)
            .unwrap_or(parse_addr(DEFAULT_LISTEN));
        let gateway = roles.contains(&Role::Gateway);
        let secret = self
            .cluster_secret
            .or(file.cluster_secret)
            .or_else(|| std::env::var(SECRET_VARIABLE).ok())
            .ok_or_else(|| {
                format!(
                    "a node needs the cluster's secret: --cluster-secret, cluster_secret in the \
                     config file, or {SECRET_VARIABLE}"
                )
            })?;
        let secret = ClusterSecret::new(&secret)?;
        let advertise_rpc = advertised("--advertise-rpc", self.advertise_rpc, file.advertise_rpc)?;
        let advertise_sql = advertised("--advertise-sql", self.advertise_sql, file.advertise_sql)?;
        if advertise_sql.is_some() && !gateway {
            return Err("--advertise-sql needs the gateway role".into());
        }
        let tls = self.tls.or(file.tls);
        let cluster_tls = match (self.cluster_ca.or(file.cluster_ca), &tls.cert, &tls.key) {
            (None, _, _) => None,
            (Some(ca), Some(cert), Some(key)) => Some(ClusterTls::load(&ca, cert, key)?),
            (Some(_), _, _) => {
                return Err(
                    "--cluster-ca needs the node's certificate: --tls-cert and --tls-key".into(),
                );
            }
        };
        let options = NodeOptions {
            id,
            rpc,
            advertise_rpc,
            sql: gateway.then(|| listen.to_string()),
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            meta: roles.contains(&Role::Meta),
            storage: roles.contains(&Role::Storage),
            meta_peers,
            failover_after: Duration::from_millis(failover_after_ms),
            secret,
            tls: cluster_tls,
        };
        let backup_schedule = self.backup_schedule.or(file.backup_schedule).resolve()?;
        if backup_schedule.is_some() && !(gateway && options.meta) {
            return Err(
                "scheduled backups (--backup-to) run on nodes with the gateway and meta \
                        roles: the meta group's leader takes them"
                    .into(),
            );
        }
        let drain_timeout_ms = self.drain_timeout_ms.or(file.drain_timeout_ms);
        Ok(NodeConfig {
            drain_timeout: Duration::from_millis(
                drain_timeout_ms.unwrap_or(DEFAULT_DRAIN_TIMEOUT_MS),
            ),
            advertise_sql,
            backup_schedule,
            limits: self.limits.resolve(&file.limits)?,
            access: vecraft_sql::auth::hba::Access::from_config(match self.access.is_empty() {
                true => &file.access,
                false => &self.access,
            })?
            .requiring_tls(tls.require),
            tls: tls.load()?,
            metrics_token: (self.metrics_token_file.or(file.metrics_token_file))
                .map(|path| vecraft_cluster::http::MetricsToken::from_file(&path))
                .transpose()?,
            options,
            gateway,
            listen,
            http: self.http.or(file.http).unwrap_or(parse_addr(DEFAULT_HTTP)),
        })
    }
}

/// The address given by a flag, or else the config file, once checked to be `HOST:PORT`.
fn advertised(
    flag: &str,
    given: Option<String>,
    file: Option<String>,
) -> Result<Option<String>, String> {
    match given.or(file) {
        Some(addr) if !vecraft_cluster::meta::is_host_port(&addr) => Err(format!(
            "{flag} \"{addr}\" is not an address: write HOST:PORT"
        )),
        addr => Ok(addr),
    }
}

fn parse_addr(text: &str) -> SocketAddr {
    text.parse().expect("default addresses parse")
}

/// `ID=ADDR` entries.
fn parse_peers(entries: &[String]) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for entry in entries {
        let parsed = entry
            .split_once('=')
            .and_then(|(id, addr)| Some((id.trim().parse::<u64>().ok()?, addr.trim())));
        match parsed {
            Some((id, addr)) if id > 0 && vecraft_cluster::meta::is_host_port(addr) => {
                peers.insert(id, addr.to_string());
            }
            _ => return Err(format!("invalid meta peer \"{entry}\": write ID=HOST:PORT")),
        }
    }
    if peers.is_empty() {
        return Err("--meta-peers names no node".into());
    }
    Ok(peers)
}

/// Runs one node of a cluster until Ctrl-C or SIGTERM, then drains it (a second signal stops
/// it at once).
pub async fn run_node(args: NodeArgs) -> Result<(), String> {
    let config = args.resolve()?;
    let health = Arc::new(Health::default());
    let sql = match config.gateway {
        true => Some(crate::bind(config.listen, "PostgreSQL").await?),
        false => None,
    };
    crate::tls::reload_on_sighup(config.tls.clone())?;
    let http = crate::bind(config.http, "HTTP").await?;
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;
    let exporter = tokio::spawn(vecraft_cluster::http::serve_with_token(
        http,
        health.clone(),
        config.metrics_token.clone(),
    ));
    let mut options = config.options;
    if let Some(sql) = &sql {
        let bound = sql.local_addr().map_err(|e| e.to_string())?.to_string();
        options.sql = Some(config.advertise_sql.unwrap_or(bound));
    }
    let id = options.id;
    let node = tokio::task::spawn_blocking(move || ClusterNode::start(options))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("start node {id}: {e}"))?;
    eprintln!("vecraft: node {id} serving peers on {}", node.rpc_addr());
    if node.advertised_rpc() != node.rpc_addr().to_string() {
        eprintln!(
            "vecraft: node {id} tells peers to reach it at {}",
            node.advertised_rpc()
        );
    }
    health.set_ready(true);
    let drain = vecraft_sql::drain::Drain::new();
    let gateway = async {
        match sql {
            Some(sql) => {
                eprintln!(
                    "vecraft: serving PostgreSQL on {}, metrics on http://{http_addr}/metrics",
                    sql.local_addr().map_err(|e| e.to_string())?
                );
                let catalog = Arc::new(vecraft_sql::catalog::Catalog::cluster(node.clone()));
                if let Some(schedule) = config.backup_schedule {
                    let node = Arc::clone(&node);
                    crate::start_schedule(&catalog, schedule, move || node.leads_meta())?;
                }
                let drain = Arc::clone(&drain);
                eprintln!("vecraft: {}", config.access.describe());
                if let Some(tls) = &config.tls {
                    eprintln!("vecraft: {}", tls.describe());
                }
                let guard = vecraft_sql::server::Guard {
                    access: config.access,
                    tls: config.tls,
                };
                vecraft_sql::server::serve_until(sql, catalog, config.limits, guard, drain)
                    .await
                    .map_err(|e| e.to_string())?;
                // The drain started; the sessions end on their own.
                std::future::pending().await
            }
            None => {
                eprintln!("vecraft: metrics on http://{http_addr}/metrics");
                std::future::pending().await
            }
        }
    };
    let signal = tokio::select! {
        served = gateway => return served,
        exported = exporter => return match exported {
            Ok(result) => result.map_err(|e| format!("metrics exporter: {e}")),
            Err(e) => Err(format!("metrics exporter: {e}")),
        },
        signal = crate::shutdown_signal() => signal,
    };
    eprintln!("vecraft: {signal}: node {id} drains (send it again to stop at once)");
    tokio::select! {
        () = drain_node(&node, &health, &drain, config.drain_timeout) => {}
        signal = crate::shutdown_signal() => eprintln!("vecraft: {signal} again: stopping now"),
    }
    Ok(())
}

/// How long a drained node waits for its peers' calls in flight before it exits.
const PEER_CALLS_TIMEOUT: Duration = Duration::from_secs(3);

/// Drains the node: not ready any more, no new sessions, its leaderships handed over, its
/// sessions ended as they go idle (at most `timeout`), then the calls its peers have in
/// flight answered.
async fn drain_node(
    node: &Arc<ClusterNode>,
    health: &Health,
    drain: &vecraft_sql::drain::Drain,
    timeout: Duration,
) {
    let started = Instant::now();
    health.set_ready(false);
    drain.start();
    for handed in node.drain().await {
        let (group, ms) = (&handed.group, handed.took_ms);
        match handed.outcome {
            Ok(leader) => eprintln!("vecraft: {group} is led by node {leader} now ({ms} ms)"),
            Err(e) => eprintln!("vecraft: {group} was not handed over ({ms} ms): {e}"),
        }
    }
    let open = drain.sessions();
    if open > 0 {
        eprintln!("vecraft: waiting for {open} session(s) to finish their statements");
    }
    let remaining = timeout.saturating_sub(started.elapsed());
    if tokio::time::timeout(remaining, drain.sessions_ended())
        .await
        .is_err()
    {
        let open = drain.sessions();
        eprintln!("vecraft: {open} session(s) still open after the drain timeout: stopping");
    }
    node.stop_serving_peers(PEER_CALLS_TIMEOUT).await;
    // Launchers and tests read this line.
    eprintln!(
        "vecraft: node {} drained in {} ms",
        node.id(),
        started.elapsed().as_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_ones_are_named() {
        let peers = parse_peers(&["1=127.0.0.1:7001".into(), " 2 = 127.0.0.1:7002".into()]);
        assert_eq!(
            peers.unwrap(),
            BTreeMap::from([(1, "127.0.0.1:7001".into()), (2, "127.0.0.1:7002".into())])
        );
        for bad in ["1", "x=127.0.0.1:1", "0=127.0.0.1:1", "1=nowhere"] {
            let e = parse_peers(&[bad.into()]).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn the_file_fills_in_what_flags_leave_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let text = "id = 2\nrpc = \"127.0.0.1:7002\"\nroles = [\"meta\", \"storage\"]\n\
                    cluster_secret = \"0123456789abcdef0123456789abcdef\"\n\
                    meta_peers = [\"1=127.0.0.1:7001\", \"2=127.0.0.1:7002\"]\n";
        std::fs::write(&path, text).unwrap();
        let flags = NodeArgs {
            config: Some(path),
            failover_after_ms: Some(5000),
            ..NodeArgs::default()
        };
        let config = flags.resolve().unwrap();
        assert_eq!(config.options.id, 2);
        assert!(!config.gateway && config.options.meta && config.options.storage);
        assert_eq!(config.options.meta_peers.len(), 2);
        assert_eq!(config.options.failover_after, Duration::from_millis(5000));
        assert_eq!(config.options.sql, None);
        let e = NodeArgs::default().resolve().unwrap_err();
        assert!(e.contains("--id"), "{e}");
    }
}
