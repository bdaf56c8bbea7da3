//! The SQL type `vector(n)`: planned as Arrow `FixedSizeList<Float32, n>`, the layout the
//! storage engine keeps. `vector` without a dimension is a variable-length float list. Also
//! PostgreSQL's OID types, for catalog queries.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast::DataType as SqlType;
use vecraft_storage::schema::{MAX_DIMS, vector_arrow_type};

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
        [n] => match n.parse::<usize>() {
            Ok(d) if (1..=MAX_DIMS).contains(&d) => Ok(Some(Some(d))),
            Ok(_) => plan_err!("dimensions for type vector must be between 1 and {MAX_DIMS}"),
            Err(_) => plan_err!("invalid type modifier for vector: {n}"),
        },
        _ => plan_err!("invalid type modifier for vector"),
    }
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
        Ok(vector_dims(sql_type)?.map(|dims| {
            let data_type = match dims {
                Some(d) => vector_arrow_type(d),
                None => DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            };
            Arc::new(Field::new("", data_type, true))
        }))
    }
}
