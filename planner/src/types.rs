//! The SQL types `vector(n)`, `halfvec(n)` and `sparsevec(n)` ([`crate::sparsevec`]): planned as Arrow `FixedSizeList<Float32, n>`
//! (`Float16` for halfvec), the layout the storage engine gives. Without a dimension, a
//! variable-length list of them. Also
//! PostgreSQL's OID types, for catalog queries, and `json`, `jsonb`, `uuid`
//! ([`crate::text_types`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::Result;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast::DataType as SqlType;
use vecraft_storage::schema::{
    DIMS_KEY, MAX_DIMS, MAX_SPARSE_DIMS, VectorElement, VectorSpec, sparsevec_arrow_type,
};

use crate::error::{INVALID_TEXT_REPRESENTATION, VectorError};

#[derive(Debug, Default)]
pub struct VectorTypes;

/// pgvector's type a SQL type names, `vector(n)` or `halfvec(n)`: its element, and its
/// dimension (`None` for plain `vector`); `None` for other types.
pub fn vector_type(sql_type: &SqlType) -> Result<Option<(VectorElement, Option<usize>)>> {
    let SqlType::Custom(name, modifiers) = sql_type else {
        return Ok(None);
    };
    let last = name.0.last().map(|p| p.to_string().to_ascii_lowercase());
    let element = match last.as_deref() {
        Some("vector") => VectorElement::Float32,
        Some("halfvec") => VectorElement::Float16,
        _ => return Ok(None),
    };
    let type_name = element.type_name();
    match modifiers.as_slice() {
        [] => Ok(Some((element, None))),
        // pgvector's words and codes (22023, or 22P02 for a modifier that is no integer).
        [n] => match n.parse::<i64>() {
            Ok(d) if d < 1 => Err(typmod_error(
                type_name,
                &format!("dimensions for type {type_name} must be at least 1"),
            )),
            Ok(d) if d > MAX_DIMS as i64 => Err(typmod_error(
                type_name,
                &format!("dimensions for type {type_name} cannot exceed {MAX_DIMS}"),
            )),
            Ok(d) => Ok(Some((element, Some(d as usize)))),
            Err(_) => Err(VectorError::new(
                INVALID_TEXT_REPRESENTATION,
                format!(
                    "invalid input syntax for type integer: \"{}\"",
                    n.trim_matches('\'')
                ),
            )
            .near(&format!("{type_name}("))
            .into()),
        },
        _ => Err(typmod_error(type_name, "invalid type modifier")),
    }
}

/// The PostgreSQL type name that marks a list of reals as `real[]`: Arrow's `List<Float32>`
/// is also an unsized vector's type, which a field without the mark is.
pub const REAL_ARRAY: &str = "float4[]";

/// Whether `sql_type` is `real[]` (`float4[]`).
fn is_real_array(sql_type: &SqlType) -> bool {
    use datafusion::sql::sqlparser::ast::ArrayElemTypeDef;
    let SqlType::Array(element) = sql_type else {
        return false;
    };
    let element = match element {
        ArrayElemTypeDef::AngleBracket(t)
        | ArrayElemTypeDef::SquareBracket(t, _)
        | ArrayElemTypeDef::Parenthesis(t) => t.as_ref(),
        ArrayElemTypeDef::None => return false,
    };
    matches!(element, SqlType::Real | SqlType::Float4)
}

/// A field of `real[]` values: a list of reals marked as an array ([`REAL_ARRAY`]).
pub fn real_array_field(name: &str) -> Field {
    Field::new(name, DataType::new_list(DataType::Float32, true), true).with_metadata(
        [(
            vecraft_storage::schema::PG_TYPE_KEY.to_string(),
            REAL_ARRAY.to_string(),
        )]
        .into(),
    )
}

/// Whether `field` holds `real[]` values (not vectors).
pub fn is_real_array_field(field: &Field) -> bool {
    field
        .metadata()
        .get(vecraft_storage::schema::PG_TYPE_KEY)
        .map(String::as_str)
        == Some(REAL_ARRAY)
}

/// The length `bit(n)` or `bit varying(n)` declares (`bit` is `bit(1)`, as in PostgreSQL);
/// `None` for other types.
pub fn bit_length(sql_type: &SqlType) -> Option<crate::bits::BitLength> {
    use crate::bits::BitLength;
    let n = |n: &Option<u64>| n.map(|n| n as usize);
    match sql_type {
        SqlType::Bit(length) => Some(BitLength::Exactly(n(length).unwrap_or(1))),
        SqlType::BitVarying(length) | SqlType::VarBit(length) => {
            Some(n(length).map_or(BitLength::Any, BitLength::AtMost))
        }
        _ => None,
    }
}

/// The dimension of `sparsevec(n)`, `Some(None)` for plain `sparsevec`, `None` for other
/// types; with pgvector's errors for a modifier out of its range (1 to 1,000,000,000).
pub fn sparse_dims(sql_type: &SqlType) -> Result<Option<Option<usize>>> {
    let SqlType::Custom(name, modifiers) = sql_type else {
        return Ok(None);
    };
    let last = name.0.last().map(|p| p.to_string().to_ascii_lowercase());
    if last.as_deref() != Some("sparsevec") {
        return Ok(None);
    }
    let at_least = "dimensions for type sparsevec must be at least 1";
    match modifiers.as_slice() {
        [] => Ok(Some(None)),
        [n] => match n.parse::<i64>() {
            Ok(d) if d < 1 => Err(typmod_error("sparsevec", at_least)),
            Ok(d) if d > MAX_SPARSE_DIMS as i64 => Err(typmod_error(
                "sparsevec",
                &format!("dimensions for type sparsevec cannot exceed {MAX_SPARSE_DIMS}"),
            )),
            Ok(d) => Ok(Some(Some(d as usize))),
            Err(_) => Err(VectorError::syntax_of("integer", n.trim_matches('\''))
                .near("sparsevec(")
                .into()),
        },
        _ => Err(typmod_error("sparsevec", "invalid type modifier")),
    }
}

/// A field of sparse vectors, its declared dimension in the metadata ([`DIMS_KEY`]).
pub fn sparse_field(name: &str, dims: Option<usize>) -> Field {
    let field = Field::new(name, sparsevec_arrow_type(), true);
    match dims {
        Some(n) => field.with_metadata([(DIMS_KEY.to_string(), n.to_string())].into()),
        None => field,
    }
}

/// The dimension of `vector(n)`, `Some(None)` for plain `vector`, `None` for other types.
pub fn vector_dims(sql_type: &SqlType) -> Result<Option<Option<usize>>> {
    Ok(match vector_type(sql_type)? {
        Some((VectorElement::Float32, dims)) => Some(dims),
        _ => None,
    })
}

fn typmod_error(type_name: &str, message: &str) -> datafusion::error::DataFusionError {
    VectorError::new("22023", message)
        .near(&format!("{type_name}("))
        .into()
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
        // The fields below are named for their types: a cast to an unnamed field without
        // metadata is "type only" to DataFusion and keeps its operand's metadata, so
        // `'{1}'::real[]::vector` would still be marked `real[]`.
        if is_real_array(sql_type) {
            return Ok(Some(Arc::new(real_array_field("real[]"))));
        }
        if let Some(length) = bit_length(sql_type) {
            return Ok(Some(Arc::new(length.field("bit"))));
        }
        if let Some(dims) = sparse_dims(sql_type)? {
            return Ok(Some(Arc::new(sparse_field("sparsevec", dims))));
        }
        Ok(vector_type(sql_type)?.map(|(element, dims)| {
            let data_type = match dims {
                Some(dims) => VectorSpec {
                    element,
                    ..VectorSpec::new(dims)
                }
                .arrow_type(),
                None => DataType::new_list(element.arrow_type(), true),
            };
            Arc::new(Field::new(element.type_name(), data_type, true))
        }))
    }
}
