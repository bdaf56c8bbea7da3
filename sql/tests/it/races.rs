//! DDL racing writes, checkpoints and other DDL on the same name: whatever the interleaving,
//! each statement succeeds or fails with a user's error, and after a restart the node opens
//! with exactly the collections SQL says exist — dropped means gone.
//!
//! `VECRAFT_RACE_SECS` sets how long the sessions race (default 5; the long run is
//! 60).

use std::time::{Duration, Instant};

use crate::support::*;

fn race_duration() -> Duration {
    let secs = std::env::var("VECRAFT_RACE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    Duration::from_secs(secs)
}

/// SQLSTATEs a racing statement may meet: the table is not there (yet, any more), or is
/// already; a duplicate key of a row the other session wrote.
const EXPECTED: &[&str] = &["42P01", "42P07", "23505"];

async fn race(client: Client, statements: &[&str], until: Instant) -> (u64, u64) {
    let (mut done, mut refused) = (0u64, 0u64);
    let mut id = 0u64;
    while Instant::now() < until {
        for sql in statements {
            id += 1;
            let sql = sql.replace("$id", &id.to_string());
            match client.simple_query(&sql).await {
                Ok(_) => done += 1,
                Err(e) => {
                    let code = e.code().map(|c| c.code().to_string());
                    assert!(
                        code.as_deref().is_some_and(|c| EXPECTED.contains(&c)),
                        "{sql}: {e:?}"
                    );
                    refused += 1;
                }
            }
        }
    }
    (done, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_drop_checkpoint_and_writes_race_then_the_node_opens() {
    let dir = tempfile::tempdir().unwrap();
    let (port, server) = serve(dir.path()).await;
    let until = Instant::now() + race_duration();
    let a = race(
        connect(port).await,
        &[
            "CREATE TABLE t (id bigint PRIMARY KEY, v vector(2))",
            "INSERT INTO t VALUES ($id, '[1,2]')",
            "CHECKPOINT",
            "DROP TABLE t",
        ],
        until,
    );
    let b = race(
        connect(port).await,
        &[
            "INSERT INTO t VALUES ($id000000, '[3,4]')",
            "CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY, v vector(2))",
            "INSERT INTO t VALUES ($id000001, '[5,6]')",
            "DROP TABLE IF EXISTS t",
        ],
        until,
    );
    let c = race(
        connect(port).await,
        &[
            "CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY, v vector(2))",
            "SELECT count(*) FROM t",
            "VACUUM t",
        ],
        until,
    );
    let ((a_done, _), (b_done, _), (c_done, _)) = tokio::join!(a, b, c);
    assert!(
        a_done > 0 && b_done > 0 && c_done > 0,
        "every session got work done"
    );

    // Leave the table in a known state, then restart on the same directory.
    let client = connect(port).await;
    client
        .simple_query(
            "CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY, v vector(2)); \
             INSERT INTO t VALUES (-1, '[7,8]'); \
             CREATE TABLE gone (id bigint PRIMARY KEY); DROP TABLE gone",
        )
        .await
        .unwrap();
    let rows_before = rows(&client, "SELECT count(*) FROM t").await;
    drop(client);
    server.abort();
    let _ = server.await;

    let port = start(dir.path()).await;
    let client = connect(port).await;
    assert_eq!(rows(&client, "SELECT count(*) FROM t").await, rows_before);
    assert_eq!(sqlstate(&client, "SELECT * FROM gone").await, "42P01");
    // On disk: one directory per collection, nothing half-made or half-dropped.
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("collections"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["t"]);
}
