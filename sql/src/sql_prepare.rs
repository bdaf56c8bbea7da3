//! SQL's own prepared statements: `PREPARE name [(type, …)] AS statement`, `EXECUTE
//! name[(value, …)]` and `DEALLOCATE name`, as pgvector's README and psql users write them.
//! A prepared statement is the session's kept plan of its text (`prepared.rs`), named; the
//! declared types cast the parameters they stand for; EXECUTE's values are read as a bind's
//! text parameters are (an untyped literal as the parameter's type reads it), or evaluated
//! when they are expressions.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    DataType as SqlType, Expr, Ident, ObjectName, ObjectNamePart, Statement, UnaryOperator, Value,
    visit_expressions_mut,
};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

use crate::errors::{to_pg, user_error};
use crate::idents::ident;
use crate::prepared::Prepared;
use crate::session::Session;

impl Session {
    /// `PREPARE name [(types)] AS statement`: plans the statement and keeps it by name.
    pub(crate) async fn sql_prepare(
        &self,
        name: &Ident,
        types: &[SqlType],
        statement: &Statement,
    ) -> PgWireResult<Response> {
        let name = ident(name);
        if !matches!(
            statement,
            Statement::Query(_)
                | Statement::Insert(_)
                | Statement::Update(_)
                | Statement::Delete(_)
        ) {
            // PostgreSQL prepares only these (its grammar says so); an EXECUTE inside one could
            // recurse for ever.
            let text = statement.to_string();
            let first = text.split_whitespace().next().unwrap_or_default();
            return Err(user_error(
                "42601",
                format!("syntax error at or near \"{first}\""),
            ));
        }
        if self.sql_statements.lock().contains_key(&name) {
            let message = format!("prepared statement \"{name}\" already exists");
            return Err(user_error("42P05", message));
        }
        let mut statement = statement.clone();
        cast_parameters(&mut statement, types);
        let prepared = self.prepare(&statement.to_string(), &[]).await?;
        self.sql_statements.lock().insert(name, prepared);
        Ok(Response::Execution(Tag::new("PREPARE")))
    }

    /// `EXECUTE name[(values)]`: runs the named statement with the values as its parameters.
    pub(crate) async fn sql_execute(
        &self,
        name: Option<&ObjectName>,
        values: &[Expr],
        format: &Format,
    ) -> PgWireResult<Response> {
        let name = statement_name(name);
        let Some(prepared) = self.sql_statements.lock().get(&name).cloned() else {
            let message = format!("prepared statement \"{name}\" does not exist");
            return Err(user_error("26000", message));
        };
        let expected = prepared.param_types().len();
        if values.len() != expected {
            let mut info = ErrorInfo::new(
                "ERROR".to_owned(),
                "42601".to_owned(),
                format!("wrong number of parameters for prepared statement \"{name}\""),
            );
            info.detail = Some(format!(
                "Expected {expected} parameters but got {}.",
                values.len()
            ));
            return Err(PgWireError::UserError(Box::new(info)));
        }
        let mut params = Vec::with_capacity(values.len());
        for (index, value) in values.iter().enumerate() {
            params.push(self.parameter(value, &prepared.param_target(index)).await?);
        }
        self.execute(&prepared, params, format).await
    }

    /// The SQL prepared statement `statement` executes, if it is an `EXECUTE name(…)`.
    pub(crate) fn executed_statement(&self, statement: &Prepared) -> Option<Arc<Prepared>> {
        let DFStatement::Statement(s) = &statement.statement else {
            return None;
        };
        let Statement::Execute { name, .. } = s.as_ref() else {
            return None;
        };
        self.sql_statements
            .lock()
            .get(&statement_name(name.as_ref()))
            .cloned()
    }

    /// `DEALLOCATE name` (or `ALL`) forgets SQL prepared statements; `false` if there was
    /// none of that name.
    pub(crate) fn sql_deallocate(&self, name: &Ident) -> bool {
        let mut held = self.sql_statements.lock();
        if name.value.eq_ignore_ascii_case("all") && name.quote_style.is_none() {
            held.clear();
            return true;
        }
        held.remove(&ident(name)).is_some()
    }

    /// One EXECUTE value as a parameter of type `target`.
    async fn parameter(&self, value: &Expr, target: &DataType) -> PgWireResult<ScalarValue> {
        if let Some(text) = literal_text(value) {
            return crate::params::decode(Some(text.as_bytes()), FieldFormat::Text, None, target);
        }
        let frame = self
            .ctx
            .sql(&format!("SELECT {value}"))
            .await
            .map_err(|e| to_pg(&e))?;
        let batches = frame.collect().await.map_err(|e| to_pg(&e))?;
        let column = match batches.first() {
            Some(batch) if batch.num_rows() == 1 => Arc::clone(batch.column(0)),
            _ => return Err(user_error("42601", "an EXECUTE value must be one value")),
        };
        let scalar = ScalarValue::try_from_array(&column, 0).map_err(|e| to_pg(&e))?;
        if &scalar.data_type() == target {
            return Ok(scalar);
        }
        scalar.cast_to(target).map_err(|e| to_pg(&e))
    }
}

/// The name `EXECUTE` gives, as PREPARE kept it.
fn statement_name(name: Option<&ObjectName>) -> String {
    match name.and_then(|n| n.0.last()) {
        Some(ObjectNamePart::Identifier(id)) => ident(id),
        _ => String::new(),
    }
}

/// The text of an untyped literal (`'[1,2,3]'`, `42`, `-1.5`), which the parameter's type reads.
fn literal_text(value: &Expr) -> Option<String> {
    match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.clone()),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => Some(format!("-{n}")),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// `$n` as `CAST($n AS type)` for each declared type: PREPARE's types are the parameters'.
fn cast_parameters(statement: &mut Statement, types: &[SqlType]) {
    if types.is_empty() {
        return;
    }
    let _ = visit_expressions_mut(statement, |e: &mut Expr| {
        if let Expr::Value(v) = e
            && let Value::Placeholder(p) = &v.value
            && let Some(declared) = p
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| types.get(n.checked_sub(1)?))
        {
            *e = Expr::Cast {
                kind: datafusion::sql::sqlparser::ast::CastKind::DoubleColon,
                expr: Box::new(e.clone()),
                data_type: declared.clone(),
                array: false,
                format: None,
            };
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn declared_types_cast_their_parameters() {
        let mut statements =
            Parser::parse_sql(&PostgreSqlDialect {}, "SELECT $1 + $2, $1, $3").unwrap();
        cast_parameters(&mut statements[0], &[SqlType::Int(None), SqlType::Text]);
        assert_eq!(
            statements[0].to_string(),
            "SELECT $1::INT + $2::TEXT, $1::INT, $3"
        );
    }

    #[test]
    fn untyped_literals_are_read_as_text() {
        let value = |sql: &str| {
            let statement = Parser::parse_sql(&PostgreSqlDialect {}, &format!("SELECT {sql}"))
                .unwrap()
                .remove(0);
            let Statement::Query(q) = statement else {
                unreachable!()
            };
            let datafusion::sql::sqlparser::ast::SetExpr::Select(s) = *q.body else {
                unreachable!()
            };
            let datafusion::sql::sqlparser::ast::SelectItem::UnnamedExpr(e) = &s.projection[0]
            else {
                unreachable!()
            };
            literal_text(e)
        };
        assert_eq!(value("'[1,2]'").as_deref(), Some("[1,2]"));
        assert_eq!(value("-1.5").as_deref(), Some("-1.5"));
        assert_eq!(value("now()"), None);
    }
}
