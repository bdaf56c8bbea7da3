//! Functions whose result can be far larger than their arguments — `repeat('x', 2147483647)`,
//! `lpad`, `rpad`, `replace`, `range(1, 2e9)`, `array_repeat` — checked before they run.
//!
//! Their results are built whole, outside any memory pool, and constant arguments are folded
//! while planning: one such call from any client would take the node's memory. Each keeps
//! DataFusion's implementation behind [`Bounded`], which first adds up what the call would
//! build and refuses it past [`MAX_RESULT_BYTES`] with PostgreSQL's 54000 "requested length
//! too large" (PostgreSQL's own limit on one value is 1 GB).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

use crate::error::VectorError;

/// The most one call may build, over all the rows of a batch.
pub const MAX_RESULT_BYTES: u64 = 1 << 30;

/// How a function's result grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text's length times n.
    Repeat,
    /// `lpad`/`rpad(text, n, …)`: n characters of up to 4 bytes.
    Pad,
    /// `replace(text, from, to)`: each `from` may become a longer `to`.
    Replace,
    /// `range`/`generate_series(start, stop[, step])` and `array_repeat(x, n)`: elements of
    /// up to 8 bytes (the estimate for other element types is per element, not per byte).
    Elements,
}

/// The functions [`guard`] wraps, by name.
const GUARDED: &[(&str, Growth)] = &[
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("replace", Growth::Replace),
    ("range", Growth::Elements),
    ("generate_series", Growth::Elements),
    ("array_repeat", Growth::Elements),
];

/// `udf` behind a size check when it is one of the functions that amplify their input.
pub fn guard(udf: Arc<ScalarUDF>) -> Arc<ScalarUDF> {
    match GUARDED.iter().find(|(name, _)| *name == udf.name()) {
        Some((_, growth)) => Arc::new(ScalarUDF::new_from_impl(Bounded {
            inner: udf,
            growth: *growth,
        })),
        None => udf,
    }
}

/// A function run only when what it would build fits.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
}

impl Bounded {
    fn check(&self, args: &[ColumnarValue]) -> Result<()> {
        // Scalars become arrays of one row, or of the array arguments' length.
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let rows = arrays.first().map_or(0, |a| a.len());
        let bytes = match self.growth {
            Growth::Repeat => pairs(&arrays, 0, 1, rows, u64::saturating_mul),
            Growth::Pad => pairs(&arrays, 0, 1, rows, |len, n| {
                len.saturating_add(n.saturating_mul(4))
            }),
            Growth::Replace => replace_bytes(&arrays, rows),
            Growth::Elements => element_bytes(&arrays, self.inner.name(), rows),
        };
        if bytes > MAX_RESULT_BYTES {
            let message = format!(
                "requested length too large: {}() would build {bytes} bytes, more than {}",
                self.inner.name(),
                MAX_RESULT_BYTES
            );
            return Err(VectorError::new("54000", message).into());
        }
        Ok(())
    }
}

/// Σ over rows of `f(byte length of the text in column t, the count in column n)`.
fn pairs(arrays: &[ArrayRef], t: usize, n: usize, rows: usize, f: impl Fn(u64, u64) -> u64) -> u64 {
    let (Some(text), Some(count)) = (arrays.get(t), arrays.get(n)) else {
        return 0;
    };
    let count = counts(count);
    (0..rows.min(text.len()).min(count.len()))
        .map(|row| f(text_len(text, row), count[row]))
        .fold(0u64, u64::saturating_add)
}

fn replace_bytes(arrays: &[ArrayRef], rows: usize) -> u64 {
    let [text, from, to] = arrays else { return 0 };
    (0..rows.min(text.len()).min(from.len()).min(to.len()))
        .map(|row| {
            let (len, from, to) = (text_len(text, row), text_len(from, row), text_len(to, row));
            let matches = len / from.max(1);
            len.saturating_add(matches.saturating_mul(to))
        })
        .fold(0u64, u64::saturating_add)
}

fn element_bytes(arrays: &[ArrayRef], name: &str, rows: usize) -> u64 {
    if name == "array_repeat" {
        let Some(count) = arrays.get(1) else { return 0 };
        return counts(count)
            .iter()
            .take(rows)
            .map(|n| n.saturating_mul(8))
            .fold(0u64, u64::saturating_add);
    }
    // range(stop) or range(start, stop[, step]): integers only here; other types (dates)
    // are left to DataFusion.
    let ints: Vec<_> = arrays
        .iter()
        .map(|a| a.as_primitive_opt::<Int64Type>())
        .collect();
    if ints.iter().any(Option::is_none) {
        return 0;
    }
    let ints: Vec<_> = ints.into_iter().flatten().collect();
    let value = |i: usize, row: usize| -> Option<i128> {
        let a = ints.get(i)?;
        (row < a.len() && a.is_valid(row)).then(|| i128::from(a.value(row)))
    };
    (0..rows)
        .map(|row| {
            let (start, stop, step) = match ints.len() {
                1 => (Some(0), value(0, row), Some(1)),
                2 => (value(0, row), value(1, row), Some(1)),
                _ => (value(0, row), value(1, row), value(2, row)),
            };
            let (Some(start), Some(stop), Some(step)) = (start, stop, step) else {
                return 0;
            };
            let count = if step == 0 {
                0
            } else {
                ((stop - start) / step).max(0) + 1
            };
            u64::try_from(count.saturating_mul(8)).unwrap_or(u64::MAX)
        })
        .fold(0u64, u64::saturating_add)
}

/// The byte length of a text value (0 for NULL or another type).
fn text_len(array: &ArrayRef, row: usize) -> u64 {
    if array.is_null(row) {
        return 0;
    }
    let len = match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).len(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).len(),
        DataType::Utf8View => array.as_string_view().value(row).len(),
        _ => 0,
    };
    len as u64
}

/// The counts of a column as non-negative integers, cast once (0 for NULL, negatives or a
/// type that does not cast).
fn counts(array: &ArrayRef) -> Vec<u64> {
    let cast = datafusion::arrow::compute::cast(array, &DataType::Int64);
    match cast
        .as_ref()
        .ok()
        .and_then(|a| a.as_primitive_opt::<Int64Type>())
    {
        Some(ints) => ints
            .iter()
            .map(|n| n.map_or(0, |n| n.max(0) as u64))
            .collect(),
        None => vec![0; array.len()],
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args.args)?;
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(sql: &str) -> Result<usize> {
        let ctx = crate::new_session();
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    fn sqlstate(e: &datafusion::error::DataFusionError) -> Option<&'static str> {
        VectorError::find(e).map(|v| v.sqlstate)
    }

    #[tokio::test]
    async fn amplifying_calls_are_refused_before_they_allocate() {
        for sql in [
            "SELECT repeat('x', 2147483647)",
            "SELECT length(repeat('abc', 1000000000))",
            "SELECT lpad('x', 2000000000)",
            "SELECT rpad('x', 2000000000, 'yz')",
            "SELECT range(1, 2000000000)",
            "SELECT generate_series(1, 2000000000)",
            "SELECT array_repeat(1, 2000000000)",
            "SELECT replace(repeat('a', 100000), 'a', repeat('b', 100000))",
        ] {
            let e = run(sql).await.expect_err(sql);
            assert_eq!(sqlstate(&e), Some("54000"), "{sql}: {e}");
        }
    }

    #[tokio::test]
    async fn ordinary_calls_run() {
        for sql in [
            "SELECT repeat('ab', 3)",
            "SELECT lpad('7', 3, '0'), rpad('a', 2)",
            "SELECT replace('aaa', 'a', 'bb')",
            "SELECT range(1, 10), range(5), generate_series(1, 10, 2)",
            "SELECT array_repeat('x', 4)",
            "SELECT repeat(NULL, 3), repeat('x', NULL), repeat('x', -1)",
        ] {
            assert_eq!(run(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")), 1);
        }
    }
}
