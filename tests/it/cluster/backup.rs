//! A cluster's collection backed up (each shard's snapshot streamed from its leader) and
//! restored into the cluster and on a single node, in its shard count and in others, answering
//! as it did; a single node's backup restored into the cluster; and a cluster's scheduled
//! backups, taken by the meta group's leader alone.

use super::*;

/// The exact 10 nearest (id, distance) to a few queries, as text.
async fn answers(client: &Client, table: &str) -> Vec<Vec<Vec<Option<String>>>> {
    client
        .batch_execute("SET vecraft.exact_search = on")
        .await
        .unwrap();
    let mut all = Vec::new();
    for q in [5, 321, 777] {
        let sql = format!(
            "SELECT id, v <-> '{}' AS d FROM {table} ORDER BY d LIMIT 10",
            vector(q, 8)
        );
        all.push(rows(client, &sql).await);
    }
    all
}

/// (shards, rows) of a RESTORE's answer.
fn shards_and_rows(restored: &[Vec<Option<String>>]) -> (Option<&str>, Option<&str>) {
    (restored[0][2].as_deref(), restored[0][3].as_deref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_moves_between_a_cluster_and_a_single_node_with_the_same_answers() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3, 60_000).joined().await;
    let client = cluster
        .created("docs (id bigint PRIMARY KEY, v vector(8)) WITH (shards = 2, replicas = 3)")
        .await;
    for chunk in 0..10i64 {
        let sql = insert("docs", chunk * 100..(chunk + 1) * 100, 8);
        client.execute(sql.as_str(), &[]).await.unwrap();
    }
    let before = answers(&client, "docs").await;
    let store = tempfile::tempdir().unwrap();
    let url = format!("file://{}", store.path().display());
    let taken = rows(&client, &format!("BACKUP COLLECTION docs TO '{url}'")).await;
    assert_eq!(taken[0][2].as_deref(), Some("1000"), "{taken:?}");

    // Into the cluster itself, in another shard and replica count: every gateway serves it.
    let sql = format!("RESTORE docs FROM '{url}' AS copy WITH (shards = 3, replicas = 2)");
    let restored = rows(&client, &sql).await;
    assert_eq!(shards_and_rows(&restored), (Some("3"), Some("1000")));
    assert_eq!(answers(&client, "copy").await, before);
    let other = cluster.client(2).await;
    wait_until("gateway 2 sees the restored collection", async || {
        sqlstate(&other, "SELECT 1 FROM copy").await.is_empty()
    })
    .await;
    assert_eq!(answers(&other, "copy").await, before);
    assert_eq!(sqlstate(&other, &sql).await, "42P07");

    // On a single node, in the backup's shard count and in one.
    let data = tempfile::tempdir().unwrap();
    let node = single_node(data.path());
    let single = connect(node.sql_port).await;
    let restored = rows(&single, &format!("RESTORE docs FROM '{url}'")).await;
    assert_eq!(shards_and_rows(&restored), (Some("2"), Some("1000")));
    assert_eq!(answers(&single, "docs").await, before);
    let sql = format!("RESTORE docs FROM '{url}' AS one WITH (shards = 1)");
    let restored = rows(&single, &sql).await;
    assert_eq!(restored[0][2].as_deref(), Some("1"));
    assert_eq!(answers(&single, "one").await, before);

    // And back: a single node's table with a serial key goes into the cluster, its sequence
    // going on from where it was (past the block of values the node had reserved, as after
    // a restart of the node: ids are never given twice, gaps may be); and a cluster's
    // sequences are in its backups too.
    let given = serial_table_moves(&single, &client, "counted").await;
    assert!(given > 3, "a restored id is never given again: {given}");
    let given = serial_table_moves(&client, &single, "serials").await;
    assert!(given > 3, "a restored id is never given again: {given}");
}

/// Makes `table` with a serial key and 3 rows through `from`, backs it up, restores it
/// through `to` and inserts a row there; the id the row was given.
async fn serial_table_moves(from: &Client, to: &Client, table: &str) -> i64 {
    let v = vector(1, 8);
    from.batch_execute(&format!(
        "CREATE TABLE {table} (id bigserial PRIMARY KEY, v vector(8));
         INSERT INTO {table} (v) VALUES ('{v}'), ('{v}'), ('{v}')"
    ))
    .await
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let url = format!("file://{}", store.path().display());
    rows(from, &format!("BACKUP COLLECTION {table} TO '{url}'")).await;
    let restored = rows(to, &format!("RESTORE {table} FROM '{url}'")).await;
    assert_eq!(shards_and_rows(&restored), (Some("1"), Some("3")));
    let sql = format!("INSERT INTO {table} (v) VALUES ('{v}') RETURNING id");
    let given = rows(to, &sql).await[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let ids = rows(to, &format!("SELECT id FROM {table}")).await;
    assert_eq!(ids.len(), 4, "{ids:?}");
    given
}

/// Every node has the same schedule (`--backup-every 1s --backup-keep 3`); only the meta
/// group's leader takes the backups, each holding every row written before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clusters_scheduled_backups_are_taken_by_the_meta_leader_alone() {
    use crate::support::{http_get, metric};
    let _turn = ONE_AT_A_TIME.lock().await;
    let store = tempfile::tempdir().unwrap();
    let url = format!("file://{}", store.path().display());
    let schedule = [
        "--backup-to",
        &url,
        "--backup-every",
        "1s",
        "--backup-keep",
        "3",
    ];
    let cluster = Cluster::start_with(3, 60_000, &schedule).joined().await;
    let client = cluster
        .created("docs (id bigint PRIMARY KEY, v vector(8)) WITH (shards = 2, replicas = 3)")
        .await;
    let sql = insert("docs", 0..300, 8);
    client.execute(sql.as_str(), &[]).await.unwrap();

    let ok = r#"vecraft_scheduled_backups_total{outcome="ok"}"#;
    let runs = async || {
        let mut runs = Vec::new();
        for node in cluster.nodes.iter().flatten() {
            runs.push(metric(&http_get(node.http_port, "/metrics").await.1, ok));
        }
        runs
    };
    let after_load: f64 = runs().await.iter().sum();
    wait_until("two scheduled backups after the load", async || {
        runs().await.iter().sum::<f64>() >= after_load + 2.0
    })
    .await;
    let taken = runs().await;
    assert_eq!(
        taken.iter().filter(|r| **r > 0.0).count(),
        1,
        "one node takes them: {taken:?}"
    );
    let listed = rows(&client, &format!("SHOW BACKUPS IN '{url}'")).await;
    assert!((1..=4).contains(&listed.len()), "{listed:?}");
    let newest = listed.last().unwrap();
    assert_eq!(newest[2].as_deref(), Some("docs"));
    assert_eq!(newest[3].as_deref(), Some("300"), "{newest:?}");
}
