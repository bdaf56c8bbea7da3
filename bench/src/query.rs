//! The measured work: kNN queries as a prepared statement with the query vector as its
//! parameter, spread over N connections, each answer and latency recorded; and `SELECT 1`
//! round trips, the protocol's floor.

use std::error::Error;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::{BufMut, BytesMut};
use futures::future::try_join_all;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Statement};

use crate::server::connect;
use crate::vectors::{Metric, Vectors};

pub fn knn_sql(table: &str, metric: Metric, k: usize) -> String {
    format!(
        "SELECT id FROM {table} ORDER BY embedding {} $1 LIMIT {k}",
        metric.operator()
    )
}

/// A query vector as a parameter, in the type the server described: pgvector's binary form
/// for `vector` (PostgreSQL and Vecraft both describe `embedding <-> $1` so), its text form
/// `[1,2,3]` for a server that describes it as `text`.
#[derive(Debug)]
pub struct QueryVector<'a>(pub &'a [f32]);

impl ToSql for QueryVector<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if ty.name() == "vector" {
            out.put_i16(i16::try_from(self.0.len())?);
            out.put_i16(0);
            self.0.iter().for_each(|x| out.put_f32(*x));
        } else {
            let mut text = String::with_capacity(self.0.len() * 12);
            text.push('[');
            for (i, x) in self.0.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                write!(text, "{x}")?;
            }
            text.push(']');
            out.put_slice(text.as_bytes());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector" || matches!(*ty, Type::TEXT | Type::VARCHAR | Type::UNKNOWN)
    }

    to_sql_checked!();
}

/// One connection with the kNN statement prepared on it.
pub struct Session {
    client: Client,
    knn: Statement,
    select1: Statement,
}

/// Opens `n` connections and prepares the statements on each.
pub async fn open_sessions(
    dsn: &str,
    n: usize,
    table: &str,
    metric: Metric,
    k: usize,
) -> Result<Vec<Session>> {
    let sql = knn_sql(table, metric, k);
    try_join_all((0..n).map(|_| async {
        let client = connect(dsn).await?;
        let knn = client
            .prepare(&sql)
            .await
            .with_context(|| format!("preparing {sql}"))?;
        let select1 = client.prepare("SELECT 1").await?;
        Ok::<_, anyhow::Error>(Session {
            client,
            knn,
            select1,
        })
    }))
    .await
}

/// `SET hnsw.ef_search` on every session; false when the server refuses the setting.
pub async fn set_ef_search(sessions: &[Session], ef: usize) -> bool {
    let sql = format!("SET hnsw.ef_search = {ef}");
    let results =
        futures::future::join_all(sessions.iter().map(|s| s.client.batch_execute(&sql))).await;
    results.iter().all(Result::is_ok)
}

/// The answers of one pass over the queries, and how long each took.
pub struct Pass {
    /// Ids answered, in query order.
    pub answers: Vec<Vec<u32>>,
    /// Latency of each query, in query order.
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Pass {
    pub fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Asks every query once, the connections taking the next query as they finish one.
pub async fn knn_pass(sessions: &[Session], queries: &Vectors) -> Result<Pass> {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let per_session = try_join_all(sessions.iter().map(|session| async {
        let mut done = Vec::new();
        loop {
            let q = next.fetch_add(1, Ordering::Relaxed);
            if q >= queries.len() {
                return Ok::<_, anyhow::Error>(done);
            }
            let asked = Instant::now();
            let rows = session
                .client
                .query(&session.knn, &[&QueryVector(queries.row(q))])
                .await?;
            let latency = asked.elapsed();
            let ids = rows
                .iter()
                .map(|row| {
                    row.try_get::<_, i64>(0)
                        .map(|id| u32::try_from(id).unwrap_or(u32::MAX))
                })
                .collect::<Result<Vec<u32>, _>>()?;
            done.push((q, ids, latency));
        }
    }))
    .await?;
    let elapsed = start.elapsed();
    let mut answers = vec![Vec::new(); queries.len()];
    let mut latencies = vec![Duration::ZERO; queries.len()];
    for (q, ids, latency) in per_session.into_iter().flatten() {
        answers[q] = ids;
        latencies[q] = latency;
    }
    Ok(Pass {
        answers,
        latencies,
        elapsed,
    })
}

/// `count` round trips of the prepared `SELECT 1`, shared by the sessions; per second.
pub async fn select1_rate(sessions: &[Session], count: usize) -> Result<f64> {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    try_join_all(sessions.iter().map(|session| async {
        while next.fetch_add(1, Ordering::Relaxed) < count {
            let row = session.client.query_one(&session.select1, &[]).await?;
            // integer, as PostgreSQL types the literal.
            let one = row.try_get::<_, i32>(0)?;
            anyhow::ensure!(one == 1, "SELECT 1 answered {one}");
        }
        Ok(())
    }))
    .await?;
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_sent_in_the_described_type() {
        let v = QueryVector(&[1.5, -2.0, 0.1]);
        let mut text = BytesMut::new();
        v.to_sql(&Type::TEXT, &mut text).unwrap();
        assert_eq!(&text[..], b"[1.5,-2,0.1]");
        // pgvector's binary layout, for a type named vector (its OID differs per database).
        let vector = Type::new(
            "vector".into(),
            16385,
            tokio_postgres::types::Kind::Simple,
            "public".into(),
        );
        assert!(QueryVector::accepts(&vector) && !QueryVector::accepts(&Type::INT4));
        let mut binary = BytesMut::new();
        v.to_sql(&vector, &mut binary).unwrap();
        let mut want = vec![0, 3, 0, 0];
        [1.5f32, -2.0, 0.1]
            .iter()
            .for_each(|x| want.extend_from_slice(&x.to_be_bytes()));
        assert_eq!(&binary[..], &want[..]);
    }

    #[test]
    fn text_floats_read_back_exactly() {
        let xs = [0.1f32, 1e-8, -3.4e38, 123_456.79];
        let mut text = BytesMut::new();
        QueryVector(&xs).to_sql(&Type::TEXT, &mut text).unwrap();
        let text = std::str::from_utf8(&text).unwrap();
        let back: Vec<f32> = text[1..text.len() - 1]
            .split(',')
            .map(|t| t.parse().unwrap())
            .collect();
        assert_eq!(back, xs);
    }
}
