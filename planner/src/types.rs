//! The SQL type `vector(n)`: planned as Arrow `FixedSizeList<Float32, n>`, the layout the
//! storage engine keeps. `vector` without a dimension is a variable-length float list. Also
//! PostgreSQL's OID types, for catalog queries, and `json`, `jsonb`, `uuid`
//! ([`crate::text_types`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::Result;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast::DataType as SqlType;
use vecraft_storage::schema::{MAX_DIMS, vector_arrow_type};

use crate::error::{INVALID_TEXT_REPRESENTATION, VectorError};

#[derive(Debug, Default)]
pub struct VectorTypes;

/// The dimension of `vector(n)`, `Some(None)` for plain `vector`, `None` for other types.
pub fn vector_dims(sql_type: &SqlType) -> Result<Option<Option<usize>>> {
    let SqlType::Custom(name, modifiers) = sql_type else {
        return Ok(None);
    };
    let last = name.0.last().map(|p| p.to_string().to_ascii_lowercase());
    if last.as_deref() != Some("vector") {
        return Ok(None);
    }
    match modifiers.as_slice() {
        [] => Ok(Some(None)),
        // pgvector's words and codes (22023, or 22P02 for a modifier that is no integer).
        [n] => match n.parse::<i64>() {
            Ok(d) if d < 1 => Err(typmod_error(
                "dimensions for type vector must be at least 1",
            )),
            Ok(d) if d > MAX_DIMS as i64 => Err(typmod_error(&format!(
                "dimensions for type vector cannot exceed {MAX_DIMS}"
            ))),
            Ok(d) => Ok(Some(Some(d as usize))),
            Err(_) => Err(VectorError::new(
                INVALID_TEXT_REPRESENTATION,
                format!(
                    "invalid input syntax for type integer: \"{}\"",
                    n.trim_matches('\'')
                ),
            )
            .near("vector(")
            .into()),
        },
        _ => Err(typmod_error("invalid type modifier")),
    }
}

fn typmod_error(message: &str) -> datafusion::error::DataFusionError {
    VectorError::new("22023", message).near("vector(").into()
}

/// PostgreSQL's object-identifier types (`oid`, `regtype`, `regclass`, …), which catalog
/// queries cast to: unsigned 32-bit, as `pg_catalog` keeps OIDs.
fn is_oid_type(sql_type: &SqlType) -> bool {
    let SqlType::Custom(name, modifiers) = sql_type else {
        return false;
    };
    let last = name.0.last().map(|p| p.to_string().to_ascii_lowercase());
    modifiers.is_empty()
        && matches!(
            last.as_deref(),
            Some("oid" | "regtype" | "regclass" | "regproc" | "regnamespace" | "regrole")
        )
}

impl TypePlanner for VectorTypes {
    fn plan_type_field(&self, sql_type: &SqlType) -> Result<Option<FieldRef>> {
        if is_oid_type(sql_type) {
            return Ok(Some(Arc::new(Field::new("", DataType::UInt32, true))));
        }
        if let Some(t) = crate::text_types::TextType::of_sql_name(&sql_type.to_string()) {
            return Ok(Some(Arc::new(t.field("", true))));
        }
        Ok(vector_dims(sql_type)?.map(|dims| {
            let data_type = match dims {
                Some(d) => vector_arrow_type(d),
                None => DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            };
            Arc::new(Field::new("", data_type, true))
        }))
    }
}
