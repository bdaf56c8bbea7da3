//! Segments: the units a shard's rows live in.
//!
//! A shard has one growing `MemSegment` (appended to by writes), possibly some frozen ones
//! waiting to be sealed, and immutable `SealedSegment`s on disk (payload as Arrow IPC,
//! vectors and HNSW graph mmap'd).
//!
//! Which index serves which segment, and why:
//! - **sealed**: our own HNSW graph (`index/build.rs`), built once over all the segment's rows
//!   on the flat layout it is searched from: the fastest build and the best graph, but it
//!   needs every row up front. From 64 dimensions up the walk scores SQ8 codes of the
//!   vectors (`index/sq8.rs`, a quarter of the bytes to fetch) and re-scores the rows it
//!   keeps exactly;
//! - **growing and frozen**: an hnsw_rs graph (`index/live.rs`), fed in the background as rows
//!   arrive, because hnsw_rs takes inserts while it is searched; the rows it has not taken
//!   yet are scanned. Inner-product columns have no live index (hnsw_rs needs distances
//!   that are never negative) and are scanned until they seal;
//! - an exact scan wherever it is cheaper than a walk: small segments, filters that pass few
//!   rows, `exact` requests.
//!
//! Rows are numbered from 0 within a segment and never move; deletes are tombstones kept by
//! the shard, not by the segment. Each row keeps the log index of the command that wrote it
//! (its version, `Segment::versions`): the same on every replica of a shard whatever they
//! sealed or merged when, so a transaction's commit check decides alike everywhere. Search and
//! scan read any segment through the `Segment` trait.

pub mod memory;
pub mod rows;
pub mod sealed;

use arrow::array::RecordBatch;
use roaring::RoaringBitmap;

use crate::distance::Metric;
use crate::index::VectorIndex;
use crate::index::vectors::VectorsRef;

pub trait Segment: Send + Sync {
    fn num_rows(&self) -> u32;
    /// The payload (every non-vector column, primary key included) as batches whose rows are
    /// the segment's rows in order.
    fn payload(&self) -> &[RecordBatch];
    /// The `i`-th vector column (in `CollectionSchema::vector_columns` order).
    fn vectors(&self, i: usize) -> VectorsRef<'_>;
    /// Rows whose `i`-th vector is NULL.
    fn null_vectors(&self, i: usize) -> &RoaringBitmap;
    /// Each row's version: the log index of the command that wrote it, or 0 for a row
    /// restored from a backup (the log it was written in is gone) or sealed by a build that
    /// kept no versions.
    fn versions(&self) -> &[u64];
    /// The `i`-th vector column's index and the metric it was built for, if it has one.
    fn index(&self, i: usize) -> Option<(Metric, &dyn VectorIndex)>;
}
