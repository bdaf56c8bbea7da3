//! Vector indexes: the contiguous vector store, the flat HNSW graph of a sealed segment (built
//! and searched by our own code), brute force, and the on-disk file that holds them.
//!
//! A segment asks an index for "the k best rows passing this predicate"; `VectorIndex` is that
//! one question, so another index can replace `HnswGraph` later. A graph may walk SQ8 codes
//! of the vectors instead of the floats (`sq8.rs`).

pub mod build;
mod connect;
mod draft;
pub mod file;
pub mod graph;
pub mod live;
pub mod search;
pub mod sq8;
pub mod vectors;
pub mod visited;

use crate::distance::Metric;
use graph::Scored;
use vectors::{Query, VectorsRef};

pub trait VectorIndex: Send + Sync {
    /// The `k` best rows passing `accept`, sorted by score, searching with beam width `ef`.
    fn search(
        &self,
        vectors: &VectorsRef,
        metric: Metric,
        query: &Query,
        k: usize,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<Scored>;

    /// Memory the index itself holds (vectors excluded).
    fn size_bytes(&self) -> usize;

    fn kind(&self) -> IndexKind;
}

/// Which index answered a segment's search (counted per shard, see `ShardStats::searches`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKind {
    /// A sealed segment's graph, built by our builder.
    Graph,
    /// A growing (or frozen) segment's hnsw_rs live index.
    Live,
}

#[cfg(test)]
mod tests;
