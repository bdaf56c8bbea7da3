//! What a collection table reads from: the narrow face the planner needs of the data layer.
//!
//! A bare storage `Shard` and the durable single-node `LocalCollection` implement it here;
//! the cluster's router will too, so the planner never knows where the rows are.

use std::fmt::Debug;

use datafusion::arrow::array::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use futures::future::BoxFuture;
use vecraft_storage::command::Command;
use vecraft_storage::filter::Filter;
use vecraft_storage::schema::CollectionSchema;
use vecraft_storage::shard::{SearchRequest, Shard};

pub use vecraft_cluster::collection::ShardTrace;
pub use vecraft_cluster::read::Consistency;

pub use vecraft_cluster::shard_handle::blocking;

pub trait CollectionSource: Debug + Send + Sync {
    fn schema(&self) -> CollectionSchema;

    /// Live rows passing `filter`, with the `projection` columns (all when `None`), as fresh
    /// as `read` asks.
    fn scan(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        read: Consistency,
    ) -> Result<Vec<RecordBatch>>;

    /// The `k` nearest rows, closest first: `projection` columns, then `_distance`.
    fn search(&self, request: &SearchRequest, read: Consistency) -> Result<RecordBatch>;

    /// `search`, with what each shard answered and how long it took (`EXPLAIN ANALYZE`).
    fn search_traced(
        &self,
        request: &SearchRequest,
        read: Consistency,
    ) -> Result<(RecordBatch, Vec<ShardTrace>)> {
        Ok((self.search(request, read)?, Vec::new()))
    }

    /// `scan`, with what each shard answered and how long it took (`EXPLAIN ANALYZE`).
    fn scan_traced(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        read: Consistency,
    ) -> Result<(Vec<RecordBatch>, Vec<ShardTrace>)> {
        Ok((self.scan(projection, filter, read)?, Vec::new()))
    }

    /// `search_traced`, awaited: a source whose shards are on other nodes waits on them with
    /// no thread held; by default `search_traced`, in place.
    fn search_traced_async<'a>(
        &'a self,
        request: &'a SearchRequest,
        read: Consistency,
    ) -> BoxFuture<'a, Result<(RecordBatch, Vec<ShardTrace>)>> {
        Box::pin(async move { self.search_traced(request, read) })
    }

    /// `scan_traced`, awaited; by default `scan_traced`, in place.
    fn scan_traced_async<'a>(
        &'a self,
        projection: Option<&'a [String]>,
        filter: Option<&'a Filter>,
        read: Consistency,
    ) -> BoxFuture<'a, Result<(Vec<RecordBatch>, Vec<ShardTrace>)>> {
        Box::pin(async move { self.scan_traced(projection, filter, read) })
    }

    /// How many shards a search or scan fans out to.
    fn shards(&self) -> usize {
        1
    }

    /// Makes `command` durable and applies it; returns the rows it wrote or deleted.
    fn write(&self, _command: &Command) -> Result<u64> {
        datafusion::common::not_impl_err!("this collection is read-only")
    }

    /// `write`, awaited: a durable collection of one shard answers the statement's task with
    /// no thread waiting on the fsync; by default `write` runs where it may block.
    fn write_async<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { blocking(|| self.write(command)) })
    }

    /// Refuses the deletion of rows `keys` before any of a statement's rows go, when a
    /// constraint forbids it (`foreign_keys.rs`).
    fn check_delete(&self, _keys: &[vecraft_storage::key::Key]) -> Result<()> {
        Ok(())
    }
}

/// Storage errors keep their type inside DataFusion's, so the gateway can map them.
pub fn storage_error(e: vecraft_storage::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A single shard serving a whole collection (the embedded, one-shard case).
pub struct ShardSource(pub Shard);

impl Debug for ShardSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShardSource")
    }
}

impl CollectionSource for ShardSource {
    fn schema(&self) -> CollectionSchema {
        (*self.0.schema()).clone()
    }

    fn scan(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        _read: Consistency,
    ) -> Result<Vec<RecordBatch>> {
        self.0.scan(projection, filter).map_err(storage_error)
    }

    fn search(&self, request: &SearchRequest, _read: Consistency) -> Result<RecordBatch> {
        self.0.search(request).map_err(storage_error)
    }
}

/// A durable collection: its shards, each behind its Raft group, on this node or on a
/// cluster's storage nodes. (Inherent methods of the same names do the work.)
impl CollectionSource for vecraft_cluster::collection::Collection {
    fn schema(&self) -> CollectionSchema {
        (*self.schema()).clone()
    }

    fn shards(&self) -> usize {
        self.shards().len()
    }

    fn scan(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        read: Consistency,
    ) -> Result<Vec<RecordBatch>> {
        self.scan(projection, filter, read).map_err(storage_error)
    }

    fn search(&self, request: &SearchRequest, read: Consistency) -> Result<RecordBatch> {
        self.search(request, read).map_err(storage_error)
    }

    fn search_traced(
        &self,
        request: &SearchRequest,
        read: Consistency,
    ) -> Result<(RecordBatch, Vec<ShardTrace>)> {
        self.search_traced(request, read).map_err(storage_error)
    }

    fn scan_traced(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        read: Consistency,
    ) -> Result<(Vec<RecordBatch>, Vec<ShardTrace>)> {
        self.scan_traced(projection, filter, read)
            .map_err(storage_error)
    }

    fn search_traced_async<'a>(
        &'a self,
        request: &'a SearchRequest,
        read: Consistency,
    ) -> BoxFuture<'a, Result<(RecordBatch, Vec<ShardTrace>)>> {
        Box::pin(async move {
            self.search_traced_async(request, read)
                .await
                .map_err(storage_error)
        })
    }

    fn scan_traced_async<'a>(
        &'a self,
        projection: Option<&'a [String]>,
        filter: Option<&'a Filter>,
        read: Consistency,
    ) -> BoxFuture<'a, Result<(Vec<RecordBatch>, Vec<ShardTrace>)>> {
        Box::pin(async move {
            self.scan_traced_async(projection, filter, read)
                .await
                .map_err(storage_error)
        })
    }

    fn write(&self, command: &Command) -> Result<u64> {
        let applied = self.write(command).map_err(storage_error)?;
        Ok(applied.rows_written + applied.rows_deleted)
    }

    fn write_async<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let applied = self.write_async(command).await.map_err(storage_error)?;
            Ok(applied.rows_written + applied.rows_deleted)
        })
    }
}

/// The search result without its `_distance` column (always the last one), so it has the
/// same columns as a scan.
pub fn without_distance(batch: RecordBatch) -> Result<RecordBatch> {
    let keep: Vec<usize> = (0..batch.num_columns().saturating_sub(1)).collect();
    Ok(batch.project(&keep)?)
}
