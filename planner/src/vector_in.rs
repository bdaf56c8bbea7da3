//! `text_column::vector(n)`: pgvector's input function over a column of text, row by row.
//! A text literal cast to a vector becomes a vector literal while the plan is analysed
//! (`casts.rs`); text that comes from rows — a VALUES list inside `INSERT … SELECT`, which
//! llama-index and SQLAlchemy send, or a text column — is read here, with pgvector's errors.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::exec_err;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use vecraft_storage::schema::{vector_array, vector_arrow_type};

use crate::vector_text::{check_dims, parse_vector};

/// Reads text as `vector(dims)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorIn {
    dims: usize,
    signature: Signature,
}

/// The input function of `vector(dims)` (`dims` > 0).
pub fn vector_in(dims: usize) -> ScalarUDF {
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
        Ok(vector_arrow_type(self.dims))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [text] = args.args.as_slice() else {
            return exec_err!("vector_in takes one text");
        };
        let text = cast(&text.to_array(args.number_rows)?, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let mut values = Vec::with_capacity(text.len() * self.dims);
        for row in text {
            match row {
                Some(row) => {
                    let v = parse_vector(row).map_err(|e| e.with_literal(row))?;
                    check_dims(v.len(), self.dims)?;
                    values.extend(v);
                }
                // A NULL row's slot, masked by the validity below.
                None => values.extend(std::iter::repeat_n(0.0, self.dims)),
            }
        }
        let nulls = text.nulls().cloned();
        let vectors = vector_array(self.dims, values, nulls);
        Ok(ColumnarValue::Array(Arc::new(vectors)))
    }
}
