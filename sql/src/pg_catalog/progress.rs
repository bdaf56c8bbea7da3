//! `vecraft_backup_progress`: one row per backup or restore running on this node, with how far
//! it has got (as PostgreSQL's `pg_stat_progress_*` views): what `vecraft backup` and
//! `vecraft restore` poll to draw their progress bars, and what psql can watch.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::Result;
use vecraft_cluster::backup::progress::Progress;

pub const VECRAFT_BACKUP_PROGRESS: &str = "vecraft_backup_progress";

pub fn schema() -> SchemaRef {
    let int = |name: &str, nullable| Field::new(name, DataType::Int64, nullable);
    Arc::new(Schema::new(vec![
        Field::new("operation", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, false),
        Field::new("target", DataType::Utf8, false),
        int("elapsed_ms", false),
        int("total_bytes", true),
        int("done_bytes", false),
        int("total_shards", false),
        int("done_shards", false),
    ]))
}

pub fn rows() -> Result<RecordBatch> {
    let running = Progress::running();
    let text = |f: &dyn Fn(&vecraft_cluster::backup::progress::ProgressRow) -> String| {
        Arc::new(StringArray::from_iter_values(running.iter().map(f))) as ArrayRef
    };
    let int = |f: &dyn Fn(&vecraft_cluster::backup::progress::ProgressRow) -> Option<i64>| {
        Arc::new(Int64Array::from_iter(running.iter().map(f))) as ArrayRef
    };
    let columns = vec![
        text(&|r| r.operation.to_string()),
        text(&|r| r.url.clone()),
        text(&|r| r.target.clone()),
        int(&|r| Some(r.elapsed.as_millis() as i64)),
        int(&|r| r.total_bytes.map(|b| b as i64)),
        int(&|r| Some(r.done_bytes as i64)),
        int(&|r| Some(r.total_shards as i64)),
        int(&|r| Some(r.done_shards as i64)),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
