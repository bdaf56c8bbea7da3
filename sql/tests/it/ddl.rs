//! pgvector's DDL as users write it: tables without a primary key, and `CREATE INDEX … USING
//! hnsw` choosing the metric and parameters the index is built with.

use crate::support::*;

fn plan(r: Vec<Vec<Option<String>>>) -> String {
    r.into_iter()
        .flatten()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_table_without_a_primary_key_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (port, server) = serve(dir.path()).await;
        let client = connect(port).await;
        client
            .batch_execute(
                "CREATE TABLE t (id bigint, embedding vector(2));
                 INSERT INTO t VALUES (1, '[1,0]'), (1, '[0,1]'), (2, '[1,1]')",
            )
            .await
            .unwrap();
        assert_eq!(
            rows(
                &client,
                "SELECT * FROM t ORDER BY embedding <-> '[1,0]' LIMIT 5"
            )
            .await,
            vec![
                vec![Some("1".into()), Some("[1,0]".into())],
                vec![Some("2".into()), Some("[1,1]".into())],
                vec![Some("1".into()), Some("[0,1]".into())],
            ],
            "two rows with id 1, and no row-id column"
        );
        assert_eq!(command_rows(&client, "DELETE FROM t WHERE id = 1").await, 2);
        server.abort();
    }
    // Row ids carry on after a restart: new rows never collide with old ones.
    let client = connect(start(dir.path()).await).await;
    assert_eq!(
        command_rows(&client, "INSERT INTO t VALUES (3, '[0,0]'), (3, '[0,0]')").await,
        2
    );
    assert_eq!(
        rows(
            &client,
            "SELECT id, count(*) FROM t GROUP BY id ORDER BY id"
        )
        .await,
        vec![
            vec![Some("2".into()), Some("1".into())],
            vec![Some("3".into()), Some("2".into())],
        ]
    );
}

#[tokio::test]
async fn create_index_sets_the_metric_and_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    client
        .batch_execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(2));
             INSERT INTO items VALUES (1, '[1,0]'), (2, '[10,1]'), (3, '[0,1]')",
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE INDEX items_embedding_idx ON items USING hnsw (embedding vector_cosine_ops) \
             WITH (m = 8, ef_construction = 32)",
        )
        .await
        .unwrap();
    let explain = "EXPLAIN SELECT id FROM items ORDER BY embedding <=> '[1,0.01]' LIMIT 2";
    assert!(plan(rows(&client, explain).await).contains("metric=cosine"));
    assert_eq!(
        rows(
            &client,
            "SELECT id FROM items ORDER BY embedding <=> '[1,0.01]' LIMIT 2"
        )
        .await,
        vec![vec![Some("1".into())], vec![Some("2".into())]]
    );
    for (sql, code) in [
        (
            "CREATE INDEX ON items USING hnsw (embedding vector_l2_ops) WITH (m = 1)",
            "22023",
        ),
        (
            "CREATE INDEX ON items USING hnsw (embedding vector_l2_ops) WITH (m = 40, ef_construction = 40)",
            "22023",
        ),
        (
            "CREATE INDEX ON items USING hnsw (embedding vector_l2_ops) WITH (bogus = 3)",
            "22023",
        ),
        (
            "CREATE INDEX ON items USING hnsw (embedding vector_bogus_ops)",
            "42704",
        ),
        (
            "CREATE INDEX ON nope USING hnsw (embedding vector_l2_ops)",
            "42P01",
        ),
        (
            "CREATE INDEX ON items USING hnsw (nope vector_l2_ops)",
            "42703",
        ),
    ] {
        assert_eq!(sqlstate(&client, sql).await, code, "{sql}");
    }
    // Back to L2, which the next search uses.
    client
        .batch_execute("CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)")
        .await
        .unwrap();
    let explain = "EXPLAIN SELECT id FROM items ORDER BY embedding <-> '[1,0.01]' LIMIT 2";
    assert!(plan(rows(&client, explain).await).contains("metric=l2"));
    assert_eq!(
        rows(
            &client,
            "SELECT id FROM items ORDER BY embedding <-> '[1,0.01]' LIMIT 2"
        )
        .await,
        vec![vec![Some("1".into())], vec![Some("3".into())]]
    );
}

/// A schema outlives a restart, empty or not, and so do its tables' DEFAULTs and jsonb
/// values; a table in it is not the table of the same name in `public`.
#[tokio::test]
async fn schemas_and_defaults_outlive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (port, server) = serve(dir.path()).await;
        let client = connect(port).await;
        client
            .batch_execute(
                "CREATE SCHEMA empty;
                 CREATE SCHEMA vecs;
                 CREATE TABLE vecs.docs (id text PRIMARY KEY, meta jsonb NOT NULL DEFAULT '{}');
                 CREATE TABLE docs (id text PRIMARY KEY);
                 INSERT INTO vecs.docs (id, meta) VALUES ('a', '{\"b\":2,\"a\":1}')",
            )
            .await
            .unwrap();
        server.abort();
    }
    let client = connect(start(dir.path()).await).await;
    assert_eq!(
        command_rows(&client, "INSERT INTO vecs.docs (id) VALUES ('b')").await,
        1
    );
    assert_eq!(
        lines(rows(&client, "SELECT id, meta FROM vecs.docs ORDER BY id").await),
        "a\n{\"a\": 1, \"b\": 2}\nb\n{}"
    );
    assert_eq!(
        lines(
            rows(
                &client,
                "SELECT nspname FROM pg_namespace WHERE nspname IN ('empty', 'vecs') ORDER BY 1"
            )
            .await
        ),
        "empty\nvecs"
    );
    assert_eq!(sqlstate(&client, "CREATE SCHEMA empty").await, "42P06");
    assert_eq!(sqlstate(&client, "DROP SCHEMA vecs").await, "2BP01");
    client
        .batch_execute("DROP SCHEMA vecs CASCADE; DROP SCHEMA empty")
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "SELECT count(*) FROM docs").await,
        [[Some("0".to_string())]]
    );
    assert_eq!(sqlstate(&client, "SELECT * FROM vecs.docs").await, "42P01");
}

/// A serial column's sequence outlives a restart: values given before it are never given
/// again (those reserved and not handed out are skipped, as PostgreSQL skips its cached
/// values after a crash), and RETURNING reads the new ones.
#[tokio::test]
async fn sequences_outlive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ids = |rows: Vec<Vec<Option<String>>>| -> Vec<i64> {
        rows.into_iter()
            .map(|r| r[0].as_deref().unwrap().parse().unwrap())
            .collect()
    };
    let before = {
        let (port, server) = serve(dir.path()).await;
        let client = connect(port).await;
        client
            .batch_execute("CREATE TABLE items (id bigserial PRIMARY KEY, name text)")
            .await
            .unwrap();
        let sql = "INSERT INTO items (name) VALUES ('a'), ('b') RETURNING id";
        let before = ids(rows(&client, sql).await);
        server.abort();
        before
    };
    assert_eq!(before, [1, 2]);
    let client = connect(start(dir.path()).await).await;
    let sql = "INSERT INTO items (name) SELECT 'n' || x FROM generate_series(1, 200) AS g(x) RETURNING id";
    let after = ids(rows(&client, sql).await);
    assert_eq!(after.len(), 200);
    assert!(
        after[0] > 2,
        "a value given before the restart came again: {after:?}"
    );
    assert!(after.windows(2).all(|w| w[0] < w[1]), "{after:?}");
    assert_eq!(
        rows(&client, "SELECT count(DISTINCT id) FROM items").await,
        [[Some("202".to_string())]]
    );
}
