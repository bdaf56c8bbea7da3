//! `INSERT/UPDATE/DELETE … RETURNING`: the rows a statement wrote (inserted, updated to, or
//! deleted), through the RETURNING list, as PostgreSQL returns them. ORMs read the keys a
//! database assigned this way (`INSERT … RETURNING id`), and a vector store reads back the
//! rows it stored.
//!
//! DataFusion plans no RETURNING, so the list is taken off the statement before planning
//! ([`take_returning`]) and put back on top of the DML plan ([`plan`]): the plan's target
//! becomes the same collection in its returning form ([`CollectionTable::returning`]), whose
//! writes pass on the rows they wrote instead of a count, and a projection evaluates the list
//! over them. The rows are the table's columns as stored (defaults filled, values in the
//! column's type), so `RETURNING id` reads the id a sequence gave.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, not_impl_err, plan_err};
use datafusion::datasource::{TableProvider, provider_as_source, source_as_provider};
use datafusion::error::Result;
use datafusion::execution::context::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, LogicalPlanBuilder, WriteOp, col};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, PlanProperties,
};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{FromTable, SelectItem, Statement, TableFactor};
use futures::StreamExt;

use crate::dml::InsertSink;
use crate::names::ident;
use crate::table::{CollectionTable, single_partition};

/// Takes the RETURNING list off an INSERT, UPDATE or DELETE; `None` when it has none.
pub fn take_returning(statement: &mut DFStatement) -> Option<Vec<SelectItem>> {
    let DFStatement::Statement(s) = statement else {
        return None;
    };
    returning_of(s)?.take()
}

/// The RETURNING list of an INSERT, UPDATE or DELETE (`None` for other statements).
pub fn returning_of(statement: &mut Statement) -> Option<&mut Option<Vec<SelectItem>>> {
    match statement {
        Statement::Insert(i) => Some(&mut i.returning),
        Statement::Update(u) => Some(&mut u.returning),
        Statement::Delete(d) => Some(&mut d.returning),
        _ => None,
    }
}

/// The alias a write gives its table (`DELETE FROM items i`): what RETURNING then calls it,
/// as PostgreSQL does.
pub fn table_alias(statement: &DFStatement) -> Option<String> {
    let DFStatement::Statement(s) = statement else {
        return None;
    };
    let relation = match s.as_ref() {
        Statement::Insert(i) => return i.table_alias.as_ref().map(|a| ident(&a.alias)),
        Statement::Update(u) => &u.table.relation,
        Statement::Delete(d) => match &d.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => &t.first()?.relation,
        },
        _ => return None,
    };
    match relation {
        TableFactor::Table { alias, .. } => alias.as_ref().map(|a| ident(&a.name)),
        _ => None,
    }
}

/// Whether `statement` is a write that returns rows.
pub fn has_returning(statement: &DFStatement) -> bool {
    let DFStatement::Statement(s) = statement else {
        return false;
    };
    match s.as_ref() {
        Statement::Insert(i) => i.returning.is_some(),
        Statement::Update(u) => u.returning.is_some(),
        Statement::Delete(d) => d.returning.is_some(),
        _ => false,
    }
}

/// `dml` (DataFusion's plan of the write) returning `items` evaluated over the rows it wrote,
/// which are called `alias` when the statement gives the table one.
pub fn plan(
    state: &SessionState,
    dml: LogicalPlan,
    items: &[SelectItem],
    alias: Option<String>,
) -> Result<LogicalPlan> {
    let LogicalPlan::Dml(dml) = dml else {
        return plan_err!("RETURNING is only allowed on INSERT, UPDATE or DELETE");
    };
    if !matches!(
        dml.op,
        WriteOp::Insert(_) | WriteOp::Update | WriteOp::Delete
    ) {
        return plan_err!("RETURNING is only allowed on INSERT, UPDATE or DELETE");
    }
    let provider = source_as_provider(&dml.target)?;
    let Some(table) = provider.downcast_ref::<CollectionTable>() else {
        return not_impl_err!("RETURNING from \"{}\" is not supported", dml.table_name);
    };
    let table = table.returning();
    let name = alias.map_or_else(|| dml.table_name.clone(), TableReference::bare);
    let rows = DFSchema::try_from_qualified_schema(name, &TableProvider::schema(&table))?;
    let exprs = returning_exprs(state, &rows, items)?;
    let write = DmlStatement {
        target: provider_as_source(Arc::new(table)),
        output_schema: Arc::new(rows),
        ..dml
    };
    LogicalPlanBuilder::from(LogicalPlan::Dml(write))
        .project(exprs)?
        .build()
}

/// The RETURNING items as expressions over the written `rows`.
fn returning_exprs(
    state: &SessionState,
    rows: &DFSchema,
    items: &[SelectItem],
) -> Result<Vec<Expr>> {
    let mut exprs = Vec::new();
    for item in items {
        match item {
            SelectItem::UnnamedExpr(e) => {
                let expr = state.create_logical_expr(&e.to_string(), rows)?;
                let name = crate::names::item_name(item).name();
                exprs.push(match name {
                    Some(name) => expr.alias(name),
                    None => expr,
                });
            }
            SelectItem::ExprWithAlias { expr, .. } | SelectItem::ExprWithAliases { expr, .. } => {
                let e = state.create_logical_expr(&expr.to_string(), rows)?;
                let name = crate::names::item_name(item).name();
                exprs.push(e.alias(name.unwrap_or_else(|| crate::names::UNNAMED.into())));
            }
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                exprs.extend(rows.columns().into_iter().map(|c| col(c.clone())));
            }
        }
    }
    Ok(exprs)
}

/// INSERT … RETURNING's write: each batch of the input, made the table's (json checked,
/// uuids normalised), is written as its own command and passed on.
#[derive(Debug)]
pub struct InsertReturningExec {
    input: Arc<dyn ExecutionPlan>,
    sink: Arc<InsertSink>,
    properties: Arc<PlanProperties>,
}

impl InsertReturningExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, sink: InsertSink) -> Self {
        let properties = Arc::new(single_partition(sink.schema.clone()));
        InsertReturningExec {
            input,
            sink: Arc::new(sink),
            properties,
        }
    }

    fn schema_ref(&self) -> SchemaRef {
        self.sink.schema.clone()
    }
}

impl DisplayAs for InsertReturningExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "InsertReturningExec: mode={:?}", self.sink.mode)
    }
}

impl ExecutionPlan for InsertReturningExec {
    fn name(&self) -> &'static str {
        "InsertReturningExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return plan_err!("InsertReturningExec takes one input");
        }
        Ok(Arc::new(InsertReturningExec {
            input: children.remove(0),
            sink: self.sink.clone(),
            properties: self.properties.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        assert_eq!(partition, 0, "InsertReturningExec has one partition");
        let input = self.input.execute(0, context)?;
        let sink = self.sink.clone();
        let written = input.map(move |batch| sink.write_batch(batch?));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema_ref(),
            written,
        )))
    }
}
