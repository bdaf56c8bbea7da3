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
//! Catalog queries are written in PostgreSQL's dialect; [`rewrite`] turns them into what
//! DataFusion plans, before planning.
//!
//! `types.rs` holds the type table and OIDs, `tables.rs` the catalog tables (built with
//! `columns.rs`; the extensions' in `extensions.rs`), `indexes.rs` the indexes they show,
//! `information_schema.rs` the `information_schema` views,
//! `functions.rs` and `sizes.rs` the functions, `rewrite.rs` the dialect pass and `calls.rs`
//! its rewrites of function calls (JDBC's, SQLAlchemy's, psql's).

mod asyncpg;
mod calls;
mod columns;
mod constraints;
mod defaults;
mod extensions;
mod functions;
mod has_privilege;
mod indexes;
mod information_schema;
mod progress;
mod regclass;
mod rewrite;
mod segments;
mod shards;
mod sizes;
mod tables;
mod types;

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::logical_expr::ScalarUDF;
use datafusion::logical_expr::async_udf::AsyncScalarUDF;
use datafusion::prelude::SessionContext;

use crate::catalog::Catalog;
use functions::{CatalogFn, CatalogUdf, PgSleep};
use indexes::IndexDefUdf;
pub use rewrite::{relation_oid, rewrite};
pub use shards::LIVE_TABLES;
use sizes::{SIZE_FUNCTIONS, SizePretty, TableSizeUdf};
use tables::PgCatalogSchema;
pub(crate) use tables::is_catalog_table;
pub use types::{
    PG_CATALOG_NAMESPACE, PGVECTOR_VERSION, PUBLIC_NAMESPACE, format_type, table_oid, type_oid,
    version_string,
};

/// What a function that reads shared state holds of it (the live catalog, a session's user):
/// equal to another only when it is the same one, so such functions can derive the `Debug`,
/// `PartialEq`, `Eq` and `Hash` DataFusion asks of every UDF.
pub(crate) struct Shared<T>(pub(crate) Arc<T>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared<{}>", std::any::type_name::<T>())
    }
}

impl<T> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> Eq for Shared<T> {}

impl<T> std::hash::Hash for Shared<T> {
    // Equal values are one value; there are few (a catalog per node, a user per session).
    fn hash<H: std::hash::Hasher>(&self, _state: &mut H) {}
}

pub(crate) use has_privilege::udfs as has_privilege_udfs;

/// Registers the `pg_catalog` schema and the functions clients call.
pub fn install(ctx: &SessionContext, catalog: Arc<Catalog>) -> Result<()> {
    if let Some(default) = ctx.catalog("datafusion") {
        default.register_schema(
            "pg_catalog",
            Arc::new(PgCatalogSchema {
                catalog: catalog.clone(),
            }),
        )?;
        default.register_schema(
            "information_schema",
            Arc::new(information_schema::InformationSchema {
                catalog: catalog.clone(),
            }),
        )?;
    }
    for f in [
        CatalogFn::Version,
        CatalogFn::ToRegtype,
        CatalogFn::FormatType,
        CatalogFn::CurrentSchema,
        CatalogFn::CurrentDatabase,
        CatalogFn::BackendPid,
        CatalogFn::TableIsVisible,
        CatalogFn::TypeIsVisible,
        CatalogFn::UserById,
        CatalogFn::EncodingToChar,
        CatalogFn::ObjDescription,
        CatalogFn::ColDescription,
        CatalogFn::PartitionAncestors,
        CatalogFn::AdvisoryXactLock,
        CatalogFn::TryAdvisoryXactLock,
        CatalogFn::GetExpr,
        CatalogFn::CurrentSchemas,
        CatalogFn::ArrayUpper,
        CatalogFn::RegclassIn,
        CatalogFn::CollationIsVisible,
        CatalogFn::TypeOf,
        CatalogFn::CurrentSetting,
        CatalogFn::SetConfig,
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(CatalogUdf::new(f)));
    }
    ctx.register_udf(AsyncScalarUDF::new(Arc::new(PgSleep::new())).into_scalar_udf());
    ctx.register_udf(ScalarUDF::new_from_impl(SizePretty::new()));
    let defaults = defaults::ColumnDefault::new(catalog.clone());
    ctx.register_udf(ScalarUDF::new_from_impl(defaults));
    for name in SIZE_FUNCTIONS {
        let udf = TableSizeUdf::new(name, catalog.clone());
        ctx.register_udf(ScalarUDF::new_from_impl(udf));
    }
    let regclass_out = regclass::RegclassOut::new(catalog.clone());
    ctx.register_udf(ScalarUDF::new_from_impl(regclass_out));
    for constraint in [false, true] {
        let udf = IndexDefUdf::new(catalog.clone(), constraint);
        ctx.register_udf(ScalarUDF::new_from_impl(udf));
    }
    Ok(())
}
