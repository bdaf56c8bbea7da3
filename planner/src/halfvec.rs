//! pgvector's `halfvec`: vectors of 2-byte floats. Planned as Arrow
//! `FixedSizeList<Float16, n>` (`List<Float16>` without a dimension), so its type alone tells
//! it from `vector`. Values come in as pgvector reads them: the text form of a vector, an
//! array of numbers, or a vector, each element rounded to the nearest half and refused when
//! the half would overflow (22003, `"65520" is out of range for type halfvec`). Distances and
//! comparisons read halves as the 4-byte floats they are exactly, as pgvector computes them.

use datafusion::arrow::datatypes::DataType;
use half::f16;

use crate::error::VectorError;
use crate::vector_text::{format_real, parse_as};

/// The dimension of a halfvec type: `Some(Some(n))` for `halfvec(n)`, `Some(None)` for
/// `halfvec`, `None` for other types.
pub fn half_target(data_type: &DataType) -> Option<Option<usize>> {
    match data_type {
        DataType::FixedSizeList(item, n) if item.data_type() == &DataType::Float16 => {
            Some(Some(*n as usize))
        }
        DataType::List(item) if item.data_type() == &DataType::Float16 => Some(None),
        _ => None,
    }
}

/// pgvector's text form read as `halfvec_in` reads it, then rounded.
pub fn parse_halfvec(text: &str) -> Result<Vec<f32>, VectorError> {
    let floats = parse_as(text, "halfvec")?;
    // An element out of range is named as written (`"1e5" is out of range …`).
    let items = || {
        text.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
    };
    let mut out = Vec::with_capacity(floats.len());
    for (i, &x) in floats.iter().enumerate() {
        out.push(half(x).map_err(|mut e| {
            if let Some(written) = items().nth(i) {
                e.message = out_of_range(written.trim()).message;
            }
            e
        })?);
    }
    Ok(out)
}

/// `values` rounded to the nearest half each; a value past the half's range is refused.
pub fn halves(values: &[f32]) -> Result<Vec<f32>, VectorError> {
    values.iter().map(|&x| half(x)).collect()
}

/// `x` rounded to the nearest half (as the real it is), or pgvector's error when the half
/// would overflow.
pub fn half(x: f32) -> Result<f32, VectorError> {
    let half = f16::from_f32(x);
    if half.is_infinite() && x.is_finite() {
        return Err(out_of_range(&format_real(x)));
    }
    Ok(half.to_f32())
}

fn out_of_range(written: &str) -> VectorError {
    VectorError::out_of_range(format!("\"{written}\" is out of range for type halfvec"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_round_to_nearest_and_refuse_overflow() {
        assert_eq!(halves(&[1.0, 0.1, 1e-8]).unwrap(), [1.0, 0.099975586, 0.0]);
        assert_eq!(halves(&[65504.0]).unwrap(), [65504.0]);
        let e = halves(&[65520.0]).unwrap_err();
        assert_eq!(e.message, "\"65520\" is out of range for type halfvec");
        assert_eq!(e.sqlstate, "22003");
    }

    #[test]
    fn text_errors_name_halfvec() {
        let e = parse_halfvec("[1,x]").unwrap_err();
        assert_eq!(
            e.message,
            "invalid input syntax for type halfvec: \"[1,x]\""
        );
        let e = parse_halfvec("[]").unwrap_err();
        assert_eq!(e.message, "halfvec must have at least 1 dimension");
        let e = parse_halfvec("[NaN]").unwrap_err();
        assert_eq!(e.message, "NaN not allowed in halfvec");
        let e = parse_halfvec("[1, 1e5 ]").unwrap_err();
        assert_eq!(e.message, "\"1e5\" is out of range for type halfvec");
    }
}
