//! `vecraft_shards`: the shard map, one row per shard of every collection, with what its Raft
//! group says of itself (its leader's view, in a cluster): the voting replicas and their
//! nodes, the leader, and how far it has applied. `vecraft_replicas`: one row per replica the
//! placement names, as that replica reports itself (a replica catching up, or on a node that
//! does not answer, shows here). `vecraft_nodes`: the nodes that joined the cluster. Served
//! beside the catalog tables (an unqualified `vecraft_shards` reads it), as is
//! `vecraft_backup_progress` (`progress.rs`) and `vecraft_segments` (`segments.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::progress::VECRAFT_BACKUP_PROGRESS;
use super::segments::VECRAFT_SEGMENTS;
use crate::catalog::Catalog;

pub const VECRAFT_SHARDS: &str = "vecraft_shards";
pub const VECRAFT_REPLICAS: &str = "vecraft_replicas";
pub const VECRAFT_NODES: &str = "vecraft_nodes";

/// The tables that change without DDL: read again at every execution, never kept in a plan.
pub const LIVE_TABLES: &[&str] = &[
    VECRAFT_SHARDS,
    VECRAFT_REPLICAS,
    VECRAFT_NODES,
    VECRAFT_BACKUP_PROGRESS,
    VECRAFT_SEGMENTS,
];

/// A live table: its rows are asked for when a plan scans it, not when the statement is
/// planned (a kept logical plan holds the provider, not the rows).
pub struct LiveTable {
    name: &'static str,
    catalog: Arc<Catalog>,
    schema: SchemaRef,
}

impl std::fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTable")
            .field("name", &self.name)
            .finish()
    }
}

impl LiveTable {
    /// `None` when `name` is not a live table.
    pub fn new(name: &str, catalog: Arc<Catalog>) -> Option<LiveTable> {
        let name = LIVE_TABLES.iter().find(|t| **t == name)?;
        let schema = match *name {
            VECRAFT_SHARDS => shards_schema(),
            VECRAFT_REPLICAS => replicas_schema(),
            VECRAFT_BACKUP_PROGRESS => super::progress::schema(),
            VECRAFT_SEGMENTS => super::segments::schema(),
            _ => nodes_schema(),
        };
        Some(LiveTable {
            name,
            catalog,
            schema,
        })
    }
}

fn fill(name: &str, catalog: &Catalog) -> Result<RecordBatch> {
    match name {
        VECRAFT_SHARDS => vecraft_shards(catalog),
        VECRAFT_REPLICAS => vecraft_replicas(catalog),
        VECRAFT_BACKUP_PROGRESS => super::progress::rows(),
        VECRAFT_SEGMENTS => super::segments::rows(catalog),
        _ => vecraft_nodes(catalog),
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let catalog = Arc::clone(&self.catalog);
        let name = self.name;
        // Asking every replica may wait on the network: off the async workers.
        let batch = tokio::task::spawn_blocking(move || fill(name, &catalog))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        let table = MemTable::try_new(Arc::clone(&self.schema), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}

pub fn vecraft_shards(catalog: &Catalog) -> Result<RecordBatch> {
    let (mut names, mut shards, mut replicas, mut nodes, mut leaders, mut terms) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut states, mut applied, mut durable, mut rows) = (vec![], vec![], vec![], vec![]);
    for (name, collection) in catalog.all() {
        for (i, shard) in collection.shards().iter().enumerate() {
            names.push(crate::idents::listed(&name));
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
            let ids: Vec<String> = status
                .group
                .voter_ids
                .iter()
                .map(|n| n.to_string())
                .collect();
            replicas.push(Some(ids.len() as i64));
            nodes.push(Some(ids.join(",")));
            leaders.push(status.group.leader.map(|id| id as i64));
            terms.push(Some(status.group.term as i64));
            states.push(status.group.state);
            applied.push(Some(status.group.applied_index as i64));
            durable.push(Some(status.durable_index as i64));
            rows.push(Some(status.rows as i64));
        }
    }
    let schema = shards_schema();
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
    Ok(RecordBatch::try_new(schema, columns)?)
}

pub fn vecraft_replicas(catalog: &Catalog) -> Result<RecordBatch> {
    let (mut names, mut shards, mut nodes, mut states) = (vec![], vec![], vec![], vec![]);
    let (mut leaders, mut terms, mut applied, mut snapshots, mut rows) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (name, collection) in catalog.all() {
        for (i, shard) in collection.shards().iter().enumerate() {
            for (node, status) in shard.replicas() {
                names.push(crate::idents::listed(&name));
                shards.push(i as i64);
                nodes.push(node as i64);
                let Ok(status) = status else {
                    states.push("unavailable".to_string());
                    leaders.push(None);
                    terms.push(None);
                    applied.push(None);
                    snapshots.push(None);
                    rows.push(None);
                    continue;
                };
                states.push(status.group.state);
                leaders.push(status.group.leader.map(|id| id as i64));
                terms.push(Some(status.group.term as i64));
                applied.push(Some(status.group.applied_index as i64));
                snapshots.push(status.group.snapshot_index.map(|i| i as i64));
                rows.push(Some(status.rows as i64));
            }
        }
    }
    let schema = replicas_schema();
    let ints = |v: Vec<Option<i64>>| Arc::new(Int64Array::from(v)) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(Int64Array::from(shards)),
        Arc::new(Int64Array::from(nodes)),
        Arc::new(StringArray::from(states)),
        ints(leaders),
        ints(terms),
        ints(applied),
        ints(snapshots),
        ints(rows),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

pub fn vecraft_nodes(catalog: &Catalog) -> Result<RecordBatch> {
    let nodes = catalog.nodes();
    let schema = nodes_schema();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            nodes.iter().map(|n| n.id as i64),
        )),
        Arc::new(StringArray::from_iter(nodes.iter().map(|n| n.rpc.clone()))),
        Arc::new(StringArray::from_iter(nodes.iter().map(|n| n.sql.clone()))),
        Arc::new(BooleanArray::from_iter(
            nodes.iter().map(|n| Some(n.storage)),
        )),
        Arc::new(BooleanArray::from_iter(nodes.iter().map(|n| Some(n.meta)))),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn shards_schema() -> SchemaRef {
    let int = |name: &str, nullable| Field::new(name, DataType::Int64, nullable);
    Arc::new(Schema::new(vec![
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
    ]))
}

fn replicas_schema() -> SchemaRef {
    let int = |name: &str, nullable| Field::new(name, DataType::Int64, nullable);
    Arc::new(Schema::new(vec![
        Field::new("collection", DataType::Utf8, false),
        int("shard", false),
        int("node", false),
        Field::new("state", DataType::Utf8, false),
        int("leader", true),
        int("term", true),
        int("applied_index", true),
        int("snapshot_index", true),
        int("rows", true),
    ]))
}

fn nodes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("node", DataType::Int64, false),
        Field::new("rpc_address", DataType::Utf8, true),
        Field::new("sql_address", DataType::Utf8, true),
        Field::new("storage", DataType::Boolean, false),
        Field::new("meta", DataType::Boolean, false),
    ]))
}
