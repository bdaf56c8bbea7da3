//! `jsonb_path_match(doc, path, vars)`: the part of PostgreSQL's SQL/JSON path language that
//! metadata filters use. langchain-postgres's `PGVector` filters with
//! `jsonb_path_match(cmetadata, '$.topic == $value', '{"value": "animals"}')`, and hand-written
//! filters combine such predicates with `&&`, `||` and `!`.
//!
//! Understood: the root `$` with member accessors (`.key`, `."key"`, `.*`) and array
//! accessors (`[n]`, `[*]`, `[last]`), variables (`$name`, `$"name"`) from `vars`, literals
//! (strings, numbers, `true`, `false`, `null`), comparisons (`==`, `!=`, `<>`, `<`, `<=`,
//! `>`, `>=`), `exists (…)`, `&&`, `||`, `!` and parentheses. Semantics are lax mode's:
//! accessors unwrap arrays, a missing member yields nothing, and a comparison is true when
//! any pair of items compares true (items of different types never do; such pairs make
//! the comparison unknown, which `jsonb_path_match` answers as NULL). Anything else is
//! refused with 0A000 rather than guessed at.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::plan_err;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::Value;

use crate::error::VectorError;

mod parse;

/// A predicate's truth value: SQL/JSON's three values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    fn of(b: bool) -> Truth {
        if b { Truth::True } else { Truth::False }
    }

    /// `jsonb_path_match`'s answer: NULL for unknown.
    pub fn as_option(self) -> Option<bool> {
        match self {
            Truth::True => Some(true),
            Truth::False => Some(false),
            Truth::Unknown => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Member(String),
    AnyMember,
    Index(i64),
    Last,
    AnyIndex,
}

#[derive(Clone, Debug, PartialEq)]
enum Operand {
    Path(Vec<Step>),
    Variable(String, Vec<Step>),
    Literal(Value),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
enum Predicate {
    Compare(Operand, Comparison, Operand),
    Exists(Operand),
    And(Box<Predicate>, Box<Predicate>),
    Or(Box<Predicate>, Box<Predicate>),
    Not(Box<Predicate>),
}

/// Whether `doc` matches `path`, with `$name` read from `vars` (an object).
pub fn path_match(doc: &Value, path: &str, vars: &Value) -> Result<Truth, VectorError> {
    let predicate = parse::Parser::new(path).parse()?;
    evaluate(&predicate, doc, vars)
}

fn evaluate(p: &Predicate, doc: &Value, vars: &Value) -> Result<Truth, VectorError> {
    Ok(match p {
        Predicate::Compare(a, op, b) => {
            let (a, b) = (compared(a, doc, vars)?, compared(b, doc, vars)?);
            let mut unknown = false;
            for x in &a {
                for y in &b {
                    match compare(x, *op, y) {
                        Some(true) => return Ok(Truth::True),
                        Some(false) => {}
                        None => unknown = true,
                    }
                }
            }
            if unknown {
                Truth::Unknown
            } else {
                Truth::False
            }
        }
        Predicate::Exists(a) => Truth::of(!items(a, doc, vars)?.is_empty()),
        Predicate::And(a, b) => match (evaluate(a, doc, vars)?, evaluate(b, doc, vars)?) {
            (Truth::False, _) | (_, Truth::False) => Truth::False,
            (Truth::True, Truth::True) => Truth::True,
            _ => Truth::Unknown,
        },
        Predicate::Or(a, b) => match (evaluate(a, doc, vars)?, evaluate(b, doc, vars)?) {
            (Truth::True, _) | (_, Truth::True) => Truth::True,
            (Truth::False, Truth::False) => Truth::False,
            _ => Truth::Unknown,
        },
        Predicate::Not(a) => match evaluate(a, doc, vars)? {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        },
    })
}

/// The items an operand stands for (a path may stand for none or many).
fn items<'v>(
    operand: &'v Operand,
    doc: &'v Value,
    vars: &'v Value,
) -> Result<Vec<&'v Value>, VectorError> {
    let (start, steps) = match operand {
        Operand::Literal(v) => return Ok(vec![v]),
        Operand::Path(steps) => (doc, steps),
        Operand::Variable(name, steps) => {
            let value = vars.get(name).ok_or_else(|| {
                VectorError::new(
                    "42704",
                    format!("could not find jsonpath variable \"{name}\""),
                )
            })?;
            (value, steps)
        }
    };
    let mut current = vec![start];
    for step in steps {
        current = current.into_iter().flat_map(|v| apply(step, v)).collect();
    }
    Ok(current)
}

/// A comparison's operand items: lax mode compares an array's elements, not the array.
fn compared<'v>(
    operand: &'v Operand,
    doc: &'v Value,
    vars: &'v Value,
) -> Result<Vec<&'v Value>, VectorError> {
    Ok(items(operand, doc, vars)?
        .into_iter()
        .flat_map(|v| match v {
            Value::Array(items) => items.iter().collect(),
            v => vec![v],
        })
        .collect())
}

/// One accessor, in lax mode: a member accessor on an array applies to its elements.
fn apply<'v>(step: &Step, value: &'v Value) -> Vec<&'v Value> {
    match (step, value) {
        // Lax mode unwraps one level of array for a member accessor.
        (Step::Member(_) | Step::AnyMember, Value::Array(items)) => items
            .iter()
            .filter(|v| !v.is_array())
            .flat_map(|v| apply(step, v))
            .collect(),
        (Step::Member(key), Value::Object(map)) => map.get(key).into_iter().collect(),
        (Step::AnyMember, Value::Object(map)) => map.values().collect(),
        (Step::AnyIndex, Value::Array(items)) => items.iter().collect(),
        (Step::Index(i), Value::Array(items)) => usize::try_from(*i)
            .ok()
            .and_then(|i| items.get(i))
            .into_iter()
            .collect(),
        (Step::Last, Value::Array(items)) => items.last().into_iter().collect(),
        // Lax mode: a scalar is an array of itself for array accessors.
        (Step::AnyIndex | Step::Index(0) | Step::Last, v) if !v.is_array() => vec![v],
        _ => Vec::new(),
    }
}

/// `Some(result)` for items of comparable types, `None` otherwise.
fn compare(a: &Value, op: Comparison, b: &Value) -> Option<bool> {
    use std::cmp::Ordering;
    let order = match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) | (_, Value::Null) => {
            // null equals only null, and is neither less nor greater than anything.
            return Some(op == Comparison::Ne);
        }
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?)?,
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => return None,
    };
    Some(match op {
        Comparison::Eq => order == Ordering::Equal,
        Comparison::Ne => order != Ordering::Equal,
        Comparison::Lt => order == Ordering::Less,
        Comparison::Le => order != Ordering::Greater,
        Comparison::Gt => order == Ordering::Greater,
        Comparison::Ge => order != Ordering::Less,
    })
}

/// `jsonb_path_match(target, path[, vars[, silent]])` as a function over rows.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonbPathMatch {
    signature: Signature,
}

/// The UDF, for registration.
pub fn jsonb_path_match() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(JsonbPathMatch {
        signature: Signature::variadic_any(Volatility::Immutable),
    }))
}

impl ScalarUDFImpl for JsonbPathMatch {
    fn name(&self) -> &str {
        "jsonb_path_match"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        if !(2..=4).contains(&args.args.len()) {
            return plan_err!("jsonb_path_match takes a document, a path and optional variables");
        }
        let text = |at: usize| -> Result<Option<_>> {
            match args.args.get(at) {
                Some(a) => Ok(Some(cast(&a.to_array(rows)?, &DataType::Utf8)?)),
                None => Ok(None),
            }
        };
        let (docs, paths, vars) = (text(0)?, text(1)?, text(2)?);
        let (docs, paths) = (
            docs.expect("checked: two arguments at least"),
            paths.expect("checked: two arguments at least"),
        );
        let (docs, paths) = (docs.as_string::<i32>(), paths.as_string::<i32>());
        let vars = vars.as_ref().map(|v| v.as_string::<i32>());
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            if docs.is_null(row) || paths.is_null(row) {
                out.push(None);
                continue;
            }
            let doc = crate::json::parse(docs.value(row))?;
            let vars = match vars {
                Some(v) if v.is_valid(row) => crate::json::parse(v.value(row))?,
                _ => Value::Object(Default::default()),
            };
            out.push(path_match(&doc, paths.value(row), &vars)?.as_option());
        }
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matches(doc: Value, path: &str, vars: Value) -> Option<bool> {
        path_match(&doc, path, &vars).unwrap().as_option()
    }

    #[test]
    fn langchains_filters_match_as_postgresql_matches_them() {
        let doc = json!({"topic": "animals", "year": 1973, "tags": ["a", "b"], "n": null});
        let vars = json!({"value": "animals", "y": 2000});
        assert_eq!(
            matches(doc.clone(), "($.\"topic\" == $\"value\")", vars.clone()),
            Some(true)
        );
        assert_eq!(
            matches(doc.clone(), "$.topic != $value", vars.clone()),
            Some(false)
        );
        assert_eq!(
            matches(doc.clone(), "$.year < $y && $.year >= 1973", vars.clone()),
            Some(true)
        );
        assert_eq!(
            matches(doc.clone(), "$.tags[*] == \"b\"", vars.clone()),
            Some(true)
        );
        assert_eq!(
            matches(doc.clone(), "$.tags == \"b\"", vars.clone()),
            Some(true),
            "lax"
        );
        assert_eq!(
            matches(doc.clone(), "$.missing == 1", vars.clone()),
            Some(false)
        );
        assert_eq!(
            matches(doc.clone(), "$.topic == 1", vars.clone()),
            None,
            "unknown"
        );
        assert_eq!(
            matches(doc.clone(), "!($.year > 2000) || $.x == 1", vars.clone()),
            Some(true)
        );
        assert_eq!(
            matches(doc.clone(), "exists($.n)", vars.clone()),
            Some(true)
        );
        assert_eq!(
            matches(doc.clone(), "$.n == null", vars.clone()),
            Some(true)
        );
        assert_eq!(matches(doc, "$.year == 1973.0", vars), Some(true));
    }

    #[test]
    fn exists_sees_an_empty_array() {
        assert_eq!(
            matches(json!({"t": []}), "exists($.t)", json!({})),
            Some(true)
        );
        assert_eq!(
            matches(json!({"t": []}), "$.t == 1", json!({})),
            Some(false)
        );
    }

    #[test]
    fn what_it_does_not_read_is_refused() {
        for path in [
            "$.a like_regex \"x\"",
            "$.a ? (@ > 1)",
            "$.a +",
            "strict $.a == 1",
        ] {
            let e = path_match(&json!({}), path, &json!({})).unwrap_err();
            assert_eq!(e.sqlstate, "0A000", "{path}");
        }
        let deep = format!("{}$.a == 1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(
            path_match(&json!({}), &deep, &json!({}))
                .unwrap_err()
                .sqlstate,
            "54000"
        );
        let long = vec!["$.a == 1"; 100_000].join(" && ");
        assert_eq!(
            path_match(&json!({}), &long, &json!({}))
                .unwrap_err()
                .sqlstate,
            "54000"
        );
        let missing = path_match(&json!({}), "$.a == $v", &json!({})).unwrap_err();
        assert_eq!(missing.sqlstate, "42704");
    }
}
