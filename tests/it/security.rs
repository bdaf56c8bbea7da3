//! Logging in and roles, on Vecraft and on PostgreSQL 18 under the same access rules (Vecraft's
//! `[[access]]` entries, PostgreSQL's `pg_hba.conf`): tokio-postgres here, then the real
//! clients of `compat/auth/` (psycopg, asyncpg, psql 18, the JDBC driver) against each, and
//! the roles surviving Vecraft's restart.

use tokio_postgres::NoTls;
use vecraft_sqllogictest::oracle::Oracle;

use crate::support::{Node, select_one, serve_args};

/// The rules, in pg_hba.conf's words.
const HBA: &str = "\
host  all       compat_mallory  all           reject
host  all       postgres        127.0.0.1/32  trust
host  postgres  all             127.0.0.1/32  scram-sha-256
";

/// The same rules as Vecraft's config file says them.
const ACCESS: &str = r#"
[[access]]
type = "host"
user = "compat_mallory"
address = "all"
method = "reject"

[[access]]
type = "host"
user = "postgres"
address = "127.0.0.1/32"
method = "trust"

[[access]]
type = "host"
database = "postgres"
user = "all"
address = "127.0.0.1/32"
method = "scram-sha-256"
"#;

/// Logs in to `port` as `user` with `password`: `Ok(())` after `SELECT 1`, or the server's
/// SQLSTATE and message.
async fn login(port: u16, user: &str, password: &str, db: &str) -> Result<(), (String, String)> {
    let dsn = format!(
        "host=127.0.0.1 port={port} user={user} password='{password}' dbname={db} \
         connect_timeout=30"
    );
    select_one(&dsn, NoTls).await
}

fn failed(code: &str, message: &str) -> Result<(), (String, String)> {
    Err((code.to_string(), message.to_string()))
}

/// What tokio-postgres gets from the server on `port`, whose superuser `postgres` is trusted.
async fn tokio_postgres_logins(port: u16) {
    let superuser = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let (admin, connection) = tokio_postgres::connect(&superuser, NoTls).await.unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute("DROP ROLE IF EXISTS tp_alice; CREATE USER tp_alice PASSWORD 'right'")
        .await
        .unwrap();
    assert_eq!(login(port, "tp_alice", "right", "postgres").await, Ok(()));
    let wrong = |user: &str| format!("password authentication failed for user \"{user}\"");
    assert_eq!(
        login(port, "tp_alice", "wrong", "postgres").await,
        failed("28P01", &wrong("tp_alice"))
    );
    assert_eq!(
        login(port, "tp_ghost", "right", "postgres").await,
        failed("28P01", &wrong("tp_ghost"))
    );
    let no_entry = "no pg_hba.conf entry for host \"127.0.0.1\", user \"tp_alice\", \
                    database \"elsewhere\", no encryption";
    assert_eq!(
        login(port, "tp_alice", "right", "elsewhere").await,
        failed("28000", no_entry)
    );
    let taken = admin
        .batch_execute("CREATE ROLE tp_alice")
        .await
        .unwrap_err();
    let taken = taken.as_db_error().unwrap();
    assert_eq!(
        (taken.code().code(), taken.message()),
        ("42710", "role \"tp_alice\" already exists")
    );
    let missing = admin.batch_execute("DROP ROLE tp_ghost").await.unwrap_err();
    let missing = missing.as_db_error().unwrap();
    assert_eq!(
        (missing.code().code(), missing.message()),
        ("42704", "role \"tp_ghost\" does not exist")
    );
}

#[test]
fn logins_and_roles_answer_as_postgresql_does() {
    let oracle = Oracle::start_with_hba(Some(HBA)).expect("PostgreSQL 18 starts");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vecraft.toml");
    std::fs::write(&config, ACCESS).unwrap();
    let data = dir.path().join("data");
    let mut args = serve_args(&data);
    args.extend(["--config", config.to_str().unwrap()]);
    let node = Node::start(&args);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for port in [oracle.port(), node.sql_port] {
        runtime.block_on(tokio_postgres_logins(port));
    }
    for (port, engine) in [(oracle.port(), "postgres"), (node.sql_port, "vecraft")] {
        let dsn = format!("postgresql://postgres@127.0.0.1:{port}/postgres");
        crate::clients::suite(".venv", "auth", &dsn, engine);
    }
    // The roles outlive a restart.
    drop(node);
    let node = Node::start(&args);
    runtime.block_on(async {
        let port = node.sql_port;
        assert_eq!(login(port, "tp_alice", "right", "postgres").await, Ok(()));
        let code = login(port, "tp_alice", "wrong", "postgres")
            .await
            .unwrap_err()
            .0;
        assert_eq!(code, "28P01");
    });
}

/// Vecraft's own per-role statement rate (PostgreSQL has none): past the budget a statement
/// gets 53400 and the session goes on.
#[test]
fn a_roles_statement_rate_refuses_statements_past_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&serve_args(dir.path()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let port = node.sql_port;
        let connect = async |user: &str| {
            let dsn = format!("host=127.0.0.1 port={port} user={user}");
            let (client, connection) = tokio_postgres::connect(&dsn, NoTls).await.unwrap();
            tokio::spawn(connection);
            client
        };
        let admin = connect("postgres").await;
        admin
            .batch_execute(
                "CREATE ROLE rate_alice LOGIN; \
                 ALTER ROLE rate_alice SET vecraft.statement_rate = 5",
            )
            .await
            .unwrap();
        let alice = connect("rate_alice").await;
        let (mut admitted, mut refused) = (0, Vec::new());
        for _ in 0..20 {
            match alice.simple_query("SELECT 1").await {
                Ok(_) => admitted += 1,
                Err(e) => refused.push(
                    e.as_db_error()
                        .map(|d| (d.code().code().to_string(), d.message().to_string())),
                ),
            }
        }
        assert!((5..=7).contains(&admitted), "{admitted} admitted of 20");
        let expected = (
            "53400".to_string(),
            "statement rate limit exceeded for role \"rate_alice\": 5 statements per second"
                .to_string(),
        );
        assert!(
            refused.iter().all(|r| r.as_ref() == Some(&expected)),
            "{refused:?}"
        );
        admin
            .batch_execute("ALTER ROLE rate_alice RESET vecraft.statement_rate")
            .await
            .unwrap();
        for _ in 0..20 {
            alice
                .simple_query("SELECT 1")
                .await
                .expect("no limit once RESET");
        }
    });
}
