//! A server under test, reached over the PostgreSQL wire: connecting, loading a dataset with
//! binary COPY in pgvector's layout, building the index, and what the server says about
//! itself (version, table size) and what the OS says (resident memory).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::{BufMut, BytesMut};
use futures::SinkExt;
use serde::Serialize;
use tokio_postgres::{Client, NoTls};

use crate::dataset::Dataset;
use crate::progress;
use crate::query::{QueryVector, knn_sql};
use crate::vectors::{Metric, Vectors};

/// A server to benchmark: a name for reports, and how to reach it.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub name: String,
    pub dsn: String,
    /// A process whose resident memory is reported (the server's, on this machine).
    pub pid: Option<u32>,
}

impl std::str::FromStr for Target {
    type Err = String;

    /// `NAME=DSN`, e.g. `vecraft=postgresql://postgres@127.0.0.1:5433/postgres`.
    fn from_str(s: &str) -> Result<Target, String> {
        match s.split_once('=') {
            Some((name, dsn))
                if !name.is_empty() && !name.contains(['/', ' ']) && !dsn.is_empty() =>
            {
                Ok(Target {
                    name: name.to_string(),
                    dsn: dsn.to_string(),
                    pid: None,
                })
            }
            _ => Err(format!(
                "'{s}' is not NAME=DSN (e.g. pg=postgresql://postgres@127.0.0.1:55432/bench)"
            )),
        }
    }
}

pub async fn connect(dsn: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(dsn, NoTls)
        .await
        .with_context(|| format!("connecting to {dsn}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("vecraft-bench: connection to the server failed: {e}");
        }
    });
    Ok(client)
}

/// How the table is indexed after the load.
#[derive(Clone, Debug, Serialize)]
pub struct IndexSpec {
    pub m: usize,
    pub ef_construction: usize,
    /// Replaces the `CREATE INDEX` statement; `{table}`, `{opclass}`, `{m}` and
    /// `{ef_construction}` are filled in. Empty: no index (exact search).
    pub sql: Option<String>,
}

impl IndexSpec {
    pub fn statement(&self, table: &str, metric: Metric) -> Option<String> {
        let template = self.sql.as_deref().unwrap_or(
            "CREATE INDEX ON {table} USING hnsw (embedding {opclass}) \
             WITH (m = {m}, ef_construction = {ef_construction})",
        );
        let sql = template
            .replace("{table}", table)
            .replace("{opclass}", metric.opclass())
            .replace("{m}", &self.m.to_string())
            .replace("{ef_construction}", &self.ef_construction.to_string());
        (!sql.trim().is_empty()).then_some(sql)
    }
}

/// Seconds from the start of the load.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct LoadTimes {
    /// `COPY` of every row.
    pub copy_s: f64,
    /// `CREATE INDEX`, after the copy.
    pub index_s: f64,
    /// From the start of the copy until the first kNN query has answered.
    pub first_query_s: f64,
}

/// Creates `table` anew, copies the base vectors in (row number = `id`), builds the index and
/// asks one query, timing each step.
pub async fn load(
    client: &Client,
    table: &str,
    data: &Dataset,
    index: &IndexSpec,
    k: usize,
) -> Result<LoadTimes> {
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
        .await?;
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await?;
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector({}))",
            data.base.dim()
        ))
        .await
        .context("creating the table")?;
    let start = Instant::now();
    copy_binary(client, table, &data.base).await?;
    let copy = start.elapsed();
    if let Some(sql) = index.statement(table, data.metric) {
        let spinner = progress::spinner(format!("building the index: {sql}"));
        client
            .batch_execute(&sql)
            .await
            .with_context(|| format!("building the index: {sql}"))?;
        spinner.finish_and_clear();
    }
    let indexed = start.elapsed();
    let knn = client.prepare(&knn_sql(table, data.metric, k)).await?;
    let rows = client
        .query(&knn, &[&QueryVector(data.queries.row(0))])
        .await?;
    ensure!(
        rows.len() == k.min(data.base.len()),
        "the first query answered {} rows",
        rows.len()
    );
    let first = start.elapsed();
    // Untimed: PostgreSQL's autovacuum would otherwise visit the new table during the first
    // measured round; Vecraft reads `VACUUM t` as a checkpoint of the table.
    let _ = client
        .batch_execute(&format!("VACUUM ANALYZE {table}"))
        .await;
    Ok(LoadTimes {
        copy_s: copy.as_secs_f64(),
        index_s: (indexed - copy).as_secs_f64(),
        first_query_s: first.as_secs_f64(),
    })
}

/// Bytes of binary COPY sent per message.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// `COPY table (id, embedding) FROM STDIN (FORMAT BINARY)`, vectors in pgvector's binary
/// layout (int16 dimensions, int16 unused, big-endian float4s).
async fn copy_binary(client: &Client, table: &str, base: &Vectors) -> Result<()> {
    let statement = format!("COPY {table} (id, embedding) FROM STDIN (FORMAT BINARY)");
    let sink = client
        .copy_in::<_, bytes::Bytes>(&statement)
        .await
        .context("starting COPY")?;
    futures::pin_mut!(sink);
    let bar = progress::bar(base.len() as u64, format!("COPY into {table}"));
    let dim =
        i16::try_from(base.dim()).context("pgvector's binary form holds up to 32767 dimensions")?;
    let mut buffer = BytesMut::with_capacity(COPY_CHUNK_BYTES + 64 * 1024);
    buffer.put_slice(b"PGCOPY\n\xff\r\n\0");
    buffer.put_i32(0); // flags
    buffer.put_i32(0); // header extension length
    let mut pending_rows = 0;
    for (id, row) in base.rows().enumerate() {
        buffer.put_i16(2);
        buffer.put_i32(8);
        buffer.put_i64(id as i64);
        buffer.put_i32(4 + 4 * i32::from(dim));
        buffer.put_i16(dim);
        buffer.put_i16(0);
        row.iter().for_each(|x| buffer.put_f32(*x));
        pending_rows += 1;
        if buffer.len() >= COPY_CHUNK_BYTES {
            sink.send(buffer.split().freeze())
                .await
                .context("sending COPY data")?;
            bar.inc(pending_rows);
            pending_rows = 0;
        }
    }
    buffer.put_i16(-1);
    sink.send(buffer.split().freeze())
        .await
        .context("sending COPY data")?;
    let copied = sink.finish().await.context("finishing COPY")?;
    bar.finish_and_clear();
    ensure!(
        copied == base.len() as u64,
        "COPY took {copied} of {} rows",
        base.len()
    );
    Ok(())
}

/// Checks a table loaded earlier (`--reuse`) holds the dataset's row count.
pub async fn check_loaded(client: &Client, table: &str, rows: usize) -> Result<()> {
    let count: i64 = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .with_context(|| format!("--reuse: reading {table}"))?
        .get(0);
    if count != rows as i64 {
        bail!("--reuse: {table} holds {count} rows, the dataset {rows}");
    }
    Ok(())
}

pub async fn version(client: &Client) -> String {
    match client.query_one("SELECT version()", &[]).await {
        Ok(row) => row.get(0),
        Err(e) => format!("unknown ({e})"),
    }
}

/// `pg_total_relation_size` (table, TOAST and indexes), where the server has it.
pub async fn relation_bytes(client: &Client, table: &str) -> Option<u64> {
    let sql = format!("SELECT pg_total_relation_size('{table}')::bigint");
    let row = client.query_one(&sql, &[]).await.ok()?;
    let bytes: i64 = row.try_get(0).ok()?;
    u64::try_from(bytes).ok()
}

/// Resident memory of a local process, from `/proc` (Linux).
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Waits until a server accepts connections, up to `timeout`.
pub async fn wait_until_up(dsn: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match connect(dsn).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_name_and_dsn() {
        let t: Target = "pg=postgresql://postgres@127.0.0.1:55432/bench?x=1"
            .parse()
            .unwrap();
        assert_eq!(
            (t.name.as_str(), t.dsn.as_str()),
            ("pg", "postgresql://postgres@127.0.0.1:55432/bench?x=1")
        );
        assert!("postgresql://h/db".parse::<Target>().is_err());
        assert!("=postgresql://h/db".parse::<Target>().is_err());
        assert!("pg=".parse::<Target>().is_err());
    }

    #[test]
    fn the_index_statement_fills_its_template() {
        let spec = IndexSpec {
            m: 16,
            ef_construction: 64,
            sql: None,
        };
        assert_eq!(
            spec.statement("items", Metric::Cosine).unwrap(),
            "CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        );
        let custom = IndexSpec {
            sql: Some("CREATE INDEX i ON {table} USING ivfflat (embedding {opclass})".into()),
            ..spec
        };
        assert_eq!(
            custom.statement("t", Metric::L2).unwrap(),
            "CREATE INDEX i ON t USING ivfflat (embedding vector_l2_ops)"
        );
        let none = IndexSpec {
            sql: Some(" ".into()),
            ..custom
        };
        assert_eq!(none.statement("t", Metric::L2), None);
    }
}
