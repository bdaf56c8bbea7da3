//! `array::vector(n)` and pgvector's `array_to_vector(array, typmod, explicit)`: an array of
//! numbers (`real[]`, `double precision[]`, `integer[]`, `numeric[]`) read as a vector, with
//! pgvector's checks in its order — no NULL element, 1 to 16,000 elements, the declared
//! dimensions, then each element finite. psycopg sends a Python list this way
//! (`%s::vector` with a `float8[]` parameter).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::scalar::ScalarValue;
use vecraft_storage::schema::{MAX_DIMS, VectorElement, VectorSpec};

use crate::error::VectorError;
use crate::vector_text::check_dims;

/// Reads arrays of numbers as vectors (or halfvecs).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArrayToVector {
    signature: Signature,
    element: VectorElement,
}

/// `array_to_vector(array, dims, explicit)`: `dims` 0 (or below) for `vector` without
/// dimensions; `explicit` is accepted, as pgvector's, and changes nothing.
pub fn array_to_vector() -> ScalarUDF {
    ScalarUDF::new_from_impl(ArrayToVector {
        signature: Signature::any(3, Volatility::Immutable),
        element: VectorElement::Float32,
    })
}

/// `array_to_halfvec(array, dims, explicit)`: the same for `halfvec`, each element rounded to
/// a half (a vector or a halfvec is read as its array of elements too).
pub fn array_to_halfvec() -> ScalarUDF {
    ScalarUDF::new_from_impl(ArrayToVector {
        signature: Signature::any(3, Volatility::Immutable),
        element: VectorElement::Float16,
    })
}

/// The element type of an array of numbers; `None` for anything else.
pub fn number_element(data_type: &DataType) -> Option<&DataType> {
    match data_type {
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _)
            if item.data_type().is_numeric() =>
        {
            Some(item.data_type())
        }
        _ => None,
    }
}

/// Whether `array_to_vector` reads an array of `element`s: pgvector casts `integer[]`,
/// `real[]`, `double precision[]` and `numeric[]`, not `smallint[]`. (Nor `bigint[]`; but
/// `ARRAY[1,2]` is one here, integer literals being bigints, so it is read too.)
pub fn casts_to_vector(element: &DataType) -> bool {
    matches!(
        element,
        DataType::Int32
            | DataType::Int64
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
    )
}

/// Whether `data_type` is an array that `array_to_vector` reads.
pub fn is_number_array(data_type: &DataType) -> bool {
    number_element(data_type).is_some_and(casts_to_vector)
}

/// The declared dimensions of a call's second argument (a constant).
fn dims_of(arg: &ScalarValue) -> Option<usize> {
    let dims = match arg {
        ScalarValue::Int64(Some(n)) => *n,
        ScalarValue::Int32(Some(n)) => i64::from(*n),
        _ => return None,
    };
    usize::try_from(dims).ok().filter(|d| *d > 0)
}

impl ScalarUDFImpl for ArrayToVector {
    fn name(&self) -> &str {
        match self.element {
            VectorElement::Float32 => "array_to_vector",
            VectorElement::Float16 => "array_to_halfvec",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        datafusion::common::internal_err!("array_to_vector's type comes from its arguments")
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        if !is_number_array(args.arg_fields[0].data_type()) {
            return plan_err!(
                "array_to_vector takes an array of numbers, not {}",
                args.arg_fields[0].data_type()
            );
        }
        let dims = args
            .scalar_arguments
            .get(1)
            .copied()
            .flatten()
            .and_then(dims_of);
        let data_type = match dims {
            Some(dims) => VectorSpec {
                element: self.element,
                ..VectorSpec::new(dims)
            }
            .arrow_type(),
            None => DataType::new_list(self.element.arrow_type(), true),
        };
        Ok(Arc::new(datafusion::arrow::datatypes::Field::new(
            self.name(),
            data_type,
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arrays, _dims, _explicit] = args.args.as_slice() else {
            return exec_err!("array_to_vector takes an array, dimensions and a flag");
        };
        let arrays = arrays.to_array(args.number_rows)?;
        let dims = match args.return_field.data_type() {
            DataType::FixedSizeList(_, n) => Some(*n as usize),
            _ => None,
        };
        let mut rows = Vec::with_capacity(arrays.len());
        for row in 0..arrays.len() {
            rows.push(if arrays.is_null(row) {
                None
            } else {
                Some(self.vector_of(&element_array(&arrays, row)?, dims)?)
            });
        }
        let out = crate::vector_math::vectors(rows, args.return_field.data_type())?;
        Ok(ColumnarValue::Array(out))
    }
}

/// The elements of row `row` of a list array.
fn element_array(arrays: &ArrayRef, row: usize) -> Result<ArrayRef> {
    Ok(match arrays.data_type() {
        DataType::List(_) => arrays.as_list::<i32>().value(row),
        DataType::LargeList(_) => arrays.as_list::<i64>().value(row),
        DataType::FixedSizeList(..) => arrays.as_fixed_size_list().value(row),
        other => return exec_err!("array_to_vector of {other}"),
    })
}

impl ArrayToVector {
    /// One array's vector, checked as pgvector's `array_to_vector` checks it (in halfvec's
    /// words for a halfvec, each element then rounded to a half).
    fn vector_of(&self, items: &ArrayRef, dims: Option<usize>) -> Result<Vec<f32>> {
        let type_name = self.element.type_name();
        if items.null_count() > 0 {
            return Err(VectorError::new("22004", "array must not contain nulls").into());
        }
        if items.is_empty() {
            let message = format!("{type_name} must have at least 1 dimension");
            return Err(VectorError::data(message).into());
        }
        if items.len() > MAX_DIMS {
            let message = format!("{type_name} cannot have more than {MAX_DIMS} dimensions");
            return Err(VectorError::new("54000", message).into());
        }
        if let Some(dims) = dims {
            check_dims(items.len(), dims)?;
        }
        let doubles = cast(items, &DataType::Float64)?;
        let mut out = Vec::with_capacity(items.len());
        for x in doubles.as_primitive::<Float64Type>().values() {
            if x.is_nan() {
                return Err(VectorError::data(format!("NaN not allowed in {type_name}")).into());
            }
            let x = match self.element {
                VectorElement::Float32 => *x as f32,
                // Through real, as pgvector converts.
                VectorElement::Float16 => crate::halfvec::half(*x as f32)?,
            };
            if x.is_infinite() {
                let message = format!("infinite value not allowed in {type_name}");
                return Err(VectorError::data(message).into());
            }
            out.push(x);
        }
        Ok(out)
    }
}
