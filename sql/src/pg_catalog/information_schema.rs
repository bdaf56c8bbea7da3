//! `information_schema` as PostgreSQL shows it: `tables`, `columns`, `schemata`, `views`,
//! with SQL's type names in `data_type` (`integer`, `text`, `USER-DEFINED` for `vector`),
//! which frameworks check before they use a table (langchain-postgres reads
//! `columns.data_type`, llama-index `schemata`). DataFusion's own `information_schema`
//! speaks Arrow's names (`Int32`, `Utf8`), so this one replaces it.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Int32Array, StringArray};
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::common::Result;
use vecraft_storage::names::split_qualified;
use vecraft_storage::schema::{ColumnDef, ColumnType, Identity};

use super::columns::{i32s, strs, table};
use super::types::{TYPES, array_types, column_type, format_type};
use crate::catalog::Catalog;
use crate::encode::is_pgvector_type;

const TABLES: &[&str] = &["tables", "columns", "schemata", "views"];

/// The `information_schema` schema, read from the live collection catalog.
pub(crate) struct InformationSchema {
    pub(crate) catalog: Arc<Catalog>,
}

impl std::fmt::Debug for InformationSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InformationSchema")
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let batch = match name {
            "tables" => tables(&self.catalog),
            "columns" => columns(&self.catalog),
            "schemata" => schemata(&self.catalog),
            "views" => table(&[
                ("table_catalog", strs(vec![])),
                ("table_schema", strs(vec![])),
                ("table_name", strs(vec![])),
                ("view_definition", strs(vec![])),
            ]),
            _ => return Ok(None),
        }?;
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

const DATABASE: &str = "postgres";
const SCHEMA: &str = "public";

/// A collection name's schema and table.
fn parts(name: &str) -> (String, String) {
    let (schema, table) = split_qualified(name);
    (schema.unwrap_or(SCHEMA).to_string(), table.to_string())
}

fn tables(catalog: &Catalog) -> Result<datafusion::arrow::array::RecordBatch> {
    let (schemas, names): (Vec<_>, Vec<_>) = catalog.names().iter().map(|n| parts(n)).unzip();
    let n = names.len();
    table(&[
        ("table_catalog", strs(vec![DATABASE.into(); n])),
        ("table_schema", strs(schemas)),
        ("table_name", strs(names)),
        ("table_type", strs(vec!["BASE TABLE".into(); n])),
        ("is_insertable_into", strs(vec!["YES".into(); n])),
    ])
}

fn schemata(catalog: &Catalog) -> Result<datafusion::arrow::array::RecordBatch> {
    let mut schemas: Vec<String> = ["pg_catalog", "public", "information_schema"]
        .map(String::from)
        .into();
    schemas.extend(catalog.schemas());
    let n = schemas.len();
    table(&[
        ("catalog_name", strs(vec![DATABASE.into(); n])),
        ("schema_name", strs(schemas)),
        ("schema_owner", strs(vec!["postgres".into(); n])),
    ])
}

/// One row a visible column, in declaration order.
fn columns(catalog: &Catalog) -> Result<datafusion::arrow::array::RecordBatch> {
    let mut rows = ColumnRows::default();
    for (name, collection) in catalog.all() {
        let schema = collection.schema();
        for (column, position) in schema.visible_columns().zip(1..) {
            rows.push(&name, position, column);
        }
    }
    rows.batch()
}

#[derive(Default)]
struct ColumnRows {
    schema: Vec<String>,
    table: Vec<String>,
    column: Vec<String>,
    position: Vec<i32>,
    default: Vec<Option<String>>,
    /// `ALWAYS` or `BY DEFAULT` for an identity column.
    identity: Vec<Option<String>>,
    nullable: Vec<String>,
    data_type: Vec<String>,
    max_chars: Vec<Option<i32>>,
    /// Precision, its radix and scale of a number column.
    precision: Vec<Option<i32>>,
    radix: Vec<Option<i32>>,
    scale: Vec<Option<i32>>,
    udt_schema: Vec<String>,
    udt_name: Vec<String>,
}

impl ColumnRows {
    fn push(&mut self, table: &str, position: i32, column: &ColumnDef) {
        let (oid, _) = column_type(&column.ty);
        let vector = is_pgvector_type(oid);
        let array = matches!(column.ty, ColumnType::Array(_));
        let (schema, table) = parts(table);
        self.schema.push(schema);
        self.table.push(table);
        self.column.push(column.name.clone());
        self.position.push(position);
        self.default.push(column.shown_default().map(String::from));
        self.identity.push(column.identity.map(|i| {
            match i {
                Identity::Always => "ALWAYS",
                Identity::ByDefault => "BY DEFAULT",
            }
            .to_string()
        }));
        self.nullable
            .push(if column.nullable { "YES" } else { "NO" }.into());
        // PostgreSQL says USER-DEFINED for an extension's type, and names it in udt_name.
        self.data_type.push(if vector {
            "USER-DEFINED".into()
        } else if array {
            "ARRAY".into()
        } else {
            format_type(oid, -1).unwrap_or_else(|| "text".into())
        });
        self.max_chars.push(match column.ty {
            ColumnType::Varchar(n) => n.map(|n| n as i32),
            _ => None,
        });
        let (precision, radix, scale) = number_shape(&column.ty);
        self.precision.push(precision);
        self.radix.push(radix);
        self.scale.push(scale);
        self.udt_schema
            .push(if vector { SCHEMA } else { "pg_catalog" }.into());
        // The type's own name (`int8`, `float4`, `vector`, `_text`).
        let udt_name = TYPES
            .iter()
            .find(|t| t.0 == oid)
            .map(|t| t.1.to_string())
            .or_else(|| array_types().find(|a| a.0 == oid).map(|a| a.1));
        self.udt_name
            .push(udt_name.unwrap_or_else(|| "text".into()));
    }

    fn batch(self) -> Result<datafusion::arrow::array::RecordBatch> {
        let n = self.table.len();
        table(&[
            ("table_catalog", strs(vec![DATABASE.into(); n])),
            ("table_schema", strs(self.schema)),
            ("table_name", strs(self.table)),
            ("column_name", strs(self.column)),
            ("ordinal_position", i32s(self.position)),
            ("column_default", Arc::new(StringArray::from(self.default))),
            ("is_nullable", strs(self.nullable)),
            ("data_type", strs(self.data_type)),
            (
                "character_maximum_length",
                Arc::new(Int32Array::from(self.max_chars)),
            ),
            (
                "numeric_precision",
                Arc::new(Int32Array::from(self.precision)),
            ),
            (
                "numeric_precision_radix",
                Arc::new(Int32Array::from(self.radix)),
            ),
            ("numeric_scale", Arc::new(Int32Array::from(self.scale))),
            ("udt_catalog", strs(vec![DATABASE.into(); n])),
            ("udt_schema", strs(self.udt_schema)),
            ("udt_name", strs(self.udt_name)),
            ("is_identity", strs(identity_flags(&self.identity))),
            (
                "identity_generation",
                Arc::new(StringArray::from(self.identity)),
            ),
            ("is_generated", strs(vec!["NEVER".into(); n])),
        ])
    }
}

/// `numeric_precision`, `numeric_precision_radix` and `numeric_scale` as PostgreSQL gives
/// them: bits for binary numbers, digits for `numeric(p, s)`.
fn number_shape(ty: &ColumnType) -> (Option<i32>, Option<i32>, Option<i32>) {
    let binary = |bits| (Some(bits), Some(2), None);
    match ty {
        ColumnType::Int32 => (Some(32), Some(2), Some(0)),
        ColumnType::Int64 => (Some(64), Some(2), Some(0)),
        ColumnType::Float32 => binary(24),
        ColumnType::Float64 => binary(53),
        ColumnType::Numeric(Some(spec)) => (
            Some(i32::from(spec.precision)),
            Some(10),
            Some(i32::from(spec.scale)),
        ),
        ColumnType::Numeric(None) => (None, Some(10), None),
        _ => (None, None, None),
    }
}

/// `YES` for each identity column, `NO` for the others.
fn identity_flags(identity: &[Option<String>]) -> Vec<String> {
    let flag = |i: &Option<String>| if i.is_some() { "YES" } else { "NO" };
    identity.iter().map(|i| flag(i).to_string()).collect()
}
