//! Vecraft's own DDL, for users who think in collections (as in Qdrant or Milvus) rather than
//! tables and indexes:
//!
//! - `CREATE COLLECTION name (columns…) WITH (metric = 'cosine', m = 16, ef_construction =
//!   200, shards = 1, replicas = 1)`: a table whose vector columns are indexed from the start
//!   (HNSW, with that metric and those parameters), so every segment is sealed with its graph;
//! - `DROP COLLECTION [IF EXISTS] name`;
//! - `SHOW COLLECTIONS`: each collection's rows, vector columns and index, shards and
//!   replicas.
//!
//! The parser reads the first two as marked `CREATE TABLE` / `DROP TABLE`
//! (`vecraft_planner::parse`).

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{CreateTable, Expr, SqlOption, Value};
use futures::stream;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo, QueryResponse, Response};
use pgwire::error::PgWireResult;
use vecraft_storage::distance::Metric;
use vecraft_storage::schema::{CollectionSchema, ColumnType, HnswParams};

use vecraft_cluster::collection::{MAX_REPLICAS, MAX_SHARDS};

use crate::catalog::Catalog;
use crate::ddl::declared_schema;
use crate::errors::user_error;

/// The schema of a `CREATE COLLECTION` with its `WITH` options (every vector column
/// indexed), its number of shards and of replicas (`default_replicas` when not given).
pub fn collection_schema(
    create: &CreateTable,
    options: &[SqlOption],
    default_replicas: usize,
) -> PgWireResult<(CollectionSchema, usize, usize)> {
    let mut shards = 1;
    let mut replicas = default_replicas;
    let mut metric = Metric::L2;
    let mut hnsw = HnswParams::default();
    for option in options {
        let SqlOption::KeyValue { key, value } = option else {
            return Err(user_error(
                "42601",
                format!("invalid collection option: {option}"),
            ));
        };
        let name = key.value.to_lowercase();
        match name.as_str() {
            "metric" => {
                let text = word(value);
                metric = Metric::parse(&text).map_err(|_| {
                    user_error(
                        "22023",
                        format!(
                            "invalid value for option \"metric\": \"{text}\" (l2, cosine, ip or l1)"
                        ),
                    )
                })?;
            }
            "m" => hnsw.m = number(&name, value)? as usize,
            "ef_construction" => hnsw.ef_construction = number(&name, value)? as usize,
            "shards" => {
                let n = number(&name, value)?;
                if !(1..=MAX_SHARDS as u64).contains(&n) {
                    return Err(user_error(
                        "22023",
                        format!("shards = {n} is out of range: 1 to {MAX_SHARDS}"),
                    ));
                }
                shards = n as usize;
            }
            "replicas" => {
                let n = number(&name, value)?;
                if !(1..=MAX_REPLICAS as u64).contains(&n) {
                    return Err(user_error(
                        "22023",
                        format!("replicas = {n} is out of range: 1 to {MAX_REPLICAS}"),
                    ));
                }
                replicas = n as usize;
            }
            _ => {
                return Err(user_error(
                    "22023",
                    format!("unrecognized parameter \"{name}\""),
                ));
            }
        }
    }
    let hnsw = crate::index::checked(hnsw)?;
    let mut schema = declared_schema(create)?;
    let vectors: Vec<String> = schema
        .columns
        .iter()
        .filter(|c| matches!(c.ty, ColumnType::Vector(_)))
        .map(|c| c.name.clone())
        .collect();
    if vectors.is_empty() {
        return Err(user_error("42P16", "a collection needs a vector(n) column"));
    }
    for column in &vectors {
        schema = schema
            .with_index(column, metric, hnsw)
            .map_err(|e| user_error("22023", e.to_string()))?;
    }
    Ok((schema, shards, replicas))
}

/// An option's value as a word: `'cosine'`, `cosine` or `"cosine"`.
fn word(value: &Expr) -> String {
    match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.to_lowercase(),
            other => other.to_string().to_lowercase(),
        },
        Expr::Identifier(id) => id.value.to_lowercase(),
        other => other.to_string().to_lowercase(),
    }
}

fn number(name: &str, value: &Expr) -> PgWireResult<u64> {
    word(value).parse().map_err(|_| {
        user_error(
            "22023",
            format!("invalid value for integer option \"{name}\": {value}"),
        )
    })
}

const SHOW_COLUMNS: [(&str, Type); 5] = [
    ("collection", Type::TEXT),
    ("rows", Type::INT8),
    ("vectors", Type::TEXT),
    ("shards", Type::INT8),
    ("replicas", Type::INT8),
];

/// `SHOW COLLECTIONS`' columns.
pub fn show_fields(format: &Format) -> Arc<Vec<FieldInfo>> {
    Arc::new(
        SHOW_COLUMNS
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| {
                FieldInfo::new(
                    name.to_string(),
                    None,
                    None,
                    ty.clone(),
                    format.format_for(i),
                )
            })
            .collect(),
    )
}

/// `SHOW COLLECTIONS`: one row per collection, by name.
pub fn show(catalog: &Catalog, format: &Format) -> PgWireResult<Response> {
    let fields = show_fields(format);
    let mut rows = Vec::new();
    for (name, collection) in catalog.all() {
        let schema = collection.schema();
        let mut encoder = DataRowEncoder::new(fields.clone());
        encoder.encode_field(&crate::idents::listed(&name))?;
        encoder.encode_field(&(collection.count() as i64))?;
        encoder.encode_field(&vectors(&schema))?;
        encoder.encode_field(&(collection.shards().len() as i64))?;
        encoder.encode_field(&(catalog.replicas(&name) as i64))?;
        rows.push(Ok(encoder.take_row()));
    }
    Ok(Response::Query(QueryResponse::new(
        fields,
        stream::iter(rows),
    )))
}

/// Each vector column with its index: `embedding vector(384) cosine hnsw(m=16, ef_construction=200)`.
fn vectors(schema: &CollectionSchema) -> String {
    let described: Vec<String> = schema
        .columns
        .iter()
        .filter_map(|c| {
            let ColumnType::Vector(spec) = &c.ty else {
                return None;
            };
            let index = if schema.is_indexed(&c.name) {
                format!(
                    "{} hnsw(m={}, ef_construction={})",
                    metric_name(spec.metric),
                    spec.hnsw.m,
                    spec.hnsw.ef_construction
                )
            } else {
                "no index".to_string()
            };
            Some(format!("{} vector({}) {index}", c.name, spec.dims))
        })
        .collect();
    described.join(", ")
}

fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::L2 => "l2",
        Metric::Cosine => "cosine",
        Metric::InnerProduct => "ip",
        Metric::L1 => "l1",
    }
}
