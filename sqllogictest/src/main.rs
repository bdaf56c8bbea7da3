//! `vecraft-slt`: runs `.slt` files against any PostgreSQL-wire server (Vecraft, or PostgreSQL
//! with pgvector) in both query protocols.

use std::path::PathBuf;
use std::process::ExitCode;

use vecraft_sqllogictest::{Protocol, run_file};

const HELP: &str = "\
vecraft-slt — check .slt files against a PostgreSQL-wire server

USAGE:
    vecraft-slt [--dsn URL] [--label NAME] [--protocol simple|extended|both] FILE...

OPTIONS:
    --dsn URL         server to check           [default: postgresql://postgres@127.0.0.1:5433/postgres]
    --label NAME      engine label for onlyif/skipif: vecraft or postgres   [default: vecraft]
    --protocol P      simple, extended or both  [default: both]
    -h, --help        this text

The files must leave nothing behind that the next needs: each drops what it creates.
";

fn main() -> ExitCode {
    let mut dsn = "postgresql://postgres@127.0.0.1:5433/postgres".to_string();
    let mut label = "vecraft".to_string();
    let mut protocols = vec![Protocol::Simple, Protocol::Extended];
    let mut files: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let parsed = match arg.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return ExitCode::SUCCESS;
            }
            "--dsn" => value("--dsn").map(|v| dsn = v),
            "--label" => value("--label").map(|v| label = v),
            "--protocol" => value("--protocol").and_then(|v| {
                protocols = match v.as_str() {
                    "simple" => vec![Protocol::Simple],
                    "extended" => vec![Protocol::Extended],
                    "both" => vec![Protocol::Simple, Protocol::Extended],
                    other => return Err(format!("unknown protocol {other}")),
                };
                Ok(())
            }),
            other if other.starts_with('-') => Err(format!("unknown option {other}")),
            file => {
                files.push(file.into());
                Ok(())
            }
        };
        if let Err(problem) = parsed {
            eprint!("vecraft-slt: {problem}\n\n{HELP}");
            return ExitCode::from(2);
        }
    }
    if files.is_empty() {
        eprint!("vecraft-slt: no files\n\n{HELP}");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut failed = 0;
    for file in &files {
        for &protocol in &protocols {
            let result = runtime.block_on(run_file(&dsn, protocol, &label, file));
            match result {
                Ok(()) => println!("ok      {} ({protocol:?})", file.display()),
                Err(e) => {
                    failed += 1;
                    println!(
                        "FAILED  {} ({protocol:?})\n{}",
                        file.display(),
                        e.display(true)
                    );
                }
            }
        }
    }
    let total = files.len() * protocols.len();
    println!("{} passed, {failed} failed", total - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
