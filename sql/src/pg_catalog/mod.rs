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
//!
//! `types.rs` holds the type table and OIDs, `tables.rs` the catalog tables, `functions.rs`
//! the functions.

mod functions;
mod tables;
mod types;

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::logical_expr::ScalarUDF;
use datafusion::logical_expr::async_udf::AsyncScalarUDF;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Ident, ObjectName, ObjectNamePart, visit_relations_mut};

use crate::catalog::Catalog;
use functions::{CatalogFn, CatalogUdf, PgSleep};
use tables::{PgCatalogSchema, TABLES};
pub use types::{
    PG_CATALOG_NAMESPACE, PGVECTOR_VERSION, PUBLIC_NAMESPACE, format_type, table_oid, type_oid,
    version_string,
};

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
    ctx.register_udf(AsyncScalarUDF::new(Arc::new(PgSleep::new())).into_scalar_udf());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unqualified_catalog_tables_are_qualified() {
        let mut s = vecraft_planner::parse::parse_sql("SELECT oid FROM pg_type t, items")
            .unwrap()
            .remove(0);
        qualify_catalog_tables(&mut s);
        assert_eq!(s.to_string(), "SELECT oid FROM pg_catalog.pg_type t, items");
    }
}
