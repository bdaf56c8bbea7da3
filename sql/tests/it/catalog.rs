//! What drivers read from the system catalog: the server version, pgvector's `vector` type
//! (tokio-postgres looks up unknown result types; psycopg's `register_vector` looks it up by
//! name), and tables and columns.

use crate::support::*;

#[tokio::test]
async fn drivers_find_the_vector_type_and_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    client
        .batch_execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(3));
             INSERT INTO items VALUES (1, '[1,2.5,3]')",
        )
        .await
        .unwrap();
    let version: String = client
        .query_one("SELECT version()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        version.starts_with("PostgreSQL 16.") && version.contains("Vecraft"),
        "{version}"
    );
    // The result column is pgvector's type: tokio-postgres looks it up in pg_type, then
    // decodes pgvector's binary form.
    let row = client
        .query_one("SELECT id, embedding FROM items", &[])
        .await
        .unwrap();
    assert_eq!(row.columns()[1].type_().name(), "vector");
    assert_eq!(row.get::<_, Vector>(1), Vector(vec![1.0, 2.5, 3.0]));
    // psycopg's TypeInfo.fetch, which pgvector-python's register_vector runs.
    let info = client
        .query_one(
            "SELECT typname AS name, oid, typarray AS array_oid, oid::regtype::text AS regtype, \
             typdelim AS delimiter FROM pg_type t WHERE t.oid = to_regtype($1) ORDER BY t.oid",
            &[&"vector"],
        )
        .await
        .unwrap();
    assert_eq!(info.get::<_, String>(0), "vector");
    assert_eq!(info.get::<_, u32>(1), 16385);
    assert_eq!(info.get::<_, u32>(2), 16386);
    let ext = rows(
        &client,
        "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
    )
    .await;
    assert_eq!(ext, vec![vec![Some("0.8.6".into())]]);
}

#[tokio::test]
async fn tables_and_columns_are_listed_with_their_types() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    client
        .batch_execute(
            "CREATE TABLE docs (id bigint PRIMARY KEY, title text, embedding vector(384))",
        )
        .await
        .unwrap();
    let columns = rows(
        &client,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull \
         FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
         WHERE c.relname = 'docs' ORDER BY a.attnum",
    )
    .await;
    let row = |n: &str, t: &str, nn: &str| vec![Some(n.into()), Some(t.into()), Some(nn.into())];
    assert_eq!(
        columns,
        vec![
            row("id", "bigint", "t"),
            row("title", "text", "f"),
            row("embedding", "vector(384)", "f"),
        ]
    );
    // The table, and the index of its primary key (as psql's \d lists it).
    assert_eq!(
        rows(
            &client,
            "SELECT relname, relkind FROM pg_catalog.pg_class ORDER BY 1"
        )
        .await,
        vec![
            vec![Some("docs".into()), Some("r".into())],
            vec![Some("docs_pkey".into()), Some("i".into())]
        ]
    );
}
