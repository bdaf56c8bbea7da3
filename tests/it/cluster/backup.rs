//! A cluster's collection backed up (each shard's snapshot streamed from its leader) and
//! restored on a single node, in its shard count and in another, answering as it did; and a
//! cluster's scheduled backups, taken by the meta group's leader alone.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_backup_restores_on_a_single_node_with_the_same_answers() {
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
    drop(client);
    drop(cluster);

    let data = tempfile::tempdir().unwrap();
    let node = single_node(data.path());
    let client = connect(node.sql_port).await;
    let restored = rows(&client, &format!("RESTORE docs FROM '{url}'")).await;
    let shards_and_rows = (restored[0][2].as_deref(), restored[0][3].as_deref());
    assert_eq!(shards_and_rows, (Some("2"), Some("1000")));
    assert_eq!(answers(&client, "docs").await, before);
    let sql = format!("RESTORE docs FROM '{url}' AS one WITH (shards = 1)");
    let restored = rows(&client, &sql).await;
    assert_eq!(restored[0][2].as_deref(), Some("1"));
    assert_eq!(answers(&client, "one").await, before);
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
