//! PostgreSQL's `json` and `jsonb` values: input checked as PostgreSQL checks it, `jsonb`'s
//! normal form (keys sorted shortest first and unique, the last of a repeated key kept, one
//! space after `:` and `,`), and the semantics of the operators the frameworks filter with:
//! `->`, `->>`, `@>` (containment) and `?` (key exists).
//!
//! Values are parsed with serde_json. Numbers keep serde_json's form, so `1e2` prints as
//! `100.0` where PostgreSQL's numeric prints `100`; every other output matches PostgreSQL's.

use serde_json::{Map, Number, Value};

use crate::error::{INVALID_TEXT_REPRESENTATION, VectorError};

/// `text` as a JSON value, or PostgreSQL's error for it (which names the type `json` for
/// `jsonb` input too: both read JSON).
pub fn parse(text: &str) -> Result<Value, VectorError> {
    serde_json::from_str(text).map_err(|e| {
        VectorError::new(
            INVALID_TEXT_REPRESENTATION,
            "invalid input syntax for type json",
        )
        .with_detail(&format!("{e}."))
        .with_literal(text)
    })
}

/// `jsonb`'s text form of `value`, as PostgreSQL prints it.
pub fn jsonb_text(value: &Value) -> String {
    let mut out = String::new();
    write_jsonb(value, &mut out);
    out
}

/// `text` as `jsonb` text: parsed, then printed in the normal form.
pub fn normal_jsonb(text: &str) -> Result<String, VectorError> {
    Ok(jsonb_text(&parse(text)?))
}

fn write_jsonb(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in sorted_entries(map).into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&quoted(key));
                out.push_str(": ");
                write_jsonb(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(item, out);
            }
            out.push(']');
        }
        Value::String(s) => out.push_str(&quoted(s)),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
    }
}

/// jsonb's key order: shorter keys first, then by bytes.
fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    entries
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

/// What `->` and `->>` select: a key of an object, or an element of an array by position
/// (negative counts from the end).
#[derive(Clone, Debug)]
pub enum Path<'a> {
    Key(&'a str),
    Index(i64),
}

/// `value -> path`: the selected value, or `None` (SQL NULL) where there is none.
pub fn get<'v>(value: &'v Value, path: &Path) -> Option<&'v Value> {
    match (value, path) {
        (Value::Object(map), Path::Key(key)) => map.get(*key),
        (Value::Array(items), Path::Index(i)) => {
            let len = items.len() as i64;
            let at = if *i < 0 { len + i } else { *i };
            usize::try_from(at).ok().and_then(|at| items.get(at))
        }
        _ => None,
    }
}

/// `->>`'s text of a selected value: a string unquoted, JSON null as SQL NULL, anything else
/// in its jsonb text form.
pub fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(jsonb_text(other)),
    }
}

/// `a @> b`: whether `a` contains `b`, by PostgreSQL's rules for jsonb containment.
pub fn contains(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => b
            .iter()
            .all(|(key, wanted)| a.get(key).is_some_and(|have| contains(have, wanted))),
        (Value::Array(a), Value::Array(b)) => b
            .iter()
            .all(|wanted| a.iter().any(|have| contains(have, wanted))),
        // A top-level array contains a scalar it holds: `'["a"]' @> '"a"'`.
        (Value::Array(a), scalar) if !scalar.is_object() => a.iter().any(|have| have == scalar),
        (Value::Number(a), Value::Number(b)) => same_number(a, b),
        (a, b) => a == b,
    }
}

/// `1` and `1.0` are the same jsonb number, as numerics compare.
fn same_number(a: &Number, b: &Number) -> bool {
    a == b || matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

/// `a ? key`: whether `key` is a key of object `a`, a string element of array `a`, or `a`
/// itself as a string.
pub fn exists(a: &Value, key: &str) -> bool {
    match a {
        Value::Object(map) => map.contains_key(key),
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(key)),
        Value::String(s) => s == key,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Value {
        parse(text).unwrap()
    }

    #[test]
    fn jsonb_prints_in_postgres_normal_form() {
        assert_eq!(
            normal_jsonb(r#"{"bb":1,"a":[1,{"z":null,"y":true}],"a":"x\n"}"#).unwrap(),
            r#"{"a": "x\n", "bb": 1}"#
        );
        assert_eq!(normal_jsonb(" [ ] ").unwrap(), "[]");
        assert_eq!(normal_jsonb("{}").unwrap(), "{}");
        assert_eq!(normal_jsonb(r#""é""#).unwrap(), r#""é""#);
    }

    #[test]
    fn bad_input_is_22p02_in_postgres_words() {
        let e = normal_jsonb("{x").unwrap_err();
        assert_eq!(e.sqlstate, "22P02");
        assert_eq!(e.message, "invalid input syntax for type json");
    }

    #[test]
    fn paths_select_keys_and_positions() {
        let doc = v(r#"{"a": {"b": [10, 20, 30]}, "s": "text", "n": null}"#);
        let b = get(get(&doc, &Path::Key("a")).unwrap(), &Path::Key("b")).unwrap();
        assert_eq!(get(b, &Path::Index(0)), Some(&v("10")));
        assert_eq!(get(b, &Path::Index(-1)), Some(&v("30")));
        assert_eq!(get(b, &Path::Index(3)), None);
        assert_eq!(get(b, &Path::Key("x")), None);
        assert_eq!(
            as_text(get(&doc, &Path::Key("s")).unwrap()).as_deref(),
            Some("text")
        );
        assert_eq!(as_text(get(&doc, &Path::Key("n")).unwrap()), None);
        assert_eq!(as_text(b).as_deref(), Some("[10, 20, 30]"));
    }

    #[test]
    fn containment_follows_postgres() {
        let doc = v(r#"{"year": 1973, "tags": ["a", "b"], "o": {"x": 1, "y": 2}}"#);
        assert!(contains(&doc, &v(r#"{"year": 1973}"#)));
        assert!(contains(&doc, &v(r#"{"year": 1973.0}"#)));
        assert!(!contains(&doc, &v(r#"{"year": 2012}"#)));
        assert!(contains(&doc, &v(r#"{"tags": ["b"]}"#)));
        assert!(contains(&doc, &v(r#"{"o": {"y": 2}}"#)));
        assert!(!contains(&doc, &v(r#"{"o": {"y": 3}}"#)));
        assert!(contains(&doc, &v("{}")));
        assert!(contains(&v(r#"["a", "b"]"#), &v(r#""a""#)));
        assert!(!contains(&v(r#"{"a": 1}"#), &v("[]")));
    }

    #[test]
    fn existence_looks_at_keys_and_string_elements() {
        assert!(exists(&v(r#"{"a": 1}"#), "a"));
        assert!(!exists(&v(r#"{"a": 1}"#), "b"));
        assert!(exists(&v(r#"["a", 1]"#), "a"));
        assert!(exists(&v(r#""a""#), "a"));
    }
}
