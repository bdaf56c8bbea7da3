//! PostgreSQL's text form of a one-dimensional array, `{a,"b c",NULL}`: read as
//! `array_in` reads it (for `'{a,b}'::text[]`, a text parameter bound to an array, COPY), with
//! its errors. Elements come out as text; a cast gives them their element type.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::exec_err;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::{INVALID_TEXT_REPRESENTATION, VectorError};

/// The elements of `text`, an array literal; `None` for an unquoted `NULL`.
pub fn parse_array(text: &str) -> Result<Vec<Option<String>>, VectorError> {
    let malformed = |detail: &str| {
        let mut e = VectorError::new(
            INVALID_TEXT_REPRESENTATION,
            format!("malformed array literal: \"{text}\""),
        );
        e.detail = Some(detail.to_string());
        e
    };
    let body = text.trim();
    let Some(body) = body.strip_prefix('{') else {
        return Err(malformed(
            "Array value must start with \"{\" or dimension information.",
        ));
    };
    let mut chars = body.chars().peekable();
    let mut items = Vec::new();
    skip_space(&mut chars);
    if chars.peek() == Some(&'}') {
        chars.next();
        return end(chars, items).map_err(malformed);
    }
    loop {
        skip_space(&mut chars);
        let item = match chars.peek() {
            None => return Err(malformed("Unexpected end of input.")),
            Some('{') => {
                return Err(VectorError::new(
                    "0A000",
                    "multidimensional arrays are not supported",
                ));
            }
            Some('"') => {
                chars.next();
                Some(quoted(&mut chars).ok_or_else(|| malformed("Unexpected end of input."))?)
            }
            Some(_) => {
                unquoted(&mut chars).ok_or_else(|| malformed("Unexpected \",\" character."))?
            }
        };
        items.push(item);
        skip_space(&mut chars);
        match chars.next() {
            Some(',') => continue,
            Some('}') => return end(chars, items).map_err(malformed),
            None => return Err(malformed("Unexpected end of input.")),
            Some(_) => return Err(malformed("Unexpected array element.")),
        }
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn skip_space(chars: &mut Chars) {
    while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
        chars.next();
    }
}

/// After the closing brace: only white space.
fn end(mut chars: Chars, items: Vec<Option<String>>) -> Result<Vec<Option<String>>, &'static str> {
    skip_space(&mut chars);
    match chars.next() {
        None => Ok(items),
        Some(_) => Err("Junk after closing right brace."),
    }
}

/// A quoted element after its opening quote, up to the closing one (`\` escapes).
fn quoted(chars: &mut Chars) -> Option<String> {
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
}

/// An unquoted element up to `,` or `}`, its surrounding white space dropped; `None` inside
/// for `NULL`. `None` outside for an empty element.
fn unquoted(chars: &mut Chars) -> Option<Option<String>> {
    let mut out = String::new();
    let mut escaped = false;
    while let Some(&c) = chars.peek() {
        if c == ',' || c == '}' {
            break;
        }
        chars.next();
        if c == '\\' {
            out.push(chars.next()?);
            escaped = true;
        } else {
            out.push(c);
        }
    }
    let trimmed = out.trim_end();
    if trimmed.is_empty() {
        return None;
    }
    if !escaped && trimmed.eq_ignore_ascii_case("null") {
        return Some(None);
    }
    Some(Some(trimmed.to_string()))
}

/// `array_in`: text to an array of text, for a cast to give the element type.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArrayIn {
    signature: Signature,
}

/// The UDF that reads array literals as `text[]`.
pub fn array_in() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(ArrayIn {
        signature: Signature::string(1, Volatility::Immutable),
    }))
}

impl ScalarUDFImpl for ArrayIn {
    fn name(&self) -> &str {
        "array_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::new_list(DataType::Utf8, true))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [text] = args.args.as_slice() else {
            return exec_err!("array_in takes one text");
        };
        let text = cast(&text.to_array(args.number_rows)?, &DataType::Utf8)?;
        let mut out = ListBuilder::new(StringBuilder::new());
        for row in text.as_string::<i32>() {
            match row {
                Some(row) => {
                    for item in parse_array(row).map_err(|e| e.with_literal(row))? {
                        out.values().append_option(item);
                    }
                    out.append(true);
                }
                None => out.append(false),
            }
        }
        let arrays = out.finish();
        debug_assert_eq!(arrays.len(), text.len(), "one array per row");
        Ok(ColumnarValue::Array(Arc::new(arrays)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[Option<&str>]) -> Vec<Option<String>> {
        items.iter().map(|i| i.map(String::from)).collect()
    }

    #[test]
    fn reads_what_array_in_reads() {
        assert_eq!(parse_array("{}").unwrap(), strings(&[]));
        assert_eq!(parse_array(" { } ").unwrap(), strings(&[]));
        assert_eq!(
            parse_array("{a, b c ,\"d,e\",NULL,\"NULL\",\"\",x\\,y}").unwrap(),
            strings(&[
                Some("a"),
                Some("b c"),
                Some("d,e"),
                None,
                Some("NULL"),
                Some(""),
                Some("x,y")
            ])
        );
        assert_eq!(
            parse_array(r#"{"a\"b","c\\d"}"#).unwrap(),
            strings(&[Some("a\"b"), Some("c\\d")])
        );
    }

    #[test]
    fn refuses_what_array_in_refuses() {
        for (text, detail) in [
            (
                "a,b",
                "Array value must start with \"{\" or dimension information.",
            ),
            ("{a,b", "Unexpected end of input."),
            ("{a,}", "Unexpected \",\" character."),
            ("{a} x", "Junk after closing right brace."),
            ("{\"a", "Unexpected end of input."),
        ] {
            let e = parse_array(text).unwrap_err();
            assert_eq!(e.sqlstate, "22P02", "{text}");
            assert_eq!(e.message, format!("malformed array literal: \"{text}\""));
            assert_eq!(e.detail.as_deref(), Some(detail), "{text}");
        }
        assert_eq!(parse_array("{{1}}").unwrap_err().sqlstate, "0A000");
    }
}
