//! `text_column::vector(n)`: pgvector's input function over a column of text, row by row.
//! A text literal cast to a vector becomes a vector literal while the plan is analysed
//! (`casts.rs`); text that comes from rows — a VALUES list inside `INSERT … SELECT`, which
//! llama-index and SQLAlchemy send, or a text column — is read here, with pgvector's errors.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::exec_err;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use vecraft_storage::schema::{vector_array, vector_arrow_type};

use crate::vector_text::{check_dims, parse_vector};

/// Reads text as `vector(dims)` (`vector` when `None`: each row keeps its own length).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorIn {
    dims: Option<usize>,
    signature: Signature,
}

/// The input function of `vector(dims)`.
pub fn vector_in(dims: Option<usize>) -> ScalarUDF {
    ScalarUDF::new_from_impl(VectorIn {
        dims,
        signature: Signature::string(1, Volatility::Immutable),
    })
}

impl ScalarUDFImpl for VectorIn {
    fn name(&self) -> &str {
        "vector_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.dims {
            Some(dims) => vector_arrow_type(dims),
            None => DataType::new_list(DataType::Float32, true),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [text] = args.args.as_slice() else {
            return exec_err!("vector_in takes one text");
        };
        let text = cast(&text.to_array(args.number_rows)?, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let mut values = Vec::new();
        let mut lengths = Vec::with_capacity(text.len());
        for row in text {
            let Some(row) = row else {
                lengths.push(self.dims.unwrap_or(0));
                values.extend(std::iter::repeat_n(0.0, self.dims.unwrap_or(0)));
                continue;
            };
            let v = parse_vector(row).map_err(|e| e.with_literal(row))?;
            if let Some(dims) = self.dims {
                check_dims(v.len(), dims)?;
            }
            lengths.push(v.len());
            values.extend(v);
        }
        let nulls = text.nulls().cloned();
        Ok(ColumnarValue::Array(match self.dims {
            Some(dims) => Arc::new(vector_array(dims, values, nulls)) as ArrayRef,
            None => unsized_vectors(values, &lengths, nulls),
        }))
    }
}

/// Vectors of any length, as `vector` without a dimension is typed.
fn unsized_vectors(values: Vec<f32>, lengths: &[usize], nulls: Option<NullBuffer>) -> ArrayRef {
    let item = Arc::new(Field::new_list_field(DataType::Float32, true));
    let values = Arc::new(datafusion::arrow::array::Float32Array::from(values));
    let offsets = OffsetBuffer::from_lengths(lengths.iter().copied());
    Arc::new(ListArray::new(item, offsets, values, nulls))
}
