//! The SQL type `vector(n)`: planned as Arrow `FixedSizeList<Float32, n>`, the layout the
//! storage engine keeps. `vector` without a dimension is a variable-length float list.

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

impl TypePlanner for VectorTypes {
    fn plan_type_field(&self, sql_type: &SqlType) -> Result<Option<FieldRef>> {
        Ok(vector_dims(sql_type)?.map(|dims| {
            let data_type = match dims {
                Some(d) => vector_arrow_type(d),
                None => DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            };
            Arc::new(Field::new("", data_type, true))
        }))
    }
}
