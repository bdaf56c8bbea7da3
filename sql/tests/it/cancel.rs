//! Cancel requests: a CancelRequest on another socket stops the running statement with
//! 57014, in either protocol, and the connection goes on.

use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

use crate::support::*;

/// Sends cancel requests until `running` ends (a request that arrives before the statement
/// starts finds nothing to cancel), with a deadline; returns what the statement returned.
async fn cancel_until_done<T>(
    client: &Client,
    running: tokio::task::JoinHandle<Result<T, tokio_postgres::Error>>,
) -> Result<T, tokio_postgres::Error> {
    let token = client.cancel_token();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running.is_finished() {
        assert!(Instant::now() < deadline, "the statement was not cancelled");
        token.cancel_query(NoTls).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await; // pace the retries
    }
    running.await.unwrap()
}

#[tokio::test]
async fn a_cancel_request_stops_the_running_statement_in_both_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let port = start(dir.path()).await;
    // One connection per phase: a cancel request still in flight when a statement ends must
    // not reach the next phase's statement.
    let started = Instant::now();
    let client = std::sync::Arc::new(connect(port).await);
    let c = client.clone();
    let simple = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(60)").await });
    let e = cancel_until_done(&client, simple).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");

    let client = std::sync::Arc::new(connect(port).await);
    let c = client.clone();
    let extended = tokio::spawn(async move { c.query("SELECT pg_sleep($1)", &[&60.0f64]).await });
    let e = cancel_until_done(&client, extended).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "a sleep ran to its end"
    );

    // A connection whose statement was cancelled goes on; a short sleep runs to its end and
    // returns void, which prints empty as in PostgreSQL.
    let again = connect(port).await;
    let slept = rows(&again, "SELECT pg_sleep(0.01), 1").await;
    assert_eq!(slept, vec![vec![Some(String::new()), Some("1".into())]]);
    // The connection that was cancelled answers again. (The last cancel request may still be
    // in flight and land on the first statement here; it cannot land on all three.)
    let mut answered = None;
    for _ in 0..3 {
        match client.query_one("SELECT 2::bigint", &[]).await {
            Ok(row) => {
                answered = Some(row.get::<_, i64>(0));
                break;
            }
            Err(e) => assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}"),
        }
    }
    assert_eq!(answered, Some(2));
}
