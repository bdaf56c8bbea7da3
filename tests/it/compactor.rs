//! The compactor as a user sees it through `vecraft_segments`: small sealed segments merge and
//! a segment half deleted is rewritten without its dead rows, with no statement asking, while
//! searches answer as before; a transaction block that updated a row the compactor moved
//! still commits.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::support::{connect, single_node};

/// (segments, rows, dead rows) of the sealed segments of `docs`.
async fn sealed(client: &Client) -> (i64, i64, i64) {
    let sql = "SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(dead_rows), 0) \
               FROM vecraft_segments WHERE collection = 'docs' AND state = 'sealed'";
    let row = client.query_one(sql, &[]).await.unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Waits, with a deadline, until the sealed segments are `wanted`.
async fn sealed_until(client: &Client, what: &str, wanted: (i64, i64, i64)) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = sealed(client).await;
        if now == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {now:?}, not {wanted:?}");
        tokio::time::sleep(Duration::from_millis(20)).await; // pace the polls
    }
}

/// The exact 10 nearest ids to a few queries.
async fn nearest(client: &Client) -> Vec<Vec<i64>> {
    client
        .batch_execute("SET vecraft.exact_search = on")
        .await
        .unwrap();
    let mut all = Vec::new();
    for q in ["[0,0,0,0]", "[0.5,0.5,0.5,0.5]", "[1,0,1,0]"] {
        let sql = format!("SELECT id FROM docs ORDER BY embedding <-> '{q}' LIMIT 10");
        let rows = client.query(&sql, &[]).await.unwrap();
        all.push(rows.iter().map(|r| r.get(0)).collect());
    }
    all
}

const CREATE: &str = "CREATE COLLECTION docs (id bigint PRIMARY KEY, embedding vector(4))";

/// Inserts ids `part * 1000 ..` (1000 rows) and seals them into a small segment of their own.
async fn insert_sealed_part(client: &Client, part: i64) {
    let from = part * 1000;
    let sql = format!(
        "INSERT INTO docs SELECT i, array[sin(i), cos(i), sin(i * 0.5), cos(i * 0.3)]::vector \
         FROM generate_series({from}, {}) AS s(i); CHECKPOINT",
        from + 999
    );
    client.batch_execute(&sql).await.unwrap();
}

/// A block that updated a row commits after the compactor moved the row into a merged
/// segment: a merge keeps each row's version (the write that made it).
#[tokio::test]
async fn a_block_commits_after_the_compactor_moved_the_row_it_updated() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path());
    let client = connect(node.sql_port).await;
    let block = connect(node.sql_port).await;
    client.batch_execute(CREATE).await.unwrap();
    insert_sealed_part(&client, 0).await;
    block
        .batch_execute("BEGIN; UPDATE docs SET embedding = '[9,9,9,9]' WHERE id = 5")
        .await
        .unwrap();
    for part in 1..4 {
        insert_sealed_part(&client, part).await;
    }
    sealed_until(&client, "the four small segments merged", (1, 4000, 0)).await;
    block.batch_execute("COMMIT").await.unwrap();
    let row = client
        .query_one("SELECT embedding::text FROM docs WHERE id = 5", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "[9,9,9,9]");
}

#[tokio::test]
async fn small_segments_merge_and_deleted_rows_are_compacted_away_on_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path());
    let client = connect(node.sql_port).await;
    client.batch_execute(CREATE).await.unwrap();
    for part in 0..4 {
        insert_sealed_part(&client, part).await;
    }
    sealed_until(
        &client,
        "the four small segments merged into one",
        (1, 4000, 0),
    )
    .await;

    client
        .batch_execute("DELETE FROM docs WHERE id < 2000")
        .await
        .unwrap();
    let after_delete = nearest(&client).await;
    sealed_until(&client, "the half-deleted segment rewritten", (1, 2000, 0)).await;
    assert_eq!(
        nearest(&client).await,
        after_delete,
        "searches answer as before"
    );
    let count: i64 = client
        .query_one("SELECT count(*) FROM docs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2000);
}
