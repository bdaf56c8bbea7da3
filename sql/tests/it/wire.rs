//! psql-style use over the simple query protocol: DDL, INSERT, KNN, errors with SQLSTATEs,
//! a connection that stays usable, per-connection settings, and data that outlives a restart.

use crate::support::*;

#[tokio::test]
async fn a_psql_session_over_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let port = start(dir.path()).await;
    let client = connect(port).await;
    client
        .simple_query("CREATE EXTENSION IF NOT EXISTS vector")
        .await
        .unwrap();
    client
        .simple_query("CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(3), tag text)")
        .await
        .unwrap();
    let n = command_rows(
        &client,
        "INSERT INTO items VALUES (1, '[1,2,3]', 'a'), (2, '[4,5,6]', 'b'), (3, '[1,1,1]', 'a')",
    )
    .await;
    assert_eq!(n, 3);
    client
        .simple_query("CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)")
        .await
        .unwrap();
    let got = rows(&client, "SELECT id, embedding, embedding <-> '[3,1,2]' AS d FROM items ORDER BY embedding <-> '[3,1,2]' LIMIT 2").await;
    assert_eq!(
        got,
        vec![
            vec![
                Some("3".into()),
                Some("[1,1,1]".into()),
                Some("2.23606797749979".into())
            ],
            vec![
                Some("1".into()),
                Some("[1,2,3]".into()),
                Some("2.449489742783178".into())
            ],
        ]
    );
    let filtered = rows(
        &client,
        "SELECT id FROM items WHERE tag = 'a' ORDER BY embedding <=> '[1,2,3]' LIMIT 5",
    )
    .await;
    assert_eq!(
        filtered,
        vec![vec![Some("1".into())], vec![Some("3".into())]]
    );
    assert_eq!(
        command_rows(&client, "DELETE FROM items WHERE id = 2").await,
        1
    );
    assert_eq!(
        rows(&client, "SELECT count(*) FROM items").await,
        vec![vec![Some("2".into())]]
    );
}

#[tokio::test]
async fn errors_carry_sqlstates_and_leave_the_connection_usable() {
    let dir = tempfile::tempdir().unwrap();
    let port = start(dir.path()).await;
    let client = connect(port).await;
    client
        .simple_query("CREATE TABLE t (id bigint PRIMARY KEY, v vector(2))")
        .await
        .unwrap();
    client
        .simple_query("INSERT INTO t VALUES (1, '[1,2]')")
        .await
        .unwrap();
    assert_eq!(sqlstate(&client, "SELEC 1").await, "42601");
    assert_eq!(sqlstate(&client, "SELECT * FROM missing").await, "42P01");
    assert_eq!(
        sqlstate(&client, "SELECT '[1,2' <-> '[1,2]'").await,
        "22P02"
    );
    assert_eq!(
        sqlstate(&client, "SELECT v <-> '[1,2,3]' FROM t").await,
        "22000"
    );
    assert_eq!(
        sqlstate(&client, "INSERT INTO t VALUES (2, '[NaN,1]')").await,
        "22000"
    );
    assert_eq!(
        sqlstate(&client, "INSERT INTO t VALUES (1, '[0,0]')").await,
        "23505"
    );
    assert_eq!(
        sqlstate(&client, "CREATE TABLE t (id bigint PRIMARY KEY)").await,
        "42P07"
    );
    // A vector column without dimensions is pgvector's; no graph can be built on it.
    client
        .simple_query("CREATE TABLE nodims (v vector)")
        .await
        .unwrap();
    assert_eq!(
        sqlstate(
            &client,
            "CREATE INDEX ON nodims USING hnsw (v vector_l2_ops)"
        )
        .await,
        "XX000"
    );
    assert_eq!(
        sqlstate(&client, "CREATE TABLE other.t (id bigint PRIMARY KEY)").await,
        "3F000"
    );
    // Any name PostgreSQL takes is a name here, and none becomes a path: the directory is the
    // name's key, with `/` and `.` escaped.
    client
        .simple_query("CREATE TABLE \"x/../../../escaped\" (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    let mut made: Vec<String> = std::fs::read_dir(dir.path().join("collections"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    assert_eq!(
        made,
        ["nodims", "t", "x%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Fescaped"]
    );

    // Still usable after every one of them.
    assert_eq!(
        rows(&client, "SELECT id FROM t").await,
        vec![vec![Some("1".into())]]
    );
}

#[tokio::test]
async fn a_sharded_collection_fans_out_and_outlives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let explain = "EXPLAIN SELECT id FROM docs ORDER BY v <-> '[3.2,0]' LIMIT 2";
    let nearest = "SELECT id FROM docs ORDER BY v <-> '[3.2,0]' LIMIT 2";
    {
        let (port, server) = serve(dir.path()).await;
        let client = connect(port).await;
        client
            .simple_query(
                "CREATE COLLECTION docs (id bigint PRIMARY KEY, v vector(2)) WITH (shards = 3)",
            )
            .await
            .unwrap();
        client
            .simple_query("INSERT INTO docs VALUES (1, '[1,0]'), (2, '[2,0]'), (3, '[3,0]'), (4, '[4,0]'), (5, '[5,0]')")
            .await
            .unwrap();
        let plan = lines(rows(&client, explain).await);
        assert!(
            plan.contains("CollectionSearchExec") && plan.contains("shards=3"),
            "{plan}"
        );
        assert_eq!(lines(rows(&client, nearest).await), "3\n4");
        // EXPLAIN ANALYZE: each shard's rows (its k nearest, or all it holds) and time.
        let analyzed = lines(rows(&client, &format!("EXPLAIN ANALYZE {nearest}")).await);
        let shard_rows: usize = (0..3)
            .map(|i| {
                let key = format!("shard{i}_rows=");
                let at = analyzed.find(&key).unwrap_or_else(|| panic!("{analyzed}"));
                let digits = analyzed[at + key.len()..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap();
                digits.parse::<usize>().unwrap()
            })
            .sum();
        let held = rows(&client, "SELECT rows FROM vecraft_shards ORDER BY shard").await;
        let want: usize = held
            .iter()
            .map(|r| r[0].as_deref().unwrap().parse::<usize>().unwrap().min(2))
            .sum();
        assert_eq!(
            shard_rows, want,
            "2 nearest of each shard, fewer where it holds fewer"
        );
        assert!(analyzed.contains("shard2_time="), "{analyzed}");
        server.abort();
    }
    let (port, _server) = serve(dir.path()).await;
    let client = connect(port).await;
    assert_eq!(lines(rows(&client, "SELECT count(*) FROM docs").await), "5");
    assert_eq!(lines(rows(&client, nearest).await), "3\n4");
}

#[tokio::test]
async fn settings_are_per_connection_and_data_outlives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (port, server) = serve(dir.path()).await;
        let (a, b) = (connect(port).await, connect(port).await);
        a.simple_query("CREATE TABLE docs (id bigint PRIMARY KEY, v vector(2))")
            .await
            .unwrap();
        a.simple_query("INSERT INTO docs VALUES (1, '[0,1]'), (2, '[1,0]')")
            .await
            .unwrap();
        a.simple_query("SET hnsw.ef_search = 100").await.unwrap();
        let explain = "EXPLAIN SELECT id FROM docs ORDER BY v <-> '[1,0]' LIMIT 1";
        assert!(
            lines(rows(&a, explain).await).contains("ef=100"),
            "a's SET reaches its searches"
        );
        assert!(
            lines(rows(&b, explain).await).contains("ef=40"),
            "b keeps the default"
        );
        // b sees the table a created.
        assert_eq!(
            rows(&b, "SELECT count(*) FROM docs").await,
            vec![vec![Some("2".into())]]
        );
        server.abort();
    }
    let port = start(dir.path()).await;
    let c = connect(port).await;
    assert_eq!(
        rows(&c, "SELECT id FROM docs ORDER BY v <-> '[1,0.1]' LIMIT 1").await,
        vec![vec![Some("2".into())]]
    );
}
