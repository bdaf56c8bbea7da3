//! What a careless or hostile client may take of the gateway, each limit driven over the
//! wire: the client gets PostgreSQL's error (SQLSTATE and text) and the connection, or at
//! least the node, goes on serving.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::error::SqlState;

use crate::support::*;

fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .unwrap_or_else(|| panic!("no SQLSTATE in {e:?}"))
        .code()
        .to_string()
}

async fn alive(client: &Client) {
    assert_eq!(rows(client, "SELECT 1").await, [[Some("1".to_string())]]);
}

/// A statement nested too deeply to plan (it overflowed a worker's stack and aborted the
/// process) is refused with 54001 in either protocol, inside EXPLAIN, whatever it names.
#[tokio::test]
async fn deep_statements_answer_54001_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    let ors = vec!["1=1"; 100_000].join(" OR ");
    let plus = vec!["1"; 100_000].join("+");
    for sql in [
        format!("SELECT 1 WHERE {ors}"),
        format!("SELECT {plus}"),
        format!("EXPLAIN SELECT 1 WHERE {ors}"),
        format!("SELECT * FROM nope WHERE {ors}"),
        format!("SELECT 1 WHERE {}", vec!["true"; 50_000].join(" AND ")),
    ] {
        let e = client.simple_query(&sql).await.unwrap_err();
        assert_eq!(code(&e), "54001", "{e:?}");
        let db = e.as_db_error().unwrap();
        assert_eq!(db.message(), "stack depth limit exceeded");
        let e = client.prepare(&sql).await.unwrap_err();
        assert_eq!(code(&e), "54001", "Parse: {e:?}");
        alive(&client).await;
    }
    // Below the limit, long chains are planned and answered, in either protocol (they run
    // on a stack of their own).
    let sum = vec!["1"; 4_000].join("+");
    assert_eq!(
        rows(&client, &format!("SELECT {sum}")).await,
        [[Some("4000".to_string())]]
    );
    let ors = vec!["id = 7"; 2_000].join(" OR ");
    client
        .simple_query("CREATE TABLE t (id bigint PRIMARY KEY); INSERT INTO t VALUES (7), (8)")
        .await
        .unwrap();
    let found = client
        .query(&format!("SELECT id FROM t WHERE {ors}"), &[])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get::<_, i64>(0), 7);
}

/// `statement_timeout` ends a statement that runs longer (57014, as PostgreSQL words it), in
/// either protocol; `SHOW` reports it; 0 turns it off; a bad value is 22023.
#[tokio::test]
async fn statement_timeout_cancels_the_statement() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    client
        .simple_query("SET statement_timeout = '100ms'")
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "SHOW statement_timeout").await,
        [[Some("100ms".to_string())]]
    );
    let started = Instant::now();
    let e = client.simple_query("SELECT pg_sleep(5)").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    assert_eq!(
        e.as_db_error().unwrap().message(),
        "canceling statement due to statement timeout"
    );
    let e = client
        .query("SELECT pg_sleep($1)", &[&5.0f64])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "neither slept on"
    );
    alive(&client).await;
    client
        .simple_query("SET statement_timeout = 0")
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "SELECT pg_sleep(0.2), 2").await,
        [[Some("".to_string()), Some("2".to_string())]]
    );
    assert_eq!(
        sqlstate(&client, "SET statement_timeout = 'soon'").await,
        "22023"
    );
}

/// `max_connections`: the last slots are the superuser's, then every new session is refused
/// with 53300 and PostgreSQL's words; a slot given back is taken again.
#[tokio::test]
async fn connections_stop_at_max_connections() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_connections: 3,
        superuser_reserved_connections: 1,
        ..Limits::default()
    };
    let (port, _server) = serve_with(dir.path(), limits).await;
    let as_user = |user: &'static str| async move {
        let dsn = format!("host=127.0.0.1 port={port} user={user} dbname=postgres");
        match tokio_postgres::connect(&dsn, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                Ok(client)
            }
            Err(e) => Err(e),
        }
    };
    let first = as_user("app").await.unwrap();
    let _second = as_user("app").await.unwrap();
    let e = as_user("app")
        .await
        .expect_err("the reserved slot is refused");
    assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e:?}");
    assert_eq!(
        e.as_db_error().unwrap().message(),
        "remaining connection slots are reserved for roles with the SUPERUSER attribute"
    );
    let admin = as_user("postgres").await.unwrap();
    alive(&admin).await;
    let e = as_user("postgres").await.expect_err("no slot is left");
    assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e:?}");
    assert_eq!(
        e.as_db_error().unwrap().message(),
        "sorry, too many clients already"
    );
    drop(first);
    drop(admin);
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        match as_user("app").await {
            Ok(client) => break client,
            Err(_) if Instant::now() < deadline => tokio::task::yield_now().await,
            Err(e) => panic!("the slot did not come back: {e:?}"),
        }
    };
    alive(&again).await;
}

/// Named prepared statements are bounded per session (53400); closing one makes room.
#[tokio::test]
async fn prepared_statements_are_bounded_per_session() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_prepared_statements: 5,
        ..Limits::default()
    };
    let client = connect(serve_with(dir.path(), limits).await.0).await;
    let mut held = Vec::new();
    for i in 0..5 {
        held.push(client.prepare(&format!("SELECT {i}")).await.unwrap());
    }
    let e = client.prepare("SELECT 5").await.unwrap_err();
    assert_eq!(code(&e), "53400", "{e:?}");
    // tokio-postgres closes a statement it drops; the Close reaches the server before the
    // next Parse on the same connection.
    held.pop();
    let statement = client.prepare("SELECT 5").await.unwrap();
    let got: i32 = client.query_one(&statement, &[]).await.unwrap().get(0);
    assert_eq!(got, 5);
}

/// A query that needs more memory than its share fails with 53200 and the session goes on;
/// functions that would build a huge value fail with 54000 before they allocate it.
#[tokio::test]
async fn memory_is_bounded_per_query() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        node_memory_bytes: 256 << 20,
        query_memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let client = connect(serve_with(dir.path(), limits).await.0).await;
    for sql in [
        "SELECT value FROM generate_series(1, 100000000) ORDER BY value DESC",
        "SELECT length(string_agg(CAST(value AS TEXT), ',')) FROM generate_series(1, 100000000)",
    ] {
        let e = client.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e), "53200", "{sql}: {e:?}");
        assert!(
            e.as_db_error()
                .unwrap()
                .message()
                .starts_with("out of memory")
        );
        alive(&client).await;
    }
    for sql in [
        "SELECT repeat('x', 2147483647)",
        "SELECT range(1, 2000000000)",
        "SELECT lpad('x', 2000000000)",
    ] {
        assert_eq!(sqlstate(&client, sql).await, "54000", "{sql}");
    }
    // Within the share, the same shapes are answered.
    assert_eq!(
        rows(
            &client,
            "SELECT max(value) FROM (SELECT value FROM generate_series(1, 100000) ORDER BY value DESC)"
        )
        .await,
        [[Some("100000".to_string())]]
    );
}

/// A long result streams to the client as it is produced: more rows than the query's memory
/// share could hold come through, counted as they arrive.
#[tokio::test]
async fn results_stream_past_the_query_memory() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        node_memory_bytes: 64 << 20,
        query_memory_bytes: 1 << 20,
        ..Limits::default()
    };
    let client = connect(serve_with(dir.path(), limits).await.0).await;
    let stream = client
        .query_raw(
            "SELECT value FROM generate_series(1, 2000000)",
            Vec::<i64>::new(),
        )
        .await
        .unwrap();
    futures::pin_mut!(stream);
    let (mut count, mut last) = (0u64, 0i64);
    while let Some(row) = futures::StreamExt::next(&mut stream).await {
        last = row.unwrap().get(0);
        count += 1;
    }
    assert_eq!((count, last), (2_000_000, 2_000_000));
}

/// A COPY line longer than `max_copy_line_bytes` fails with 54000; a long line sent in many
/// small pieces is read once (not once per piece) and stored whole.
#[tokio::test]
async fn copy_lines_are_bounded_and_read_in_linear_time() {
    use futures::SinkExt;
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_copy_line_bytes: 1 << 20,
        ..Limits::default()
    };
    let client = connect(serve_with(dir.path(), limits).await.0).await;
    client
        .simple_query("CREATE TABLE notes (id bigint PRIMARY KEY, body text)")
        .await
        .unwrap();
    let copy = |line: Vec<u8>| {
        let client = &client;
        async move {
            let sink = client
                .copy_in::<_, bytes::Bytes>("COPY notes FROM STDIN")
                .await
                .unwrap();
            futures::pin_mut!(sink);
            for piece in line.chunks(512) {
                sink.send(bytes::Bytes::copy_from_slice(piece)).await?;
            }
            sink.finish().await
        }
    };
    let mut long = b"1\t".to_vec();
    long.extend(std::iter::repeat_n(b'a', 900_000));
    long.push(b'\n');
    assert_eq!(copy(long).await.unwrap(), 1);
    let mut too_long = b"2\t".to_vec();
    too_long.extend(std::iter::repeat_n(b'b', 2 << 20));
    let e = copy(too_long).await.unwrap_err();
    assert_eq!(code(&e), "54000", "{e:?}");
    assert_eq!(
        rows(&client, "SELECT id, length(body) FROM notes").await,
        [[Some("1".to_string()), Some("900000".to_string())]]
    );
    // A CSV record whose quoted field spans 20,000 lines, in small pieces.
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY notes FROM STDIN WITH (FORMAT csv)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    let mut record = b"3,\"".to_vec();
    record.extend(b"x\n".repeat(20_000));
    record.extend(b"\"\n");
    for piece in record.chunks(256) {
        sink.send(bytes::Bytes::copy_from_slice(piece))
            .await
            .unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 1);
    assert_eq!(
        rows(&client, "SELECT length(body) FROM notes WHERE id = 3").await,
        [[Some("40000".to_string())]]
    );
}

/// A raw client: the startup packet, then `frame`; what the server answers before it closes.
async fn answer_to(port: u16, frame: &[u8]) -> Vec<u8> {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut startup = 196608i32.to_be_bytes().to_vec();
    startup.extend_from_slice(b"user\0postgres\0\0");
    let mut packet = (startup.len() as i32 + 4).to_be_bytes().to_vec();
    packet.extend_from_slice(&startup);
    socket.write_all(&packet).await.unwrap();
    socket.write_all(frame).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut answer));
    read.await
        .expect("the server closes the connection")
        .unwrap();
    answer
}

/// Frames that panicked pgwire's decoder (a length under 4, a body shorter than its counts)
/// end that connection with 08P01 and PostgreSQL's words; the server serves on.
#[tokio::test]
async fn malformed_frames_end_the_connection_with_08p01() {
    let dir = tempfile::tempdir().unwrap();
    let port = start(dir.path()).await;
    // A Bind whose one parameter claims 100 bytes and brings 3.
    let mut bind = b"B\0\0\0\x13\0\0\0\0\0\x01\0\0\0\x64abc".to_vec();
    bind.extend_from_slice(b"\0\0");
    for (frame, words) in [
        (&b"P\0\0\0\x04"[..], "invalid string in message"),
        (&b"d\0\0\0\0"[..], "invalid message length"),
        (&bind[..], "insufficient data left in message"),
        (&b"Q\x7f\xff\xff\xff"[..], "invalid message length"),
    ] {
        let answer = answer_to(port, frame).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.contains("C08P01"), "{frame:?}: {text}");
        assert!(text.contains(words), "{frame:?}: {text}");
    }
    alive(&connect(port).await).await;
}

/// A session idle past `idle_session_timeout` is closed with 57P05.
#[tokio::test]
async fn idle_sessions_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        idle_session_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let (port, _server) = serve_with(dir.path(), limits).await;
    let dsn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let (client, connection) = tokio_postgres::connect(&dsn, NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    alive(&client).await;
    let ended = tokio::time::timeout(Duration::from_secs(20), connection)
        .await
        .expect("the server closes the idle session");
    let e = ended.unwrap().expect_err("closed with an error");
    assert_eq!(code(&e), "57P05", "{e:?}");
}

/// Errors that were XX000 get PostgreSQL's class, and a query that panicked inside the
/// planner is an error of its statement, not the end of the connection.
#[tokio::test]
async fn user_errors_have_their_sqlstates() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(start(dir.path()).await).await;
    client
        .simple_query(
            "CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(2), tag text); \
             INSERT INTO items VALUES (1, '[1,2]', 'a'), (2, '[2,3]', 'b')",
        )
        .await
        .unwrap();
    let e = client
        .simple_query(
            "SELECT id FROM items ORDER BY embedding <-> (SELECT FROM items WHERE id = 1) LIMIT 1",
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42601", "{e:?}");
    assert_eq!(
        e.as_db_error().unwrap().message(),
        "subquery must return only one column"
    );
    alive(&client).await;
    for (sql, want) in [
        ("INSERT INTO items VALUES (NULL, '[1,2]', 'c')", "23502"),
        ("SELECT (SELECT id FROM items)", "21000"),
        ("SELECT id FROM items WHERE tag ~ '('", "2201B"),
        ("INSERT INTO items VALUES ('x', '[1,2]', 'c')", "22P02"),
        ("SELECT 1 / 0", "22012"),
        ("INSERT INTO items VALUES (true, '[1,2]', 'c')", "42804"),
    ] {
        let e = client.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e), want, "{sql}: {e:?}");
        alive(&client).await;
    }
}
