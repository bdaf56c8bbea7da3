//! The values a COPY has parsed and not yet written, one typed buffer per target column,
//! filled from text or binary fields and taken as Arrow arrays for each batch.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, StringArray,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use pgwire::api::results::FieldFormat;
use pgwire::error::PgWireResult;
use vecraft_storage::schema::{ColumnType, VectorElement, VectorSpec, vector_array};

use crate::errors::user_error;
use crate::params::{halfvec_binary, vector_binary};

pub(super) enum Values {
    Int32(Vec<Option<i32>>),
    Int64(Vec<Option<i64>>),
    Float32(Vec<Option<f32>>),
    Float64(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
    /// Any other type, each value read as a bind parameter of that type is.
    Scalars {
        target: DataType,
        values: Vec<ScalarValue>,
    },
    /// A `vector(dims)` or `halfvec(dims)` column's values (a halfvec's as the reals its
    /// halves are).
    Vector {
        spec: VectorSpec,
        values: Vec<f32>,
        valid: Vec<bool>,
    },
}

impl Values {
    pub(super) fn new(ty: ColumnType) -> Values {
        match ty {
            ColumnType::Int32 => Values::Int32(Vec::new()),
            ColumnType::Int64 => Values::Int64(Vec::new()),
            ColumnType::Float32 => Values::Float32(Vec::new()),
            ColumnType::Float64 => Values::Float64(Vec::new()),
            ColumnType::Bool => Values::Bool(Vec::new()),
            ColumnType::Text
            | ColumnType::Json
            | ColumnType::Jsonb
            | ColumnType::Uuid
            | ColumnType::Varchar(_) => Values::Text(Vec::new()),
            ColumnType::Timestamp
            | ColumnType::TimestampTz
            | ColumnType::Date
            | ColumnType::Numeric(_)
            | ColumnType::Array(_)
            | ColumnType::VectorUnsized
            | ColumnType::SparseVec(_)
            | ColumnType::Bit { .. } => Values::Scalars {
                target: ty.arrow_type(),
                values: Vec::new(),
            },
            ColumnType::Vector(spec) => Values::Vector {
                spec,
                values: Vec::new(),
                valid: Vec::new(),
            },
        }
    }

    pub(super) fn push_text(&mut self, text: Option<&str>) -> PgWireResult<()> {
        let Some(text) = text else {
            self.push_null();
            return Ok(());
        };
        let bad = |ty: &str| {
            user_error(
                "22P02",
                format!("invalid input syntax for type {ty}: \"{text}\""),
            )
        };
        let t = text.trim();
        match self {
            Values::Int32(v) => v.push(Some(t.parse().map_err(|_| bad("integer"))?)),
            Values::Int64(v) => v.push(Some(t.parse().map_err(|_| bad("bigint"))?)),
            Values::Float32(v) => v.push(Some(t.parse().map_err(|_| bad("real"))?)),
            Values::Float64(v) => v.push(Some(t.parse().map_err(|_| bad("double precision"))?)),
            Values::Bool(v) => v.push(Some(match t.to_ascii_lowercase().as_str() {
                "t" | "true" | "yes" | "on" | "1" => true,
                "f" | "false" | "no" | "off" | "0" => false,
                _ => return Err(bad("boolean")),
            })),
            Values::Text(v) => v.push(Some(text.to_string())),
            Values::Scalars { target, values } => values.push(crate::params::decode(
                Some(text.as_bytes()),
                FieldFormat::Text,
                None,
                target,
            )?),
            Values::Vector {
                spec,
                values,
                valid,
            } => {
                let v = match spec.element {
                    VectorElement::Float32 => vecraft_planner::vector_text::parse_vector(text),
                    VectorElement::Float16 => vecraft_planner::halfvec::parse_halfvec(text),
                };
                let v = v.map_err(|e| user_error(e.sqlstate, e.message.clone()))?;
                push_vector(spec.dims, values, valid, &v)?;
            }
        }
        Ok(())
    }

    pub(super) fn push_binary(&mut self, bytes: Option<&[u8]>) -> PgWireResult<()> {
        let Some(b) = bytes else {
            self.push_null();
            return Ok(());
        };
        let bad = || user_error("22P03", "incorrect binary data format");
        let int = || -> PgWireResult<i64> {
            Ok(match b.len() {
                2 => i16::from_be_bytes([b[0], b[1]]) as i64,
                4 => i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64,
                8 => i64::from_be_bytes(b.try_into().map_err(|_| bad())?),
                _ => return Err(bad()),
            })
        };
        let float = || -> PgWireResult<f64> {
            Ok(match b.len() {
                4 => f32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64,
                8 => f64::from_be_bytes(b.try_into().map_err(|_| bad())?),
                _ => return Err(bad()),
            })
        };
        match self {
            Values::Int32(v) => v.push(Some(
                i32::try_from(int()?).map_err(|_| user_error("22003", "integer out of range"))?,
            )),
            Values::Int64(v) => v.push(Some(int()?)),
            Values::Float32(v) => v.push(Some(float()? as f32)),
            Values::Float64(v) => v.push(Some(float()?)),
            Values::Bool(v) => v.push(Some(*b.first().ok_or_else(bad)? != 0)),
            Values::Text(v) => v
                .push(Some(String::from_utf8(b.to_vec()).map_err(|_| {
                    user_error("22021", "invalid UTF-8 in COPY data")
                })?)),
            Values::Scalars { target, values } => values.push(crate::params::decode(
                Some(b),
                FieldFormat::Binary,
                None,
                target,
            )?),
            Values::Vector {
                spec,
                values,
                valid,
            } => {
                let v = match spec.element {
                    VectorElement::Float32 => vector_binary(b),
                    VectorElement::Float16 => halfvec_binary(b),
                };
                push_vector(spec.dims, values, valid, &v.ok_or_else(bad)?)?;
            }
        }
        Ok(())
    }

    fn push_null(&mut self) {
        match self {
            Values::Int32(v) => v.push(None),
            Values::Int64(v) => v.push(None),
            Values::Float32(v) => v.push(None),
            Values::Float64(v) => v.push(None),
            Values::Bool(v) => v.push(None),
            Values::Text(v) => v.push(None),
            Values::Scalars { target, values } => values
                .push(ScalarValue::try_from(&*target).expect("every column type has a typed NULL")),
            Values::Vector {
                spec,
                values,
                valid,
            } => {
                values.extend(std::iter::repeat_n(0.0, spec.dims));
                valid.push(false);
            }
        }
    }

    /// The values gathered so far as one array; empties the buffer.
    pub(super) fn take(&mut self) -> PgWireResult<ArrayRef> {
        Ok(match self {
            Values::Int32(v) => Arc::new(Int32Array::from(std::mem::take(v))),
            Values::Int64(v) => Arc::new(Int64Array::from(std::mem::take(v))),
            Values::Float32(v) => Arc::new(Float32Array::from(std::mem::take(v))),
            Values::Float64(v) => Arc::new(Float64Array::from(std::mem::take(v))),
            Values::Bool(v) => Arc::new(BooleanArray::from(std::mem::take(v))),
            Values::Text(v) => Arc::new(StringArray::from(std::mem::take(v))),
            Values::Scalars { target, values } => {
                if values.is_empty() {
                    datafusion::arrow::array::new_empty_array(target)
                } else {
                    ScalarValue::iter_to_array(std::mem::take(values))
                        .map_err(|e| user_error("XX000", e.to_string()))?
                }
            }
            Values::Vector {
                spec,
                values,
                valid,
            } => {
                let nulls = valid
                    .iter()
                    .any(|v| !v)
                    .then(|| datafusion::arrow::buffer::NullBuffer::from(std::mem::take(valid)));
                valid.clear();
                let reals = vector_array(spec.dims, std::mem::take(values), nulls);
                // Exact for a halfvec: each real is a half.
                datafusion::arrow::compute::cast(&reals, &spec.arrow_type())
                    .map_err(|e| user_error("XX000", e.to_string()))?
            }
        })
    }
}

fn push_vector(
    dims: usize,
    values: &mut Vec<f32>,
    valid: &mut Vec<bool>,
    v: &[f32],
) -> PgWireResult<()> {
    crate::params::check_vector(v, dims)?;
    values.extend_from_slice(v);
    valid.push(true);
    Ok(())
}
