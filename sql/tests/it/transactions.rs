//! Transaction blocks as the protocol shows them: the status byte of every ReadyForQuery
//! (`I`, `T`, `E`), read off the socket, through an error, a `ROLLBACK TO` that makes the
//! block usable again and a COMMIT that fails; and a session idle inside a block past the node's
//! `idle_in_transaction_session_timeout` ended with 25P03, its block rolled back.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Reads messages until a ReadyForQuery; its status byte.
async fn ready(socket: &mut TcpStream) -> u8 {
    loop {
        let kind = socket.read_u8().await.unwrap();
        let len = socket.read_i32().await.unwrap() as usize;
        let mut body = vec![0; len - 4];
        socket.read_exact(&mut body).await.unwrap();
        if kind == b'Z' {
            return body[0];
        }
    }
}

/// Sends `sql` as a simple Query; the status of the ReadyForQuery that ends its answer.
async fn status_after(socket: &mut TcpStream, sql: &str) -> char {
    let mut message = vec![b'Q'];
    message.extend_from_slice(&(sql.len() as i32 + 5).to_be_bytes());
    message.extend_from_slice(sql.as_bytes());
    message.push(0);
    socket.write_all(&message).await.unwrap();
    ready(socket).await as char
}

#[tokio::test]
async fn the_status_byte_follows_the_block_through_an_error_and_rollback_to() {
    let dir = tempfile::tempdir().unwrap();
    let port = start(dir.path()).await;
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut startup = 196608i32.to_be_bytes().to_vec();
    startup.extend_from_slice(b"user\0postgres\0\0");
    socket
        .write_all(&(startup.len() as i32 + 4).to_be_bytes())
        .await
        .unwrap();
    socket.write_all(&startup).await.unwrap();
    assert_eq!(ready(&mut socket).await, b'I');
    let steps = [
        ("BEGIN", 'T'),
        ("SAVEPOINT s", 'T'),
        ("SELECT 1/0", 'E'),
        ("SELECT 1", 'E'),
        ("ROLLBACK TO SAVEPOINT nope", 'E'),
        ("ROLLBACK TO SAVEPOINT s", 'T'),
        ("SELECT 1", 'T'),
        ("COMMIT", 'I'),
        ("SELECT 1", 'I'),
    ];
    for (sql, status) in steps {
        assert_eq!(status_after(&mut socket, sql).await, status, "after {sql}");
    }
    // A COMMIT that fails (another session committed the key first: 40001) leaves the
    // session idle, as PostgreSQL's; the client retries at once.
    let other = connect(port).await;
    other
        .batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(2))")
        .await
        .unwrap();
    let insert = "INSERT INTO items VALUES (5, '[1,1]')";
    assert_eq!(status_after(&mut socket, "BEGIN").await, 'T');
    assert_eq!(status_after(&mut socket, insert).await, 'T');
    other.batch_execute(insert).await.unwrap();
    assert_eq!(status_after(&mut socket, "COMMIT").await, 'I');
    assert_eq!(status_after(&mut socket, "BEGIN").await, 'T');
    assert_eq!(status_after(&mut socket, "ROLLBACK").await, 'I');
}

#[tokio::test]
async fn a_session_idle_in_a_block_is_ended_and_its_block_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        idle_in_transaction_session_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let (port, _server) = serve_with(dir.path(), limits).await;
    let setup = connect(port).await;
    setup
        .batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(2))")
        .await
        .unwrap();
    let dsn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let (client, connection) = tokio_postgres::connect(&dsn, NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    client
        .batch_execute("BEGIN; INSERT INTO items VALUES (1, '[1,1]')")
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), connection)
        .await
        .expect("the server ends the session");
    let e = ended.unwrap().expect_err("ended with an error");
    let code = e.as_db_error().map(|d| d.code().code().to_string());
    assert_eq!(code.as_deref(), Some("25P03"), "{e:?}");
    assert_eq!(
        rows(&setup, "SELECT count(*) FROM items").await,
        [[Some("0".into())]]
    );
    // Outside a block the session is not ended: the setup session idled all along.
    assert_eq!(rows(&setup, "SELECT 1").await, [[Some("1".into())]]);
}
