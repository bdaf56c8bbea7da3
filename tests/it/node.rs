//! The binary as an operator runs it: settings from a config file, `/healthz`, `/readyz` and
//! `/metrics` over HTTP, a clean stop on SIGTERM, and a `--help` that lists every option.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::support::{Node, connect, http_get, http_get_with, metric, metrics_when, sample};

fn vecraft(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vecraft"));
    command.args(args);
    command
}

/// Waits for `child` to exit, with a deadline; its exit code.
async fn exit_code(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "vecraft did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await; // pace the polls
    }
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    let config = format!(
        "listen = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\ndata_dir = {:?}\n",
        dir.join("data")
    );
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_from_a_config_file_reports_health_and_metrics_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let config = config.to_str().unwrap();
    let mut node = Node::start(&["serve", "--config", config]);
    let http_port = node.http_port;
    let client = connect(node.sql_port).await;

    assert_eq!(http_get(http_port, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(
        http_get(http_port, "/readyz").await,
        (200, "ready\n".into())
    );
    assert_eq!(http_get(http_port, "/nope").await.0, 404);

    client
        .batch_execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(3));
             INSERT INTO items VALUES (1, '[1,2,3]'), (2, '[4,5,6]'), (3, '[7,8,9]');
             DELETE FROM items WHERE id = 3;",
        )
        .await
        .unwrap();
    assert!(client.simple_query("SELECT nope").await.is_err());
    let (status, metrics) = http_get(http_port, "/metrics").await;
    assert_eq!(status, 200);
    let value = |name| sample(&metrics, name).unwrap_or_else(|| panic!("no {name} in\n{metrics}"));
    assert_eq!(
        value("vecraft_collection_rows{collection=\"items\",shard=\"0\"}"),
        2.0
    );
    assert_eq!(value("vecraft_write_rows_total"), 4.0); // 3 inserted, 1 deleted
    assert_eq!(value("vecraft_write_commands_total{kind=\"insert\"}"), 1.0);
    assert_eq!(value("vecraft_connections"), 1.0);
    assert_eq!(
        value("vecraft_statement_errors_total{sqlstate=\"42703\"}"),
        1.0
    );
    assert!(value("vecraft_statements_total{protocol=\"simple\"}") >= 2.0);
    assert!(value("vecraft_statement_duration_seconds_count{protocol=\"simple\"}") >= 2.0);
    assert!(value("process_resident_memory_bytes") > 0.0);

    // SIGTERM stops it cleanly, and a restart from the same file finds the rows.
    drop(client);
    let pid = node.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(exit_code(&mut node.child).await, Some(0));
    let mut node = Node::start(&["--config", config]);
    let client = connect(node.sql_port).await;
    let rows = client
        .query("SELECT id FROM items ORDER BY id", &[])
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [1, 2]);
    node.child.kill().unwrap();
    node.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_token_guards_metrics_but_not_the_probes() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("metrics.token");
    std::fs::write(&token, "s3cret-scrape\n").unwrap();
    let data = dir.path().join("data");
    let mut args = crate::support::serve_args(&data);
    args.extend(["--metrics-token-file", token.to_str().unwrap()]);
    let node = Node::start(&args);
    let port = node.http_port;
    assert_eq!(http_get(port, "/metrics").await.0, 401);
    let wrong = "Authorization: Bearer guess\r\n";
    assert_eq!(http_get_with(port, "/metrics", wrong).await.0, 401);
    let right = "Authorization: Bearer s3cret-scrape\r\n";
    let (status, metrics) = http_get_with(port, "/metrics", right).await;
    assert_eq!(status, 200);
    assert!(sample(&metrics, "process_resident_memory_bytes").is_some());
    assert_eq!(http_get(port, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(http_get(port, "/readyz").await, (200, "ready\n".into()));
}

#[test]
fn the_command_line_documents_every_option_and_refuses_bad_ones() {
    let help = vecraft(&["--help"]).output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    for option in [
        "serve",
        "--listen",
        "--http",
        "--data-dir",
        "--metrics-token-file",
        "--tls-cert",
        "--tls-key",
        "--require-tls",
        "--config",
        "--version",
        "cert",
    ] {
        assert!(help.contains(option), "--help lacks {option}:\n{help}");
    }
    let bad = vecraft(&["serve", "--bogus"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--bogus"));
    let missing = vecraft(&["--config", "/no/such/node.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/node.toml"));
    let no_cert = vecraft(&["--require-tls", "--data-dir", "/no/such/dir"])
        .output()
        .unwrap();
    assert_eq!(no_cert.status.code(), Some(1));
    let said = String::from_utf8_lossy(&no_cert.stderr);
    assert!(said.contains("--require-tls needs a certificate"), "{said}");
    let half = vecraft(&["--tls-cert", "/no/such.crt", "--data-dir", "/no/such/dir"])
        .output()
        .unwrap();
    assert_eq!(half.status.code(), Some(1));
    let said = String::from_utf8_lossy(&half.stderr);
    assert!(
        said.contains("TLS needs both --tls-cert and --tls-key"),
        "{said}"
    );
}

/// SIGHUP asks a node to re-read its files (as `pg_ctl reload` does PostgreSQL), and a node
/// without TLS has none: it says so and serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_a_reload_not_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&crate::support::serve_args(dir.path()));
    node.signal(libc::SIGHUP);
    node.wait_for_log("SIGHUP: nothing to re-read");
    let client = connect(node.sql_port).await;
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

/// A deterministic 4-d vector for row `id`, distinct for every id.
fn fresh_vector(id: i64) -> [f64; 4] {
    let x = id as f64;
    [
        (x * 0.37).sin(),
        (x * 1.13).cos(),
        (x * 0.071).sin(),
        x / 5000.0,
    ]
}

/// Creates `table (id bigint PRIMARY KEY, embedding vector(4))` with an HNSW index (L2).
async fn create_indexed(client: &tokio_postgres::Client, table: &str) {
    let ddl = format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(4));
         CREATE INDEX ON {table} USING hnsw (embedding vector_l2_ops);"
    );
    client.batch_execute(&ddl).await.unwrap();
}

/// One multi-row INSERT into `table` of the rows `ids`, with their `fresh_vector`s.
async fn insert_fresh(
    client: &tokio_postgres::Client,
    table: &str,
    ids: impl Iterator<Item = i64>,
) {
    let values: Vec<String> = ids
        .map(|id| {
            let v = fresh_vector(id);
            format!("({id}, '[{},{},{},{}]')", v[0], v[1], v[2], v[3])
        })
        .collect();
    let insert = format!("INSERT INTO {table} VALUES {}", values.join(","));
    client.batch_execute(&insert).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_rows_are_found_through_the_live_index_before_they_seal() {
    let dir = tempfile::tempdir().unwrap();
    let node = crate::support::single_node(dir.path());
    let client = connect(node.sql_port).await;
    create_indexed(&client, "fresh").await;
    let rows = 5000i64;
    for first in (0..rows).step_by(1000) {
        insert_fresh(&client, "fresh", first..first + 1000).await;
    }

    let live_rows = "vecraft_collection_live_indexed_rows{collection=\"fresh\",shard=\"0\"}";
    let sealed = "vecraft_collection_segments{collection=\"fresh\",shard=\"0\",state=\"sealed\"}";
    let live_searches =
        "vecraft_segment_searches_total{collection=\"fresh\",method=\"live\",shard=\"0\"}";
    let metrics = metrics_when(node.http_port, "live index stuck", |m| {
        metric(m, live_rows) == rows as f64
    })
    .await;
    assert_eq!(metric(&metrics, sealed), 0.0, "nothing sealed yet");
    let before = metric(&metrics, live_searches);

    let target = fresh_vector(1234);
    let query = format!(
        "SELECT id FROM fresh ORDER BY embedding <-> '[{},{},{},{}]' LIMIT 3",
        target[0], target[1], target[2], target[3]
    );
    let found = client.query(&query, &[]).await.unwrap();
    let ids: Vec<i64> = found.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, nearest(rows, target, 3));
    let (_, metrics) = http_get(node.http_port, "/metrics").await;
    assert_eq!(metric(&metrics, live_searches), before + 1.0, "{metrics}");
}

/// The ids of the `k` rows of `0..rows` nearest `target`, by L2 distance.
fn nearest(rows: i64, target: [f64; 4], k: usize) -> Vec<i64> {
    let mut exact: Vec<(f64, i64)> = (0..rows)
        .map(|id| {
            let v = fresh_vector(id);
            let d: f64 = v.iter().zip(target).map(|(a, b)| (a - b) * (a - b)).sum();
            (d, id)
        })
        .collect();
    exact.sort_by(|a, b| a.0.total_cmp(&b.0));
    exact[..k].iter().map(|e| e.1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_segments_sealed_by_vacuum_merge_into_one_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let node = crate::support::single_node(dir.path());
    let client = connect(node.sql_port).await;
    create_indexed(&client, "merged").await;
    // Each VACUUM seals the rows written since the last one: four small sealed segments.
    let (batches, per_batch) = (4i64, 250i64);
    for b in 0..batches {
        insert_fresh(&client, "merged", b * per_batch..(b + 1) * per_batch).await;
        client.batch_execute("VACUUM merged").await.unwrap();
    }

    let sealed = "vecraft_collection_segments{collection=\"merged\",shard=\"0\",state=\"sealed\"}";
    let merges = "vecraft_segment_merges_total{collection=\"merged\",shard=\"0\"}";
    metrics_when(node.http_port, "no merge", |m| {
        metric(m, merges) == 1.0 && metric(m, sealed) == 1.0
    })
    .await;

    let rows = batches * per_batch;
    let count: i64 = client
        .query_one("SELECT count(*) FROM merged", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, rows);
    for probe in [17, 512, 999] {
        let target = fresh_vector(probe);
        let query = format!(
            "SELECT id FROM merged ORDER BY embedding <-> '[{},{},{},{}]' LIMIT 3",
            target[0], target[1], target[2], target[3]
        );
        let found = client.query(&query, &[]).await.unwrap();
        let ids: Vec<i64> = found.iter().map(|r| r.get(0)).collect();
        assert_eq!(ids, nearest(rows, target, 3), "probe {probe}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_insert_keeps_its_plan_and_evaluates_defaults_per_row() {
    let dir = tempfile::tempdir().unwrap();
    let node = crate::support::single_node(dir.path());
    let client = connect(node.sql_port).await;
    client
        .batch_execute("CREATE TABLE notes (id bigserial PRIMARY KEY, note text, score real)")
        .await
        .unwrap();
    let reused = "vecraft_kept_plan_executions_total";
    let reuses = |metrics: &str| metric(metrics, reused);
    let before = reuses(&http_get(node.http_port, "/metrics").await.1);

    let insert = client
        .prepare("INSERT INTO notes (note, score) VALUES ($1, $2)")
        .await
        .unwrap();
    for i in 0..20 {
        let n = client
            .execute(&insert, &[&format!("n{i}"), &(i as f32 / 2.0)])
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    // Inside a block the same plan stages its rows, and ROLLBACK drops them.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(&insert, &[&"gone".to_string(), &0.0f32])
        .await
        .unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();

    let after = reuses(&http_get(node.http_port, "/metrics").await.1);
    assert_eq!(
        after - before,
        20.0,
        "every execution after the first reused the plan"
    );
    let rows = client
        .query("SELECT id, note, score FROM notes ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 20);
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        ids,
        (1..=20).collect::<Vec<i64>>(),
        "a new id per execution"
    );
    let last: (String, f32) = (rows[19].get(1), rows[19].get(2));
    assert_eq!(last, ("n19".to_string(), 9.5));
}

/// A prepared search whose query vector is a parameter cast to a vector (`$1::vector`, as
/// psycopg, SQLAlchemy and langchain users write it) keeps a plan that searches the segments
/// (it used to scan and sort every row in DataFusion, hundreds of times slower), and answers
/// as the query with the vector written in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_search_with_a_cast_parameter_searches_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let node = crate::support::single_node(dir.path());
    let client = connect(node.sql_port).await;
    client
        .batch_execute(
            "CREATE COLLECTION docs (id bigint PRIMARY KEY, embedding vector(4));
             INSERT INTO docs SELECT i, array[sin(i), cos(i), sin(i * 0.5), cos(i * 0.3)]::vector
             FROM generate_series(1, 1000) AS s(i);
             CHECKPOINT",
        )
        .await
        .unwrap();
    // Searches a segment answered, whichever way (a graph, or a scan of so few rows).
    let searches = |metrics: &str| -> f64 {
        ["graph", "live", "scan"]
            .iter()
            .map(|m| {
                let name = format!(
                    "vecraft_segment_searches_total{{collection=\"docs\",method=\"{m}\",shard=\"0\"}}"
                );
                metric(metrics, &name)
            })
            .sum()
    };
    let before = searches(&http_get(node.http_port, "/metrics").await.1);
    // Declared text, as psycopg and asyncpg users' text parameters arrive.
    let search = client
        .prepare_typed(
            "SELECT id FROM docs ORDER BY embedding <-> $1::vector LIMIT 5",
            &[tokio_postgres::types::Type::TEXT],
        )
        .await
        .unwrap();
    for q in ["[0,1,0,1]", "[0.5,0.5,0.5,0.5]", "[1,0,1,0]"] {
        let got: Vec<i64> = client
            .query(&search, &[&q])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let literal = format!("SELECT id FROM docs ORDER BY embedding <-> '{q}' LIMIT 5");
        let want: Vec<i64> = client
            .query(&literal, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, want, "{q}");
    }
    let after = searches(&http_get(node.http_port, "/metrics").await.1);
    assert_eq!(
        after - before,
        6.0,
        "three prepared and three literal searches"
    );
}
