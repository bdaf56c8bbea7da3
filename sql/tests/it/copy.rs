//! COPY FROM STDIN in the three formats, with pgvector's vector forms, as drivers send it.

use bytes::Bytes;
use futures::{SinkExt, pin_mut};

use crate::support::*;

async fn copy(client: &Client, sql: &str, chunks: &[&[u8]]) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in(sql).await?;
    pin_mut!(sink);
    for chunk in chunks {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    sink.finish().await
}

async fn table(client: &Client) {
    client
        .batch_execute("CREATE TABLE docs (id bigint PRIMARY KEY, embedding vector(2), title text)")
        .await
        .unwrap();
}

async fn all(client: &Client) -> Vec<Vec<Option<String>>> {
    rows(client, "SELECT id, embedding, title FROM docs ORDER BY id").await
}

fn row(id: &str, v: &str, t: Option<&str>) -> Vec<Option<String>> {
    vec![Some(id.into()), Some(v.into()), t.map(str::to_string)]
}

#[tokio::test]
async fn text_and_csv_copy_split_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    table(&client).await;
    // Chunks end mid-line; escapes and NULL as PostgreSQL writes them.
    let n = copy(
        &client,
        "COPY docs FROM STDIN",
        &[b"1\t[1,2]\ta\\tb\n2\t[3", b",4]\t\\N\n", b"3\t[5,6]\tlast"],
    )
    .await
    .unwrap();
    assert_eq!(n, 3);
    let n = copy(
        &client,
        "COPY docs (title, id, embedding) FROM STDIN WITH (FORMAT csv, HEADER true)",
        &[
            b"title,id,embedding\n\"say \"\"hi\"\"\",4,\"[0.5,",
            b"1e-3]\"\n,5,\"[0,0]\"\n",
        ],
    )
    .await
    .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        all(&client).await,
        vec![
            row("1", "[1,2]", Some("a\tb")),
            row("2", "[3,4]", None),
            row("3", "[5,6]", Some("last")),
            row("4", "[0.5,0.001]", Some("say \"hi\"")),
            row("5", "[0,0]", None),
        ]
    );
}

#[tokio::test]
async fn binary_copy_reads_pgvectors_layout() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    table(&client).await;
    let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
    data.extend_from_slice(&[0; 8]);
    for (id, v) in [(1i64, [1.5f32, -2.0]), (2, [0.25, 4.0])] {
        data.extend_from_slice(&3i16.to_be_bytes());
        data.extend_from_slice(&8i32.to_be_bytes());
        data.extend_from_slice(&id.to_be_bytes());
        data.extend_from_slice(&12i32.to_be_bytes());
        data.extend_from_slice(&2u16.to_be_bytes());
        data.extend_from_slice(&0u16.to_be_bytes());
        for x in v {
            data.extend_from_slice(&x.to_be_bytes());
        }
        data.extend_from_slice(&(-1i32).to_be_bytes()); // title NULL
    }
    data.extend_from_slice(&(-1i16).to_be_bytes());
    // Sent in 5-byte pieces: tuples straddle messages.
    let chunks: Vec<&[u8]> = data.chunks(5).collect();
    let n = copy(
        &client,
        "COPY docs FROM STDIN WITH (FORMAT binary)",
        &chunks,
    )
    .await
    .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        all(&client).await,
        vec![row("1", "[1.5,-2]", None), row("2", "[0.25,4]", None)]
    );
}

#[tokio::test]
async fn a_bad_row_fails_the_copy_with_its_sqlstate() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    table(&client).await;
    for (data, code) in [
        (&b"1\t[1,2,3]\tx\n"[..], "22000"),
        (b"1\t[1,x]\tx\n", "22P02"),
        (b"1\t[1,2]\n", "22P04"),
        (b"x\t[1,2]\ta\n", "22P02"),
    ] {
        let e = copy(&client, "COPY docs FROM STDIN", &[data])
            .await
            .unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some(code), "{e:?}");
    }
    assert_eq!(sqlstate(&client, "COPY nope FROM STDIN").await, "42P01");
    assert_eq!(
        rows(&client, "SELECT count(*) FROM docs").await,
        vec![vec![Some("0".into())]]
    );
    // A duplicate key fails the batch it is in.
    copy(&client, "COPY docs FROM STDIN", &[b"1\t[1,2]\ta\n"])
        .await
        .unwrap();
    let e = copy(&client, "COPY docs FROM STDIN", &[b"1\t[1,2]\ta\n"])
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23505"));
    assert_eq!(
        rows(&client, "SELECT count(*) FROM docs").await,
        vec![vec![Some("1".into())]]
    );
}
