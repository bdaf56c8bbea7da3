//! Planner tests: SQL in, values out, through a DataFusion session with our planner installed.

mod dml;
mod functions;
mod knn;
mod transactions;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;

use crate::sql;

/// The first column of a query's rows, as integers.
async fn ids(ctx: &SessionContext, query: &str) -> Vec<i64> {
    let batches = sql(ctx, query).await.unwrap().collect().await.unwrap();
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}
