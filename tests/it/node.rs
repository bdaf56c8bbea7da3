//! The binary as an operator runs it: settings from a config file, `/healthz`, `/readyz` and
//! `/metrics` over HTTP, a clean stop on SIGTERM, and a `--help` that lists every option.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::support::{Node, connect, http_get};

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

/// The value of the sample `name` (with its labels, as exposed) in a `/metrics` body.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
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
        "--config",
        "--version",
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
}
