//! `vecraft_shards`: the shard map, one row per shard of every collection, with what its Raft
//! group says of itself (its leader's view, in a cluster): the voting replicas and their
//! nodes, the leader, and how far it has applied. Served beside the catalog tables (an unqualified `vecraft_shards`
//! reads it).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;

use crate::catalog::Catalog;

pub const VECRAFT_SHARDS: &str = "vecraft_shards";

pub fn vecraft_shards(catalog: &Catalog) -> Result<RecordBatch> {
    let (mut names, mut shards, mut replicas, mut nodes, mut leaders, mut terms) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut states, mut applied, mut durable, mut rows) = (vec![], vec![], vec![], vec![]);
    for (name, collection) in catalog.all() {
        for (i, shard) in collection.shards().iter().enumerate() {
            names.push(name.clone());
            shards.push(i as i64);
            // A shard no replica of which answers still has its row.
            let Ok(status) = shard.status() else {
                replicas.push(None);
                nodes.push(None);
                leaders.push(None);
                terms.push(None);
                states.push("unavailable".to_string());
                applied.push(None);
                durable.push(None);
                rows.push(None);
                continue;
            };
            let ids: Vec<String> = status.nodes.iter().map(|n| n.to_string()).collect();
            replicas.push(Some(status.group.voters as i64));
            nodes.push(Some(ids.join(",")));
            leaders.push(status.group.leader.map(|id| id as i64));
            terms.push(Some(status.group.term as i64));
            states.push(status.group.state);
            applied.push(Some(status.group.applied_index as i64));
            durable.push(Some(status.durable_index as i64));
            rows.push(Some(status.rows as i64));
        }
    }
    let int = |name: &str, nullable| Field::new(name, DataType::Int64, nullable);
    let schema = Schema::new(vec![
        Field::new("collection", DataType::Utf8, false),
        int("shard", false),
        int("replicas", true),
        Field::new("nodes", DataType::Utf8, true),
        int("leader", true),
        int("term", true),
        Field::new("state", DataType::Utf8, false),
        int("applied_index", true),
        int("durable_index", true),
        int("rows", true),
    ]);
    let ints = |v: Vec<Option<i64>>| Arc::new(Int64Array::from(v)) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(Int64Array::from(shards)),
        ints(replicas),
        Arc::new(StringArray::from(nodes)),
        ints(leaders),
        ints(terms),
        Arc::new(StringArray::from(states)),
        ints(applied),
        ints(durable),
        ints(rows),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}
