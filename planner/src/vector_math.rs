//! pgvector's arithmetic and ordering on vectors: `+`, `-`, `*` (element-wise), `||`
//! (concatenation), `subvector(v, start, count)`, and `vector_cmp`, which the comparison
//! operators (`<`, `<=`, `=`, `<>`, `>=`, `>`) use — the order pgvector's btree opclass
//! sorts by: element by element, then the shorter vector first.
//!
//! Errors are pgvector's: operands of different dimensions (22000), results out of `real`'s
//! range (22003, `overflow` or `underflow`), more than 16,000 dimensions.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float32Array, Int32Array, ListArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use vecraft_storage::schema::{
    MAX_DIMS, VectorElement, VectorSpec, vector_array, vector_arrow_type,
};

use crate::halfvec::{half_target, halves};

use crate::error::{NUMERIC_VALUE_OUT_OF_RANGE, VectorError};
use crate::functions::{Operand, all_constant, answer};

/// Which computation a UDF of this module does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VectorMath {
    Add,
    Subtract,
    Multiply,
    Concat,
    Subvector,
    Cmp,
    /// pgvector's `halfvec_cmp`: `vector_cmp` of the operands read as halves.
    HalfCmp,
}

impl VectorMath {
    pub const ALL: [VectorMath; 7] = [
        VectorMath::Add,
        VectorMath::Subtract,
        VectorMath::Multiply,
        VectorMath::Concat,
        VectorMath::Subvector,
        VectorMath::Cmp,
        VectorMath::HalfCmp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            VectorMath::Add => "vector_add",
            VectorMath::Subtract => "vector_sub",
            VectorMath::Multiply => "vector_mul",
            VectorMath::Concat => "vector_concat",
            VectorMath::Subvector => "subvector",
            VectorMath::Cmp => "vector_cmp",
            VectorMath::HalfCmp => "halfvec_cmp",
        }
    }

    pub fn udf(self) -> Arc<ScalarUDF> {
        let arity = if self == VectorMath::Subvector { 3 } else { 2 };
        Arc::new(ScalarUDF::new_from_impl(MathUdf {
            function: self,
            signature: Signature::any(arity, Volatility::Immutable),
        }))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct MathUdf {
    function: VectorMath,
    signature: Signature,
}

fn fixed_dims(t: &DataType) -> Option<usize> {
    match t {
        DataType::FixedSizeList(_, n) => Some(*n as usize),
        _ => None,
    }
}

impl ScalarUDFImpl for MathUdf {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let dims: Vec<Option<usize>> = args.iter().map(fixed_dims).collect();
        // Halfvecs give halfvecs, as pgvector's halfvec operators do.
        let element = match args.iter().any(|t| half_target(t).is_some()) {
            true => VectorElement::Float16,
            false => VectorElement::Float32,
        };
        let sized = |dims| {
            VectorSpec {
                element,
                ..VectorSpec::new(dims)
            }
            .arrow_type()
        };
        let any_length = DataType::new_list(element.arrow_type(), true);
        Ok(match self.function {
            VectorMath::Cmp | VectorMath::HalfCmp => DataType::Int32,
            VectorMath::Subvector => any_length,
            VectorMath::Concat => match (dims[0], dims[1]) {
                (Some(a), Some(b)) if a + b <= MAX_DIMS => sized(a + b),
                _ => any_length,
            },
            _ => match dims[0].or(dims[1]) {
                Some(n) => sized(n),
                None => any_length,
            },
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let all_scalar = all_constant(&args.args);
        let n = if all_scalar { 1 } else { rows };
        let array = match self.function {
            VectorMath::Cmp => {
                let (a, b) = (
                    Operand::new(&args.args[0], rows)?,
                    Operand::new(&args.args[1], rows)?,
                );
                let out: Int32Array = (0..n)
                    .map(|row| Some(compare(a.get(row)?, b.get(row)?)))
                    .collect();
                Arc::new(out) as ArrayRef
            }
            VectorMath::HalfCmp => {
                let (a, b) = (
                    Operand::new(&args.args[0], rows)?,
                    Operand::new(&args.args[1], rows)?,
                );
                let mut out = Vec::with_capacity(n);
                for row in 0..n {
                    out.push(match (a.get(row), b.get(row)) {
                        (Some(x), Some(y)) => Some(compare(&halves(x)?, &halves(y)?)),
                        _ => None,
                    });
                }
                Arc::new(Int32Array::from(out)) as ArrayRef
            }
            VectorMath::Subvector => {
                let a = Operand::new(&args.args[0], rows)?;
                let starts = integers(&args.args[1], rows)?;
                let counts = integers(&args.args[2], rows)?;
                let half = half_target(args.return_field.data_type()).is_some();
                let mut out = Vec::with_capacity(n);
                for row in 0..n {
                    out.push(match (a.get(row), starts[row], counts[row]) {
                        (Some(v), Some(start), Some(count)) => {
                            Some(subvector(v, start, count, half)?)
                        }
                        _ => None,
                    });
                }
                vectors(out, args.return_field.data_type())?
            }
            f => {
                let (a, b) = (
                    Operand::new(&args.args[0], rows)?,
                    Operand::new(&args.args[1], rows)?,
                );
                let half = half_target(args.return_field.data_type()).is_some();
                let mut out = Vec::with_capacity(n);
                for row in 0..n {
                    out.push(match (a.get(row), b.get(row)) {
                        (Some(x), Some(y)) => Some(combine(f, x, y, half)?),
                        _ => None,
                    });
                }
                vectors(out, args.return_field.data_type())?
            }
        };
        answer(array, all_scalar)
    }
}

/// pgvector's `vector_cmp`: element by element, then the shorter first.
pub fn compare(a: &[f32], b: &[f32]) -> i32 {
    for (x, y) in a.iter().zip(b) {
        if x < y {
            return -1;
        }
        if x > y {
            return 1;
        }
    }
    match a.len().cmp(&b.len()) {
        std::cmp::Ordering::Less => -1,
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Greater => 1,
    }
}

/// `x op y`; `half`: of halfvecs, each result rounded to a half (its overflow is an error).
fn combine(f: VectorMath, x: &[f32], y: &[f32], half: bool) -> Result<Vec<f32>> {
    let type_name = if half { "halfvec" } else { "vector" };
    if f == VectorMath::Concat {
        if x.len() + y.len() > MAX_DIMS {
            let message = format!("{type_name} cannot have more than {MAX_DIMS} dimensions");
            return Err(VectorError::data(message).into());
        }
        return Ok(x.iter().chain(y).copied().collect());
    }
    if x.len() != y.len() {
        let message = format!(
            "different {type_name} dimensions {} and {}",
            x.len(),
            y.len()
        );
        return Err(VectorError::data(message).into());
    }
    let mut out = Vec::with_capacity(x.len());
    for (a, b) in x.iter().zip(y) {
        let r = match f {
            VectorMath::Add => a + b,
            VectorMath::Subtract => a - b,
            _ => a * b,
        };
        let r = if half {
            half::f16::from_f32(r).to_f32()
        } else {
            r
        };
        if r.is_infinite() {
            return Err(out_of_range("overflow"));
        }
        // A product of two non-zero numbers that rounds to zero has left real's range.
        if f == VectorMath::Multiply && r == 0.0 && *a != 0.0 && *b != 0.0 {
            return Err(out_of_range("underflow"));
        }
        out.push(r);
    }
    Ok(out)
}

fn out_of_range(what: &str) -> datafusion::error::DataFusionError {
    VectorError::new(
        NUMERIC_VALUE_OUT_OF_RANGE,
        format!("value out of range: {what}"),
    )
    .into()
}

/// pgvector's `subvector`: `count` elements from `start` (counted from 1), cut to the vector.
fn subvector(v: &[f32], start: i64, count: i64, half: bool) -> Result<Vec<f32>> {
    let type_name = if half { "halfvec" } else { "vector" };
    let too_few =
        || VectorError::data(format!("{type_name} must have at least 1 dimension")).into();
    if count < 1 {
        return Err(too_few());
    }
    let dims = v.len() as i64;
    let end = if start > dims - count {
        dims + 1
    } else {
        start + count
    };
    let start = if start < 1 {
        1
    } else if start > dims {
        return Err(too_few());
    } else {
        start
    };
    if end - start < 1 {
        return Err(too_few());
    }
    Ok(v[(start - 1) as usize..(end - 1) as usize].to_vec())
}

fn integers(value: &ColumnarValue, rows: usize) -> Result<Vec<Option<i64>>> {
    let array = value.to_array(rows)?;
    let array = datafusion::arrow::compute::cast(&array, &DataType::Int64)?;
    let ints = datafusion::arrow::array::AsArray::as_primitive::<
        datafusion::arrow::datatypes::Int64Type,
    >(&array);
    Ok(ints.iter().collect())
}

/// Rows of vectors as an array of `data_type`: fixed dimensions, or any.
pub(crate) fn vectors(rows: Vec<Option<Vec<f32>>>, data_type: &DataType) -> Result<ArrayRef> {
    if crate::halfvec::half_target(data_type).is_some() {
        // Halfvecs: built as reals, which hold each half exactly, then cast.
        let reals = match data_type {
            DataType::FixedSizeList(_, dims) => vector_arrow_type(*dims as usize),
            _ => crate::functions::unsized_vector(),
        };
        let reals = vectors(rows, &reals)?;
        return Ok(datafusion::arrow::compute::cast(&reals, data_type)?);
    }
    let valid: Vec<bool> = rows.iter().map(Option::is_some).collect();
    let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
    if let DataType::FixedSizeList(_, dims) = data_type {
        let dims = *dims as usize;
        let mut values = Vec::with_capacity(rows.len() * dims);
        for row in &rows {
            match row {
                Some(v) if v.len() == dims => values.extend_from_slice(v),
                Some(v) => {
                    let message = format!("expected {dims} dimensions, not {}", v.len());
                    return Err(VectorError::data(message).into());
                }
                None => values.extend(std::iter::repeat_n(0.0, dims)),
            }
        }
        return Ok(Arc::new(vector_array(dims, values, nulls)));
    }
    let lengths: Vec<usize> = rows
        .iter()
        .map(|r| r.as_ref().map_or(0, Vec::len))
        .collect();
    let values: Vec<f32> = rows.into_iter().flatten().flatten().collect();
    Ok(Arc::new(ListArray::new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(Float32Array::from(values)),
        nulls,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subvector_cuts_as_pgvector_cuts() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(subvector(&v, 1, 3, false).unwrap(), [1.0, 2.0, 3.0]);
        assert_eq!(subvector(&v, -1, 3, false).unwrap(), [1.0]);
        assert_eq!(subvector(&v, 3, 9, false).unwrap(), [3.0, 4.0, 5.0]);
        assert_eq!(
            subvector(&v, 3, i32::MAX as i64, false).unwrap(),
            [3.0, 4.0, 5.0]
        );
        assert_eq!(
            subvector(&v, -2147483644, i32::MAX as i64, false).unwrap(),
            [1.0, 2.0]
        );
        for (start, count) in [(1, 0), (3, -1), (-1, 2), (i32::MAX as i64, 10)] {
            assert!(
                subvector(&v, start, count, false).is_err(),
                "{start} {count}"
            );
        }
        let e = subvector(&v, 1, 0, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "External error: halfvec must have at least 1 dimension"
        );
    }

    #[test]
    fn vectors_order_by_elements_then_length() {
        assert_eq!(compare(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 0);
        assert_eq!(compare(&[1.0, 2.0], &[1.0, 2.0, 3.0]), -1);
        assert_eq!(compare(&[2.0, 3.0], &[1.0, 2.0, 3.0]), 1);
        assert!(combine(VectorMath::Multiply, &[1e-37], &[1e-37], false).is_err());
        assert!(combine(VectorMath::Add, &[3e38], &[3e38], false).is_err());
        // Halves: each result rounded, and held to a half's range.
        assert_eq!(
            combine(VectorMath::Add, &[1.0], &[0.0001], true).unwrap(),
            [1.0]
        );
        assert!(combine(VectorMath::Add, &[60000.0], &[60000.0], true).is_err());
        assert!(combine(VectorMath::Multiply, &[0.0001], &[0.0001], true).is_err());
    }
}
