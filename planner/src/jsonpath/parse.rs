//! The reader of the jsonpath subset `jsonb_path_match` understands (see the parent module):
//! recursive descent over the text, with the number of predicates bounded.

use serde_json::Value;

use super::{Comparison, Operand, Predicate, Step};
use crate::error::VectorError;

/// The most predicates (comparisons, `!`, brackets, `&&`/`||` operands) one path may have.
const MAX_PREDICATES: usize = 256;

/// A recursive-descent reader of the subset (see the module comment).
pub(super) struct Parser<'a> {
    text: &'a str,
    at: usize,
    /// Predicates read so far: bounded, so that neither reading nor evaluating (both
    /// recursive) nor dropping a path can exhaust the stack.
    predicates: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Parser {
            text,
            at: 0,
            predicates: 0,
        }
    }

    pub(super) fn parse(mut self) -> Result<Predicate, VectorError> {
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
