//! The extensions Vecraft has built in, as PostgreSQL's catalog shows extensions: `plpgsql`
//! and pgvector's `vector` in `pg_extension`, `pg_available_extensions` (what `vecs` and
//! psql's `\\dx` ask) and their comments in `pg_description`.

use datafusion::arrow::array::RecordBatch;
use datafusion::common::Result;

use super::columns::{bools, i32s, strs, table, u32s};
use super::types::*;

pub(super) fn pg_extension() -> Result<RecordBatch> {
    table(&[
        (
            "oid",
            u32s(vec![PLPGSQL_EXTENSION_OID, VECTOR_EXTENSION_OID]),
        ),
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

/// The extensions that `CREATE EXTENSION` takes (both are built in, so both are installed).
pub(super) fn pg_available_extensions() -> Result<RecordBatch> {
    let versions = || strs(vec!["1.0".into(), PGVECTOR_VERSION.into()]);
    table(&[
        ("name", strs(vec!["plpgsql".into(), "vector".into()])),
        ("default_version", versions()),
        ("installed_version", versions()),
        (
            "comment",
            strs(vec![
                "PL/pgSQL procedural language".into(),
                "vector data type and ivfflat and hnsw access methods".into(),
            ]),
        ),
    ])
}

/// Comments: the extensions' own, as `\\dx` shows them.
pub(super) fn pg_description() -> Result<RecordBatch> {
    table(&[
        (
            "objoid",
            u32s(vec![PLPGSQL_EXTENSION_OID, VECTOR_EXTENSION_OID]),
        ),
        (
            "classoid",
            u32s(vec![PG_EXTENSION_CLASS, PG_EXTENSION_CLASS]),
        ),
        ("objsubid", i32s(vec![0, 0])),
        (
            "description",
            strs(vec![
                "PL/pgSQL procedural language".into(),
                "vector data type and ivfflat and hnsw access methods".into(),
            ]),
        ),
    ])
}
