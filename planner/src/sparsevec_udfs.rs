//! The SQL functions of `sparsevec` ([`crate::sparsevec`]) as DataFusion UDFs: the casts to
//! and from it (what `x::sparsevec(n)`, `s::vector`, `s::halfvec` and `s::text` become in
//! [`crate::casts`]), its comparison and sort key (the operators and `ORDER BY`), and the
//! distances pgvector's operators and functions compute on it.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Float64Array, Int32Array, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use vecraft_storage::schema::{VectorElement, VectorSpec, is_sparsevec, sparsevec_arrow_type};

use crate::error::VectorError;
use crate::functions::{VectorFn, all_constant, answer};
use crate::sparsevec::{SparseVec, check_expected, sparse_array, sparse_rows};

/// Which sparsevec function a UDF computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SparseFn {
    /// `x::sparsevec(n)`: text, a vector, a halfvec, an array of numbers or a sparsevec.
    ToSparse,
    /// `s::vector(n)`.
    ToVector,
    /// `s::halfvec(n)`.
    ToHalfvec,
    /// pgvector's text form (`sparsevec_out`): what `::text` gives.
    Text,
    /// `sparsevec_cmp`: -1, 0 or 1, which the comparison operators compare with 0.
    Cmp,
    /// A key whose byte order is the comparison's: what `ORDER BY` sorts by.
    SortKey,
}

impl SparseFn {
    pub const ALL: [SparseFn; 6] = [
        SparseFn::ToSparse,
        SparseFn::ToVector,
        SparseFn::ToHalfvec,
        SparseFn::Text,
        SparseFn::Cmp,
        SparseFn::SortKey,
    ];

    fn name(self) -> &'static str {
        match self {
            SparseFn::ToSparse => "sparsevec",
            SparseFn::ToVector => "sparsevec_to_vector",
            SparseFn::ToHalfvec => "sparsevec_to_halfvec",
            SparseFn::Text => "sparsevec_out",
            SparseFn::Cmp => "sparsevec_cmp",
            SparseFn::SortKey => "sparsevec_sort_key",
        }
    }

    /// The UDF for this function. The casts take the declared dimension as their second
    /// argument (0: none).
    pub fn udf(self) -> Arc<ScalarUDF> {
        let arity = match self {
            SparseFn::Text | SparseFn::SortKey => 1,
            _ => 2,
        };
        Arc::new(ScalarUDF::new_from_impl(SparseUdf {
            function: self,
            signature: Signature::any(arity, Volatility::Immutable),
        }))
    }

    /// A call of this function.
    pub fn call(self, args: Vec<Expr>) -> Expr {
        self.udf().call(args)
    }

    /// A cast to a declared dimension (`None`: any).
    pub fn cast(self, e: Expr, dims: Option<usize>) -> Expr {
        let dims = datafusion::prelude::lit(dims.unwrap_or(0) as i64);
        self.call(vec![e, dims])
    }
}

/// Every function of this module, for registration.
pub fn all_udfs() -> Vec<Arc<ScalarUDF>> {
    SparseFn::ALL.iter().map(|f| f.udf()).collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SparseUdf {
    function: SparseFn,
    signature: Signature,
}

/// A cast's declared dimension, its constant second argument.
fn declared(arg: Option<&ScalarValue>) -> Option<usize> {
    match arg {
        Some(ScalarValue::Int64(Some(n))) if *n > 0 => Some(*n as usize),
        _ => None,
    }
}

impl ScalarUDFImpl for SparseUdf {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        datafusion::common::internal_err!("a sparsevec function's type comes from its arguments")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let dims = declared(args.scalar_arguments.get(1).copied().flatten());
        let dense = |element: VectorElement| match dims {
            Some(dims) => VectorSpec {
                element,
                ..VectorSpec::new(dims)
            }
            .arrow_type(),
            None => DataType::new_list(element.arrow_type(), true),
        };
        let data_type = match self.function {
            SparseFn::ToSparse => sparsevec_arrow_type(),
            SparseFn::ToVector => dense(VectorElement::Float32),
            SparseFn::ToHalfvec => dense(VectorElement::Float16),
            SparseFn::Text => DataType::Utf8,
            SparseFn::Cmp => DataType::Int32,
            SparseFn::SortKey => DataType::Binary,
        };
        Ok(Arc::new(Field::new(self.name(), data_type, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let constant = all_constant(&args.args);
        let rows = if constant { 1 } else { args.number_rows };
        let first = args.args[0].to_array(rows)?;
        let dims = match args.args.get(1) {
            Some(ColumnarValue::Scalar(s)) => declared(Some(s)),
            _ => None,
        };
        let out: ArrayRef = match self.function {
            SparseFn::ToSparse => sparse_array(&to_sparse(&first, dims)?),
            SparseFn::ToVector | SparseFn::ToHalfvec => {
                let half = self.function == SparseFn::ToHalfvec;
                let dense = to_dense(&first, dims, half)?;
                crate::vector_math::vectors(dense, args.return_field.data_type())?
            }
            SparseFn::Text => Arc::new(
                sparse_rows(first.as_ref())?
                    .iter()
                    .map(|v| v.as_ref().map(SparseVec::format))
                    .collect::<StringArray>(),
            ),
            SparseFn::SortKey => Arc::new(
                sparse_rows(first.as_ref())?
                    .iter()
                    .map(|v| v.as_ref().map(SparseVec::sort_key))
                    .collect::<BinaryArray>(),
            ),
            SparseFn::Cmp => {
                let second = args.args[1].to_array(rows)?;
                let (a, b) = (to_sparse(&first, None)?, to_sparse(&second, None)?);
                Arc::new(
                    a.iter()
                        .zip(&b)
                        .map(|(a, b)| Some(a.as_ref()?.pg_cmp(b.as_ref()?) as i32))
                        .collect::<Int32Array>(),
                )
            }
        };
        answer(out, constant)
    }
}

/// Each row of `input` as a sparse vector of `dims` dimensions (if declared): text read by
/// `sparsevec_in`, vectors and arrays of numbers by `vector_to_sparsevec` and
/// `array_to_sparsevec`, sparse vectors checked against `dims`.
fn to_sparse(input: &ArrayRef, dims: Option<usize>) -> Result<Vec<Option<SparseVec>>> {
    let from_dense = |v: &[f32]| SparseVec::from_dense(v, dims);
    let rows = match input.data_type() {
        t if is_sparsevec(t) => sparse_rows(input.as_ref())?
            .into_iter()
            .map(|v| {
                v.map(|v| check_expected(dims, v.dim).map(|()| v))
                    .transpose()
            })
            .collect::<Result<_, VectorError>>()?,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
            let texts = cast(input, &DataType::Utf8)?;
            texts
                .as_string::<i32>()
                .iter()
                .map(|t| t.map(|t| SparseVec::parse(t, dims)).transpose())
                .collect::<Result<_, VectorError>>()?
        }
        DataType::Null => vec![None; input.len()],
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let mut rows = Vec::with_capacity(input.len());
            for row in 0..input.len() {
                if input.is_null(row) {
                    rows.push(None);
                    continue;
                }
                let items = element_array(input, row)?;
                if items.null_count() > 0 {
                    return Err(VectorError::new("22004", "array must not contain nulls").into());
                }
                let doubles = cast(&items, &DataType::Float64)?;
                let reals: Vec<f32> = doubles
                    .as_primitive::<Float64Type>()
                    .values()
                    .iter()
                    .map(|&x| x as f32)
                    .collect();
                rows.push(Some(from_dense(&reals)?));
            }
            rows
        }
        other => return exec_err!("cannot cast type {other} to sparsevec"),
    };
    Ok(rows)
}

/// The elements of row `row` of a list array.
fn element_array(arrays: &ArrayRef, row: usize) -> Result<ArrayRef> {
    Ok(match arrays.data_type() {
        DataType::List(_) => arrays.as_list::<i32>().value(row),
        DataType::LargeList(_) => arrays.as_list::<i64>().value(row),
        DataType::FixedSizeList(..) => arrays.as_fixed_size_list().value(row),
        other => return exec_err!("expected an array, found {other}"),
    })
}

/// Each sparse vector of `input` as a dense vector (or halfvec, each element rounded to a
/// half), pgvector's checks first.
fn to_dense(input: &ArrayRef, dims: Option<usize>, half: bool) -> Result<Vec<Option<Vec<f32>>>> {
    let type_name = if half { "halfvec" } else { "vector" };
    let mut rows = Vec::with_capacity(input.len());
    for v in sparse_rows(input.as_ref())? {
        let Some(v) = v else {
            rows.push(None);
            continue;
        };
        let dense = v.to_dense(type_name, dims)?;
        rows.push(Some(match half {
            true => crate::halfvec::halves(&dense)?,
            false => dense,
        }));
    }
    Ok(rows)
}

/// A distance function of pgvector's on two sparse vectors (`l2_distance`, `<->`, …), row
/// by row; `None` if neither argument is a sparse vector.
pub fn sparse_distance(f: VectorFn, args: &ScalarFunctionArgs) -> Option<Result<ColumnarValue>> {
    let is_sparse = |a: &ColumnarValue| is_sparsevec(&a.data_type());
    if !args.args.iter().any(is_sparse) {
        return None;
    }
    Some(distances(f, args))
}

fn distances(f: VectorFn, args: &ScalarFunctionArgs) -> Result<ColumnarValue> {
    let constant = all_constant(&args.args);
    let rows = if constant { 1 } else { args.number_rows };
    let read = |a: &ColumnarValue| -> Result<Vec<Option<SparseVec>>> {
        let array = a.to_array(rows)?;
        match is_sparsevec(array.data_type()) {
            true => sparse_rows(array.as_ref()),
            // A text literal or parameter beside a sparse vector is one.
            false => to_sparse(&array, None),
        }
    };
    let columns = args.args.iter().map(read).collect::<Result<Vec<_>>>()?;
    let out: ArrayRef = match (f, columns.as_slice()) {
        (VectorFn::Norm, [a]) => Arc::new(
            a.iter()
                .map(|v| v.as_ref().map(SparseVec::norm))
                .collect::<Float64Array>(),
        ),
        (VectorFn::L2Normalize, [a]) => sparse_array(
            &a.iter()
                .map(|v| v.as_ref().map(normalize).transpose())
                .collect::<Result<Vec<_>, VectorError>>()?,
        ),
        (_, [a, b]) => {
            let mut out = Vec::with_capacity(rows);
            for (a, b) in a.iter().zip(b) {
                let (Some(a), Some(b)) = (a, b) else {
                    out.push(None);
                    continue;
                };
                out.push(Some(distance(f, a, b)?));
            }
            Arc::new(Float64Array::from(out))
        }
        _ => return exec_err!("{} does not take a sparsevec", f.name()),
    };
    answer(out, constant)
}

/// One of pgvector's binary functions of two sparse vectors of the same dimension.
fn distance(f: VectorFn, a: &SparseVec, b: &SparseVec) -> Result<f64> {
    a.check_same_dim(b)?;
    Ok(match f {
        VectorFn::L2Distance => f64::from(a.l2_squared(b)).sqrt(),
        VectorFn::InnerProduct => f64::from(a.inner_product(b)),
        VectorFn::NegativeInnerProduct => f64::from(-a.inner_product(b)),
        VectorFn::CosineDistance => a.cosine(b),
        VectorFn::L1Distance => f64::from(a.l1(b)),
        other => return exec_err!("{} does not take two sparsevecs", other.name()),
    })
}

/// pgvector's `l2_normalize` of a sparse vector: each value over the norm (zeros that
/// result are dropped); the zero vector stays zero.
fn normalize(v: &SparseVec) -> Result<SparseVec, VectorError> {
    let norm = v.norm();
    if norm <= 0.0 {
        return Ok(v.clone());
    }
    let mut out = SparseVec {
        dim: v.dim,
        indices: Vec::with_capacity(v.indices.len()),
        values: Vec::with_capacity(v.values.len()),
    };
    for (&i, &x) in v.indices.iter().zip(&v.values) {
        let scaled = (f64::from(x) / norm) as f32;
        if scaled.is_infinite() {
            return Err(VectorError::out_of_range("value out of range: overflow"));
        }
        if scaled != 0.0 {
            out.indices.push(i);
            out.values.push(scaled);
        }
    }
    Ok(out)
}
