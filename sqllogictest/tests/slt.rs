//! Every `.slt` file under `slt/`, in both protocols, each against a fresh in-process Vecraft
//! (its own data directory), as one test case per file and protocol. The files under
//! `slt/pgvector/` claim pgvector's behaviour, so they also run against PostgreSQL 18 +
//! pgvector 0.8 (the oracle, one database per file and protocol): a line that PostgreSQL
//! answers otherwise is a wrong line.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use libtest_mimic::{Arguments, Failed, Trial};
use vecraft_sqllogictest::oracle::Oracle;
use vecraft_sqllogictest::{Protocol, run_file};

/// The files that must also pass on PostgreSQL.
const ORACLE_DIR: &str = "pgvector";

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
}

async fn on_vecraft(file: &Path, protocol: Protocol) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let catalog = Arc::new(vecraft_sql::catalog::Catalog::open(dir.path())?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn(vecraft_sql::server::serve(listener, catalog));
    let dsn = format!("postgresql://postgres@127.0.0.1:{port}/postgres");
    let result = run_file(&dsn, protocol, "vecraft", file).await;
    server.abort();
    result.map_err(|e| Failed::from(e.display(false).to_string()))
}

/// The oracle, started by the first trial that needs it and stopped when `main` ends.
type Shared = Arc<OnceLock<Result<Oracle, String>>>;

async fn on_postgres(
    oracle: &Shared,
    database: &str,
    file: &Path,
    protocol: Protocol,
) -> Result<(), Failed> {
    let oracle = oracle
        .get_or_init(Oracle::start)
        .as_ref()
        .map_err(|e| Failed::from(format!("PostgreSQL did not start: {e}")))?;
    let dsn = oracle.database(database).await.map_err(|e| {
        let message = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_string());
        Failed::from(format!("CREATE DATABASE {database}: {message}"))
    })?;
    let result = run_file(&dsn, protocol, "postgres", file).await;
    result.map_err(|e| Failed::from(e.display(false).to_string()))
}

fn block_on<F: std::future::Future<Output = Result<(), Failed>>>(f: F) -> Result<(), Failed> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(f)
}

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("slt");
    let mut all = Vec::new();
    files(&root, &mut all);
    let oracle: Shared = Arc::new(OnceLock::new());
    let mut trials = Vec::new();
    for file in all {
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        let checked_on_postgres = file.starts_with(root.join(ORACLE_DIR));
        for protocol in [Protocol::Simple, Protocol::Extended] {
            let label = format!("{name} ({protocol:?})").to_lowercase();
            let path = file.clone();
            trials.push(Trial::test(label.clone(), move || {
                block_on(on_vecraft(&path, protocol))
            }));
            if checked_on_postgres {
                let (path, oracle) = (file.clone(), Arc::clone(&oracle));
                let database = format!("slt_{}", trials.len());
                trials.push(Trial::test(format!("postgres: {label}"), move || {
                    block_on(on_postgres(&oracle, &database, &path, protocol))
                }));
            }
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    drop(oracle);
    conclusion.exit();
}
