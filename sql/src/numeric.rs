//! PostgreSQL's `numeric` on the wire. Values are Arrow `Decimal128`s (an unscaled integer
//! and a scale); PostgreSQL's text prints exactly the scale a column declares, and its binary
//! form (`numeric_send`) is base-10000 digits with a weight, a sign and a display scale.

use bytes::BufMut;
use vecraft_storage::schema::UNCONSTRAINED_NUMERIC;

const POSITIVE: u16 = 0x0000;
const NEGATIVE: u16 = 0x4000;

/// The digits of `unscaled / 10^scale` as text: `-12.50`. An unconstrained `numeric` (kept
/// with [`UNCONSTRAINED_NUMERIC`]'s scale) prints without trailing zeros, as PostgreSQL
/// prints the value it was given.
pub fn text(unscaled: i128, precision: u8, scale: i8) -> String {
    let scale = scale.max(0) as usize;
    let digits = unscaled.unsigned_abs().to_string();
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    let frac = if is_unconstrained(precision, scale) {
        frac.trim_end_matches('0')
    } else {
        frac
    };
    let sign = if unscaled < 0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

fn is_unconstrained(precision: u8, scale: usize) -> bool {
    precision == UNCONSTRAINED_NUMERIC.precision && scale == UNCONSTRAINED_NUMERIC.scale as usize
}

/// `numeric_send` of the value [`text`] prints.
pub fn binary(unscaled: i128, precision: u8, scale: i8) -> Vec<u8> {
    let shown = text(unscaled, precision, scale);
    let unsigned = shown.trim_start_matches('-');
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let display_scale = frac.len();
    // Whole groups of four digits on both sides of the point.
    let int = format!("{int:0>width$}", width = int.len().div_ceil(4) * 4);
    let frac = format!("{frac:0<width$}", width = frac.len().div_ceil(4) * 4);
    let groups: Vec<i16> = int
        .as_bytes()
        .chunks(4)
        .chain(frac.as_bytes().chunks(4))
        .map(|g| std::str::from_utf8(g).unwrap_or("0").parse().unwrap_or(0))
        .collect();
    let mut weight = (int.len() / 4) as i16 - 1;
    let leading = groups.iter().take_while(|g| **g == 0).count();
    let trailing = groups.iter().rev().take_while(|g| **g == 0).count();
    let digits: &[i16] = if leading == groups.len() {
        weight = 0;
        &[]
    } else {
        weight -= leading as i16;
        &groups[leading..groups.len() - trailing]
    };
    let mut out = Vec::with_capacity(8 + 2 * digits.len());
    out.put_i16(digits.len() as i16);
    out.put_i16(weight);
    out.put_u16(if unscaled < 0 { NEGATIVE } else { POSITIVE });
    out.put_i16(display_scale as i16);
    for d in digits {
        out.put_i16(*d);
    }
    out
}

/// The decimal text of a value in `numeric_send`'s form; `None` if it is malformed (or NaN,
/// which a `Decimal128` cannot hold).
pub fn from_binary(bytes: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<i16> {
        Some(i16::from_be_bytes(bytes.get(i..i + 2)?.try_into().ok()?))
    };
    let ndigits = usize::try_from(word(0)?).ok()?;
    let weight = word(2)?;
    let sign = word(4)? as u16;
    let display_scale = usize::try_from(word(6)?).ok()?;
    if bytes.len() != 8 + 2 * ndigits || !matches!(sign, POSITIVE | NEGATIVE) {
        return None;
    }
    let digits: Vec<i16> = (0..ndigits)
        .map(|i| word(8 + 2 * i))
        .collect::<Option<_>>()?;
    if digits.iter().any(|d| !(0..10_000).contains(d)) {
        return None;
    }
    // Groups from 10000^weight down to the last one the display scale needs.
    let mut int = String::new();
    let mut frac = String::new();
    let last = -(display_scale.div_ceil(4) as i16);
    for exponent in (last.min(0)..=weight.max(0)).rev() {
        let at = i32::from(weight) - i32::from(exponent);
        let group = usize::try_from(at)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0);
        if exponent >= 0 {
            int.push_str(&format!("{group:04}"));
        } else {
            frac.push_str(&format!("{group:04}"));
        }
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    frac.truncate(display_scale);
    let sign = if sign == NEGATIVE { "-" } else { "" };
    Some(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_keeps_a_declared_scale_and_trims_an_unconstrained_one() {
        assert_eq!(text(314, 10, 2), "3.14");
        assert_eq!(text(100, 10, 2), "1.00");
        assert_eq!(text(-5, 10, 2), "-0.05");
        assert_eq!(text(42, 5, 0), "42");
        assert_eq!(text(15_000_000_000, 38, 10), "1.5");
        assert_eq!(text(100_000_000_000, 38, 10), "10");
        assert_eq!(text(0, 38, 10), "0");
    }

    fn words(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn binary_is_numeric_send() {
        // 12345.678 as numeric(10,3): digits 1, 2345, 6780; weight 1; dscale 3
        assert_eq!(
            words(&binary(12_345_678, 10, 3)),
            vec![3, 1, 0, 3, 1, 2345, 6780]
        );
        // -0.05 as numeric(10,2): one digit 500 at weight -1
        assert_eq!(
            words(&binary(-5, 10, 2)),
            vec![1, -1, NEGATIVE as i16, 2, 500]
        );
        assert_eq!(words(&binary(0, 10, 2)), vec![0, 0, 0, 2]);
        // 10000 as numeric: one digit 1 at weight 1, no zero groups
        assert_eq!(words(&binary(10_000, 10, 0)), vec![1, 1, 0, 0, 1]);
    }

    #[test]
    fn binary_round_trips() {
        for (unscaled, precision, scale) in [
            (12_345_678, 10, 3),
            (-5, 10, 2),
            (0, 10, 2),
            (10_000, 10, 0),
            (15_000_000_000, 38, 10),
            (i128::from(i64::MAX), 38, 4),
        ] {
            let expected = text(unscaled, precision, scale);
            assert_eq!(
                from_binary(&binary(unscaled, precision, scale)).as_deref(),
                Some(expected.as_str())
            );
        }
        assert_eq!(from_binary(&[0, 1]), None);
    }
}
