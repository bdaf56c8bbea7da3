//! Function calls in drivers' catalog queries that DataFusion does not have, each turned into
//! an expression it plans, and functions in FROM as PostgreSQL reads them. Part of the
//! dialect pass ([`super::rewrite`]); each rewrite names the client whose query needs it.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Query, TableAlias,
    TableAliasColumnDef, TableFactor, Value, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::rewrite::unqualified;

/// An expression from its SQL text (the rewrites build theirs this way, readably).
pub(super) fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

fn parse_query(sql: &str) -> Option<Box<Query>> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_query())
        .ok()
}

/// The plain arguments of `f` when it is a call of `name` (qualified as written).
fn call_args(f: &Function, name: &str) -> Option<Vec<Expr>> {
    if !f.name.to_string().eq_ignore_ascii_case(name) {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// What a call of `f` becomes, if it is one of the calls rewritten here.
pub(super) fn rewrite_call(f: &Function) -> Option<Expr> {
    search_path_length(f)
        .map(|n| Expr::value(Value::Number(n.to_string(), false)))
        .or_else(|| expand_index_key(f))
        .or_else(|| array_subscripts(f))
        .or_else(|| array_fill(f))
}

/// `array_fill(v, ARRAY[n])` (pgvector's tests build long vectors with it): a
/// one-dimensional array of `n` copies of `v`. More dimensions, or lower bounds, are not
/// rewritten (and so refused as an unknown function).
fn array_fill(f: &Function) -> Option<Expr> {
    let args: [Expr; 2] = call_args(f, "array_fill")?.try_into().ok()?;
    let [value, Expr::Array(dims)] = args else {
        return None;
    };
    let [length] = dims.elem.as_slice() else {
        return None;
    };
    parse_expr(&format!("array_repeat({value}, {length})"))
}

/// `array_upper(current_schemas(b), 1)` (JDBC's type lookup, as a bound of
/// `generate_series`, which DataFusion takes only as a constant): the search path's length.
fn search_path_length(f: &Function) -> Option<usize> {
    let args = call_args(f, "array_upper")?;
    let [Expr::Function(inner), Expr::Value(dimension)] = args.as_slice() else {
        return None;
    };
    if dimension.value != Value::Number("1".into(), false) {
        return None;
    }
    match call_args(inner, "current_schemas")?.as_slice() {
        [Expr::Value(v)] if v.value == Value::Boolean(true) => Some(2),
        [Expr::Value(v)] if v.value == Value::Boolean(false) => Some(1),
        _ => None,
    }
}

/// `information_schema._pg_expandarray(i.indkey)` (JDBC's primary keys): the set of
/// (element `x`, position `n`) of an array. Every index here has one column, so it is the one
/// record `(x: the column's number, n: 1)`.
fn expand_index_key(f: &Function) -> Option<Expr> {
    let [array] = call_args(f, "information_schema._pg_expandarray")?
        .try_into()
        .ok()?;
    parse_expr(&format!("named_struct('x', ({array})[1], 'n', 1)"))
}

/// `generate_subscripts(a, 1)` (SQLAlchemy's reflection, beside `unnest(a)` in the same
/// SELECT list): the subscripts of a one-dimensional array, as a set that unnests in step
/// with `unnest(a)`.
fn array_subscripts(f: &Function) -> Option<Expr> {
    let [array, _dimension] = call_args(f, "generate_subscripts")?.try_into().ok()?;
    parse_expr(&format!(
        "unnest(generate_series(1, array_length({array})))"
    ))
}

/// Functions in FROM as PostgreSQL reads them:
/// - `generate_series(1, 10) i`, `unnest(a) v`: a function returning one column, given a table
///   alias and no column aliases, names its column for the alias (DataFusion says `value`);
/// - `pg_available_extensions()` (psql's `\dx`) reads the view of the same name.
pub(super) struct TableFunctions;

impl VisitorMut for TableFunctions {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        // `unnest(a) v`, parsed apart from other functions.
        if let TableFactor::UNNEST {
            alias: Some(alias),
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        } = factor
        {
            if array_exprs.len() == 1 {
                name_single_column(alias);
            }
            return ControlFlow::Continue(());
        }
        let TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let function = unqualified(name).to_string().to_lowercase();
        if function == "pg_available_extensions" && args.args.is_empty() {
            let view =
                "SELECT name, default_version, comment FROM pg_catalog.pg_available_extensions";
            if let Some(subquery) = parse_query(view) {
                *factor = TableFactor::Derived {
                    lateral: false,
                    subquery,
                    alias: alias.take(),
                    sample: None,
                };
            }
            return ControlFlow::Continue(());
        }
        let single_column = matches!(function.as_str(), "generate_series" | "range" | "unnest");
        if let Some(alias) = alias.as_mut().filter(|_| single_column) {
            name_single_column(alias);
        }
        ControlFlow::Continue(())
    }
}

/// A one-column function's table alias without column aliases names its column too.
fn name_single_column(alias: &mut TableAlias) {
    if alias.columns.is_empty() {
        alias.columns = vec![TableAliasColumnDef {
            name: alias.name.clone(),
            data_type: None,
        }];
    }
}
