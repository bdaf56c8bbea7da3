//! pgvector's text form of a vector: `[1,2.5,-3e-07]`, read and written exactly as pgvector
//! reads and writes it, errors (and their SQLSTATEs) included.
//!
//! Input: optional whitespace, `[`, numbers separated by commas (whitespace around each
//! allowed), `]`, optional whitespace. Output: each element in PostgreSQL's shortest
//! round-trip `real` form (`float4out`), which switches to exponent notation outside
//! 1e-4 ..< 1e6, e.g. `1e+06`, `1.5e-05`.

use crate::error::VectorError;
use vecraft_storage::schema::MAX_DIMS;

/// Parses pgvector text. Does not check a declared dimension (see `check_dims`).
pub fn parse_vector(text: &str) -> Result<Vec<f32>, VectorError> {
    parse_as(text, "vector")
}

/// Parses pgvector's text form as the input function of `type_name` (`vector`, `halfvec`)
/// reads it, its errors in that type's words.
pub fn parse_as(text: &str, type_name: &str) -> Result<Vec<f32>, VectorError> {
    let syntax = || VectorError::syntax_of(type_name, text);
    let body = text.trim_start_matches(is_space);
    let body = body
        .strip_prefix('[')
        .ok_or_else(|| syntax().with_detail("Vector contents must start with \"[\"."))?;
    let close = body.find(']').ok_or_else(syntax)?;
    let (inner, rest) = (&body[..close], &body[close + 1..]);
    if !rest.chars().all(is_space) {
        return Err(syntax().with_detail("Junk after closing right brace."));
    }
    if inner.trim_matches(is_space).is_empty() {
        let message = format!("{type_name} must have at least 1 dimension");
        return Err(VectorError::data(message));
    }
    let mut out = Vec::new();
    for item in inner.split(',') {
        let item = item.trim_matches(is_space);
        if item.is_empty() {
            return Err(syntax());
        }
        out.push(parse_element(item, text, type_name)?);
        if out.len() > MAX_DIMS {
            return Err(VectorError::data(format!(
                "{type_name} cannot have more than {MAX_DIMS} dimensions"
            )));
        }
    }
    Ok(out)
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// One element, as C's `strtof` accepts it (decimal, exponent, `inf`, `nan`), then pgvector's
/// checks: NaN and infinities are refused, overflow is out of range. Plain decimals, the
/// common case, are parsed once and without allocating: a 384-dimension query vector is
/// parsed on every execution.
fn parse_element(item: &str, whole: &str, type_name: &str) -> Result<f32, VectorError> {
    // One sign at most, as strtof reads it.
    let unsigned = item.strip_prefix(['+', '-']).unwrap_or(item);
    let numeric = unsigned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !numeric {
        return match unsigned.to_ascii_lowercase().as_str() {
            "nan" => Err(VectorError::data(format!("NaN not allowed in {type_name}"))),
            "inf" | "infinity" => Err(VectorError::data(format!(
                "infinite value not allowed in {type_name}"
            ))),
            _ => Err(VectorError::syntax_of(type_name, whole)),
        };
    }
    if !unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return Err(VectorError::syntax_of(type_name, whole));
    }
    let value: f32 = item
        .parse()
        .map_err(|_| VectorError::syntax_of(type_name, whole))?;
    if value.is_infinite() {
        return Err(VectorError::out_of_range(format!(
            "\"{item}\" is out of range for type {type_name}"
        )));
    }
    Ok(value)
}

/// pgvector's typmod check: `vector(3)` holds exactly 3 dimensions.
pub fn check_dims(actual: usize, declared: usize) -> Result<(), VectorError> {
    if actual == declared {
        Ok(())
    } else {
        Err(VectorError::data(format!(
            "expected {declared} dimensions, not {actual}"
        )))
    }
}

/// Writes a vector in pgvector's text form.
pub fn format_vector(v: &[f32]) -> String {
    let mut out = String::with_capacity(2 + v.len() * 10);
    out.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format_real(*x));
    }
    out.push(']');
    out
}

/// PostgreSQL's `float4out`: shortest round-trip digits, fixed notation for decimal
/// exponents in -4..6, otherwise `d.ddde±XX`.
pub fn format_real(x: f32) -> String {
    format_shortest(&format!("{x:e}"), 6)
}

/// PostgreSQL's `float8out`: as `format_real`, fixed notation for exponents in -4..15.
pub fn format_double(x: f64) -> String {
    format_shortest(&format!("{x:e}"), 15)
}

/// Rewrites Rust's shortest `LowerExp` form (`-1.2345e6`) the way PostgreSQL prints it.
fn format_shortest(exp_form: &str, fixed_below: i32) -> String {
    match exp_form {
        "NaN" => return "NaN".into(),
        "inf" => return "Infinity".into(),
        "-inf" => return "-Infinity".into(),
        _ => {}
    }
    let (mantissa, exponent) = exp_form.split_once('e').expect("LowerExp has an exponent");
    let exponent: i32 = exponent.parse().expect("LowerExp exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if digits == "0" {
        return format!("{sign}0");
    }
    if !(-4..fixed_below).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}e{esign}{:02}", exponent.abs());
    }
    let point = exponent + 1; // digits before the decimal point
    if point <= 0 {
        let zeros = "0".repeat((-point) as usize);
        format!("{sign}0.{zeros}{digits}")
    } else if point as usize >= digits.len() {
        let zeros = "0".repeat(point as usize - digits.len());
        format!("{sign}{digits}{zeros}")
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vector text as clients send it, and mangled: parsing never panics, and what parses
    /// prints back as the same values.
    #[test]
    fn fuzz_vector_text() {
        let seeds: &[&[u8]] = &[
            b"[1,2,3]",
            b"[ -1.5e-3 , 2E10,0.0 ]",
            b"[]",
            b"[1,nan]",
            b"{1,2}",
        ];
        vecraft_storage::fuzz::run("vector_text", seeds, |input| {
            if let Ok(v) = parse_vector(&String::from_utf8_lossy(input)) {
                assert_eq!(parse_vector(&format_vector(&v)).unwrap(), v);
            }
        });
    }

    #[test]
    fn parses_what_pgvector_parses() {
        assert_eq!(parse_vector("[1,2,3]").unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(
            parse_vector("  [ 1.5 , -2e3,.25 ]  ").unwrap(),
            vec![1.5, -2000.0, 0.25]
        );
        assert_eq!(parse_vector("[+4]").unwrap(), vec![4.0]);
        assert_eq!(
            parse_vector("[1E3,5.,-0]").unwrap(),
            vec![1000.0, 5.0, -0.0]
        );
    }

    #[test]
    fn refuses_what_pgvector_refuses_with_its_sqlstate() {
        let code = |t: &str| parse_vector(t).unwrap_err().sqlstate;
        assert_eq!(code("1,2"), "22P02");
        assert_eq!(code("[1,2"), "22P02");
        assert_eq!(code("[1,,2]"), "22P02");
        assert_eq!(code("[1,a]"), "22P02");
        assert_eq!(code("[1] x"), "22P02");
        assert_eq!(code("[]"), "22000");
        assert_eq!(code("[NaN]"), "22000");
        assert_eq!(code("[inf]"), "22000");
        assert_eq!(code("[-Infinity]"), "22000");
        assert_eq!(code("[1e39]"), "22003");
        // Beyond even a double: strtof says ERANGE, so pgvector says out of range too.
        assert_eq!(code("[1e400]"), "22003");
        assert_eq!(code("[1e]"), "22P02");
        assert_eq!(code("[+-1]"), "22P02");
        assert_eq!(code("[--inf]"), "22P02");
        assert_eq!(code("[+-nan]"), "22P02");
        assert_eq!(
            parse_vector("[1] x").unwrap_err().detail.as_deref(),
            Some("Junk after closing right brace.")
        );
        assert_eq!(
            check_dims(2, 3).unwrap_err().message,
            "expected 3 dimensions, not 2"
        );
    }

    #[test]
    fn formats_like_float4out() {
        let cases: &[(f32, &str)] = &[
            (1.0, "1"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e20, "1e+20"),
            (0.0, "0"),
            (-0.0, "-0"),
            (3.4028235e38, "3.4028235e+38"),
        ];
        for (x, want) in cases {
            assert_eq!(format_real(*x), *want, "{x}");
        }
        assert_eq!(format_vector(&[1.0, 2.5, -3.0]), "[1,2.5,-3]");
        assert_eq!(format_double(5.196152422706632), "5.196152422706632");
        assert_eq!(format_double(1e15), "1e+15");
        assert_eq!(format_double(123456789012345.0), "123456789012345");
    }

    #[test]
    fn text_round_trips() {
        for x in [
            0.1f32,
            1.0 / 3.0,
            7e-9,
            123.456,
            f32::MIN_POSITIVE,
            f32::MAX,
        ] {
            let text = format_vector(&[x]);
            assert_eq!(parse_vector(&text).unwrap(), vec![x], "{text}");
        }
    }
}
