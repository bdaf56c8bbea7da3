//! `INSERT INTO t [(cols)] SELECT …`, planned here rather than by DataFusion. DataFusion's
//! planner gives the target table's column types to every VALUES list inside the INSERT, also
//! one nested in the SELECT, so what llama-index and SQLAlchemy send to insert many rows,
//! `INSERT … SELECT p0::vector, … FROM (VALUES (…, 0), …) AS imp_sen(p0, …, sen_counter)
//! ORDER BY sen_counter`, failed ("Inconsistent data length across values list").
//!
//! The SELECT is planned on its own; its columns go to the named columns in order, cast to
//! their types, and the other columns get their `DEFAULT` (a sequence's `nextval`, say) or
//! NULL, as DataFusion does for `INSERT … VALUES`, which it still plans itself.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Column, DFSchema, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::error::Result;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{
    Cast, DmlStatement, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, WriteOp,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{Insert, Query, SetExpr, Statement, TableObject};

use crate::error::VectorError;

/// The plan of `statement` when it is an INSERT from a query other than a bare VALUES list,
/// or of DEFAULT VALUES; `None` for any other statement.
pub async fn plan(ctx: &SessionContext, statement: &DFStatement) -> Result<Option<LogicalPlan>> {
    let DFStatement::Statement(s) = statement else {
        return Ok(None);
    };
    let Statement::Insert(insert) = s.as_ref() else {
        return Ok(None);
    };
    let TableObject::TableName(name) = &insert.table else {
        return Ok(None);
    };
    let values = |s: &Query| matches!(s.body.as_ref(), SetExpr::Values(_));
    if insert.source.as_deref().is_some_and(values) || insert.on.is_some() {
        return Ok(None);
    }
    let table_name = object_name_to_table_reference(name.clone(), true)?;
    let provider = ctx.table_provider(table_name.clone()).await?;
    let source = match &insert.source {
        Some(query) => {
            let query = DFStatement::Statement(Box::new(Statement::Query(query.clone())));
            ctx.state().statement_to_plan(query).await?
        }
        // `INSERT INTO t DEFAULT VALUES`: one row, every column its default.
        None if insert.columns.is_empty() && insert.assignments.is_empty() => {
            LogicalPlanBuilder::empty(true).build()?
        }
        None => return Ok(None),
    };
    let table = DFSchema::try_from(provider.schema())?;
    let columns = match &insert.source {
        Some(_) => target_columns(insert, &table, &table_name)?,
        None => Vec::new(),
    };
    let exprs = row_exprs(&columns, &source, &table, provider.as_ref())?;
    let input = LogicalPlanBuilder::from(source).project(exprs)?.build()?;
    let op = match (insert.replace_into, insert.overwrite) {
        (true, _) => InsertOp::Replace,
        (_, true) => InsertOp::Overwrite,
        _ => InsertOp::Append,
    };
    Ok(Some(LogicalPlan::Dml(DmlStatement::new(
        table_name,
        provider_as_source(provider),
        WriteOp::Insert(op),
        Arc::new(input),
    ))))
}

/// The index in the table of each column the INSERT names (all, in order, when it names none).
fn target_columns(
    insert: &Insert,
    table: &DFSchema,
    table_name: &TableReference,
) -> Result<Vec<usize>> {
    if insert.columns.is_empty() {
        return Ok((0..table.fields().len()).collect());
    }
    let mut indices = Vec::with_capacity(insert.columns.len());
    for column in &insert.columns {
        let name = crate::names::last_part(column);
        let Some(index) = table.index_of_column_by_name(None, &name) else {
            let message = format!(
                "column \"{name}\" of relation \"{}\" does not exist",
                table_name.table()
            );
            return Err(VectorError::new("42703", message).into());
        };
        if indices.contains(&index) {
            let message = format!("column \"{name}\" specified more than once");
            return Err(VectorError::new("42701", message).into());
        }
        indices.push(index);
    }
    Ok(indices)
}

/// One expression per table column over the source's rows: its source column cast to the
/// column's type, or its default, or NULL.
fn row_exprs(
    columns: &[usize],
    source: &LogicalPlan,
    table: &DFSchema,
    provider: &dyn datafusion::catalog::TableProvider,
) -> Result<Vec<Expr>> {
    let given = source.schema().fields().len();
    if given != columns.len() {
        let more = if given > columns.len() {
            "more expressions than target columns"
        } else {
            "more target columns than expressions"
        };
        return Err(VectorError::new("42601", format!("INSERT has {more}")).into());
    }
    let mut exprs = Vec::with_capacity(table.fields().len());
    for (index, field) in table.fields().iter().enumerate() {
        let expr = match columns.iter().position(|&c| c == index) {
            Some(v) => assign(source, v, field)?,
            None => provider
                .get_column_default(field.name())
                .cloned()
                .unwrap_or(Expr::Literal(ScalarValue::Null, None))
                .cast_to(field.data_type(), &DFSchema::empty())?,
        };
        exprs.push(expr.alias(field.name()));
    }
    Ok(exprs)
}

/// The source's column `v` in `field`'s type, as PostgreSQL assigns it: a string literal
/// (unknown-typed there) takes the column's type through its input function — `'[1,2,3]'`
/// into a vector column becomes a cast that the casts analyzer turns into `vector_in` — while
/// other text going to a vector is refused as PostgreSQL refuses it (42804).
fn assign(source: &LogicalPlan, v: usize, field: &Field) -> Result<Expr> {
    let column = Expr::Column(Column::from(source.schema().qualified_field(v)));
    let from = column.get_type(source.schema())?;
    let to = field.data_type();
    let text = matches!(
        from,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    let vector = match to {
        DataType::FixedSizeList(item, _) | DataType::List(item) => match item.data_type() {
            DataType::Float32 => Some("vector"),
            DataType::Float16 => Some("halfvec"),
            _ => None,
        },
        _ => None,
    };
    match (text, vector) {
        (true, Some(_)) if string_literal_at(source, v) => {
            Ok(Expr::Cast(Cast::new(Box::new(column), to.clone())))
        }
        (true, Some(name)) => {
            let message = format!(
                "column \"{}\" is of type {name} but expression is of type text",
                field.name()
            );
            Err(VectorError::new("42804", message).into())
        }
        _ => column.cast_to(to, source.schema()),
    }
}

/// Whether the source's column `v` is a string literal, followed through projections that
/// pass it on, sorts and limits.
fn string_literal_at(source: &LogicalPlan, v: usize) -> bool {
    match source {
        LogicalPlan::Projection(projection) => {
            match projection.expr.get(v).map(|e| e.clone().unalias()) {
                Some(Expr::Literal(
                    ScalarValue::Utf8(Some(_))
                    | ScalarValue::LargeUtf8(Some(_))
                    | ScalarValue::Utf8View(Some(_)),
                    _,
                )) => true,
                Some(Expr::Column(column)) => projection
                    .input
                    .schema()
                    .index_of_column(&column)
                    .is_ok_and(|i| string_literal_at(&projection.input, i)),
                _ => false,
            }
        }
        LogicalPlan::Sort(sort) => string_literal_at(&sort.input, v),
        LogicalPlan::Limit(limit) => string_literal_at(&limit.input, v),
        _ => false,
    }
}
