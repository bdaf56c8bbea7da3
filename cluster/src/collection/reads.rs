//! A collection's searches and scans: each asks every shard and puts their answers together.
//!
//! Each comes twice. The `_async` forms are what a statement awaits: shards on other nodes
//! are asked at once from the statement's own task, so a shard whose leader does not answer
//! holds up that statement alone, and dropping it (a cancel, `statement_timeout`) stops its
//! calls. Shards on this node answer in place, as the plain forms do: their work is this
//! node's CPU and page cache, not a wait on anyone. The plain forms are for callers outside
//! async code; a wait they make on another node frees its runtime thread first
//! (`raft::run`).

use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use vecraft_storage::filter::Filter;
use vecraft_storage::shard::SearchRequest;
use vecraft_storage::{Error, Result};

use super::{Collection, ShardTrace};
use crate::read::Consistency;
use crate::route::merge_nearest;
use crate::shard_handle::ShardHandle;

impl Collection {
    /// Whether the shards are on other nodes (a cluster's router): their `_async` methods
    /// then wait on the network with no thread held.
    pub(super) fn is_remote(&self) -> bool {
        self.shards[0].is_remote()
    }

    /// The `k` nearest rows over every shard, closest first (`projection` columns, then
    /// `_distance`). The shards are asked at once.
    pub fn search(&self, request: &SearchRequest, read: Consistency) -> Result<RecordBatch> {
        self.search_traced(request, read).map(|(batch, _)| batch)
    }

    /// `search`, and what each shard answered and how long it took (`EXPLAIN ANALYZE`).
    pub fn search_traced(
        &self,
        request: &SearchRequest,
        read: Consistency,
    ) -> Result<(RecordBatch, Vec<ShardTrace>)> {
        let timed = |s: &Arc<dyn ShardHandle>| {
            let started = Instant::now();
            s.search(request, read).map(|b| {
                let trace = ShardTrace::of(std::slice::from_ref(&b), started);
                (b, trace)
            })
        };
        let answers: Vec<(RecordBatch, ShardTrace)> = match self.shards.as_slice() {
            [only] => vec![timed(only)?],
            shards => std::thread::scope(|scope| {
                let asked: Vec<_> = shards
                    .iter()
                    .map(|s| scope.spawn(move || timed(s)))
                    .collect();
                asked
                    .into_iter()
                    .map(|a| a.join().unwrap_or_else(|_| Err(Error::Closed)))
                    .collect::<Result<Vec<_>>>()
            })?,
        };
        nearest_of(answers, request.k)
    }

    /// `search_traced`, awaited: shards on other nodes are asked at once from this task.
    pub async fn search_traced_async(
        &self,
        request: &SearchRequest,
        read: Consistency,
    ) -> Result<(RecordBatch, Vec<ShardTrace>)> {
        if !self.is_remote() {
            return self.search_traced(request, read);
        }
        let asked = self.shards.iter().map(|s| async move {
            let started = Instant::now();
            let batch = s.search_async(request, read).await?;
            let trace = ShardTrace::of(std::slice::from_ref(&batch), started);
            Ok::<_, Error>((batch, trace))
        });
        // The first failure drops the other calls.
        let answers = futures::future::try_join_all(asked).await?;
        nearest_of(answers, request.k)
    }

    /// Live rows passing `filter`, shard after shard.
    pub fn scan(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        read: Consistency,
    ) -> Result<Vec<RecordBatch>> {
        self.scan_traced(projection, filter, read)
            .map(|(batches, _)| batches)
    }

    /// `scan`, and what each shard answered and how long it took (`EXPLAIN ANALYZE`).
    pub fn scan_traced(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        read: Consistency,
    ) -> Result<(Vec<RecordBatch>, Vec<ShardTrace>)> {
        let mut batches = Vec::new();
        let mut traces = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            let started = Instant::now();
            let part = shard.scan(projection, filter, read)?;
            traces.push(ShardTrace::of(&part, started));
            batches.extend(part);
        }
        Ok((batches, traces))
    }

    /// `scan_traced`, awaited: shards on other nodes are asked at once, and their rows come
    /// back in shard order, as `scan_traced` gives them.
    pub async fn scan_traced_async(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        read: Consistency,
    ) -> Result<(Vec<RecordBatch>, Vec<ShardTrace>)> {
        if !self.is_remote() {
            return self.scan_traced(projection, filter, read);
        }
        let asked = self.shards.iter().map(|s| async move {
            let started = Instant::now();
            let part = s.scan_async(projection, filter, read).await?;
            let trace = ShardTrace::of(&part, started);
            Ok::<_, Error>((part, trace))
        });
        let answers = futures::future::try_join_all(asked).await?;
        let mut batches = Vec::new();
        let mut traces = Vec::with_capacity(answers.len());
        for (part, trace) in answers {
            batches.extend(part);
            traces.push(trace);
        }
        Ok((batches, traces))
    }
}

/// The `k` nearest of the shards' answers (each closest first), with the shards' traces.
fn nearest_of(
    answers: Vec<(RecordBatch, ShardTrace)>,
    k: usize,
) -> Result<(RecordBatch, Vec<ShardTrace>)> {
    let (batches, traces): (Vec<_>, Vec<_>) = answers.into_iter().unzip();
    let merged = match <[RecordBatch; 1]>::try_from(batches) {
        Ok([only]) => only,
        Err(batches) => merge_nearest(batches, k)?,
    };
    Ok((merged, traces))
}
