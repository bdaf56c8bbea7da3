//! The `vecraft` binary: command-line entry point. Today it runs the embedded single node:
//! the PostgreSQL-wire gateway over durable local collections.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

const HELP: &str = "\
vecraft — a vector database that speaks the PostgreSQL wire protocol

USAGE:
    vecraft [serve] [--listen ADDR] [--data-dir DIR]
    vecraft --help | --version

OPTIONS:
    --listen ADDR     where to accept PostgreSQL clients   [default: 127.0.0.1:5433]
    --data-dir DIR    where collections are stored         [default: ./vecraft-data]

Connect with:  psql -h 127.0.0.1 -p 5433 -U postgres
";

struct Options {
    listen: SocketAddr,
    data_dir: PathBuf,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        listen: "127.0.0.1:5433".parse().expect("default address"),
        data_dir: PathBuf::from("vecraft-data"),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "serve" => {}
            "--listen" => {
                let value = it.next().ok_or("--listen needs an address")?;
                options.listen = value
                    .parse()
                    .map_err(|e| format!("--listen {value}: {e}"))?;
            }
            "--data-dir" => {
                options.data_dir = it.next().ok_or("--data-dir needs a directory")?.into()
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--help" | "-h" | "help") => return print!("{HELP}"),
        Some("--version" | "-V") => return println!("vecraft {}", env!("CARGO_PKG_VERSION")),
        _ => {}
    }
    let options = match parse(&args) {
        Ok(o) => o,
        Err(problem) => {
            eprint!("vecraft: {problem}\n\n{HELP}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(options)) {
        eprintln!("vecraft: {e}");
        std::process::exit(1);
    }
}

async fn run(options: Options) -> Result<(), String> {
    let catalog =
        vecraft_sql::catalog::Catalog::open(&options.data_dir).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", options.listen))?;
    eprintln!(
        "vecraft: serving PostgreSQL on {} (data in {})",
        options.listen,
        options.data_dir.display()
    );
    tokio::select! {
        served = vecraft_sql::server::serve(listener, Arc::new(catalog)) => served.map_err(|e| e.to_string()),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("vecraft: shutting down");
            Ok(())
        }
    }
}
