//! One shard replica's state machine: the segments, the key map and the applied index.
//!
//! Writes arrive as `(log index, Command)` and are applied in index order, at most once: an
//! index at or below the applied index is skipped, so the log can be replayed after a crash
//! (or by Raft) without double effects. Upserts append to the growing segment and tombstone
//! the previous version of their key; deletes only tombstone.
//!
//! Durability comes from the log, not from here: the shard persists *sealed* segments and
//! tombstones, and its manifest records `durable_index`, the log index up to which everything
//! is on disk without the log. On open the shard comes back at `durable_index` and the caller
//! replays the log after it. Log entries at or below `durable_index` may be purged.
//!
//! Concurrency: one `RwLock` over the state. Searches and scans hold the read lock for their
//! whole run, so they see one consistent point in the log; applies take the write lock
//! briefly. Sealing, compaction, snapshots and installs serialise on `maintenance` and do
//! their slow work (building graphs, writing files) outside the state lock.

mod commit;
#[cfg(test)]
mod commit_tests;
mod compact;
#[cfg(test)]
mod live_tests;
mod maintain;
#[cfg(test)]
mod maintain_tests;
mod manifest;
mod read;
#[cfg(test)]
mod scan_tests;
mod segments;
mod snapshot;
mod state;
#[cfg(test)]
mod tests;
mod txns;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use parking_lot::{Mutex, RwLock};

pub use read::{DISTANCE_COLUMN, SearchRequest, VERSION_COLUMN};
pub use segments::SegmentInfo;
pub use snapshot::{SnapshotContents, SnapshotInfo, SnapshotWriter, split_snapshot};
pub use txns::{PendingTxn, parse_txn_hex, txn_hex};

use crate::command::Command;
use crate::error::{Error, Result};
use crate::schema::CollectionSchema;
use crate::segment::rows::{NormalizedRows, normalize};
use state::State;

#[derive(Clone, Debug)]
pub struct ShardOptions {
    /// The growing segment is sealed (written out with an HNSW graph) at this many rows.
    pub seal_threshold_rows: usize,
    /// Seal, and feed the growing segment's live index, on background threads (true) or
    /// inside `apply` (false: deterministic tests).
    pub background_seal: bool,
    /// Feed the growing segment's live index (false: growing rows are scanned until they
    /// seal; for loads that are sealed at once, as in the storage benchmark).
    pub live_index: bool,
    /// With background work on, small sealed segments (fewer live rows than half the seal
    /// threshold: sealed early by a snapshot or `VACUUM`, or mostly deleted) are merged into
    /// one once there are this many; a segment with a fifth of its rows dead is rewritten
    /// alone (`compact.rs`). 0 does neither.
    pub merge_min_segments: usize,
    /// The shard's Raft group (`vecraft_cluster::raft`) takes a snapshot (the shard seals and
    /// persists) and purges its log once entries of this many bytes were applied since the
    /// last one, so the log stays bounded without anyone running CHECKPOINT. 0: only when
    /// asked.
    pub checkpoint_log_bytes: u64,
}

impl Default for ShardOptions {
    fn default() -> Self {
        ShardOptions {
            seal_threshold_rows: 50_000,
            background_seal: true,
            live_index: true,
            merge_min_segments: 4,
            checkpoint_log_bytes: 128 << 20,
        }
    }
}

/// What applying one command did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    /// False when the index had been applied before (a replay).
    pub fresh: bool,
    pub rows_written: u64,
    /// Rows that existed and were removed (by delete; upserts replacing a row don't count).
    pub rows_deleted: u64,
    /// For `Command::Resolve`: whether the transaction committed (on its coordinator's
    /// shard, the first resolution's answer).
    #[serde(default)]
    pub committed: Option<bool>,
}

/// Counters for tests, metrics and EXPLAIN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub applied_index: u64,
    pub durable_index: u64,
    pub live_rows: u64,
    pub growing_rows: u64,
    /// Rows of the growing and frozen segments their live indexes have taken (the rest of
    /// those rows are searched by a scan).
    pub live_indexed_rows: u64,
    /// Segment searches since the shard opened, by how they were answered.
    pub searches: SegmentSearches,
    pub frozen_segments: usize,
    pub sealed_segments: usize,
    pub dead_rows: u64,
    /// Merges of small sealed segments since the shard opened.
    pub merges: u64,
    pub last_background_error: Option<String>,
}

/// Segment searches by how each was answered: a sealed segment's graph, a growing segment's
/// live index, or an exact scan (small segments, selective filters, `exact`, no index).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentSearches {
    pub graph: u64,
    pub live: u64,
    pub scan: u64,
}

pub struct Shard {
    inner: Arc<Inner>,
}

/// Whether `command` fits `schema` (columns, types, dimensions, index parameters), without
/// the data: what a router can check before a shard far away sees the command. Only a new
/// key's uniqueness is left to the shard (`Shard::check`).
pub fn check_shape(schema: &CollectionSchema, command: &Command) -> Result<()> {
    match command {
        Command::Upsert(batch) | Command::Insert(batch) | Command::InsertMissing(batch) => {
            normalize(schema, batch).map(|_| ())
        }
        Command::Delete(_)
        | Command::Truncate
        | Command::Resolve { .. }
        | Command::Forget { .. } => Ok(()),
        Command::Atomic(write) | Command::Prepare { write, .. } => match &write.upserts {
            Some(batch) => normalize(schema, batch).map(|_| ()),
            None => Ok(()),
        },
        Command::SetIndex {
            column,
            metric,
            hnsw,
        } => schema.with_index(column, *metric, *hnsw).map(|_| ()),
    }
}

/// `rows` (normalised from `batch`) without the rows `keep` leaves out.
fn only_new_rows(
    schema: &CollectionSchema,
    batch: &RecordBatch,
    rows: NormalizedRows,
    keep: &[bool],
) -> Result<NormalizedRows> {
    if keep.iter().all(|k| *k) {
        return Ok(rows);
    }
    let mask = arrow::array::BooleanArray::from(keep.to_vec());
    normalize(schema, &arrow::compute::filter_record_batch(batch, &mask)?)
}

/// A background thread of the shard (the sealer, the merger, the live-index feeder), if one
/// runs.
#[derive(Default)]
struct Worker {
    running: bool,
    handle: Option<JoinHandle<()>>,
}

struct Inner {
    dir: PathBuf,
    opts: ShardOptions,
    state: RwLock<State>,
    /// Serialises sealing, compaction, persisting, snapshots and installs.
    maintenance: Mutex<()>,
    sealer: Mutex<Worker>,
    /// Merges small sealed segments, at a lower CPU priority than queries and writes.
    merger: Mutex<Worker>,
    merges: std::sync::atomic::AtomicU64,
    /// Feeds the growing segment's live index; also held by a synchronous feed, so that
    /// rows reach a live index from one feeder, in order.
    feeder: Mutex<Worker>,
    background_error: Mutex<Option<String>>,
    searches: read::SearchCounters,
    /// Set by [`Shard::close`]: no background sealing starts any more.
    closed: std::sync::atomic::AtomicBool,
}

impl Shard {
    /// Opens the shard in `dir`, creating it with `schema` if it is new. The returned shard is
    /// at `applied_index() == durable_index`; replay the log after it.
    pub fn open(dir: &Path, schema: Option<CollectionSchema>, opts: ShardOptions) -> Result<Shard> {
        if opts.seal_threshold_rows == 0 {
            return Err(Error::InvalidArgument(
                "seal_threshold_rows must be positive".into(),
            ));
        }
        let state = State::open(dir, schema)?;
        Ok(Shard {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                opts,
                state: RwLock::new(state),
                maintenance: Mutex::new(()),
                closed: std::sync::atomic::AtomicBool::new(false),
                sealer: Mutex::new(Worker::default()),
                merger: Mutex::new(Worker::default()),
                merges: std::sync::atomic::AtomicU64::new(0),
                feeder: Mutex::new(Worker::default()),
                background_error: Mutex::new(None),
                searches: read::SearchCounters::default(),
            }),
        })
    }

    pub fn schema(&self) -> Arc<CollectionSchema> {
        self.inner.state.read().schema.clone()
    }

    /// The options the shard was opened with.
    pub fn options(&self) -> &ShardOptions {
        &self.inner.opts
    }

    pub fn applied_index(&self) -> u64 {
        self.inner.state.read().applied_index
    }

    /// Applies `command` at log `index`. Indexes at or below the applied index are skipped.
    /// A command the schema rejects still consumes its index (every replica rejects it the
    /// same way) and returns the error.
    pub fn apply(&self, index: u64, command: &Command) -> Result<Applied> {
        if index <= self.applied_index() {
            return Ok(Applied::default());
        }
        let applied = match command {
            Command::Upsert(batch) | Command::Insert(batch) | Command::InsertMissing(batch) => {
                let insert = matches!(command, Command::Insert(_));
                let missing_only = matches!(command, Command::InsertMissing(_));
                let schema = self.schema();
                let outcome = normalize(&schema, batch).and_then(|rows| {
                    let mut state = self.inner.state.write();
                    // Decided under the write lock, as every replica decides at this index.
                    let rows = match missing_only {
                        true => {
                            let keep = state.new_keys(&rows.keys);
                            only_new_rows(&schema, batch, rows, &keep)?
                        }
                        false => rows,
                    };
                    let pk = &schema.primary_key().name;
                    state.txns.check_free(None, false, rows.keys.iter(), pk)?;
                    if insert {
                        state.check_new_keys(&rows.keys)?;
                    }
                    Ok(state.upsert(index, rows))
                });
                match outcome {
                    Ok(applied) => applied,
                    Err(e) => {
                        self.inner.state.write().skip(index);
                        return Err(e);
                    }
                }
            }
            Command::Delete(keys) => {
                let pk = self.schema().primary_key().name.clone();
                let mut state = self.inner.state.write();
                if let Err(e) = state.txns.check_free(None, false, keys.iter(), &pk) {
                    state.skip(index);
                    return Err(e);
                }
                state.delete(index, keys)
            }
            Command::Truncate => return self.inner.truncate(index),
            Command::Atomic(write) => return self.apply_atomic(index, write),
            Command::Prepare {
                txn,
                coordinator,
                decides,
                write,
            } => return self.apply_prepare(index, *txn, coordinator, *decides, write),
            Command::Resolve { txn, commit } => return self.apply_resolve(index, *txn, *commit),
            Command::Forget { txn } => return self.apply_forget(index, *txn),
            Command::SetIndex {
                column,
                metric,
                hnsw,
            } => return self.inner.set_index(index, column, *metric, *hnsw),
        };
        self.inner.after_write();
        Ok(applied)
    }

    /// Consumes log `index` without a command: a Raft entry that carries none (a new
    /// leader's blank entry, a membership change) still moves the applied index on.
    pub fn skip(&self, index: u64) {
        self.inner.state.write().skip(index);
    }

    /// Whether `apply` would accept `command` now (schema, types, dimensions, NaN), without
    /// applying it: callers check before they log a command.
    pub fn check(&self, command: &Command) -> Result<()> {
        match command {
            Command::Insert(batch) => {
                let rows = normalize(&self.schema(), batch)?;
                self.inner.state.read().check_new_keys(&rows.keys)
            }
            _ => check_shape(&self.schema(), command),
        }
    }

    pub fn stats(&self) -> ShardStats {
        let mut stats = self.inner.state.read().stats();
        stats.last_background_error = self.inner.background_error.lock().clone();
        stats.searches = self.inner.searches.snapshot();
        stats.merges = self.inner.merges.load(std::sync::atomic::Ordering::Relaxed);
        stats
    }

    /// Stops background work for good and waits for what runs: after this returns, nothing
    /// writes in the shard's directory unless asked to (its collection is being dropped).
    pub fn close(&self) {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.wait_for_background();
    }

    /// Waits until background sealing, merging and live indexing have finished (tests,
    /// shutdown).
    pub fn wait_for_background(&self) {
        // The sealer may start the merger as it finishes: join it first.
        for worker in [&self.inner.sealer, &self.inner.merger, &self.inner.feeder] {
            let handle = worker.lock().handle.take();
            if let Some(handle) = handle {
                let _ = handle.join();
            }
        }
    }

    /// Seals the growing segment now, whatever its size, and persists: afterwards
    /// `durable_index == applied_index`, so the whole log may be purged.
    pub fn flush(&self) -> Result<u64> {
        self.inner.flush()
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        self.wait_for_background();
    }
}
