//! Column defaults as clients look them up: psql's `\d` and SQLAlchemy's `inspect()` ask
//! `(SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d WHERE d.adrelid = a.attrelid
//! AND d.adnum = a.attnum AND a.atthasdef)` for each column `a`, SQLAlchemy inside a CASE.
//! DataFusion cannot plan that correlated subquery (its condition on the outer row alone, or
//! its place in a CASE), so the dialect pass makes it a call, `column_default(relid, attnum)`:
//! the default's text, as `pg_get_expr` gives it, or NULL.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::exec_err;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Query, SelectItem,
    SetExpr, TableFactor,
};

use super::Shared;
use super::calls::parse_expr;
use super::types::table_oid;
use crate::catalog::Catalog;

/// The name the lookup is rewritten to.
const NAME: &str = "column_default";

/// `(SELECT … FROM pg_catalog.pg_attrdef d WHERE d.adrelid = R AND d.adnum = N …)` as
/// `column_default(R, N)`; `None` for any other subquery.
pub(super) fn attrdef_lookup(query: &Query) -> Option<Expr> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    let TableFactor::Table { name, alias, .. } = &from.relation else {
        return None;
    };
    let is_attrdef = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value == "pg_attrdef");
    let [SelectItem::UnnamedExpr(item) | SelectItem::ExprWithAlias { expr: item, .. }] =
        select.projection.as_slice()
    else {
        return None;
    };
    if !is_attrdef || !from.joins.is_empty() || !is_default_text(item) {
        return None;
    }
    let own = alias
        .as_ref()
        .map_or("pg_attrdef", |a| a.name.value.as_str());
    let mut relid = None;
    let mut attnum = None;
    for conjunct in conjuncts(select.selection.as_ref()?) {
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = conjunct
        else {
            continue;
        };
        for (mine, other) in [(left, right), (right, left)] {
            match own_column(mine, own) {
                Some("adrelid") => relid = Some(other.to_string()),
                Some("adnum") => attnum = Some(other.to_string()),
                _ => {}
            }
        }
    }
    parse_expr(&format!("{NAME}({}, {})", relid?, attnum?))
}

/// Whether `item` asks for the default's text: `pg_get_expr(adbin, …)` or `adbin` itself.
fn is_default_text(item: &Expr) -> bool {
    let names_adbin = |e: &Expr| match e {
        Expr::Identifier(i) => i.value == "adbin",
        Expr::CompoundIdentifier(parts) => parts.last().is_some_and(|i| i.value == "adbin"),
        _ => false,
    };
    match item {
        Expr::Function(f) => {
            let is_get_expr = f
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_get_expr"));
            let FunctionArguments::List(list) = &f.args else {
                return false;
            };
            let first = list.args.first().and_then(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            });
            is_get_expr && first.is_some_and(names_adbin)
        }
        other => names_adbin(other),
    }
}

/// The parts of an AND chain.
fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut all = conjuncts(left);
            all.extend(conjuncts(right));
            all
        }
        Expr::Nested(inner) => conjuncts(inner),
        other => vec![other],
    }
}

/// The column of table `own` that `e` names (`d.adrelid`), if it names one.
fn own_column<'a>(e: &'a Expr, own: &str) -> Option<&'a str> {
    match e {
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            let table = &parts[parts.len() - 2];
            (table.value == own).then(|| parts[parts.len() - 1].value.as_str())
        }
        Expr::Identifier(column) if column.value.starts_with("ad") => Some(column.value.as_str()),
        _ => None,
    }
}

/// `column_default(relid, attnum)`: the text of the column's `DEFAULT`, or NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct ColumnDefault {
    catalog: Shared<Catalog>,
    signature: Signature,
}

impl ColumnDefault {
    pub(super) fn new(catalog: Arc<Catalog>) -> Self {
        ColumnDefault {
            catalog: Shared(catalog),
            signature: Signature::any(2, Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for ColumnDefault {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [relid, attnum] = args.args.as_slice() else {
            return exec_err!("{NAME} takes a relation and a column number");
        };
        let rows = args.number_rows;
        let relid = cast(&relid.to_array(rows)?, &DataType::Int64)?;
        let attnum = cast(&attnum.to_array(rows)?, &DataType::Int64)?;
        let (relid, attnum) = (
            relid.as_primitive::<Int64Type>(),
            attnum.as_primitive::<Int64Type>(),
        );
        let defaults = self.defaults();
        let text: StringArray = (0..rows)
            .map(|i| {
                if relid.is_null(i) || attnum.is_null(i) {
                    return None;
                }
                defaults.get(&(relid.value(i), attnum.value(i))).cloned()
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(text)))
    }
}

impl ColumnDefault {
    /// Every column default, by (relation OID, column number).
    fn defaults(&self) -> HashMap<(i64, i64), String> {
        let mut defaults = HashMap::new();
        for (table, collection) in self.catalog.0.all() {
            let schema = collection.schema();
            for (column, attnum) in schema.visible_columns().zip(1..) {
                if let Some(default) = column.shown_default() {
                    let key = (i64::from(table_oid(&table)), attnum);
                    defaults.insert(key, default.to_string());
                }
            }
        }
        defaults
    }
}
