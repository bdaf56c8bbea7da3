//! pgvector's aggregate support functions, callable on their own as in pgvector:
//! `vector_accum(state, v)`, `vector_combine(state, state)` and `vector_avg(state)`, and
//! their `halfvec_` twins (which read halves and average to a halfvec).
//!
//! A state is a `double precision[]` `{n, sum_1, …, sum_d}`: the count of vectors seen and
//! their element-wise sums (`{0}` before the first). `avg(vector)` itself is planned apart
//! ([`crate::vector_aggregates`]) and keeps its state in Arrow; these give the same answers
//! for a state written by hand, with pgvector's checks and words: a state that is not a
//! one-dimensional array of at least one non-NULL number is `expected state array` (XX000, an
//! internal error in pgvector too), dimensions that disagree 22000, a sum that overflows 22003.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Builder, ListBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use vecraft_storage::schema::{MAX_DIMS, VectorElement};

use crate::error::VectorError;
use crate::functions::{Operand, all_constant, answer};
use crate::halfvec::halves;
use crate::vector_text::check_dims;

/// Which support function a UDF computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum StateFn {
    Accum,
    Combine,
    Avg,
}

impl StateFn {
    fn name(self, element: VectorElement) -> &'static str {
        match (self, element) {
            (StateFn::Accum, VectorElement::Float32) => "vector_accum",
            (StateFn::Combine, VectorElement::Float32) => "vector_combine",
            (StateFn::Avg, VectorElement::Float32) => "vector_avg",
            (StateFn::Accum, VectorElement::Float16) => "halfvec_accum",
            (StateFn::Combine, VectorElement::Float16) => "halfvec_combine",
            (StateFn::Avg, VectorElement::Float16) => "halfvec_avg",
        }
    }
}

/// The six functions, for registration.
pub fn all_udfs() -> Vec<Arc<ScalarUDF>> {
    let elements = [VectorElement::Float32, VectorElement::Float16];
    let functions = [StateFn::Accum, StateFn::Combine, StateFn::Avg];
    elements
        .into_iter()
        .flat_map(|element| functions.map(|function| (element, function)))
        .map(|(element, function)| {
            let arity = if function == StateFn::Avg { 1 } else { 2 };
            Arc::new(ScalarUDF::new_from_impl(StateUdf {
                function,
                element,
                signature: Signature::any(arity, Volatility::Immutable),
            }))
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct StateUdf {
    function: StateFn,
    element: VectorElement,
    signature: Signature,
}

impl ScalarUDFImpl for StateUdf {
    fn name(&self) -> &str {
        self.function.name(self.element)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.function {
            StateFn::Avg => DataType::new_list(self.element.arrow_type(), true),
            _ => state_type(),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let constant = all_constant(&args.args);
        let rows = if constant { 1 } else { args.number_rows };
        let caller = self.function.name(self.element);
        let type_name = self.element.type_name();
        let half = self.element == VectorElement::Float16;
        let first = states(&args.args[0], rows, caller)?;
        let array: ArrayRef = match self.function {
            StateFn::Accum => {
                let vectors = Operand::new(&args.args[1], args.number_rows)?;
                let out = (0..rows).map(|row| match (&first[row], vectors.get(row)) {
                    (Some(state), Some(v)) if half => accum(state, &halves(v)?).map(Some),
                    (Some(state), Some(v)) => accum(state, v).map(Some),
                    _ => Ok(None),
                });
                state_array(out)?
            }
            StateFn::Combine => {
                let second = states(&args.args[1], rows, caller)?;
                let out = first.iter().zip(&second).map(|pair| match pair {
                    (Some(a), Some(b)) => combine(a, b, type_name).map(Some),
                    _ => Ok(None),
                });
                state_array(out)?
            }
            StateFn::Avg => {
                let mut rows = Vec::with_capacity(first.len());
                for state in &first {
                    let mean = state.as_deref().map(|s| average(s, type_name));
                    rows.push(match mean.transpose()?.flatten() {
                        Some(v) if half => Some(halves(&v)?),
                        v => v,
                    });
                }
                let output = DataType::new_list(self.element.arrow_type(), true);
                crate::vector_math::vectors(rows, &output)?
            }
        };
        answer(array, constant)
    }
}

/// `double precision[]`, a state's type.
fn state_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Float64, true)))
}

/// `vector_accum`: one more vector in the state (the first sets its dimensions).
fn accum(state: &[f64], v: &[f32]) -> Result<Vec<f64>> {
    let dims = state.len() - 1;
    if dims == 0 {
        let mut next = Vec::with_capacity(v.len() + 1);
        next.push(state[0] + 1.0);
        next.extend(v.iter().map(|&x| x as f64));
        return Ok(next);
    }
    check_dims(v.len(), dims)?;
    let mut next = Vec::with_capacity(state.len());
    next.push(state[0] + 1.0);
    for (sum, &x) in state[1..].iter().zip(v) {
        next.push(finite(sum + x as f64)?);
    }
    Ok(next)
}

/// `vector_combine`: two partial states as one; an empty one (count 0) adds nothing.
fn combine(a: &[f64], b: &[f64], type_name: &str) -> Result<Vec<f64>> {
    if a[0] == 0.0 {
        check_count(b.len() - 1, type_name)?;
        return Ok(b.to_vec());
    }
    if b[0] == 0.0 {
        check_count(a.len() - 1, type_name)?;
        return Ok(a.to_vec());
    }
    check_count(a.len() - 1, type_name)?;
    check_dims(b.len() - 1, a.len() - 1)?;
    let mut next = vec![a[0] + b[0]];
    for (x, y) in a[1..].iter().zip(&b[1..]) {
        next.push(finite(x + y)?);
    }
    Ok(next)
}

/// `vector_avg`: the mean the state holds, `None` (SQL's NULL) for no vectors.
fn average(state: &[f64], type_name: &str) -> Result<Option<Vec<f32>>> {
    let n = state[0];
    if n == 0.0 {
        return Ok(None);
    }
    check_count(state.len() - 1, type_name)?;
    let mut mean = Vec::with_capacity(state.len() - 1);
    for sum in &state[1..] {
        let x = (sum / n) as f32;
        if x.is_nan() {
            return Err(VectorError::data(format!("NaN not allowed in {type_name}")).into());
        }
        if x.is_infinite() {
            let message = format!("infinite value not allowed in {type_name}");
            return Err(VectorError::data(message).into());
        }
        mean.push(x);
    }
    Ok(Some(mean))
}

/// pgvector's `CheckDim`: a vector (or halfvec) has 1 to 16000 dimensions.
fn check_count(dims: usize, type_name: &str) -> Result<()> {
    if dims < 1 {
        let message = format!("{type_name} must have at least 1 dimension");
        return Err(VectorError::data(message).into());
    }
    if dims > MAX_DIMS {
        let message = format!("{type_name} cannot have more than {MAX_DIMS} dimensions");
        return Err(VectorError::new("54000", message).into());
    }
    Ok(())
}

fn finite(sum: f64) -> Result<f64> {
    if sum.is_infinite() {
        return Err(VectorError::out_of_range("value out of range: overflow").into());
    }
    Ok(sum)
}

/// The states of an argument, row by row (`None` for NULL): an array of numbers, or an array
/// literal's text (`vector_avg('{2,2,4,6}')`).
fn states(value: &ColumnarValue, rows: usize, caller: &str) -> Result<Vec<Option<Vec<f64>>>> {
    let array = value.to_array(rows)?;
    let bad = || -> datafusion::error::DataFusionError {
        VectorError::new("XX000", format!("{caller}: expected state array")).into()
    };
    let lists = match array.data_type() {
        DataType::Null => return Ok(vec![None; rows]),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let texts = cast(&array, &DataType::Utf8)?;
            return texts
                .as_string::<i32>()
                .iter()
                .map(|text| match text.map(state_of_text).transpose()? {
                    Some(None) => Err(bad()),
                    state => Ok(state.flatten()),
                })
                .collect();
        }
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _)
            if item.data_type().is_numeric() =>
        {
            cast(&array, &state_type())?
        }
        other => return exec_err!("{caller} does not accept {other}: expected double precision[]"),
    };
    let lists = lists.as_list::<i32>();
    (0..lists.len())
        .map(|row| {
            if lists.is_null(row) {
                return Ok(None);
            }
            let items = lists.value(row);
            if items.is_empty() || items.null_count() > 0 {
                return Err(bad());
            }
            Ok(Some(items.as_primitive::<Float64Type>().values().to_vec()))
        })
        .collect()
}

/// A state written as an array literal; `None` when it is not a one-dimensional array of at
/// least one non-NULL number.
fn state_of_text(text: &str) -> Result<Option<Vec<f64>>> {
    let items = match crate::array_text::parse_array(text) {
        Ok(items) => items,
        // `'{{1,2}}'`: a two-dimensional array, which is no state.
        Err(e) if e.sqlstate == "0A000" => return Ok(None),
        Err(e) => return Err(e.with_literal(text).into()),
    };
    if items.is_empty() || items.iter().any(Option::is_none) {
        return Ok(None);
    }
    let number = |item: &str| {
        let syntax = || VectorError::syntax_of("double precision", item).with_literal(text);
        item.trim().parse::<f64>().map_err(|_| syntax())
    };
    let state = items.iter().flatten().map(|item| number(item));
    Ok(Some(state.collect::<Result<_, _>>()?))
}

fn state_array(rows: impl Iterator<Item = Result<Option<Vec<f64>>>>) -> Result<ArrayRef> {
    let mut builder = ListBuilder::new(Float64Builder::new());
    for row in rows {
        match row? {
            Some(state) => builder.append_value(state.into_iter().map(Some)),
            None => builder.append_null(),
        }
    }
    Ok(Arc::new(builder.finish()))
}
