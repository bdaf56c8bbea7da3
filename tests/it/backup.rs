//! Backups as a user takes them, over the wire: `BACKUP … TO`, `SHOW BACKUPS IN` and
//! `RESTORE … FROM` against a local directory and against a real S3-compatible server (moto's,
//! started by `compat/s3.sh`), with the answers of the restored collection compared to the
//! source's, and the errors (SQLSTATE) of bad URLs, options, stores and objects.

use std::path::Path;
use std::process::Command;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::Client;
use vecraft_sqllogictest::oracle::compat_dir;

use crate::support::{Node, connect, http_get, metric, metrics_when, serve_args, single_node};

const DIMS: usize = 8;
const BUCKET: &str = "vecraft-backups";

/// An S3-compatible server of the test's own; stopped when dropped.
struct S3 {
    dir: tempfile::TempDir,
    port: u16,
}

impl S3 {
    async fn start() -> S3 {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s3 = S3 { dir, port };
        s3.run().await;
        s3
    }

    /// Starts the server on its port with an empty bucket.
    async fn run(&self) {
        let out = Command::new(compat_dir().join("s3.sh"))
            .args([
                "start",
                self.dir.path().to_str().unwrap(),
                &self.port.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (status, _) = self.http("PUT", &format!("/{BUCKET}")).await;
        assert_eq!(status, 200, "the bucket is created");
    }

    fn stop(&self) {
        let out = Command::new(compat_dir().join("s3.sh"))
            .args(["stop", self.dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success());
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn http(&self, method: &str, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response.split(' ').nth(1).unwrap().parse().unwrap();
        (status, response)
    }

    /// Bytes of the objects under `prefix` in the bucket, as the server lists them.
    async fn stored_bytes(&self, prefix: &str) -> u64 {
        let (status, body) = self
            .http(
                "GET",
                &format!("/{BUCKET}?list-type=2&prefix={prefix}&max-keys=1000"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            !body.contains("<IsTruncated>true"),
            "one page lists them all"
        );
        body.split("<Size>")
            .skip(1)
            .map(|s| s.split('<').next().unwrap().parse::<u64>().unwrap())
            .sum()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

fn vector(i: i64) -> String {
    let values: Vec<String> = (0..DIMS)
        .map(|d| format!("{:.6}", ((i * 7919 + d as i64 * 104_729) as f64).sin()))
        .collect();
    format!("[{}]", values.join(","))
}

async fn load(client: &Client, table: &str, ids: std::ops::Range<i64>) {
    let ids: Vec<i64> = ids.collect();
    for chunk in ids.chunks(250) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| format!("({i}, 'tag{}', '{}')", i % 7, vector(*i)))
            .collect();
        let sql = format!("INSERT INTO {table} VALUES {}", values.join(","));
        client.batch_execute(&sql).await.unwrap();
    }
}

/// The exact 10 nearest (id, distance) to a few queries: what a restore must answer alike.
async fn answers(client: &Client, table: &str) -> Vec<Vec<(i64, f64)>> {
    client
        .batch_execute("SET vecraft.exact_search = on")
        .await
        .unwrap();
    let mut all = Vec::new();
    for q in [3, 500, 1234] {
        let sql = format!(
            "SELECT id, embedding <-> '{}' AS d FROM {table} ORDER BY d LIMIT 10",
            vector(q)
        );
        let rows = client.query(&sql, &[]).await.unwrap();
        all.push(rows.iter().map(|r| (r.get(0), r.get(1))).collect());
    }
    all
}

async fn count(client: &Client, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    client.query_one(&sql, &[]).await.unwrap().get(0)
}

/// The SQLSTATE `sql` fails with; the connection stays usable afterwards.
async fn sqlstate(client: &Client, sql: &str) -> String {
    let err = client.simple_query(sql).await.expect_err(sql);
    let code = err.code().map(|c| c.code().to_string());
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1, "the connection is usable after {sql}");
    code.unwrap_or_else(|| panic!("{sql}: no SQLSTATE in {err}"))
}

/// The rows of a backup statement, each column as text.
async fn rows(client: &Client, sql: &str) -> Vec<Vec<String>> {
    let messages = client.simple_query(sql).await.unwrap();
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or_default().to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

async fn create_docs(client: &Client, table: &str) {
    let sql = format!(
        "CREATE COLLECTION {table} (id bigint PRIMARY KEY, tag text, embedding vector({DIMS})) \
         WITH (m = 8, ef_construction = 32)"
    );
    client.batch_execute(&sql).await.unwrap();
}

/// The largest file under `dir`.
fn largest_file(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap()
}

#[tokio::test]
async fn a_backup_in_a_directory_restores_with_the_same_answers_in_any_shard_count() {
    let (data, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node = single_node(data.path());
    let client = connect(node.sql_port).await;
    create_docs(&client, "docs").await;
    load(&client, "docs", 0..2000).await;
    client
        .batch_execute("DELETE FROM docs WHERE id < 200")
        .await
        .unwrap();
    let before = answers(&client, "docs").await;
    let url = format!("file://{}", store.path().display());

    let taken = rows(&client, &format!("BACKUP COLLECTION docs TO '{url}'")).await;
    let [id, collections, rows_, bytes, uploaded] = taken[0].as_slice() else {
        panic!("one row of five columns: {taken:?}");
    };
    assert_eq!((collections.as_str(), rows_.as_str()), ("docs", "1800"));
    assert_eq!(bytes, uploaded, "a first backup uploads everything");
    let listed = rows(&client, &format!("SHOW BACKUPS IN '{url}'")).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (&listed[0][0], &listed[0][2], &listed[0][3]),
        (id, collections, rows_)
    );

    client.batch_execute("DROP COLLECTION docs").await.unwrap();
    let restored = rows(&client, &format!("RESTORE COLLECTION docs FROM '{url}'")).await;
    assert_eq!(restored[0][..4], ["docs", id.as_str(), "1", "1800"]);
    assert_eq!(answers(&client, "docs").await, before);
    let sql = format!("RESTORE docs FROM '{url}' AS docs4 WITH (shards = 4, backup = '{id}')");
    let restored = rows(&client, &sql).await;
    assert_eq!(restored[0][..4], ["docs4", id.as_str(), "4", "1800"]);
    assert_eq!(answers(&client, "docs4").await, before);

    // Bad input: each its SQLSTATE, and nothing changes.
    let cases = [
        (format!("RESTORE docs FROM '{url}'"), "42P07"),
        (
            format!("RESTORE docs FROM '{url}' AS d2 WITH (colour = 1)"),
            "22023",
        ),
        (
            format!("RESTORE docs FROM '{url}' AS d2 WITH (shards = 0)"),
            "22023",
        ),
        (
            format!("RESTORE docs FROM '{url}' AS d2 WITH (backup = 'nope')"),
            "22023",
        ),
        (format!("RESTORE nothere FROM '{url}'"), "22023"),
        ("BACKUP ALL TO 'ftp://host/x'".to_string(), "22023"),
        ("BACKUP ALL TO 'not a url'".to_string(), "22023"),
        (format!("BACKUP COLLECTION nothere TO '{url}'"), "42P01"),
        (format!("SHOW BACKUPS IN '{url}/not-there'"), "58030"),
        ("BACKUP ALL TO".to_string(), "42601"),
    ];
    for (sql, code) in &cases {
        assert_eq!(sqlstate(&client, sql).await, *code, "{sql}");
    }
    client.batch_execute("BEGIN").await.unwrap();
    let sql = format!("BACKUP ALL TO '{url}'");
    let err = client.simple_query(&sql).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "25001");
    client.batch_execute("ROLLBACK").await.unwrap();

    // A corrupt object: the restore refuses it (XX001) and leaves no collection.
    let blob = largest_file(&store.path().join("blobs"));
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let sql = format!("RESTORE docs FROM '{url}' AS docs_bad");
    assert_eq!(sqlstate(&client, &sql).await, "XX001");
    assert_eq!(sqlstate(&client, "SELECT * FROM docs_bad").await, "42P01");

    // Restored collections are ordinary ones: they survive a restart.
    drop(client);
    drop(node);
    let node = Node::start(&serve_args(data.path()));
    let client = connect(node.sql_port).await;
    assert_eq!(answers(&client, "docs4").await, before);
    assert_eq!(count(&client, "docs").await, 1800);
}

#[tokio::test]
async fn backups_to_an_s3_server_are_incremental_and_survive_the_store_going_away() {
    let s3 = S3::start().await;
    let data = tempfile::tempdir().unwrap();
    let endpoint = format!("aws_endpoint={}", s3.endpoint());
    let mut args = serve_args(data.path());
    args.extend(["--backup-store-option", &endpoint]);
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let node = Node::start_with_env(&args, &env);
    let client = connect(node.sql_port).await;
    create_docs(&client, "docs").await;
    load(&client, "docs", 0..5000).await;
    let url = format!("s3://{BUCKET}/nightly");
    let first = rows(&client, &format!("BACKUP ALL TO '{url}'")).await;
    let stored = s3.stored_bytes("nightly/blobs/").await;
    assert_eq!(
        first[0][4],
        stored.to_string(),
        "what it uploaded is in the store"
    );

    // 1% more rows: the next backup uploads about 1% of the bytes.
    load(&client, "docs", 5000..5050).await;
    let second = rows(&client, &format!("BACKUP ALL TO '{url}'")).await;
    let added = s3.stored_bytes("nightly/blobs/").await - stored;
    assert_eq!(second[0][4], added.to_string());
    assert!(added * 100 < stored * 3, "{added} bytes added to {stored}");
    assert_eq!(
        rows(&client, &format!("SHOW BACKUPS IN '{url}'"))
            .await
            .len(),
        2
    );

    let before = answers(&client, "docs").await;
    client.batch_execute("DROP COLLECTION docs").await.unwrap();
    let restored = rows(&client, &format!("RESTORE docs FROM '{url}'")).await;
    assert_eq!(restored[0][3], "5050");
    assert_eq!(answers(&client, "docs").await, before);

    let missing = "BACKUP ALL TO 's3://no-such-bucket/x'";
    assert_eq!(sqlstate(&client, missing).await, "58030");
    // The store goes away: the backup fails with an I/O error; once it is back, a retry works.
    s3.stop();
    let sql = format!("BACKUP ALL TO '{url}'");
    assert_eq!(sqlstate(&client, &sql).await, "58030");
    s3.run().await;
    let retried = rows(&client, &sql).await;
    assert_eq!(retried[0][2], "5050");
}

/// `vecraft` with `args`, run to its end: its exit code and what it printed.
fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vecraft"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn the_cli_backs_up_lists_and_restores_through_a_running_node() {
    let (data, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node = single_node(data.path());
    let client = connect(node.sql_port).await;
    create_docs(&client, "docs").await;
    load(&client, "docs", 0..500).await;
    let before = answers(&client, "docs").await;
    let dsn = format!("host=127.0.0.1 port={} user=postgres", node.sql_port);
    let url = format!("file://{}", store.path().display());

    let (code, out) = cli(&["backup", &url, "--collection", "docs", "--dsn", &dsn]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rows: 500"), "{out}");
    let (code, out) = cli(&["backups", &url, "--dsn", &dsn]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("collections=docs rows=500"), "{out}");
    let (code, out) = cli(&[
        "restore", "docs", &url, "--as", "copy", "--shards", "2", "--dsn", &dsn,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("shards: 2"), "{out}");
    assert_eq!(answers(&client, "copy").await, before);
    // A failure is said with its SQLSTATE, and the exit code is 1.
    let (code, out) = cli(&["restore", "docs", &url, "--as", "copy", "--dsn", &dsn]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("42P07"), "{out}");
}

/// `--backup-to … --backup-every 1s --backup-keep 2`: the node backs its collections up on its
/// own, keeps the newest two (retention deletes the rest), and the newest restores every row
/// written before it was taken.
#[tokio::test]
async fn scheduled_backups_run_on_their_own_and_keep_the_newest() {
    let (data, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = format!("file://{}", store.path().join("scheduled").display());
    let mut args = serve_args(data.path());
    args.extend([
        "--backup-to",
        &url,
        "--backup-every",
        "1s",
        "--backup-keep",
        "2",
    ]);
    let node = Node::start(&args);
    let client = connect(node.sql_port).await;
    create_docs(&client, "docs").await;
    load(&client, "docs", 0..300).await;

    let ok = r#"vecraft_scheduled_backups_total{outcome="ok"}"#;
    let (_, metrics) = http_get(node.http_port, "/metrics").await;
    let loaded = metric(&metrics, ok);
    // Two more after the load (the newest began after every row was written), and four in
    // all, so that retention had backups to delete.
    let wanted = (loaded + 2.0).max(4.0);
    let metrics = metrics_when(node.http_port, "four scheduled backups", |m| {
        metric(m, ok) >= wanted
    })
    .await;
    assert_eq!(
        metric(
            &metrics,
            r#"vecraft_scheduled_backups_total{outcome="failed"}"#
        ),
        0.0
    );
    assert!(metric(&metrics, "vecraft_scheduled_backup_last_success_seconds") > 1.7e9);
    let runs = metric(&metrics, ok);
    let deleted = metric(
        &metrics,
        r#"vecraft_backup_retention_deleted_total{kind="backup"}"#,
    );
    assert!(
        runs >= 4.0 && deleted >= runs - 2.0,
        "{runs} backups taken, {deleted} deleted, 2 kept"
    );
    let listed = rows(&client, &format!("SHOW BACKUPS IN '{url}'")).await;
    // Two kept, and at most one more taken since and not yet thinned out.
    assert!((2..=3).contains(&listed.len()), "{listed:?}");
    let restored = rows(&client, &format!("RESTORE docs FROM '{url}' AS restored")).await;
    assert_eq!(restored[0][0], "restored");
    assert_eq!(count(&client, "restored").await, 300);
}

/// While a backup runs, `vecraft_backup_progress` shows it (here it waits on a retention
/// sweep's mark, so it is caught running); once it answers, the view is empty again.
#[tokio::test]
async fn a_running_backup_shows_its_progress() {
    let (data, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node = single_node(data.path());
    let client = connect(node.sql_port).await;
    create_docs(&client, "docs").await;
    load(&client, "docs", 0..100).await;
    let progress = "SELECT operation, url, target, total_bytes, done_bytes, total_shards, \
                    done_shards FROM vecraft_backup_progress";
    assert!(rows(&client, progress).await.is_empty(), "nothing runs yet");

    let sweeps = store.path().join("sweeps");
    std::fs::create_dir_all(&sweeps).unwrap();
    std::fs::write(sweeps.join("running"), b"").unwrap();
    let url = format!("file://{}", store.path().display());
    let backup = {
        let (client, sql) = (
            connect(node.sql_port).await,
            format!("BACKUP COLLECTION docs TO '{url}'"),
        );
        tokio::spawn(async move { rows(&client, &sql).await })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let running = loop {
        let running = rows(&client, progress).await;
        if !running.is_empty() {
            break running;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never showed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // pace the polls
    };
    let expected = ["backup", &url, "docs", "", "0", "1", "0"].map(String::from);
    assert_eq!(
        running,
        vec![expected.to_vec()],
        "waiting, with nothing read yet"
    );
    std::fs::remove_file(sweeps.join("running")).unwrap();
    let taken = backup.await.unwrap();
    assert_eq!(taken[0][2], "100");
    assert!(
        rows(&client, progress).await.is_empty(),
        "and gone once it answered"
    );
}

/// Waits until `vecraft_backup_progress` shows a running `operation`, or `task` ends first;
/// whether it was caught running.
async fn caught_running<T>(
    client: &Client,
    operation: &str,
    task: &tokio::task::JoinHandle<T>,
) -> bool {
    let sql = format!("SELECT target FROM vecraft_backup_progress WHERE operation = '{operation}'");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if !rows(client, &sql).await.is_empty() {
            return true;
        }
        if task.is_finished() {
            return false;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {operation} ever showed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await; // pace the polls
    }
}

/// `kill -9` of the node in the middle of a backup (held there by a sweep's mark) and of a
/// restore (caught by its progress row): after each restart every acknowledged row is there,
/// the cut backup is not listed, no half-restored collection is visible, and both run again.
#[tokio::test]
async fn a_node_killed_during_a_backup_or_a_restore_keeps_what_it_acknowledged() {
    let (data, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut node = single_node(data.path());
    let mut client = connect(node.sql_port).await;
    create_docs(&client, "docs").await;
    load(&client, "docs", 0..20_000).await;
    let before = answers(&client, "docs").await;
    let url = format!("file://{}", store.path().display());
    rows(&client, &format!("BACKUP COLLECTION docs TO '{url}'")).await;

    let sweep_mark = store.path().join("sweeps").join("running");
    std::fs::create_dir_all(sweep_mark.parent().unwrap()).unwrap();
    std::fs::write(&sweep_mark, b"").unwrap();
    let other = connect(node.sql_port).await;
    let sql = format!("BACKUP COLLECTION docs TO '{url}'");
    let backup = tokio::spawn(async move { other.simple_query(&sql).await.map(|_| ()) });
    assert!(
        caught_running(&client, "backup", &backup).await,
        "held by the mark"
    );
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    assert!(backup.await.unwrap().is_err(), "the backup was cut");
    std::fs::remove_file(&sweep_mark).unwrap();
    node = single_node(data.path());
    client = connect(node.sql_port).await;
    assert_eq!(answers(&client, "docs").await, before);
    let listed = rows(&client, &format!("SHOW BACKUPS IN '{url}'")).await;
    assert_eq!(listed.len(), 1, "the cut backup is not listed");

    // Into four shards the rows are routed anew, which takes long enough to be caught.
    let restore = format!("RESTORE docs FROM '{url}' AS copy WITH (shards = 4)");
    let mut attempts = 0;
    loop {
        attempts += 1;
        let other = connect(node.sql_port).await;
        let sql = restore.clone();
        let task = tokio::spawn(async move { other.simple_query(&sql).await.map(|_| ()) });
        if caught_running(&client, "restore", &task).await {
            node.child.kill().unwrap();
            node.child.wait().unwrap();
            let _ = task.await;
            break;
        }
        // It finished before it was seen: undo it and try again.
        assert!(attempts < 5, "every restore finished before it was seen");
        task.await.unwrap().unwrap();
        client.batch_execute("DROP COLLECTION copy").await.unwrap();
    }
    node = single_node(data.path());
    client = connect(node.sql_port).await;
    assert_eq!(
        sqlstate(&client, "SELECT count(*) FROM copy").await,
        "42P01"
    );
    assert_eq!(answers(&client, "docs").await, before);
    let restored = rows(&client, &restore).await;
    assert_eq!(
        (restored[0][2].as_str(), restored[0][3].as_str()),
        ("4", "20000")
    );
    assert_eq!(answers(&client, "copy").await, before);
}
