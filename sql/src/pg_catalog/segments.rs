//! `vecraft_segments`: one row per segment of every shard replica this node keeps, with its
//! rows, dead (deleted, not yet compacted) rows, bytes on disk and state — where the
//! compactor's work shows: merges make fewer segments, rewrites take dead rows to 0. Shards
//! kept on other nodes of a cluster are not listed yet.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::Result;

use crate::catalog::Catalog;

pub const VECRAFT_SEGMENTS: &str = "vecraft_segments";

pub fn schema() -> SchemaRef {
    let int = |name: &str| Field::new(name, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        Field::new("collection", DataType::Utf8, false),
        int("shard"),
        int("segment"),
        Field::new("state", DataType::Utf8, false),
        int("rows"),
        int("dead_rows"),
        int("size_bytes"),
    ]))
}

pub fn rows(catalog: &Catalog) -> Result<RecordBatch> {
    let (mut names, mut shards, mut ids, mut states) = (vec![], vec![], vec![], vec![]);
    let (mut rows, mut dead, mut sizes) = (vec![], vec![], vec![]);
    for (name, collection) in catalog.all() {
        for (i, shard) in collection.shards().iter().enumerate() {
            for segment in shard.segments().unwrap_or_default() {
                names.push(crate::idents::listed(&name));
                shards.push(i as i64);
                ids.push(segment.id as i64);
                states.push(segment.state);
                rows.push(segment.rows as i64);
                dead.push(segment.dead_rows as i64);
                sizes.push(segment.size_bytes as i64);
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(Int64Array::from(shards)),
        Arc::new(Int64Array::from(ids)),
        Arc::new(StringArray::from(states)),
        Arc::new(Int64Array::from(rows)),
        Arc::new(Int64Array::from(dead)),
        Arc::new(Int64Array::from(sizes)),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
