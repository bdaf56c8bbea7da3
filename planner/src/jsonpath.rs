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
    let predicate = Parser::new(path).parse()?;
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
        (Step::Member(_) | Step::AnyMember, Value::Array(items)) => {
            items.iter().flat_map(|v| apply(step, v)).collect()
        }
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
            // null equals only null; it is not ordered against anything.
            return matches!(op, Comparison::Eq | Comparison::Ne).then_some(op == Comparison::Ne);
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

/// The most predicates (comparisons, `!`, brackets, `&&`/`||` operands) one path may have.
const MAX_PREDICATES: usize = 256;

/// A recursive-descent reader of the subset (see the module comment).
struct Parser<'a> {
    text: &'a str,
    at: usize,
    /// Predicates read so far: bounded, so that neither reading nor evaluating (both
    /// recursive) nor dropping a path can exhaust the stack.
    predicates: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            text,
            at: 0,
            predicates: 0,
        }
    }

    fn parse(mut self) -> Result<Predicate, VectorError> {
        let p = self.or()?;
        self.space();
        if self.at != self.text.len() {
            return Err(self.error());
        }
        Ok(p)
    }

    fn error(&self) -> VectorError {
        VectorError::new(
            "0A000",
            format!(
                "jsonpath expression not supported by Vecraft (at character {}): {}",
                self.at + 1,
                self.text
            ),
        )
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    /// Consumes `token` (after white space) if it comes next.
    fn eat(&mut self, token: &str) -> bool {
        self.space();
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Predicate, VectorError> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Predicate::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Predicate, VectorError> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            left = Predicate::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Predicate, VectorError> {
        self.predicates += 1;
        if self.predicates > MAX_PREDICATES {
            let message = format!("jsonpath expression has more than {MAX_PREDICATES} predicates");
            return Err(VectorError::new("54000", message));
        }
        if self.eat("!") {
            return Ok(Predicate::Not(Box::new(self.unary()?)));
        }
        if self.eat("exists") {
            if !self.eat("(") {
                return Err(self.error());
            }
            let operand = self.operand()?;
            if !self.eat(")") {
                return Err(self.error());
            }
            return Ok(Predicate::Exists(operand));
        }
        if self.eat("(") {
            // A bracketed predicate (a bracketed operand, `($.a) == 1`, is not read).
            let p = self.or()?;
            if !self.eat(")") {
                return Err(self.error());
            }
            return Ok(p);
        }
        let left = self.operand()?;
        let op = self.comparison().ok_or_else(|| self.error())?;
        let right = self.operand()?;
        Ok(Predicate::Compare(left, op, right))
    }

    fn comparison(&mut self) -> Option<Comparison> {
        for (token, op) in [
            ("==", Comparison::Eq),
            ("!=", Comparison::Ne),
            ("<>", Comparison::Ne),
            ("<=", Comparison::Le),
            (">=", Comparison::Ge),
            ("<", Comparison::Lt),
            (">", Comparison::Gt),
        ] {
            if self.eat(token) {
                return Some(op);
            }
        }
        None
    }

    fn operand(&mut self) -> Result<Operand, VectorError> {
        self.space();
        if self.eat("$") {
            let name = match self.rest().chars().next() {
                Some('"') => Some(self.quoted()?),
                Some(c) if c.is_alphabetic() || c == '_' => Some(self.word()),
                _ => None,
            };
            let steps = self.steps()?;
            return Ok(match name {
                Some(name) => Operand::Variable(name, steps),
                None => Operand::Path(steps),
            });
        }
        if self.rest().starts_with('"') {
            return Ok(Operand::Literal(Value::String(self.quoted()?)));
        }
        let word = self.word();
        let literal = match word.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            _ => {
                let number = self.number(&word).ok_or_else(|| self.error())?;
                Value::Number(number)
            }
        };
        Ok(Operand::Literal(literal))
    }

    fn number(&mut self, word: &str) -> Option<serde_json::Number> {
        let mut text = word.to_string();
        if text.is_empty() && self.rest().starts_with('-') {
            self.at += 1;
            text = format!("-{}", self.word());
        }
        // A fraction: the word stopped at the point.
        if self.rest().starts_with('.')
            && self.rest()[1..].starts_with(|c: char| c.is_ascii_digit())
        {
            self.at += 1;
            text = format!("{text}.{}", self.word());
        }
        serde_json::from_str::<serde_json::Number>(&text).ok()
    }

    /// Letters, digits and `_` from here.
    fn word(&mut self) -> String {
        let len = self
            .rest()
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        let word = self.rest()[..len].to_string();
        self.at += len;
        word
    }

    /// A double-quoted string from here, its escapes read as JSON's.
    fn quoted(&mut self) -> Result<String, VectorError> {
        let rest = self.rest();
        let mut escaped = false;
        for (i, c) in rest.char_indices().skip(1) {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    let s: String = serde_json::from_str(&rest[..=i]).map_err(|_| self.error())?;
                    self.at += i + 1;
                    return Ok(s);
                }
                _ => escaped = false,
            }
        }
        Err(self.error())
    }

    fn steps(&mut self) -> Result<Vec<Step>, VectorError> {
        let mut steps = Vec::new();
        loop {
            if self.rest().starts_with(".*") {
                self.at += 2;
                steps.push(Step::AnyMember);
            } else if self.rest().starts_with('.') {
                self.at += 1;
                let key = if self.rest().starts_with('"') {
                    self.quoted()?
                } else {
                    self.word()
                };
                if key.is_empty() {
                    return Err(self.error());
                }
                steps.push(Step::Member(key));
            } else if self.rest().starts_with('[') {
                self.at += 1;
                let inside = self.word();
                steps.push(match inside.as_str() {
                    "" if self.eat("*") => Step::AnyIndex,
                    "last" => Step::Last,
                    n => Step::Index(n.parse().map_err(|_| self.error())?),
                });
                if !self.eat("]") {
                    return Err(self.error());
                }
            } else {
                return Ok(steps);
            }
        }
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
