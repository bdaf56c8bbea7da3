//! The `vecraft` binary: command-line entry point for every role.
//!
//! Today the workspace holds the shard storage engine (`storage/`); the SQL gateway, planner
//! and cluster roles that this binary will serve arrive next (see README.md, "Status").

const HELP: &str = "\
vecraft — a distributed vector database that speaks the PostgreSQL wire protocol

USAGE:
    vecraft [serve] [--help] [--version]

STATUS:
    This build contains the shard storage engine only. The PostgreSQL-wire server
    (`vecraft serve`, 127.0.0.1:5433) is not built yet; the command below exits with an error.
    Try the storage benchmark instead:
        cargo run --release -p vecraft-storage --example hnsw_bench
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--help" | "-h" | "help") => print!("{HELP}"),
        Some("--version" | "-V") => println!("vecraft {}", env!("CARGO_PKG_VERSION")),
        None | Some("serve") => {
            eprint!("vecraft: the SQL server is not built yet\n\n{HELP}");
            std::process::exit(2);
        }
        Some(other) => {
            eprint!("vecraft: unknown command {other:?}\n\n{HELP}");
            std::process::exit(2);
        }
    }
}
