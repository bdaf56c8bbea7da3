//! `vecraft_shards`: the shard map, one row per shard of every collection, with what its Raft
//! group says of itself. Served beside the catalog tables (an unqualified `vecraft_shards`
//! reads it).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;

use crate::catalog::Catalog;

pub const VECRAFT_SHARDS: &str = "vecraft_shards";

pub fn vecraft_shards(catalog: &Catalog) -> Result<RecordBatch> {
    let (mut names, mut shards, mut replicas, mut leaders, mut terms) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut states, mut applied, mut durable, mut rows) = (vec![], vec![], vec![], vec![]);
    for (name, collection) in catalog.all() {
        for (i, shard) in collection.shards().iter().enumerate() {
            let status = shard.status();
            let stats = shard.shard().stats();
            names.push(name.clone());
            shards.push(i as i64);
            replicas.push(status.voters as i64);
            leaders.push(status.leader.map(|id| id as i64));
            terms.push(status.term as i64);
            states.push(status.state);
            applied.push(status.applied_index as i64);
            durable.push(stats.durable_index as i64);
            rows.push(stats.live_rows as i64);
        }
    }
    let int = |name: &str, nullable| Field::new(name, DataType::Int64, nullable);
    let schema = Schema::new(vec![
        Field::new("collection", DataType::Utf8, false),
        int("shard", false),
        int("replicas", false),
        int("leader", true),
        int("term", false),
        Field::new("state", DataType::Utf8, false),
        int("applied_index", false),
        int("durable_index", false),
        int("rows", false),
    ]);
    let ints = |v: Vec<i64>| Arc::new(Int64Array::from(v)) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        ints(shards),
        ints(replicas),
        Arc::new(Int64Array::from(leaders)),
        ints(terms),
        Arc::new(StringArray::from(states)),
        ints(applied),
        ints(durable),
        ints(rows),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}
