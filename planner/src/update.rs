//! `UPDATE table SET col = expr, … [WHERE …]` on a collection: read the matching rows whole,
//! compute the new values, and write them back as one upsert per batch (durable before the
//! count is returned). The primary key cannot be assigned: a row is its key.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DFSchema, not_impl_err, plan_err};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use vecraft_storage::command::Command;
use vecraft_storage::filter::Filter;

use crate::collection::{CollectionSource, Consistency};
use crate::dml::{Residual, count_batch};
use crate::filters::pushable_filter;
use crate::table::{leaf_plan_methods, single_partition};

#[derive(Debug)]
pub struct CollectionUpdateExec {
    source: Arc<dyn CollectionSource>,
    /// The table as SQL sees it (no hidden row id): what the expressions read.
    visible: SchemaRef,
    assignments: Vec<(usize, Arc<dyn PhysicalExpr>)>,
    /// Conditions storage evaluates while scanning.
    pushed: Option<Filter>,
    /// Conditions evaluated here, on the rows storage returned.
    residual: Residual,
    /// Outputs the updated rows (`visible`'s columns, new values) instead of their count.
    returning: bool,
    properties: Arc<PlanProperties>,
}

impl CollectionUpdateExec {
    pub fn try_new(
        source: Arc<dyn CollectionSource>,
        visible: SchemaRef,
        assignments: &[(String, Expr)],
        filters: &[Expr],
        props: &datafusion::execution::context::ExecutionProps,
        returning: bool,
    ) -> Result<Self> {
        let collection = source.schema();
        let key = &collection.primary_key().name;
        let df_schema = DFSchema::try_from(visible.clone())?;
        let planning = PhysicalPlanningContext::default();
        let mut physical = Vec::with_capacity(assignments.len());
        for (name, expr) in assignments {
            if name == key {
                return not_impl_err!("UPDATE of the primary key \"{name}\" is not supported");
            }
            let Ok(index) = visible.index_of(name) else {
                return plan_err!("column \"{name}\" of the table does not exist");
            };
            physical.push((
                index,
                create_physical_expr(expr, &df_schema, props, &planning)?,
            ));
        }
        let mut pushed = Vec::new();
        let mut residual = Vec::new();
        for f in filters {
            match pushable_filter(f, &collection) {
                Some(p) => pushed.push(p),
                None => residual.push(create_physical_expr(f, &df_schema, props, &planning)?),
            }
        }
        let pushed = (!pushed.is_empty()).then_some(Filter::And(pushed));
        let residual = Residual {
            visible: visible.clone(),
            conditions: residual,
        };
        let output = match returning {
            true => visible.clone(),
            false => count_batch(0)?.schema(),
        };
        let properties = Arc::new(single_partition(output));
        Ok(CollectionUpdateExec {
            source,
            visible,
            assignments: physical,
            pushed,
            residual,
            returning,
            properties,
        })
    }

    /// Updates one batch of whole rows (every stored column, the key included); returns the
    /// updated rows' visible columns, new values.
    fn update(&self, rows: &RecordBatch) -> Result<RecordBatch> {
        let visible = self.residual.visible_of(rows)?;
        let keep = self.residual.mask(&visible)?;
        let visible = filter_record_batch(&visible, &keep)?;
        let rows = filter_record_batch(rows, &keep)?;
        if rows.num_rows() == 0 {
            return Ok(visible);
        }
        let mut columns = rows.columns().to_vec();
        let mut new_visible = visible.columns().to_vec();
        for (index, expr) in &self.assignments {
            let field = self.visible.field(*index);
            let value = expr.evaluate(&visible)?.into_array(visible.num_rows())?;
            let value = if value.data_type() == field.data_type() {
                value
            } else {
                cast(&value, field.data_type())?
            };
            let value = crate::text_types::conform_column(&value, field)?;
            let position = rows.schema().index_of(field.name())?;
            columns[position] = value.clone();
            new_visible[*index] = value;
        }
        let batch = RecordBatch::try_new(rows.schema(), columns)?;
        self.source.write(&Command::Upsert(batch))?;
        Ok(RecordBatch::try_new(self.visible.clone(), new_visible)?)
    }
}

impl DisplayAs for CollectionUpdateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CollectionUpdateExec")?;
        if let Some(filter) = &self.pushed {
            write!(f, ": filter={filter:?}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for CollectionUpdateExec {
    fn name(&self) -> &'static str {
        "CollectionUpdateExec"
    }

    leaf_plan_methods!();

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        // What a write changes is read as of now, from the leaders.
        let rows = self
            .source
            .scan(None, self.pushed.as_ref(), Consistency::Strong)?;
        let mut updated = Vec::with_capacity(rows.len());
        for rows in rows {
            updated.push(self.update(&rows)?);
        }
        let batches = match self.returning {
            true => updated,
            false => vec![count_batch(
                updated.iter().map(|b| b.num_rows() as u64).sum(),
            )?],
        };
        let schema = self.properties.eq_properties.schema().clone();
        Ok(Box::pin(MemoryStream::try_new(batches, schema, None)?))
    }
}
