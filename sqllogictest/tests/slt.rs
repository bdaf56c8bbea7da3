//! Every `.slt` file under `slt/`, in both protocols, each against a fresh in-process Vecraft
//! (its own data directory), as one test case per file and protocol.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use vecraft_sqllogictest::{Protocol, run_file};

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

async fn check(file: &Path, protocol: Protocol) -> Result<(), Failed> {
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

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("slt");
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut trials = Vec::new();
    for file in all {
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        for protocol in [Protocol::Simple, Protocol::Extended] {
            let file = file.clone();
            let label = format!("{name} ({protocol:?})").to_lowercase();
            trials.push(Trial::test(label, move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                runtime.block_on(check(&file, protocol))
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
