//! Helpers every wire test uses: a gateway on a free port, a tokio-postgres client, and
//! short ways to read rows, command counts and SQLSTATEs.

use std::path::Path;
use std::sync::Arc;

use tokio_postgres::types::{FromSql, Type};
pub use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use vecraft_sql::catalog::Catalog;
pub use vecraft_sql::limits::Limits;

/// Starts a gateway on a free loopback port; returns its port and the serving task.
pub async fn serve(dir: &Path) -> (u16, tokio::task::JoinHandle<std::io::Result<()>>) {
    serve_with(dir, Limits::default()).await
}

/// [`serve`] with `limits`.
pub async fn serve_with(
    dir: &Path,
    limits: Limits,
) -> (u16, tokio::task::JoinHandle<std::io::Result<()>>) {
    // A previous server's collections close as its connections wind down: wait for their
    // log locks, with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let catalog = loop {
        match Catalog::open(dir) {
            Ok(c) => break Arc::new(c),
            Err(_) if std::time::Instant::now() < deadline => tokio::task::yield_now().await,
            Err(e) => panic!("catalog did not open: {e}"),
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (
        port,
        tokio::spawn(vecraft_sql::server::serve_with(listener, catalog, limits)),
    )
}

pub async fn start(dir: &Path) -> u16 {
    serve(dir).await.0
}

pub async fn connect(port: u16) -> Client {
    let dsn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let (client, connection) = tokio_postgres::connect(&dsn, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Rows of the last result, as text.
pub async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// Every value of a result, one per line (an EXPLAIN plan, a column of ids).
pub fn lines(rows: Vec<Vec<Option<String>>>) -> String {
    rows.into_iter()
        .flatten()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn command_rows(client: &Client, sql: &str) -> u64 {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(n),
            _ => None,
        })
        .unwrap()
}

pub async fn sqlstate(client: &Client, sql: &str) -> String {
    let e = client.simple_query(sql).await.expect_err(sql);
    e.code()
        .unwrap_or_else(|| panic!("{sql}: no SQLSTATE in {e}"))
        .code()
        .to_string()
}

/// pgvector's binary form, as a client that knows the type reads it.
#[derive(Debug, PartialEq)]
pub struct Vector(pub Vec<f32>);

impl<'a> FromSql<'a> for Vector {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let dims = u16::from_be_bytes([raw[0], raw[1]]) as usize;
        let values = raw[4..]
            .chunks_exact(4)
            .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<_>>();
        assert_eq!(values.len(), dims);
        Ok(Vector(values))
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }
}

/// Sent in pgvector's binary form (dimensions, a reserved word, big-endian floats), as
/// pgvector's adapters send a parameter described as `vector`.
impl tokio_postgres::types::ToSql for Vector {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&u16::try_from(self.0.len())?.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        for x in &self.0 {
            out.extend_from_slice(&x.to_be_bytes());
        }
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A vector parameter in pgvector's text form (`[1,2,3]`), sent as text whatever type the
/// server describes: PostgreSQL (and Vecraft) describe `embedding <-> $1` as `vector`, which
/// tokio-postgres's `&str` refuses.
#[derive(Debug)]
pub struct VectorText<'a>(pub &'a str);

impl tokio_postgres::types::ToSql for VectorText<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector" || matches!(*ty, Type::TEXT | Type::VARCHAR | Type::UNKNOWN)
    }

    fn encode_format(&self, _ty: &Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }

    tokio_postgres::types::to_sql_checked!();
}
