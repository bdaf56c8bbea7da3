//! A kept plan that is only a search under a choice of its columns runs without DataFusion's
//! per-execution work.
//!
//! `SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 10` is the statement a vector search
//! client repeats, and its plan is projections of plain columns over the collection's search.
//! Run as DataFusion runs a plan, each execution copies the plan's nodes (to reset their
//! state), builds a stream per node and registers each node's metrics, which together cost
//! a good part of a small search. Here the search node answers and its columns are picked.
//! The node and its answer are the same either way; any other plan runs as DataFusion runs it.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::projection::ProjectionExec;

use crate::table::CollectionScanExec;

/// A plan of the shape "columns of a collection search", ready to run directly.
#[derive(Debug)]
pub struct DirectSearch {
    /// The search node (a [`CollectionScanExec`] with a request), as the plan holds it.
    search: Arc<dyn ExecutionPlan>,
    /// The search output's column of each output column.
    columns: Vec<usize>,
    /// The plan's output schema.
    schema: SchemaRef,
}

impl DirectSearch {
    /// `plan` as a direct search, when it has that shape.
    pub fn of(plan: &Arc<dyn ExecutionPlan>) -> Option<DirectSearch> {
        // Down through projections of plain columns (the planner may stack two) and
        // cooperative wrappers, composing which search column each output column is.
        let mut columns: Option<Vec<usize>> = None;
        let mut node = plan;
        loop {
            if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
                let inner = projection
                    .expr()
                    .iter()
                    .map(|e| e.expr.downcast_ref::<Column>().map(Column::index))
                    .collect::<Option<Vec<usize>>>()?;
                columns = Some(match columns {
                    None => inner,
                    Some(outer) => outer
                        .iter()
                        .map(|&c| inner.get(c).copied())
                        .collect::<Option<Vec<usize>>>()?,
                });
                node = projection.input();
            } else if let Some(coop) = node.downcast_ref::<CooperativeExec>() {
                node = coop.input();
            } else {
                break;
            }
        }
        let search = node.downcast_ref::<CollectionScanExec>()?;
        if search.search.is_none() || search.delete {
            return None;
        }
        let width = node.schema().fields().len();
        let columns = columns.unwrap_or_else(|| (0..width).collect());
        if columns.iter().any(|&c| c >= width) {
            return None;
        }
        Some(DirectSearch {
            search: node.clone(),
            columns,
            schema: plan.schema(),
        })
    }

    /// Runs the search and picks the plan's columns from its answer.
    pub async fn run(&self, context: &TaskContext) -> Result<Vec<RecordBatch>> {
        let search = self
            .search
            .downcast_ref::<CollectionScanExec>()
            .expect("`of` kept a collection search");
        let batches = search.batches(context).await?;
        batches
            .into_iter()
            .map(|batch| {
                let columns = self.columns.iter().map(|&c| batch.column(c).clone());
                Ok(RecordBatch::try_new(
                    self.schema.clone(),
                    columns.collect(),
                )?)
            })
            .collect()
    }
}
