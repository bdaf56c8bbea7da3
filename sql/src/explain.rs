//! EXPLAIN as PostgreSQL answers it: one text column named `QUERY PLAN`, one row per line of
//! the plan — what psql, pgAdmin, DBeaver and every tool that shows plans read. DataFusion
//! answers two columns (`plan_type`, `plan`) with a whole plan in each row; the plan that
//! runs (the physical plan, or the one with metrics for EXPLAIN ANALYZE) is what is shown,
//! and EXPLAIN VERBOSE shows each of DataFusion's plans under its name.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Result;
use datafusion::logical_expr::LogicalPlan;

/// PostgreSQL's name of EXPLAIN's one column.
pub const COLUMN: &str = "QUERY PLAN";

/// The plans DataFusion runs, by the `plan_type` it gives them.
const RUN_PLANS: [&str; 2] = ["physical_plan", "Plan with Metrics"];

/// `Some(verbose)` when `plan` is an EXPLAIN.
pub fn verbosity(plan: &LogicalPlan) -> Option<bool> {
    match plan {
        LogicalPlan::Explain(e) => Some(e.verbose),
        LogicalPlan::Analyze(a) => Some(a.verbose),
        _ => None,
    }
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(COLUMN, DataType::Utf8, false)]))
}

/// DataFusion's EXPLAIN result as PostgreSQL's: a row per line.
pub fn query_plan(batches: &[RecordBatch], verbose: bool) -> Result<RecordBatch> {
    let mut plans = Vec::new();
    for batch in batches {
        let (kinds, texts) = (text_column(batch, 0), text_column(batch, 1));
        for row in 0..batch.num_rows() {
            plans.push((kinds[row].clone(), texts[row].clone()));
        }
    }
    let runs = plans.iter().any(|(k, _)| RUN_PLANS.contains(&k.as_str()));
    let mut lines = Vec::new();
    for (kind, text) in &plans {
        if !verbose && runs && !RUN_PLANS.contains(&kind.as_str()) {
            continue;
        }
        if verbose {
            lines.push(format!("{kind}:"));
        }
        lines.extend(text.lines().map(|l| l.trim_end().to_string()));
    }
    Ok(RecordBatch::try_new(
        schema(),
        vec![Arc::new(StringArray::from(lines))],
    )?)
}

/// Column `index` of `batch` as strings, whichever string type it has.
fn text_column(batch: &RecordBatch, index: usize) -> Vec<String> {
    let Some(column) = batch.columns().get(index) else {
        return Vec::new();
    };
    let column = datafusion::arrow::compute::cast(column, &DataType::Utf8)
        .unwrap_or_else(|_| Arc::new(StringArray::from(vec![""; column.len()])));
    let strings = column.as_string::<i32>();
    strings
        .iter()
        .map(|s| s.unwrap_or_default().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(rows: &[(&str, &str)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("plan_type", DataType::Utf8, false),
            Field::new("plan", DataType::Utf8, false),
        ]));
        let kinds = StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>());
        let plans = StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>());
        RecordBatch::try_new(schema, vec![Arc::new(kinds), Arc::new(plans)]).unwrap()
    }

    fn lines(b: RecordBatch) -> Vec<String> {
        let c = b.column(0).as_string::<i32>();
        (0..c.len()).map(|i| c.value(i).to_string()).collect()
    }

    #[test]
    fn the_plan_that_runs_is_shown_a_line_a_row() {
        let explained = batch(&[
            ("logical_plan", "Limit\n  TableScan"),
            (
                "physical_plan",
                "GlobalLimitExec  \n  CollectionSearchExec\n",
            ),
        ]);
        let plan = query_plan(std::slice::from_ref(&explained), false).unwrap();
        assert_eq!(plan.schema().field(0).name(), "QUERY PLAN");
        assert_eq!(lines(plan), ["GlobalLimitExec", "  CollectionSearchExec"]);
        let analyzed = batch(&[("Plan with Metrics", "A, metrics=[x]")]);
        assert_eq!(
            lines(query_plan(&[analyzed], false).unwrap()),
            ["A, metrics=[x]"]
        );
        let verbose = lines(query_plan(&[explained], true).unwrap());
        assert_eq!(verbose[0], "logical_plan:");
        assert_eq!(verbose[3], "physical_plan:");
    }
}
