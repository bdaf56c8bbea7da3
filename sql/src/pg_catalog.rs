//! The part of PostgreSQL's system catalog that drivers and tools read: `pg_type` (with
//! pgvector's `vector`), `pg_namespace`, `pg_range`, `pg_class` and `pg_attribute` (from the
//! live collection catalog), `pg_extension`, `pg_database`; and the functions they call
//! (`version()`, `to_regtype`, `format_type`, `current_schema()`, `pg_backend_pid()`, …).
//!
//! Enough for tokio-postgres's type lookup, psycopg's `TypeInfo.fetch` (pgvector-python's
//! `register_vector`) and tools that list tables and columns. We write it ourselves rather
//! than take `datafusion-pg-catalog`: that crate turns on DataFusion's default features
//! (parquet, compression) and still shows vector columns as `text`.
//!
//! PostgreSQL searches `pg_catalog` before any schema, so unqualified `pg_*` table names are
//! qualified here before planning ([`qualify_catalog_tables`]).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int8Array, Int16Array, Int32Array, RecordBatch, StringArray,
    UInt32Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Ident, ObjectName, ObjectNamePart, visit_relations_mut};
use vecraft_storage::schema::ColumnType;

use crate::catalog::Catalog;
use crate::encode::VECTOR_OID;

pub const PG_CATALOG_NAMESPACE: u32 = 11;
pub const PUBLIC_NAMESPACE: u32 = 2200;
const VECTOR_EXTENSION_OID: u32 = 16384;
/// pgvector's version whose SQL behaviour Vecraft follows.
pub const PGVECTOR_VERSION: &str = "0.8.0";

/// The server version clients see: a PostgreSQL 16 they can parse, and what it really is.
pub fn version_string() -> String {
    format!(
        "PostgreSQL 16.6 (Vecraft {}) on {}-{}, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// Built-in types: (oid, name, length, array type oid, category).
const TYPES: &[(u32, &str, i16, u32, char)] = &[
    (16, "bool", 1, 1000, 'B'),
    (17, "bytea", -1, 1001, 'U'),
    (18, "char", 1, 1002, 'Z'),
    (19, "name", 64, 1003, 'S'),
    (20, "int8", 8, 1016, 'N'),
    (21, "int2", 2, 1005, 'N'),
    (23, "int4", 4, 1007, 'N'),
    (25, "text", -1, 1009, 'S'),
    (26, "oid", 4, 1028, 'N'),
    (114, "json", -1, 199, 'U'),
    (700, "float4", 4, 1021, 'N'),
    (701, "float8", 8, 1022, 'N'),
    (705, "unknown", -2, 0, 'X'),
    (1042, "bpchar", -1, 1014, 'S'),
    (1043, "varchar", -1, 1015, 'S'),
    (1082, "date", 4, 1182, 'D'),
    (1083, "time", 8, 1183, 'D'),
    (1114, "timestamp", 8, 1115, 'D'),
    (1184, "timestamptz", 8, 1185, 'D'),
    (1560, "bit", -1, 1561, 'V'),
    (1562, "varbit", -1, 1563, 'V'),
    (1700, "numeric", -1, 1231, 'N'),
    (2950, "uuid", 16, 2951, 'U'),
    (3802, "jsonb", -1, 3807, 'U'),
    (VECTOR_OID, "vector", -1, VECTOR_OID + 1, 'U'),
];

/// Array types of the built-ins: (oid, name, element oid).
fn array_types() -> impl Iterator<Item = (u32, String, u32)> {
    TYPES
        .iter()
        .filter(|t| t.3 != 0)
        .map(|t| (t.3, format!("_{}", t.1), t.0))
}

/// The OID of a type name as `to_regtype` reads it (`vector`, `public.vector`, `integer`, …).
pub fn type_oid(name: &str) -> Option<u32> {
    let name = name.trim().to_lowercase();
    let name = name
        .strip_prefix("pg_catalog.")
        .or_else(|| name.strip_prefix("public."))
        .unwrap_or(&name);
    let canonical = match name {
        "boolean" => "bool",
        "bigint" => "int8",
        "smallint" => "int2",
        "integer" | "int" => "int4",
        "real" => "float4",
        "double precision" => "float8",
        "character varying" => "varchar",
        "character" => "bpchar",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        other => other,
    };
    TYPES
        .iter()
        .find(|t| t.1 == canonical)
        .map(|t| t.0)
        .or_else(|| array_types().find(|a| a.1 == canonical).map(|a| a.0))
}

/// How `format_type` prints a type: SQL's names, `vector(n)` for vectors.
pub fn format_type(oid: u32, typmod: i32) -> Option<String> {
    Some(match oid {
        VECTOR_OID if typmod > 0 => format!("vector({typmod})"),
        16 => "boolean".into(),
        20 => "bigint".into(),
        21 => "smallint".into(),
        23 => "integer".into(),
        700 => "real".into(),
        701 => "double precision".into(),
        1043 => "character varying".into(),
        1114 => "timestamp without time zone".into(),
        1184 => "timestamp with time zone".into(),
        _ => {
            let t = TYPES.iter().find(|t| t.0 == oid);
            match t {
                Some(t) => t.1.to_string(),
                None => array_types().find(|a| a.0 == oid)?.1,
            }
        }
    })
}

/// The PostgreSQL type (oid, typmod) of a collection column.
fn column_type(ty: &ColumnType) -> (u32, i32) {
    match ty {
        ColumnType::Int32 => (23, -1),
        ColumnType::Int64 => (20, -1),
        ColumnType::Float32 => (700, -1),
        ColumnType::Float64 => (701, -1),
        ColumnType::Bool => (16, -1),
        ColumnType::Text => (25, -1),
        ColumnType::Timestamp => (1114, -1),
        ColumnType::Vector(spec) => (VECTOR_OID, spec.dims as i32),
    }
}

/// A collection's OID: a hash of its name, so every gateway and restart agrees.
pub fn table_oid(name: &str) -> u32 {
    0x4000_0000 | (crc32c::crc32c(name.as_bytes()) & 0x3fff_ffff)
}

pub struct PgCatalogSchema {
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for PgCatalogSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgCatalogSchema")
    }
}

const TABLES: &[&str] = &[
    "pg_type",
    "pg_namespace",
    "pg_range",
    "pg_class",
    "pg_attribute",
    "pg_extension",
    "pg_database",
    "pg_index",
    "pg_constraint",
    "pg_am",
];

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let batch = match name {
            "pg_type" => pg_type(),
            "pg_namespace" => pg_namespace(),
            "pg_range" => table(&[("rngtypid", u32s(vec![])), ("rngsubtype", u32s(vec![]))]),
            "pg_class" => pg_class(&self.catalog),
            "pg_attribute" => pg_attribute(&self.catalog),
            "pg_extension" => pg_extension(),
            "pg_database" => table(&[
                ("oid", u32s(vec![5])),
                ("datname", strs(vec!["postgres".into()])),
                ("encoding", i32s(vec![6])),
                ("datallowconn", bools(vec![true])),
            ]),
            "pg_index" => table(&[
                ("indexrelid", u32s(vec![])),
                ("indrelid", u32s(vec![])),
                ("indisprimary", bools(vec![])),
            ]),
            "pg_constraint" => table(&[
                ("oid", u32s(vec![])),
                ("conname", strs(vec![])),
                ("conrelid", u32s(vec![])),
                ("contype", i8s(vec![])),
            ]),
            "pg_am" => table(&[
                ("oid", u32s(vec![2, 403, 16388])),
                (
                    "amname",
                    strs(vec!["heap".into(), "btree".into(), "hnsw".into()]),
                ),
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

fn u32s(v: Vec<u32>) -> ArrayRef {
    Arc::new(UInt32Array::from(v))
}
fn i32s(v: Vec<i32>) -> ArrayRef {
    Arc::new(Int32Array::from(v))
}
fn i16s(v: Vec<i16>) -> ArrayRef {
    Arc::new(Int16Array::from(v))
}
/// PostgreSQL's one-byte `"char"` columns (`typtype`, `relkind`) are Int8 here.
fn i8s(v: Vec<u8>) -> ArrayRef {
    Arc::new(Int8Array::from(
        v.into_iter().map(|b| b as i8).collect::<Vec<_>>(),
    ))
}
fn strs(v: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}
fn bools(v: Vec<bool>) -> ArrayRef {
    Arc::new(BooleanArray::from(v))
}

fn table(columns: &[(&str, ArrayRef)]) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    Ok(RecordBatch::try_new(
        schema,
        columns.iter().map(|(_, a)| a.clone()).collect(),
    )?)
}

fn pg_type() -> Result<RecordBatch> {
    let mut rows: Vec<(u32, String, i16, u32, u32, u8, char, u32)> = TYPES
        .iter()
        .map(|t| {
            let ns = if t.0 == VECTOR_OID {
                PUBLIC_NAMESPACE
            } else {
                PG_CATALOG_NAMESPACE
            };
            (t.0, t.1.to_string(), t.2, t.3, 0, b'b', t.4, ns)
        })
        .collect();
    rows.extend(array_types().map(|(oid, name, elem)| {
        let ns = if elem == VECTOR_OID {
            PUBLIC_NAMESPACE
        } else {
            PG_CATALOG_NAMESPACE
        };
        (oid, name, -1, 0, elem, b'b', 'A', ns)
    }));
    let n = rows.len();
    table(&[
        ("oid", u32s(rows.iter().map(|r| r.0).collect())),
        ("typname", strs(rows.iter().map(|r| r.1.clone()).collect())),
        ("typnamespace", u32s(rows.iter().map(|r| r.7).collect())),
        ("typowner", u32s(vec![10; n])),
        ("typlen", i16s(rows.iter().map(|r| r.2).collect())),
        ("typtype", i8s(rows.iter().map(|r| r.5).collect())),
        ("typcategory", i8s(rows.iter().map(|r| r.6 as u8).collect())),
        ("typdelim", strs(vec![",".into(); n])),
        ("typrelid", u32s(vec![0; n])),
        ("typelem", u32s(rows.iter().map(|r| r.4).collect())),
        ("typarray", u32s(rows.iter().map(|r| r.3).collect())),
        ("typbasetype", u32s(vec![0; n])),
        ("typtypmod", i32s(vec![-1; n])),
        ("typnotnull", bools(vec![false; n])),
    ])
}

fn pg_namespace() -> Result<RecordBatch> {
    table(&[
        (
            "oid",
            u32s(vec![PG_CATALOG_NAMESPACE, PUBLIC_NAMESPACE, 13_000]),
        ),
        (
            "nspname",
            strs(vec![
                "pg_catalog".into(),
                "public".into(),
                "information_schema".into(),
            ]),
        ),
        ("nspowner", u32s(vec![10, 10, 10])),
    ])
}

fn pg_extension() -> Result<RecordBatch> {
    table(&[
        ("oid", u32s(vec![13_542, VECTOR_EXTENSION_OID])),
        ("extname", strs(vec!["plpgsql".into(), "vector".into()])),
        ("extowner", u32s(vec![10, 10])),
        (
            "extnamespace",
            u32s(vec![PG_CATALOG_NAMESPACE, PUBLIC_NAMESPACE]),
        ),
        ("extrelocatable", bools(vec![false, true])),
        (
            "extversion",
            strs(vec!["1.0".into(), PGVECTOR_VERSION.into()]),
        ),
    ])
}

fn pg_class(catalog: &Catalog) -> Result<RecordBatch> {
    let names = catalog.names();
    let n = names.len();
    let rows: Vec<f32> = names
        .iter()
        .map(|name| catalog.get(name).map_or(0.0, |c| c.shard().count() as f32))
        .collect();
    table(&[
        ("oid", u32s(names.iter().map(|n| table_oid(n)).collect())),
        ("relname", strs(names.clone())),
        ("relnamespace", u32s(vec![PUBLIC_NAMESPACE; n])),
        ("relowner", u32s(vec![10; n])),
        ("relam", u32s(vec![2; n])),
        ("relkind", i8s(vec![b'r'; n])),
        ("relpersistence", i8s(vec![b'p'; n])),
        (
            "reltuples",
            Arc::new(datafusion::arrow::array::Float32Array::from(rows)),
        ),
        ("relhasindex", bools(vec![true; n])),
        ("relispartition", bools(vec![false; n])),
        ("relchecks", i16s(vec![0; n])),
        ("relhastriggers", bools(vec![false; n])),
        ("relrowsecurity", bools(vec![false; n])),
        ("relforcerowsecurity", bools(vec![false; n])),
        ("reloftype", u32s(vec![0; n])),
        ("reltablespace", u32s(vec![0; n])),
    ])
}

fn pg_attribute(catalog: &Catalog) -> Result<RecordBatch> {
    let (mut rel, mut name, mut ty, mut typmod, mut num, mut notnull) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for table in catalog.names() {
        let Some(c) = catalog.get(&table) else {
            continue;
        };
        let schema = c.shard().schema();
        let hidden = schema.hidden_key.then_some(schema.primary_key);
        let mut attnum = 0;
        for (i, col) in schema.columns.iter().enumerate() {
            if Some(i) == hidden {
                continue;
            }
            attnum += 1;
            let (oid, m) = column_type(&col.ty);
            rel.push(table_oid(&table));
            name.push(col.name.clone());
            ty.push(oid);
            typmod.push(m);
            num.push(attnum);
            notnull.push(!col.nullable);
        }
    }
    let n = rel.len();
    table(&[
        ("attrelid", u32s(rel)),
        ("attname", strs(name)),
        ("atttypid", u32s(ty)),
        ("atttypmod", i32s(typmod)),
        ("attnum", i16s(num)),
        ("attnotnull", bools(notnull)),
        ("attisdropped", bools(vec![false; n])),
        ("atthasdef", bools(vec![false; n])),
        ("attidentity", strs(vec![String::new(); n])),
        ("attgenerated", strs(vec![String::new(); n])),
        ("attcollation", u32s(vec![0; n])),
        ("attlen", i16s(vec![-1; n])),
    ])
}

/// Registers the `pg_catalog` schema and the functions clients call.
pub fn install(ctx: &SessionContext, catalog: Arc<Catalog>) -> Result<()> {
    if let Some(default) = ctx.catalog("datafusion") {
        default.register_schema("pg_catalog", Arc::new(PgCatalogSchema { catalog }))?;
    }
    for f in [
        CatalogFn::Version,
        CatalogFn::ToRegtype,
        CatalogFn::FormatType,
        CatalogFn::CurrentSchema,
        CatalogFn::CurrentDatabase,
        CatalogFn::BackendPid,
        CatalogFn::TableIsVisible,
        CatalogFn::UserById,
        CatalogFn::EncodingToChar,
        CatalogFn::ObjDescription,
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(CatalogUdf::new(f)));
    }
    Ok(())
}

/// Qualifies `pg_*` table names with `pg_catalog`, which PostgreSQL searches first.
pub fn qualify_catalog_tables(statement: &mut DFStatement) {
    let DFStatement::Statement(s) = statement else {
        return;
    };
    let _ = visit_relations_mut(s.as_mut(), |name: &mut ObjectName| {
        if let [ObjectNamePart::Identifier(id)] = name.0.as_slice() {
            if TABLES.contains(&id.value.as_str()) {
                *name = ObjectName::from(vec![Ident::new("pg_catalog"), id.clone()]);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CatalogFn {
    Version,
    ToRegtype,
    FormatType,
    CurrentSchema,
    CurrentDatabase,
    BackendPid,
    TableIsVisible,
    UserById,
    EncodingToChar,
    ObjDescription,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CatalogUdf {
    function: CatalogFn,
    signature: Signature,
}

impl CatalogUdf {
    fn new(function: CatalogFn) -> Self {
        let signature = match function {
            CatalogFn::Version
            | CatalogFn::CurrentSchema
            | CatalogFn::CurrentDatabase
            | CatalogFn::BackendPid => Signature::nullary(Volatility::Stable),
            CatalogFn::ToRegtype => Signature::exact(vec![DataType::Utf8], Volatility::Stable),
            CatalogFn::FormatType => Signature::any(2, Volatility::Stable),
            CatalogFn::ObjDescription => Signature::variadic_any(Volatility::Stable),
            CatalogFn::TableIsVisible | CatalogFn::UserById | CatalogFn::EncodingToChar => {
                Signature::any(1, Volatility::Stable)
            }
        };
        CatalogUdf {
            function,
            signature,
        }
    }
}

impl ScalarUDFImpl for CatalogUdf {
    fn name(&self) -> &str {
        match self.function {
            CatalogFn::Version => "version",
            CatalogFn::ToRegtype => "to_regtype",
            CatalogFn::FormatType => "format_type",
            CatalogFn::CurrentSchema => "current_schema",
            CatalogFn::CurrentDatabase => "current_database",
            CatalogFn::BackendPid => "pg_backend_pid",
            CatalogFn::TableIsVisible => "pg_table_is_visible",
            CatalogFn::UserById => "pg_get_userbyid",
            CatalogFn::EncodingToChar => "pg_encoding_to_char",
            CatalogFn::ObjDescription => "obj_description",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.function {
            CatalogFn::ToRegtype => DataType::UInt32,
            CatalogFn::BackendPid => DataType::Int32,
            CatalogFn::TableIsVisible => DataType::Boolean,
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let scalar = |v: ScalarValue| Ok(ColumnarValue::Scalar(v));
        match self.function {
            CatalogFn::Version => scalar(ScalarValue::Utf8(Some(version_string()))),
            CatalogFn::CurrentSchema => scalar(ScalarValue::Utf8(Some("public".into()))),
            CatalogFn::CurrentDatabase => scalar(ScalarValue::Utf8(Some("postgres".into()))),
            CatalogFn::BackendPid => scalar(ScalarValue::Int32(Some(std::process::id() as i32))),
            CatalogFn::TableIsVisible => scalar(ScalarValue::Boolean(Some(true))),
            CatalogFn::UserById => scalar(ScalarValue::Utf8(Some("postgres".into()))),
            CatalogFn::EncodingToChar => scalar(ScalarValue::Utf8(Some("UTF8".into()))),
            CatalogFn::ObjDescription => scalar(ScalarValue::Utf8(None)),
            CatalogFn::ToRegtype => {
                let names = args.args[0].to_array(rows)?;
                let names = datafusion::arrow::compute::cast(&names, &DataType::Utf8)?;
                let names = datafusion::arrow::array::AsArray::as_string::<i32>(&names);
                let oids: UInt32Array = names.iter().map(|n| n.and_then(type_oid)).collect();
                Ok(ColumnarValue::Array(Arc::new(oids)))
            }
            CatalogFn::FormatType => {
                let oids = args.args[0].to_array(rows)?;
                let oids = datafusion::arrow::compute::cast(&oids, &DataType::Int64)?;
                let mods = args.args[1].to_array(rows)?;
                let mods = datafusion::arrow::compute::cast(&mods, &DataType::Int64)?;
                use datafusion::arrow::array::AsArray;
                use datafusion::arrow::datatypes::Int64Type;
                let (oids, mods) = (
                    oids.as_primitive::<Int64Type>(),
                    mods.as_primitive::<Int64Type>(),
                );
                let names: StringArray = oids
                    .iter()
                    .zip(mods.iter())
                    .map(|(o, m)| format_type(o? as u32, m.unwrap_or(-1) as i32))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(names)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_resolve_as_postgres_does() {
        assert_eq!(type_oid("vector"), Some(VECTOR_OID));
        assert_eq!(type_oid("public.vector"), Some(VECTOR_OID));
        assert_eq!(type_oid("integer"), Some(23));
        assert_eq!(type_oid("_vector"), Some(VECTOR_OID + 1));
        assert_eq!(type_oid("nope"), None);
        assert_eq!(format_type(VECTOR_OID, 384).as_deref(), Some("vector(384)"));
        assert_eq!(format_type(20, -1).as_deref(), Some("bigint"));
    }

    #[test]
    fn unqualified_catalog_tables_are_qualified() {
        let mut s = vecraft_planner::parse::parse_sql("SELECT oid FROM pg_type t, items")
            .unwrap()
            .remove(0);
        qualify_catalog_tables(&mut s);
        assert_eq!(s.to_string(), "SELECT oid FROM pg_catalog.pg_type t, items");
    }
}
