//! The SQL functions of bit strings ([`crate::bits`]) as DataFusion UDFs: pgvector's
//! `binary_quantize`, `hamming_distance` (`<~>`) and `jaccard_distance` (`<%>`), and the casts
//! to and from `bit(n)` and `bit varying(n)` that [`crate::casts`] plans.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::lit;
use vecraft_storage::schema::{bit_arrow_type, is_bit};

use crate::bits::{BitLength, BitString, bit_array, bit_rows};
use crate::error::VectorError;
use crate::functions::{Operand, all_constant, answer};

/// Which bit-string function a UDF computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BitFn {
    /// pgvector's `binary_quantize(vector)`: a 1 for each element above zero.
    Quantize,
    /// pgvector's `hamming_distance(bit, bit)`, the `<~>` operator.
    Hamming,
    /// pgvector's `jaccard_distance(bit, bit)`, the `<%>` operator.
    Jaccard,
    /// `x::bit(n)` (text or a bit string; the length as [`BitLength::metadata`], and whether
    /// the cast is explicit).
    Cast,
    /// The text form (`bit_out`): what `::text` gives.
    Text,
}

impl BitFn {
    pub const ALL: [BitFn; 5] = [
        BitFn::Quantize,
        BitFn::Hamming,
        BitFn::Jaccard,
        BitFn::Cast,
        BitFn::Text,
    ];

    fn name(self) -> &'static str {
        match self {
            BitFn::Quantize => "binary_quantize",
            BitFn::Hamming => "hamming_distance",
            BitFn::Jaccard => "jaccard_distance",
            BitFn::Cast => "bit",
            BitFn::Text => "bit_out",
        }
    }

    pub fn udf(self) -> Arc<ScalarUDF> {
        let arity = match self {
            BitFn::Quantize | BitFn::Text => 1,
            BitFn::Hamming | BitFn::Jaccard => 2,
            BitFn::Cast => 3,
        };
        Arc::new(ScalarUDF::new_from_impl(BitUdf {
            function: self,
            signature: Signature::any(arity, Volatility::Immutable),
        }))
    }

    pub fn call(self, args: Vec<Expr>) -> Expr {
        self.udf().call(args)
    }

    /// `e::bit(n)` or `e::bit varying(n)`: fitted to `length`, padded or truncated when
    /// `explicit`.
    pub fn cast(e: Expr, length: BitLength, explicit: bool) -> Expr {
        BitFn::Cast.call(vec![e, lit(length.metadata()), lit(explicit)])
    }
}

/// Every function of this module, for registration.
pub fn all_udfs() -> Vec<Arc<ScalarUDF>> {
    BitFn::ALL.iter().map(|f| f.udf()).collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct BitUdf {
    function: BitFn,
    signature: Signature,
}

impl ScalarUDFImpl for BitUdf {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        datafusion::common::internal_err!("a bit function's type comes from its arguments")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let name = self.name();
        Ok(Arc::new(match self.function {
            BitFn::Quantize => Field::new(name, bit_arrow_type(), true),
            BitFn::Cast => match args.scalar_arguments.get(1).copied().flatten() {
                Some(ScalarValue::Utf8(Some(length))) => BitLength::parse(length)
                    .unwrap_or(BitLength::Any)
                    .field(name),
                _ => BitLength::Any.field(name),
            },
            BitFn::Hamming | BitFn::Jaccard => Field::new(name, DataType::Float64, true),
            BitFn::Text => Field::new(name, DataType::Utf8, true),
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let constant = all_constant(&args.args);
        let rows = if constant { 1 } else { args.number_rows };
        let out: ArrayRef = match self.function {
            BitFn::Quantize => {
                let vectors = Operand::new(&args.args[0], rows)?;
                let quantized: Vec<_> = (0..rows)
                    .map(|row| vectors.get(row).map(BitString::quantize))
                    .collect();
                bit_array(&quantized)
            }
            BitFn::Hamming | BitFn::Jaccard => {
                let a = read(&args.args[0].to_array(rows)?)?;
                let b = read(&args.args[1].to_array(rows)?)?;
                let mut out = Vec::with_capacity(rows);
                for (a, b) in a.iter().zip(&b) {
                    out.push(match (a, b) {
                        (Some(a), Some(b)) if self.function == BitFn::Hamming => {
                            Some(a.hamming(b)?)
                        }
                        (Some(a), Some(b)) => Some(a.jaccard(b)?),
                        _ => None,
                    });
                }
                Arc::new(Float64Array::from(out))
            }
            BitFn::Cast => {
                let length =
                    BitLength::of_field(args.return_field.as_ref()).unwrap_or(BitLength::Any);
                let explicit = matches!(
                    args.args[2],
                    ColumnarValue::Scalar(ScalarValue::Boolean(Some(true)))
                );
                let fitted = read(&args.args[0].to_array(rows)?)?
                    .into_iter()
                    .map(|b| b.map(|b| b.fit(length, explicit)).transpose())
                    .collect::<Result<Vec<_>, VectorError>>()?;
                bit_array(&fitted)
            }
            BitFn::Text => Arc::new(
                bit_rows(args.args[0].to_array(rows)?.as_ref())?
                    .iter()
                    .map(|b| b.as_ref().map(BitString::format))
                    .collect::<StringArray>(),
            ),
        };
        answer(out, constant)
    }
}

/// Bit strings, or text read as them (`hamming_distance('101', '111')`).
fn read(array: &ArrayRef) -> Result<Vec<Option<BitString>>> {
    match array.data_type() {
        t if is_bit(t) => bit_rows(array.as_ref()),
        DataType::Null => Ok(vec![None; array.len()]),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
            let texts = cast(array, &DataType::Utf8)?;
            Ok(texts
                .as_string::<i32>()
                .iter()
                .map(|t| t.map(BitString::parse).transpose())
                .collect::<Result<_, VectorError>>()?)
        }
        other => exec_err!("expected a bit string, found {other}"),
    }
}
