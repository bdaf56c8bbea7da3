//! The `vecraft` binary: the command line, then one node with every role in-process — the
//! PostgreSQL-wire gateway over durable local collections, and the metrics exporter — or a
//! node of a cluster (`vecraft node`), or a local cluster of them (`vecraft local-cluster`).

mod backup;
mod backup_progress;
mod cert;
mod cluster;
mod config;
mod connect;
mod limits;
mod local_cluster;
mod schedule;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use vecraft_cluster::http::Health;
use vecraft_sql::auth::hba::Access;
use vecraft_sql::drain::Drain;
use vecraft_sql::server::Guard;

use config::{NodeConfig, Overrides};

/// Vecraft: a vector database that speaks the PostgreSQL wire protocol.
///
/// With no arguments it serves SQL on 127.0.0.1:5433 and metrics on 127.0.0.1:9090, with data
/// in ./vecraft-data. Connect with: psql -h 127.0.0.1 -p 5433 -U postgres
#[derive(Debug, Parser)]
#[command(name = "vecraft", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

// Parsed once, at start: the size of the largest arguments costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a single node (the default): gateway, catalog and storage in one process.
    Serve(ServeArgs),
    /// Run one node of a cluster, with the roles and peers it is given.
    Node(cluster::NodeArgs),
    /// Start a cluster of N nodes on loopback ports as child processes; print a postgresql://
    /// URL per node; stop them all on Ctrl-C or SIGTERM.
    LocalCluster(local_cluster::LocalClusterArgs),
    /// Back collections of a running node up to an object store (BACKUP … TO)
    Backup(backup::BackupArgs),
    /// Restore a collection on a running node from an object store (RESTORE … FROM)
    Restore(backup::RestoreArgs),
    /// List the complete backups in an object store (SHOW BACKUPS IN)
    Backups(backup::ListArgs),
    /// Make a CA and node certificates for TLS in a test cluster (ca.crt, NAME.crt, NAME.key)
    Cert(cert::CertArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Where to accept PostgreSQL clients [default: 127.0.0.1:5433]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Where to serve /metrics, /healthz and /readyz over HTTP [default: 127.0.0.1:9090]
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Where collections are stored [default: ./vecraft-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A file holding a secret that /metrics then asks for (Authorization: Bearer …); the
    /// probes stay open
    #[arg(long, value_name = "FILE")]
    metrics_token_file: Option<PathBuf>,
    /// A TOML file with the same settings (listen, http, data_dir, metrics_token_file;
    /// [limits], [tls], [backup_store] and [backup_schedule] tables) and the [[access]]
    /// rules; flags override it
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    limits: limits::LimitArgs,
    #[command(flatten)]
    tls: tls::TlsArgs,
    /// A setting of the object stores backups go to, KEY=VALUE (repeatable; e.g.
    /// aws_endpoint=http://127.0.0.1:9000, aws_region=us-east-1); the AWS_* environment
    /// variables are read first
    #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
    backup_store_option: Vec<(String, String)>,
    #[command(flatten)]
    backup_schedule: schedule::ScheduleArgs,
}

/// `KEY=VALUE` as a pair.
fn key_value(arg: &str) -> Result<(String, String), String> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, not \"{arg}\""))?;
    Ok((key.trim().to_string(), value.to_string()))
}

/// What a node logs when `RUST_LOG` does not say: this project's events at info (elections,
/// leader and membership changes, snapshots), its dependencies' from warn up, and none of
/// openraft's own lines, which repeat an error per request while a peer is down (our events
/// say what happened; `RUST_LOG=openraft=warn` brings them back).
const DEFAULT_LOG: &str = "warn,openraft=off,vecraft=info,vecraft_cluster=info,vecraft_sql=info,\
                           vecraft_storage=info,vecraft_planner=info";

/// Sends `tracing` events to stderr, at the levels `RUST_LOG` sets (`DEFAULT_LOG` otherwise).
fn init_logs() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() {
    init_logs();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Node(args)) => return run(cluster::run_node(args)),
        Some(Command::LocalCluster(args)) => return run(local_cluster::run_local_cluster(args)),
        Some(Command::Backup(args)) => return run(backup::backup(args)),
        Some(Command::Restore(args)) => return run(backup::restore(args)),
        Some(Command::Backups(args)) => return run(backup::list(args)),
        Some(Command::Cert(args)) => {
            if let Err(e) = cert::run(args) {
                eprintln!("vecraft: {e}");
                std::process::exit(1);
            }
            return;
        }
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    let ServeArgs {
        listen,
        http,
        data_dir,
        metrics_token_file,
        config,
        limits,
        tls,
        backup_store_option,
        backup_schedule,
    } = args;
    let flags = Overrides {
        listen,
        http,
        data_dir,
        limits,
        backup_store: backup_store_option.into_iter().collect(),
        backup_schedule,
        access: Vec::new(), // rules come from the config file only
        metrics_token_file,
        tls,
    };
    let resolved = NodeConfig::resolve(config.as_deref(), flags)
        .and_then(|c| Ok((c.limits.resolve(&limits::LimitArgs::default())?, c)));
    let (limits, config) = match resolved {
        Ok(c) => c,
        Err(problem) => {
            eprintln!("vecraft: {problem}");
            std::process::exit(2);
        }
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // One node's groups never wait on each other: half the cores serve them (one on this
    // project's 2-core machine), which spares the hand-offs of a write between workers.
    vecraft_cluster::raft::set_runtime_workers(cores / 2);
    let runtime = runtime(cores);
    if let Err(e) = runtime.block_on(serve(config, limits)) {
        eprintln!("vecraft: {e}");
        std::process::exit(1);
    }
}

async fn serve(config: NodeConfig, limits: vecraft_sql::limits::Limits) -> Result<(), String> {
    let started = Instant::now();
    let health = Arc::new(Health::default());
    let schedule = config.backup_schedule.resolve()?;
    let tls = config.tls.load()?;
    let access = Access::from_config(&config.access)?.requiring_tls(config.tls.require);
    // Bind first: a busy port should fail before minutes of log replay, not after.
    let sql = bind(config.listen, "PostgreSQL").await?;
    let http = bind(config.http, "HTTP").await?;
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;
    let token = (config.metrics_token_file.as_deref())
        .map(vecraft_cluster::http::MetricsToken::from_file)
        .transpose()?;
    let exporter = tokio::spawn(vecraft_cluster::http::serve_with_token(
        http,
        health.clone(),
        token,
    ));
    let data_dir = config.data_dir.clone();
    let catalog =
        tokio::task::spawn_blocking(move || vecraft_sql::catalog::Catalog::open(&data_dir))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("open {}: {e}", config.data_dir.display()))?;
    catalog.set_backup_store(config.backup_store.clone().into_iter().collect());
    let catalog = Arc::new(catalog);
    if let Some(schedule) = schedule {
        start_schedule(&catalog, schedule, || true)?;
    }
    eprintln!(
        "vecraft: {} collection(s) opened from {} in {} ms",
        catalog.names().len(),
        config.data_dir.display(),
        started.elapsed().as_millis()
    );
    tls::reload_on_sighup(tls.clone())?;
    // The bound addresses (port 0 picks one): tests and launchers read this line.
    let local = |l: &TcpListener| l.local_addr().map_err(|e| e.to_string());
    eprintln!(
        "vecraft: serving PostgreSQL on {}, metrics on http://{}/metrics",
        local(&sql)?,
        http_addr
    );
    eprintln!("vecraft: {}", access.describe());
    if let Some(tls) = &tls {
        eprintln!("vecraft: {}", tls.describe());
    }
    health.set_ready(true);
    let guard = Guard { access, tls };
    let outcome = tokio::select! {
        served = vecraft_sql::server::serve_until(sql, catalog, limits, guard, Drain::new()) => served.map_err(|e| e.to_string()),
        exported = exporter => match exported {
            Ok(result) => result.map_err(|e| format!("metrics exporter: {e}")),
            Err(e) => Err(format!("metrics exporter: {e}")),
        },
        signal = shutdown_signal() => {
            eprintln!("vecraft: {signal}, shutting down");
            Ok(())
        }
    };
    outcome
}

/// Checks the schedule's store (its URL, and a local directory made) and starts it; `leads`
/// says when this node is the one to take the backups.
fn start_schedule(
    catalog: &Arc<vecraft_sql::catalog::Catalog>,
    schedule: vecraft_sql::backup_schedule::BackupSchedule,
    leads: impl Fn() -> bool + Send + Sync + 'static,
) -> Result<(), String> {
    let options = catalog.backup_store();
    let handle = tokio::runtime::Handle::current();
    vecraft_cluster::backup::BackupStore::create(&schedule.url, &options, handle)
        .map_err(|e| format!("--backup-to: {e}"))?;
    eprintln!(
        "vecraft: a backup to {} every {} (keeping {})",
        schedule.url,
        humantime::format_duration(schedule.every),
        schedule.keep
    );
    vecraft_sql::backup_schedule::spawn(Arc::clone(catalog), schedule, leads);
    Ok(())
}

/// Stack for each of the runtime's threads. Statements are refused before they nest deeper
/// than `vecraft_planner::parse::MAX_EXPRESSION_DEPTH`, which fits in the default 2 MiB;
/// this is the margin beyond it.
const THREAD_STACK_BYTES: usize = 8 << 20;

fn runtime(worker_threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .thread_stack_size(THREAD_STACK_BYTES)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs a command to its end; a failure is said and exits with status 1.
fn run(command: impl Future<Output = Result<(), String>>) {
    // A cluster gateway's statements wait on other nodes (through the groups' runtime) from
    // the threads that run them; more threads than cores keep one session's wait (an
    // election, up to seconds) from holding up the others.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) * 4;
    if let Err(e) = runtime(threads).block_on(command) {
        eprintln!("vecraft: {e}");
        std::process::exit(1);
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for {what} on {addr}: {e}"))
}

/// Ctrl-C, or SIGTERM (what service managers and Kubernetes send). Every acknowledged write
/// is already in the log, so stopping needs nothing more than leaving.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return ctrl_c().await,
        };
        tokio::select! {
            name = ctrl_c() => name,
            _ = term.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await
}

async fn ctrl_c() -> &'static str {
    match tokio::signal::ctrl_c().await {
        Ok(()) => "interrupted",
        Err(_) => std::future::pending().await,
    }
}
