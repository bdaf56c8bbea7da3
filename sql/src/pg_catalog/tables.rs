//! The catalog tables, built on each read: static ones (`pg_type`, `pg_namespace`, …) and
//! those that list the live collections (`pg_class`, `pg_attribute`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int8Array, Int16Array, Int32Array, RecordBatch, StringArray,
    UInt32Array,
};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::MemTable;

use super::types::*;
use crate::catalog::Catalog;
use crate::encode::VECTOR_OID;

pub struct PgCatalogSchema {
    pub(super) catalog: Arc<Catalog>,
}

impl std::fmt::Debug for PgCatalogSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgCatalogSchema")
    }
}

pub(super) const TABLES: &[&str] = &[
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
