//! The constraints a collection has, as `pg_constraint` and `pg_get_constraintdef` show them:
//! its primary key (`p`, backed by the `_pkey` index of `indexes.rs`) and its foreign keys
//! (`f`) — what psql's `\d` prints under "Foreign-key constraints:" and "Referenced by:", and
//! what SQLAlchemy's and JDBC's foreign-key reflection read.

use datafusion::arrow::array::RecordBatch;
use datafusion::common::Result;
use vecraft_storage::names::split_qualified;

use super::columns::*;
use super::indexes::{attnum, index_oid, indexes};
use super::types::{schema_oid, table_oid};
use crate::catalog::Catalog;
use crate::idents::quote_ident;

/// One row of `pg_constraint`.
pub(super) struct ConstraintRow {
    pub oid: u32,
    pub name: String,
    /// `p` (primary key) or `f` (foreign key).
    pub kind: u8,
    pub namespace: u32,
    pub table_oid: u32,
    /// The index behind a primary key (0 for a foreign key, which has none here).
    pub index_oid: u32,
    pub column: i16,
    /// A foreign key's referenced table, its column and `confdeltype`.
    pub references: Option<(u32, i16, u8)>,
    /// What `pg_get_constraintdef` returns.
    pub definition: String,
}

/// Every constraint of every collection: primary keys, then foreign keys.
pub(super) fn constraints(catalog: &Catalog) -> Vec<ConstraintRow> {
    let mut rows: Vec<ConstraintRow> = indexes(catalog)
        .into_iter()
        .filter_map(|index| {
            let (oid, definition) = index.constraint?;
            Some(ConstraintRow {
                oid,
                name: index.name,
                kind: b'p',
                namespace: schema_oid(&index.schema),
                table_oid: index.table_oid,
                index_oid: index.oid,
                column: index.column,
                references: None,
                definition,
            })
        })
        .collect();
    let collections = catalog.all();
    for (name, collection) in &collections {
        let schema = collection.schema();
        for key in &schema.foreign_keys {
            let Ok(column) = schema.column_index(&key.column) else {
                continue;
            };
            // A key whose table was dropped (`DROP … CASCADE`) went with it.
            let Some((_, parent)) = collections.iter().find(|(n, _)| *n == key.table) else {
                continue;
            };
            let parent = parent.schema();
            let Ok(referenced) = parent.column_index(&key.referenced) else {
                continue;
            };
            let (in_schema, _) = split_qualified(name);
            rows.push(ConstraintRow {
                oid: index_oid(name, &format!("{} constraint", key.name)),
                name: key.name.clone(),
                kind: b'f',
                namespace: schema_oid(in_schema.unwrap_or("public")),
                table_oid: table_oid(name),
                index_oid: 0,
                column: attnum(&schema, column),
                references: Some((
                    table_oid(&key.table),
                    attnum(&parent, referenced),
                    key.on_delete.code(),
                )),
                definition: format!(
                    "FOREIGN KEY ({}) REFERENCES {}({}){}",
                    quote_ident(&key.column),
                    referenced_name(&key.table),
                    quote_ident(&key.referenced),
                    key.on_delete.clause()
                ),
            });
        }
    }
    rows
}

/// A referenced table as `pg_get_constraintdef` names it: qualified outside `public`.
fn referenced_name(table: &str) -> String {
    match split_qualified(table) {
        (Some(schema), name) => format!("{}.{}", quote_ident(schema), quote_ident(name)),
        (None, name) => quote_ident(name),
    }
}

/// `pg_constraint`.
pub(super) fn pg_constraint(catalog: &Catalog) -> Result<RecordBatch> {
    let rows = constraints(catalog);
    let n = rows.len();
    let references = |f: fn(&(u32, i16, u8)) -> u32| -> Vec<u32> {
        rows.iter()
            .map(|r| r.references.as_ref().map_or(0, f))
            .collect()
    };
    let referenced_columns = rows
        .iter()
        .map(|r| r.references.map(|(_, c, _)| vec![c]).unwrap_or_default())
        .collect();
    // ' ' is PostgreSQL's letter for "not a foreign key".
    let action = |r: &ConstraintRow, on_delete: bool| match r.references {
        Some((_, _, code)) if on_delete => code,
        Some(_) => b'a',
        None => b' ',
    };
    table(&[
        ("oid", u32s(rows.iter().map(|r| r.oid).collect())),
        (
            "conname",
            strs(rows.iter().map(|r| r.name.clone()).collect()),
        ),
        (
            "connamespace",
            u32s(rows.iter().map(|r| r.namespace).collect()),
        ),
        ("contype", chars(rows.iter().map(|r| r.kind).collect())),
        ("condeferrable", bools(vec![false; n])),
        ("condeferred", bools(vec![false; n])),
        ("convalidated", bools(vec![true; n])),
        ("conrelid", u32s(rows.iter().map(|r| r.table_oid).collect())),
        ("conindid", u32s(rows.iter().map(|r| r.index_oid).collect())),
        // psql 18's `\d` asks for constraints not inherited from a partition's parent.
        ("conparentid", u32s(vec![0; n])),
        ("contypid", u32s(vec![0; n])), // no domains
        (
            "conkey",
            i16_lists(rows.iter().map(|r| vec![r.column]).collect()),
        ),
        ("confrelid", u32s(references(|r| r.0))),
        ("confkey", i16_lists(referenced_columns)),
        (
            "confupdtype",
            chars(rows.iter().map(|r| action(r, false)).collect()),
        ),
        (
            "confdeltype",
            chars(rows.iter().map(|r| action(r, true)).collect()),
        ),
        (
            "confmatchtype",
            chars(
                rows.iter()
                    .map(|r| if r.references.is_some() { b's' } else { b' ' })
                    .collect(),
            ),
        ),
        ("conislocal", bools(vec![true; n])),
        ("coninhcount", i16s(vec![0; n])),
        ("connoinherit", bools(vec![true; n])),
    ])
}
