//! pgvector's functions as DataFusion scalar UDFs: `l2_distance`, `cosine_distance`,
//! `inner_product`, `vector_negative_inner_product` (the `<#>` operator), `l1_distance`,
//! `vector_dims`, `vector_norm`, `l2_normalize`; and `vector_out`, the text form `::text` gives.
//!
//! Arguments may be vectors (`FixedSizeList`/`List` of floats) or text in pgvector's form (a
//! literal like `'[1,2,3]'` or a text parameter), parsed once per batch for constants. The
//! arithmetic is the storage engine's kernels, so a distance computed here and one computed
//! by an index search agree. Errors carry pgvector's SQLSTATEs (`crate::error`).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Float64Array, Int32Array, StringArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float32Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use vecraft_storage::distance::Metric;
use vecraft_storage::schema::vector_array;

use crate::error::VectorError;
use crate::vector_text::parse_vector;

/// Which pgvector function a UDF computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VectorFn {
    L2Distance,
    CosineDistance,
    InnerProduct,
    NegativeInnerProduct,
    L1Distance,
    Dims,
    Norm,
    L2Normalize,
    /// pgvector's text form of a vector (`vector_out`): what `::text` gives.
    Text,
}

impl VectorFn {
    pub const ALL: [VectorFn; 9] = [
        VectorFn::L2Distance,
        VectorFn::CosineDistance,
        VectorFn::InnerProduct,
        VectorFn::NegativeInnerProduct,
        VectorFn::L1Distance,
        VectorFn::Dims,
        VectorFn::Norm,
        VectorFn::L2Normalize,
        VectorFn::Text,
    ];

    pub fn name(self) -> &'static str {
        match self {
            VectorFn::L2Distance => "l2_distance",
            VectorFn::CosineDistance => "cosine_distance",
            VectorFn::InnerProduct => "inner_product",
            VectorFn::NegativeInnerProduct => "vector_negative_inner_product",
            VectorFn::L1Distance => "l1_distance",
            VectorFn::Dims => "vector_dims",
            VectorFn::Norm => "vector_norm",
            VectorFn::L2Normalize => "l2_normalize",
            VectorFn::Text => "vector_out",
        }
    }

    fn arity(self) -> usize {
        match self {
            VectorFn::Dims | VectorFn::Norm | VectorFn::L2Normalize | VectorFn::Text => 1,
            _ => 2,
        }
    }

    /// The storage metric an index search would use for this distance, if any.
    pub fn metric(self) -> Option<Metric> {
        match self {
            VectorFn::L2Distance => Some(Metric::L2),
            VectorFn::CosineDistance => Some(Metric::Cosine),
            VectorFn::NegativeInnerProduct => Some(Metric::InnerProduct),
            VectorFn::L1Distance => Some(Metric::L1),
            _ => None,
        }
    }

    /// The UDF for this function.
    pub fn udf(self) -> Arc<ScalarUDF> {
        let udf = ScalarUDF::new_from_impl(VectorUdf {
            function: self,
            signature: Signature::any(self.arity(), Volatility::Immutable),
        });
        // pgvector's name of the norm of a halfvec or a sparsevec.
        Arc::new(match self {
            VectorFn::Norm => udf.with_aliases(["l2_norm"]),
            _ => udf,
        })
    }
}

/// Every function of this module, for registration.
pub fn all_udfs() -> Vec<Arc<ScalarUDF>> {
    VectorFn::ALL.iter().map(|f| f.udf()).collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct VectorUdf {
    function: VectorFn,
    signature: Signature,
}

impl ScalarUDFImpl for VectorUdf {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.function {
            VectorFn::Dims => DataType::Int32,
            VectorFn::Text => DataType::Utf8,
            // A halfvec's is a halfvec, a sparsevec's a sparsevec, as pgvector's.
            VectorFn::L2Normalize => match arg_types.first() {
                Some(t @ DataType::FixedSizeList(..)) => t.clone(),
                Some(t) if vecraft_storage::schema::is_sparsevec(t) => t.clone(),
                _ => unsized_vector(),
            },
            _ => DataType::Float64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(answer) = crate::sparsevec_udfs::sparse_distance(self.function, &args) {
            return answer;
        }
        let rows = args.number_rows;
        let all_scalar = all_constant(&args.args);
        let operands = args
            .args
            .iter()
            .map(|a| Operand::new(a, rows))
            .collect::<Result<Vec<_>>>()?;
        let n = if all_scalar { 1 } else { rows };
        let array = match self.function {
            VectorFn::Dims => unary_i32(&operands[0], n),
            VectorFn::Text => unary_text(&operands[0], n),
            VectorFn::Norm => unary_f64(&operands[0], n, Metric::pg_norm),
            VectorFn::L2Normalize => normalize(&operands[0], n, args.return_field.data_type())?,
            f => {
                let half = args
                    .args
                    .iter()
                    .any(|a| crate::halfvec::half_target(&a.data_type()).is_some());
                let type_name = if half { "halfvec" } else { "vector" };
                binary(f, &operands[0], &operands[1], n, type_name)?
            }
        };
        answer(array, all_scalar)
    }
}

/// Whether every argument is a constant: a vector function then computes one row, and its
/// answer is a constant too ([`answer`]).
pub(crate) fn all_constant(args: &[ColumnarValue]) -> bool {
    args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)))
}

/// A vector function's computed rows as its answer: the one value when the arguments were
/// all constants, else the array.
pub(crate) fn answer(array: ArrayRef, constant: bool) -> Result<ColumnarValue> {
    if constant {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &array, 0,
        )?))
    } else {
        Ok(ColumnarValue::Array(array))
    }
}

/// A vector whose dimensions its type does not say (`'[1,2]'::vector`, `l2_normalize` of
/// one): a list of `real`s.
pub(crate) fn unsized_vector() -> DataType {
    DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new(
        "item",
        DataType::Float32,
        true,
    )))
}

/// One argument, readable row by row as `Option<&[f32]>` whatever form it came in.
pub(crate) enum Operand {
    Constant(Option<Vec<f32>>),
    Fixed {
        values: Float32Array,
        dims: usize,
        nulls: Option<NullBuffer>,
    },
    Rows(Vec<Option<Vec<f32>>>),
}

impl Operand {
    pub(crate) fn new(value: &ColumnarValue, rows: usize) -> Result<Operand> {
        match value {
            ColumnarValue::Scalar(s) => {
                let array = s.to_array_of_size(1)?;
                match Operand::from_array(&array)? {
                    Operand::Rows(mut v) => Ok(Operand::Constant(v.pop().flatten())),
                    Operand::Fixed {
                        values,
                        dims,
                        nulls,
                    } => {
                        let valid = nulls.is_none_or(|n| n.is_valid(0));
                        Ok(Operand::Constant(
                            valid.then(|| values.values()[..dims].to_vec()),
                        ))
                    }
                    constant => Ok(constant),
                }
            }
            ColumnarValue::Array(a) => {
                debug_assert_eq!(a.len(), rows);
                Operand::from_array(a)
            }
        }
    }

    pub(crate) fn from_array(array: &ArrayRef) -> Result<Operand> {
        match array.data_type() {
            DataType::FixedSizeList(_, n) => {
                let list = array.as_fixed_size_list();
                Ok(Operand::Fixed {
                    values: floats(list.values())?,
                    dims: *n as usize,
                    nulls: list.nulls().cloned(),
                })
            }
            DataType::List(_) | DataType::LargeList(_) => {
                let list = cast(
                    array,
                    &DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new(
                        "item",
                        DataType::Float32,
                        true,
                    ))),
                )?;
                let list = list.as_list::<i32>();
                let values = floats(list.values())?;
                let rows = (0..list.len())
                    .map(|i| {
                        let (a, b) = (
                            list.value_offsets()[i] as usize,
                            list.value_offsets()[i + 1] as usize,
                        );
                        list.is_valid(i).then(|| values.values()[a..b].to_vec())
                    })
                    .collect();
                Ok(Operand::Rows(rows))
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let text = cast(array, &DataType::Utf8)?;
                let rows = text
                    .as_string::<i32>()
                    .iter()
                    .map(|t| t.map(parse_vector).transpose())
                    .collect::<Result<Vec<_>, VectorError>>()?;
                Ok(Operand::Rows(rows))
            }
            DataType::Null => Ok(Operand::Constant(None)),
            other => exec_err!("function does not accept {other}: expected a vector"),
        }
    }

    #[inline]
    pub(crate) fn get(&self, row: usize) -> Option<&[f32]> {
        match self {
            Operand::Constant(v) => v.as_deref(),
            Operand::Fixed {
                values,
                dims,
                nulls,
            } => {
                if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                    return None;
                }
                Some(&values.values()[row * dims..(row + 1) * dims])
            }
            Operand::Rows(rows) => rows[row].as_deref(),
        }
    }
}

fn floats(values: &ArrayRef) -> Result<Float32Array> {
    let values = match values.data_type() {
        DataType::Float32 => values.clone(),
        _ => cast(values, &DataType::Float32)?,
    };
    Ok(values.as_primitive::<Float32Type>().clone())
}

/// `type_name`: the arguments' type, which the error for different dimensions names.
fn binary(f: VectorFn, a: &Operand, b: &Operand, n: usize, type_name: &str) -> Result<ArrayRef> {
    let mut out = Vec::with_capacity(n);
    for row in 0..n {
        let (Some(x), Some(y)) = (a.get(row), b.get(row)) else {
            out.push(None);
            continue;
        };
        if x.len() != y.len() {
            return Err(VectorError::data(format!(
                "different {type_name} dimensions {} and {}",
                x.len(),
                y.len()
            ))
            .into());
        }
        out.push(Some(match f {
            VectorFn::InnerProduct => Metric::inner_product(x, y),
            other => other
                .metric()
                .expect("binary vector functions have a metric")
                .distance(x, y),
        }));
    }
    Ok(Arc::new(Float64Array::from(out)))
}

fn unary_f64(a: &Operand, n: usize, f: impl Fn(&[f32]) -> f64) -> ArrayRef {
    Arc::new(
        (0..n)
            .map(|row| a.get(row).map(&f))
            .collect::<Float64Array>(),
    )
}

fn unary_text(a: &Operand, n: usize) -> ArrayRef {
    Arc::new(
        (0..n)
            .map(|row| a.get(row).map(crate::vector_text::format_vector))
            .collect::<StringArray>(),
    )
}

fn unary_i32(a: &Operand, n: usize) -> ArrayRef {
    Arc::new(
        (0..n)
            .map(|row| a.get(row).map(|v| v.len() as i32))
            .collect::<Int32Array>(),
    )
}

/// pgvector's `l2_normalize`: `v / |v|`, the zero vector stays zero.
fn normalize(a: &Operand, n: usize, return_type: &DataType) -> Result<ArrayRef> {
    let DataType::FixedSizeList(_, dims) = return_type else {
        return exec_err!("l2_normalize needs a vector of known dimensions");
    };
    let dims = *dims as usize;
    let mut values = Vec::with_capacity(n * dims);
    let mut valid = Vec::with_capacity(n);
    for row in 0..n {
        match a.get(row) {
            Some(v) if v.len() == dims => {
                let length = Metric::pg_norm(v);
                let scale = |x: &f32| {
                    if length > 0.0 {
                        (*x as f64 / length) as f32
                    } else {
                        0.0
                    }
                };
                values.extend(v.iter().map(scale));
                valid.push(true);
            }
            Some(v) => {
                return Err(VectorError::data(format!(
                    "expected {dims} dimensions, not {}",
                    v.len()
                ))
                .into());
            }
            None => {
                values.extend(std::iter::repeat_n(0.0, dims));
                valid.push(false);
            }
        }
    }
    let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
    let reals = vector_array(dims, values, nulls);
    match crate::halfvec::half_target(return_type) {
        Some(_) => {
            let halves =
                crate::halfvec::halves(reals.values().as_primitive::<Float32Type>().values())?;
            let halves = vector_array(dims, halves, reals.nulls().cloned());
            Ok(cast(&halves, return_type)?)
        }
        None => Ok(Arc::new(reals)),
    }
}
