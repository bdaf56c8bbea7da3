//! `vecraft-storage`: everything one shard replica keeps on its own disk.
//!
//! - [`log`]: the write-ahead log (later the shard's Raft log): CRC-framed records in segment
//!   files, group commit, torn-tail recovery, truncate/purge, and a small durable meta store.
//! - [`shard`]: the state machine: a growing in-memory segment, sealed segments on disk
//!   (payload as Arrow IPC, vectors and a flat HNSW graph mmap'd), tombstones, a manifest,
//!   snapshots and compaction. It applies [`command::Command`]s by log index, idempotently.
//! - [`index`]: vector storage, the HNSW graph (built and searched by our own code), the
//!   growing segment's live index (hnsw_rs), brute force; [`distance`]: the SIMD distance
//!   kernels shared with the planner.
//! - [`schema`], [`filter`], [`key`]: the collection's shape, payload predicates, primary keys.
//! - [`txn`]: a transaction's writes on one shard, applied at once or prepared and resolved.
//!
//! It knows nothing of SQL or Raft. `cluster/` drives it: appends commands to the log, applies
//! committed ones to the shard, and replays the log after `Shard::open` from the shard's
//! durable index.

pub mod command;
pub mod distance;
pub mod error;
pub mod filter;
pub mod fsutil;
pub mod fuzz;
pub mod index;
pub mod key;
pub mod log;
pub mod memory;
pub mod names;
pub mod schema;
pub mod segment;
pub mod shard;
pub mod synthetic;
pub mod txn;

pub use error::{Error, Result};
