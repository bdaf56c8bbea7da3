//! The extended query protocol, as drivers use it: prepared statements with text and binary
//! parameters, binary results, kept plans that still see new values, settings and tables.

use crate::support::*;

async fn items(client: &Client) {
    client
        .batch_execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(3), tag text, score real);
             INSERT INTO items VALUES (1, '[1,2,3]', 'a', 0.5), (2, '[4,5,6]', 'b', 1.5),
                                      (3, '[1,1,1]', 'a', 2.5), (4, '[9,9,9]', 'b', 3.5)",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn prepared_knn_binds_a_new_vector_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    items(&client).await;
    let knn = client
        .prepare("SELECT id, embedding <-> $1 AS d FROM items ORDER BY embedding <-> $1 LIMIT 2")
        .await
        .unwrap();
    assert_eq!(
        knn.params()[0].name(),
        "vector",
        "described as PostgreSQL describes it"
    );
    for (query, want) in [
        ("[1,2,3]", vec![1i64, 3]),
        ("[9,9,8]", vec![4, 2]),
        ("[1,1,1.5]", vec![3, 1]),
    ] {
        let got: Vec<i64> = client
            .query(&knn, &[&VectorText(query)])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, want, "query {query}");
    }
    // Binary results: float8 distances as PostgreSQL sends them.
    let rows = client.query(&knn, &[&VectorText("[1,2,4]")]).await.unwrap();
    assert_eq!(rows[0].get::<_, f64>(1), 1.0);
}

/// A prepared search that only picks columns of the collection's answer runs without
/// DataFusion's per-execution work, and answers as the same statement with the vector written
/// in: in the statement's column order, and with the rows its own transaction wrote.
#[tokio::test]
async fn a_prepared_search_runs_directly_and_answers_as_the_written_statement() {
    use vecraft_sql::metrics::GATEWAY;

    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    items(&client).await;
    let shape = "SELECT tag, id FROM items ORDER BY embedding <-> $1 LIMIT 3";
    let knn = client.prepare(shape).await.unwrap();
    let answer = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, i64)> {
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let written = |q: &str| shape.replace("$1", &format!("'{q}'"));
    let direct_before = GATEWAY.plans_direct.get();
    let queries = ["[1,2,3]", "[9,9,8]", "[0,0,0]"];
    for q in queries {
        let prepared = answer(client.query(&knn, &[&VectorText(q)]).await.unwrap());
        let expected = answer(client.query(&written(q), &[]).await.unwrap());
        assert_eq!(prepared.len(), 3, "query {q}");
        assert_eq!(prepared, expected, "query {q}");
    }
    // Other sessions' tests may run searches too, so the count only has a floor.
    let direct = GATEWAY.plans_direct.get() - direct_before;
    assert!(direct >= queries.len() as u64, "{direct} direct executions");

    client
        .batch_execute("BEGIN; INSERT INTO items VALUES (5, '[0,0,0.5]', 'c', 0)")
        .await
        .unwrap();
    let seen = answer(client.query(&knn, &[&VectorText("[0,0,0]")]).await.unwrap());
    assert_eq!(seen[0], ("c".to_string(), 5), "its own transaction's row");
    client.batch_execute("ROLLBACK").await.unwrap();
    let after = answer(client.query(&knn, &[&VectorText("[0,0,0]")]).await.unwrap());
    assert_eq!(
        after,
        answer(client.query(&written("[0,0,0]"), &[]).await.unwrap())
    );
    assert!(
        after.iter().all(|(_, id)| *id != 5),
        "rolled back: {after:?}"
    );
}

#[tokio::test]
async fn binary_and_text_vector_parameters_give_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    client
        .batch_execute("CREATE TABLE pts (id bigint PRIMARY KEY, embedding vector(3))")
        .await
        .unwrap();
    let value = |i: i64| [(i * 7 % 13) as f32 * 0.5, (i % 5) as f32, -(i as f32) / 8.0];
    let insert = client
        .prepare("INSERT INTO pts VALUES ($1, $2)")
        .await
        .unwrap();
    for id in 0..40i64 {
        // Half the rows written in binary, half in text.
        let v = value(id);
        match id % 2 {
            0 => client.execute(&insert, &[&id, &Vector(v.to_vec())]).await,
            _ => {
                let text = format!("[{},{},{}]", v[0], v[1], v[2]);
                client.execute(&insert, &[&id, &VectorText(&text)]).await
            }
        }
        .unwrap();
    }
    let knn = client
        .prepare("SELECT id, embedding <-> $1 AS d FROM pts ORDER BY embedding <-> $1 LIMIT 5")
        .await
        .unwrap();
    for q in [[0.25f32, 1.5, -2.0], [6.0, 4.0, 0.0], [1e-3, -7.5, 3.25]] {
        let text = format!("[{},{},{}]", q[0], q[1], q[2]);
        let answer = |rows: Vec<tokio_postgres::Row>| -> Vec<(i64, f64)> {
            rows.iter().map(|r| (r.get(0), r.get(1))).collect()
        };
        let binary = answer(client.query(&knn, &[&Vector(q.to_vec())]).await.unwrap());
        let as_text = answer(client.query(&knn, &[&VectorText(&text)]).await.unwrap());
        assert_eq!(binary.len(), 5);
        assert_eq!(binary, as_text, "query {text}");
    }
    // What was written in binary reads back bit for bit.
    let row = client
        .query_one("SELECT embedding FROM pts WHERE id = 4", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vector>(0), Vector(value(4).to_vec()));
}

#[tokio::test]
async fn kept_plans_follow_settings_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    items(&client).await;
    let knn = client
        .prepare("SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 1")
        .await
        .unwrap();
    let first = |rows: Vec<tokio_postgres::Row>| rows.first().map(|r| r.get::<_, i64>(0));
    assert_eq!(
        first(client.query(&knn, &[&VectorText("[1,1,1]")]).await.unwrap()),
        Some(3)
    );
    client
        .batch_execute("SET hnsw.ef_search = 100")
        .await
        .unwrap();
    assert_eq!(
        first(client.query(&knn, &[&VectorText("[4,5,6]")]).await.unwrap()),
        Some(2)
    );
    client
        .batch_execute(
            "DROP TABLE items;
             CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(3), tag text, score real);
             INSERT INTO items VALUES (7, '[4,5,6]', 'c', 0)",
        )
        .await
        .unwrap();
    // The statement was prepared against the dropped table; it is planned again.
    assert_eq!(
        first(client.query(&knn, &[&VectorText("[1,1,1]")]).await.unwrap()),
        Some(7)
    );
    client
        .batch_execute("SET vecraft.plan_cache = off")
        .await
        .unwrap();
    assert_eq!(
        first(client.query(&knn, &[&VectorText("[1,1,1]")]).await.unwrap()),
        Some(7)
    );
}

#[tokio::test]
async fn parameters_of_every_kind_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    items(&client).await;
    // Filter, vector and k all bound; tokio-postgres sends them in binary.
    let rows = client
        .query(
            "SELECT id, tag, score FROM items WHERE tag = $1 AND score > $2 \
             ORDER BY embedding <-> $3 LIMIT $4",
            &[&"a", &1.0f32, &VectorText("[1,2,3]"), &5i64],
        )
        .await
        .unwrap();
    let got: Vec<(i64, String, f32)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got, vec![(3, "a".to_string(), 2.5)]);
    let inserted = client
        .execute(
            "INSERT INTO items (id, embedding, tag) VALUES ($1, $2, $3)",
            &[&10i64, &VectorText("[0,0,1]"), &"z"],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    let row = client
        .query_one(
            "SELECT embedding, tag, score FROM items WHERE id = $1",
            &[&10i64],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vector>(0), Vector(vec![0.0, 0.0, 1.0]));
    assert_eq!(row.get::<_, String>(1), "z");
    assert_eq!(row.get::<_, Option<f32>>(2), None);
    let deleted = client
        .execute("DELETE FROM items WHERE id = $1", &[&10i64])
        .await
        .unwrap();
    assert_eq!(deleted, 1);
}

#[tokio::test]
async fn bad_parameters_get_sqlstates_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    items(&client).await;
    let knn = client
        .prepare("SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 1")
        .await
        .unwrap();
    for (param, code) in [
        ("[1,2", "22P02"),
        ("[1,2]", "22000"),
        ("[1,nan,3]", "22000"),
    ] {
        let e = client.query(&knn, &[&VectorText(param)]).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some(code), "{param}: {e}");
    }
    let e = client.prepare("SELECT nope FROM items").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42703"), "{e}");
    let e = client.prepare("SELEC 1").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42601"), "{e}");
    let rows = client.query(&knn, &[&VectorText("[1,1,1]")]).await.unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 3);
}

#[tokio::test]
async fn transactions_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut client = connect(start(dir.path()).await).await;
    items(&client).await;
    let tx = client.transaction().await.unwrap();
    tx.execute("DELETE FROM items WHERE id = 4", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
}

#[tokio::test]
async fn casts_and_functions_give_parameters_their_types() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    items(&client).await;
    use tokio_postgres::types::Type;
    let doubled = client.prepare("SELECT $1::float8 * 2").await.unwrap();
    assert_eq!(doubled.params(), &[Type::FLOAT8]);
    let row = client.query_one(&doubled, &[&2.5f64]).await.unwrap();
    assert_eq!(row.get::<_, f64>(0), 5.0);
    let slept = client.prepare("SELECT pg_sleep($1)").await.unwrap();
    assert_eq!(slept.params(), &[Type::FLOAT8]);
    // A vector cast: the text form is read as pgvector reads it.
    let knn = client
        .prepare("SELECT id FROM items ORDER BY embedding <-> $1::vector(3) LIMIT 1")
        .await
        .unwrap();
    let row = client
        .query_one(&knn, &[&VectorText("[9,9,8]")])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 4);
    let by_function = client
        .prepare("SELECT id FROM items ORDER BY l2_distance(embedding, $1) LIMIT 1")
        .await
        .unwrap();
    let row = client
        .query_one(&by_function, &[&VectorText("[1,1,1]")])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
}

#[tokio::test]
async fn a_pipelined_reply_leaves_before_the_next_statement_ends() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    let quick = client.prepare("SELECT 1").await.unwrap();
    let slow = client.prepare("SELECT pg_sleep(2)").await.unwrap();
    // Polled together, tokio-postgres sends both before either is answered. The first reply
    // is complete at its Sync and must not wait for the second statement (PostgreSQL flushes
    // at every ReadyForQuery).
    let started = std::time::Instant::now();
    let (quick_after, slow_after) = tokio::join!(
        async {
            client.query(&quick, &[]).await.unwrap();
            started.elapsed()
        },
        async {
            client.query(&slow, &[]).await.unwrap();
            started.elapsed()
        }
    );
    assert!(
        slow_after >= std::time::Duration::from_secs(2),
        "{slow_after:?}"
    );
    assert!(
        quick_after < std::time::Duration::from_secs(1),
        "the first reply waited for the second statement: {quick_after:?}"
    );
}
