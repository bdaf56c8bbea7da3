//! The client-compatibility suite (`compat/clients/`): real clients at pinned versions (psql 18,
//! psycopg 3, asyncpg, SQLAlchemy, the PostgreSQL JDBC driver, node-postgres, each with
//! pgvector's adapter) against the real binary, and the same suite against PostgreSQL 18 +
//! pgvector 0.8 in the same run, so every assertion in it is PostgreSQL's behaviour.
//!
//! `compat/setup.sh` installs the clients on first use. What Vecraft does not do yet is
//! marked in the suite (`vecraft_gap`) and must fail on Vecraft, so the marks stay true.

use std::process::Command;

use vecraft_sqllogictest::oracle::{Oracle, compat_dir};

use crate::support::single_node;

/// Runs the suite against `dsn` as `engine`; panics with pytest's report when it fails.
fn suite(dsn: &str, engine: &str) {
    let compat = compat_dir();
    let out = Command::new(compat.join(".venv/bin/pytest"))
        .current_dir(&compat)
        .args(["-q", "-p", "no:cacheprovider", "-rxXf", "clients"])
        .args(["--dsn", dsn, "--engine", engine])
        .output()
        .expect("pytest runs (compat/setup.sh installed it)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("--- client suite on {engine} ---\n{report}");
    assert!(out.status.success(), "the client suite fails on {engine}");
}

#[test]
fn real_clients_get_postgresqls_answers_from_vecraft_and_postgresql() {
    let oracle = Oracle::start().expect("PostgreSQL 18 + pgvector starts");
    suite(&oracle.dsn("postgres"), "postgres");
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path());
    let dsn = format!("postgresql://postgres@127.0.0.1:{}/postgres", node.sql_port);
    suite(&dsn, "vecraft");
}
