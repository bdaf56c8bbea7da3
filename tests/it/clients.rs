//! The client-compatibility suite (`compat/`): real clients at pinned versions (psql 18,
//! psycopg 3, asyncpg, SQLAlchemy, the PostgreSQL JDBC driver, node-postgres, each with
//! pgvector's adapter; langchain-postgres, llama-index's PGVectorStore and `vecs`) against the
//! real binary, and the same suite against PostgreSQL 18 + pgvector 0.8 in the same run, so
//! every assertion in it is PostgreSQL's behaviour.
//!
//! `compat/setup.sh` installs the clients on first use (`Oracle::start` runs it). What Vecraft
//! does not do yet is marked in the suite (`vecraft_gap`) and must fail on Vecraft, so the
//! marks stay true.

use std::process::Command;

use vecraft_sqllogictest::oracle::{Oracle, compat_dir};

use crate::support::single_node;

/// The suites: the clients (`compat/clients/`) and the vector-store libraries
/// (`compat/stores/`), each with its venv.
const SUITES: [(&str, &str); 2] = [(".venv", "clients"), (".venv-stores", "stores")];

/// Runs one suite against `dsn` as `engine`; panics with pytest's report when it fails.
pub fn suite(venv: &str, tests: &str, dsn: &str, engine: &str) {
    let compat = compat_dir();
    let out = Command::new(compat.join(venv).join("bin/pytest"))
        .current_dir(&compat)
        .args(["-q", tests, "--dsn", dsn, "--engine", engine])
        .output()
        .expect("pytest runs (compat/setup.sh installed it)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("--- compat/{tests} on {engine} ---\n{report}");
    assert!(out.status.success(), "compat/{tests} fails on {engine}");
}

#[test]
fn real_clients_get_postgresqls_answers_from_vecraft_and_postgresql() {
    let oracle = Oracle::start().expect("PostgreSQL 18 + pgvector starts");
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path());
    let vecraft = format!("postgresql://postgres@127.0.0.1:{}/postgres", node.sql_port);
    for (venv, tests) in SUITES {
        suite(venv, tests, &oracle.dsn("postgres"), "postgres");
        suite(venv, tests, &vecraft, "vecraft");
    }
}
