//! Sizes on disk, as psql's `\dt+` and `\di+` show them: `pg_table_size(oid)` (and its
//! siblings) sums the files of a collection's directory — log, segments, graphs — and
//! `pg_size_pretty` prints bytes the way PostgreSQL does.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::Shared;
use super::types::table_oid;
use crate::catalog::Catalog;

/// The names under which PostgreSQL reports a relation's size; all mean the whole
/// collection here (its indexes live in the same directory).
pub(super) const SIZE_FUNCTIONS: [&str; 3] = [
    "pg_table_size",
    "pg_total_relation_size",
    "pg_relation_size",
];

/// `pg_table_size(oid)` and its siblings: bytes on disk, NULL for an unknown OID.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct TableSizeUdf {
    name: &'static str,
    catalog: Shared<Catalog>,
    signature: Signature,
}

impl TableSizeUdf {
    pub(super) fn new(name: &'static str, catalog: Arc<Catalog>) -> Self {
        TableSizeUdf {
            name,
            catalog: Shared(catalog),
            signature: Signature::any(1, Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for TableSizeUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let oids = cast(&args.args[0].to_array(args.number_rows)?, &DataType::Int64)?;
        let collections = self.catalog.0.all();
        let sizes: Int64Array = oids
            .as_primitive::<Int64Type>()
            .iter()
            .map(|oid| {
                let oid = oid? as u32;
                let (_, c) = collections
                    .iter()
                    .find(|(name, _)| table_oid(name) == oid)?;
                // A collection in a cluster has no files here: its size is unknown.
                Some(dir_size_bytes(c.dir()?) as i64)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(sizes)))
    }
}

/// The bytes of the files under `dir` (files that vanish while counting count as 0).
fn dir_size_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_size_bytes(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `pg_size_pretty(bytes)`: PostgreSQL's units and rounding (`8192 bytes`, `16 kB`, `12 MB`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct SizePretty {
    signature: Signature,
}

impl SizePretty {
    pub(super) fn new() -> Self {
        SizePretty {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for SizePretty {
    fn name(&self) -> &str {
        "pg_size_pretty"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Ok(bytes) = cast(&args.args[0].to_array(args.number_rows)?, &DataType::Int64) else {
            return plan_err!("pg_size_pretty takes a number of bytes");
        };
        let pretty: StringArray = bytes
            .as_primitive::<Int64Type>()
            .iter()
            .map(|b| b.map(size_pretty))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(pretty)))
    }
}

/// PostgreSQL's `pg_size_pretty`: below 10240 of a unit, print it in that unit, rounding
/// half away from zero from one extra bit.
pub(super) fn size_pretty(bytes: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    const LIMIT2: i64 = LIMIT * 2 - 1;
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    if bytes.unsigned_abs() < LIMIT as u64 {
        return format!("{bytes} bytes");
    }
    let mut size = bytes >> 9; // one extra bit for rounding
    for unit in ["kB", "MB", "GB", "TB"] {
        if size.unsigned_abs() < LIMIT2 as u64 {
            return format!("{} {unit}", half_rounded(size));
        }
        size >>= 10;
    }
    format!("{} PB", half_rounded(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_postgresql_prints_them() {
        assert_eq!(size_pretty(8192), "8192 bytes");
        assert_eq!(size_pretty(10240), "10 kB");
        assert_eq!(size_pretty(16 * 1024 + 511), "16 kB");
        assert_eq!(size_pretty(16 * 1024 + 512), "17 kB");
        assert_eq!(size_pretty(12 * 1024 * 1024), "12 MB");
        assert_eq!(size_pretty(20 * 1024 * 1024 * 1024), "20 GB");
        assert_eq!(size_pretty(-8192), "-8192 bytes");
        assert_eq!(size_pretty(i64::MIN), "-8192 PB");
    }
}
