//! The sqllogictest runner: `.slt` files checked over the PostgreSQL wire with tokio-postgres,
//! against Vecraft or any PostgreSQL (with pgvector) — the same files, so behaviour that
//! claims to be pgvector's is checked against pgvector.
//!
//! Each file runs twice, once per protocol: simple query (what psql sends; values arrive as
//! text) and extended query (what drivers send: Parse/Bind/Execute, values arrive binary and
//! are printed here the way PostgreSQL prints them). Both must give the same text.
//!
//! Labels: the runner adds `vecraft` or `postgres`, so files say `onlyif vecraft` for what
//! only Vecraft has (EXPLAIN output, its own settings).

pub mod oracle;

use std::time::Duration;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use vecraft_planner::vector_text::{format_double, format_real, format_vector};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Simple,
    Extended,
}

/// One connection to the server under test.
pub struct Postgres {
    client: Client,
    protocol: Protocol,
    connection: tokio::task::JoinHandle<()>,
}

impl Postgres {
    pub async fn connect(dsn: &str, protocol: Protocol) -> Result<Postgres, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(dsn, NoTls).await?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Postgres {
            client,
            protocol,
            connection,
        })
    }

    async fn run_simple(
        &self,
        sql: &str,
    ) -> Result<DBOutput<DefaultColumnType>, tokio_postgres::Error> {
        let mut rows = Vec::new();
        let mut columns = None;
        let mut count = 0;
        for message in self.client.simple_query(sql).await? {
            match message {
                SimpleQueryMessage::RowDescription(c) => columns = Some(c.len()),
                SimpleQueryMessage::Row(row) => {
                    columns = Some(row.len());
                    rows.push((0..row.len()).map(|i| cell(row.get(i))).collect());
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        Ok(match columns {
            Some(n) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            },
            None => DBOutput::StatementComplete(count),
        })
    }

    async fn run_extended(
        &self,
        sql: &str,
    ) -> Result<DBOutput<DefaultColumnType>, tokio_postgres::Error> {
        let statement = self.client.prepare(sql).await?;
        if statement.columns().is_empty() {
            return Ok(DBOutput::StatementComplete(
                self.client.execute(&statement, &[]).await?,
            ));
        }
        let mut rows = Vec::new();
        for row in self.client.query(&statement, &[]).await? {
            let mut out = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                out.push(cell(row.try_get::<_, Text>(i)?.0.as_deref()));
            }
            rows.push(out);
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; statement.columns().len()],
            rows,
        })
    }
}

/// sqllogictest's spelling of NULL and of the empty string.
fn cell(value: Option<&str>) -> String {
    match value {
        None => "NULL".into(),
        Some("") => "(empty)".into(),
        Some(v) => v.to_string(),
    }
}

/// A timestamp as PostgreSQL prints it: seconds, then only the digits of a fraction it has.
fn timestamp_text(t: chrono::NaiveDateTime) -> String {
    use chrono::Timelike;
    let micros = t.nanosecond() / 1_000;
    let whole = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if micros == 0 {
        return whole;
    }
    format!("{whole}.{}", format!("{micros:06}").trim_end_matches('0'))
}

/// A binary value printed as PostgreSQL prints it in text.
struct Text(Option<String>);

impl<'a> FromSql<'a> for Text {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = match *ty {
            Type::BOOL => if bool::from_sql(ty, raw)? { "t" } else { "f" }.to_string(),
            Type::INT2 => i16::from_sql(ty, raw)?.to_string(),
            Type::INT4 => i32::from_sql(ty, raw)?.to_string(),
            Type::INT8 => i64::from_sql(ty, raw)?.to_string(),
            Type::OID => u32::from_sql(ty, raw)?.to_string(),
            Type::CHAR => match i8::from_sql(ty, raw)? {
                0 => String::new(), // '\0', which PostgreSQL prints as the empty string
                c => (c as u8 as char).to_string(),
            },
            Type::FLOAT4 => format_real(f32::from_sql(ty, raw)?),
            Type::FLOAT8 => format_double(f64::from_sql(ty, raw)?),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN | Type::JSON => {
                String::from_utf8(raw.to_vec())?
            }
            // jsonb: a version byte (1), then the text.
            Type::JSONB => match raw.split_first() {
                Some((1, text)) => String::from_utf8(text.to_vec())?,
                _ => return Err("jsonb of an unknown version".into()),
            },
            Type::UUID => uuid_text(raw)?,
            Type::DATE => chrono::NaiveDate::from_sql(ty, raw)?.to_string(),
            Type::TIMESTAMP => timestamp_text(chrono::NaiveDateTime::from_sql(ty, raw)?),
            // The server's TimeZone is UTC in both engines' runs.
            Type::TIMESTAMPTZ => {
                let instant = chrono::DateTime::<chrono::Utc>::from_sql(ty, raw)?;
                format!("{}+00", timestamp_text(instant.naive_utc()))
            }
            Type::NUMERIC => {
                vecraft_sql::numeric::from_binary(raw).ok_or("numeric of an unknown form")?
            }
            ref t if t.name() == "vector" => {
                let values: Vec<f32> = raw
                    .get(4..)
                    .ok_or("short vector")?
                    .chunks_exact(4)
                    .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                format_vector(&values)
            }
            ref t if t.name() == "halfvec" => {
                format_vector(&vecraft_sql::params::halfvec_binary(raw).ok_or("bad halfvec")?)
            }
            Type::BIT | Type::VARBIT => vecraft_planner::bits::BitString::from_binary(raw)
                .ok_or("bad bit string")?
                .format(),
            ref t if t.name() == "sparsevec" => {
                vecraft_planner::sparsevec::SparseVec::from_binary(raw, None)
                    .ok_or("bad sparsevec")??
                    .format()
            }
            ref t => match t.kind() {
                tokio_postgres::types::Kind::Array(element) => array_text(element, raw)?,
                _ => return Err(format!("the runner cannot print type {t} yet").into()),
            },
        };
        Ok(Text(Some(text)))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Text(None))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// A uuid's 16 bytes as PostgreSQL prints them: lower-case hex, hyphenated 8-4-4-4-12.
fn uuid_text(raw: &[u8]) -> Result<String, Box<dyn std::error::Error + Sync + Send>> {
    if raw.len() != 16 {
        return Err("a uuid is 16 bytes".into());
    }
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// A one-dimensional array in binary form, printed as PostgreSQL prints it: `{1,2}`,
/// `{a,"b c",NULL}`.
fn array_text(
    element: &Type,
    raw: &[u8],
) -> Result<String, Box<dyn std::error::Error + Sync + Send>> {
    let int = |at: usize| -> Result<i32, Box<dyn std::error::Error + Sync + Send>> {
        let bytes = raw.get(at..at + 4).ok_or("short array")?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    };
    if int(0)? == 0 {
        return Ok("{}".into());
    }
    let (count, mut at) = (int(12)?, 20);
    let mut items = Vec::new();
    for _ in 0..count {
        let length = int(at)?;
        at += 4;
        if length < 0 {
            items.push("NULL".to_string());
            continue;
        }
        let bytes = raw
            .get(at..at + length as usize)
            .ok_or("short array element")?;
        at += length as usize;
        let Text(text) = Text::from_sql(element, bytes)?;
        let text = text.unwrap_or_default();
        let plain = !text.is_empty()
            && !text.eq_ignore_ascii_case("null")
            && !text.contains([',', '{', '}', '"', '\\', ' ']);
        items.push(if plain {
            text
        } else {
            format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
        });
    }
    Ok(format!("{{{}}}", items.join(",")))
}

/// A failed statement as the `.slt` files match it: `statement error <regex>` is matched
/// against the server's message, `statement error (SQLSTATE)` against its code.
#[derive(Debug)]
pub struct ServerError(tokio_postgres::Error);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => f.write_str(db.message()),
            None => self.0.fmt(f),
        }
    }
}

impl std::error::Error for ServerError {}

#[async_trait]
impl AsyncDB for Postgres {
    type Error = ServerError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let result = match self.protocol {
            Protocol::Simple => self.run_simple(sql).await,
            Protocol::Extended => self.run_extended(sql).await,
        };
        result.map_err(ServerError)
    }

    async fn shutdown(&mut self) {
        self.connection.abort();
    }

    fn engine_name(&self) -> &str {
        "postgres-wire"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }

    fn error_sql_state(err: &Self::Error) -> Option<String> {
        err.0.code().map(|c| c.code().to_string())
    }
}

/// Runs one `.slt` file against `dsn`; `label` is `vecraft` or `postgres`.
pub async fn run_file(
    dsn: &str,
    protocol: Protocol,
    label: &str,
    file: &std::path::Path,
) -> Result<(), sqllogictest::TestError> {
    let dsn = dsn.to_string();
    let mut runner = sqllogictest::Runner::new(move || {
        let dsn = dsn.clone();
        async move { Postgres::connect(&dsn, protocol).await.map_err(ServerError) }
    });
    runner.add_label(label);
    runner.add_label(match protocol {
        Protocol::Simple => "simple",
        Protocol::Extended => "extended",
    });
    runner.with_column_validator(|_, _| true);
    runner.run_file_async(file).await
}
