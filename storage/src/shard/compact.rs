//! Compaction: rewriting sealed segments without their dead rows, and merging small ones.
//!
//! Why merge: a snapshot or `VACUUM` seals the growing segment at whatever size it has, and
//! deletes shrink sealed segments; every sealed segment costs each search a graph walk of
//! its own. Once `merge_min_segments` sealed segments hold fewer live rows than half the seal
//! threshold (checked after each seal and flush), a background thread at a lower CPU priority
//! rebuilds the oldest of them as one (up to four seal thresholds of rows at a time), the way
//! Lucene's and Qdrant's merge policies do. Inserts, deletes and searches go on meanwhile;
//! other maintenance (a seal, a snapshot, `TRUNCATE`, an index change) waits for the merge.
//! A merge moves rows, so a transaction that read one of them before it and commits after it
//! is refused with 40001, as after a reindex.
//!
//! The same thread rewrites a sealed segment alone once deletes left a fifth of its rows dead
//! (at least [`REWRITE_MIN_DEAD_ROWS`]), as Qdrant's vacuum and Milvus's compaction do: its dead
//! rows cost every search that walks its graph, and their bytes stay until it is rewritten.
//! Both are checked after every write, so deletes alone set them off, with no statement asking.
//!
//! A merge runs under `Inner::maintenance`, as all maintenance does; the graph build and the
//! file writes run without the state lock.

use std::sync::Arc;

use roaring::RoaringBitmap;

use super::maintain::{lower_thread_priority, spawn_worker};
use super::state::{RowRef, SlotData, segment_dir};
use super::{Inner, Shard};
use crate::error::{Error, Result};
use crate::index::build::BuildOptions;
use crate::key::keys_of;
use crate::segment::Segment;
use crate::segment::memory::MemSegment;
use crate::segment::rows::{NormalizedRows, take_column};
use crate::segment::sealed::SealedSegment;

/// A sealed segment with this fraction of its rows dead is rewritten without them.
pub const REWRITE_DEAD_FRACTION: f64 = 0.2;
/// … if it has at least this many dead rows (a rewrite of a few is not worth its graph build).
pub const REWRITE_MIN_DEAD_ROWS: u64 = 100;

/// The nice value of merges and rewrites (and the graph builders they start, which inherit
/// it): the lowest, work that can always wait.
const MERGER_NICE: i32 = 19;

/// How a background merge or rewrite builds its graph: on half the cores (at least one), so
/// that foreground searches keep the others. With every core at nice 10, a search's p99 rose
/// to 1.62x the idle node's while segments were rewritten (`bench/compactor_pacing.py`, 2
/// cores). Seals and `reindex` (CREATE INDEX) keep every core: a bulk load or a user waits on
/// them (on half the cores, CREATE INDEX of 1M x 128 took 143 s instead of 70 s).
fn compaction_build() -> BuildOptions {
    let all = BuildOptions::default();
    BuildOptions {
        threads: (all.threads / 2).max(1),
        ..all
    }
}

impl Inner {
    /// Starts the merger if enough small sealed segments wait for it (background work only).
    pub(super) fn maybe_merge(self: &Arc<Self>) {
        let closed = self.closed.load(std::sync::atomic::Ordering::Acquire);
        if closed || !self.opts.background_seal || self.merge_job().is_none() {
            return;
        }
        let inner = self.clone();
        if let Err(e) = spawn_worker(&self.merger, "vecraft-merge", move || inner.merger_loop()) {
            self.record(Err(Error::io("spawn merger", &self.dir, e)));
        }
    }

    fn merger_loop(&self) {
        lower_thread_priority(MERGER_NICE);
        loop {
            let closed = self.closed.load(std::sync::atomic::Ordering::Acquire);
            let result = if closed { Ok(false) } else { self.merge() };
            let failed = result.is_err();
            if !matches!(result, Ok(false)) {
                // Only a merge that ran reports: a pass with nothing to do must not clear
                // the sealer's error.
                self.record(result.map(|_| ()));
            }
            let mut merger = self.merger.lock();
            // Checked under the merger lock: a seal that makes more work after this sees
            // `running == false` and starts a new merger. A failure waits for the next seal.
            if failed || closed || self.merge_job().is_none() {
                merger.running = false;
                return;
            }
        }
    }

    /// The oldest small sealed segments, if at least `merge_min_segments` are small; else the
    /// sealed segment with the largest dead fraction, if it passes [`REWRITE_DEAD_FRACTION`].
    fn merge_job(&self) -> Option<Vec<u64>> {
        self.small_segments_job().or_else(|| self.dead_rows_job())
    }

    /// The sealed segment most worth rewriting for its dead rows, if any is.
    fn dead_rows_job(&self) -> Option<Vec<u64>> {
        if self.opts.merge_min_segments == 0 {
            return None;
        }
        let state = self.state.read();
        let mut worst: Option<(f64, u64)> = None;
        for slot in &state.slots {
            let SlotData::Sealed(seg) = &slot.data else {
                continue;
            };
            let (dead, rows) = (slot.dead.len(), u64::from(seg.num_rows()));
            debug_assert!(dead <= rows, "a segment's dead rows are among its rows");
            let fraction = dead as f64 / rows.max(1) as f64;
            let due = dead >= REWRITE_MIN_DEAD_ROWS && fraction >= REWRITE_DEAD_FRACTION;
            if due && worst.is_none_or(|(f, _)| fraction > f) {
                worst = Some((fraction, slot.id));
            }
        }
        worst.map(|(_, id)| vec![id])
    }

    /// The oldest small sealed segments, if at least `merge_min_segments` are small.
    fn small_segments_job(&self) -> Option<Vec<u64>> {
        let min_segments = self.opts.merge_min_segments;
        if min_segments == 0 {
            return None;
        }
        let small_rows = (self.opts.seal_threshold_rows / 2) as u64;
        let max_rows = (self.opts.seal_threshold_rows as u64).saturating_mul(4);
        let state = self.state.read();
        let mut ids = Vec::new();
        let mut rows = 0;
        for slot in &state.slots {
            let SlotData::Sealed(seg) = &slot.data else {
                continue;
            };
            let live = seg.num_rows() as u64 - slot.dead.len();
            if live >= small_rows {
                continue;
            }
            ids.push(slot.id);
            rows += live;
            if rows >= max_rows {
                break;
            }
        }
        (ids.len() >= min_segments.max(2)).then_some(ids)
    }

    /// Compacts the merge job's segments into one, chosen under `maintenance` so that no
    /// other maintenance changed them meanwhile; false when there was nothing to merge.
    fn merge(&self) -> Result<bool> {
        let _guard = self.maintenance.lock();
        let Some(ids) = self.merge_job() else {
            return Ok(false);
        };
        self.compact_locked(&ids, compaction_build())?;
        self.merges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }
}

impl Shard {
    /// Builds every vector index again with the schema's current metric and parameters (after
    /// `SetIndex`): seals the growing rows, then compacts all sealed segments into one.
    /// Searches keep working meanwhile (exactly, where a graph was built for another metric).
    pub fn reindex(&self) -> Result<()> {
        let inner = &self.inner;
        // One hold of `maintenance`: a merge cannot take segments between the seal and the
        // compaction.
        let _guard = inner.maintenance.lock();
        inner.flush_locked()?;
        let ids: Vec<u64> = {
            let state = inner.state.read();
            state
                .slots
                .iter()
                .filter(|s| matches!(s.data, SlotData::Sealed(_)))
                .map(|s| s.id)
                .collect()
        };
        if !ids.is_empty() {
            // Full speed: the user's CREATE INDEX waits on it.
            inner.compact_locked(&ids, BuildOptions::default())?;
        }
        Ok(())
    }

    /// Rewrites the sealed segments `ids` as one new segment holding only their live rows,
    /// with a freshly built graph, and swaps it in atomically. Deletes that land while the
    /// rewrite runs are carried over to the new segment. Returns the new segment's id, or
    /// `None` when nothing was live.
    pub fn compact(&self, ids: &[u64]) -> Result<Option<u64>> {
        let _guard = self.inner.maintenance.lock();
        self.inner.compact_locked(ids, BuildOptions::default())
    }
}

impl Inner {
    /// [`Shard::compact`], building the new graph as `build` says; the caller holds
    /// `maintenance`.
    fn compact_locked(&self, ids: &[u64], build: BuildOptions) -> Result<Option<u64>> {
        let mut unique = ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        if ids.is_empty() || unique.len() != ids.len() {
            return Err(Error::InvalidArgument(
                "compact needs distinct segment ids".into(),
            ));
        }
        let (schema, sources, new_id) = {
            let mut state = self.state.write();
            let mut sources = Vec::new();
            for &id in ids {
                let slot = state.slots.iter().find(|s| s.id == id);
                match slot.map(|s| (&s.data, &s.dead)) {
                    Some((SlotData::Sealed(seg), dead)) => {
                        sources.push((id, seg.clone(), dead.clone()))
                    }
                    _ => return Err(Error::InvalidArgument(format!("no sealed segment {id}"))),
                }
            }
            let new_id = state.next_segment_id;
            state.next_segment_id += 1;
            (state.schema.clone(), sources, new_id)
        };
        // Gather live rows into one in-memory segment, remembering where each came from.
        let mut merged = MemSegment::new(&super::state::vector_dims(&schema));
        let mut origin: Vec<(u64, u32)> = Vec::new();
        for (id, seg, dead) in &sources {
            let live: Vec<u32> = (0..seg.num_rows()).filter(|r| !dead.contains(*r)).collect();
            if live.is_empty() {
                continue;
            }
            let versions: Vec<u64> = live.iter().map(|&r| seg.versions()[r as usize]).collect();
            merged.append_versioned(gather(&schema, seg.as_ref(), &live)?, &versions);
            origin.extend(live.iter().map(|&r| (*id, r)));
        }
        let sealed = if origin.is_empty() {
            None
        } else {
            let dir = segment_dir(&self.dir, new_id);
            Some(SealedSegment::write(
                &dir,
                &schema,
                &merged,
                &RoaringBitmap::new(),
                build,
            )?)
        };
        self.swap_compacted(&sources, sealed, new_id, &origin, merged.keys())?;
        self.persist_locked()?;
        Ok((!origin.is_empty()).then_some(new_id))
    }

    fn swap_compacted(
        &self,
        sources: &[(u64, Arc<SealedSegment>, RoaringBitmap)],
        sealed: Option<SealedSegment>,
        new_id: u64,
        origin: &[(u64, u32)],
        keys: &[crate::key::Key],
    ) -> Result<()> {
        let mut state = self.state.write();
        // The merged segment takes the place of the oldest source: sealed slots stay ahead of
        // frozen ones.
        let is_source = |id: u64| sources.iter().any(|s| s.0 == id);
        let position = state.slots.iter().position(|s| is_source(s.id));
        let position = position.expect("maintenance held: the sources are still there");
        let mut dead_now = Vec::new();
        for (id, _, _) in sources {
            let i = state.slots.iter().position(|s| s.id == *id);
            dead_now.push(state.slots.remove(i.expect("maintenance held")).dead);
        }
        let Some(sealed) = sealed else { return Ok(()) };
        let mut dead = RoaringBitmap::new();
        for (new_row, (old_id, old_row)) in origin.iter().enumerate() {
            let src = sources
                .iter()
                .position(|s| s.0 == *old_id)
                .expect("origin names a source");
            let now_dead = dead_now[src].contains(*old_row);
            let key_ref = RowRef {
                segment: *old_id,
                row: *old_row,
            };
            let target = RowRef {
                segment: new_id,
                row: new_row as u32,
            };
            if now_dead {
                dead.insert(new_row as u32);
            } else if let Some(at) = state.keymap.get_mut(&keys[new_row]) {
                // Re-point the key map at the row's new home.
                if *at == key_ref {
                    *at = target;
                }
            }
        }
        let frozen_at = state.durable_index;
        state.slots.insert(
            position,
            super::state::Slot {
                id: new_id,
                data: SlotData::Sealed(Arc::new(sealed)),
                dead,
                dead_version: 1,
                persisted_version: 0,
                frozen_at,
            },
        );
        Ok(())
    }
}

/// Copies `rows` of a segment into the form an upsert has (keys, payload, vectors).
fn gather(
    schema: &crate::schema::CollectionSchema,
    seg: &dyn Segment,
    rows: &[u32],
) -> Result<NormalizedRows> {
    let mut positions = None;
    let mut payload = Vec::new();
    for &c in &schema.payload_columns() {
        payload.push(take_column(schema, seg, c, rows, &mut positions)?);
    }
    let payload = arrow::array::RecordBatch::try_new(schema.payload_schema(), payload)?;
    let pk = schema
        .payload_columns()
        .iter()
        .position(|&c| c == schema.primary_key);
    let keys = keys_of(payload.column(pk.expect("pk is payload")))?;
    let vectors = (0..schema.vector_columns().len())
        .map(|i| {
            let src = seg.vectors(i);
            let mut v = crate::segment::memory::MemVectors {
                dims: src.dims,
                ..Default::default()
            };
            for (n, &r) in rows.iter().enumerate() {
                v.data.extend_from_slice(src.get(r));
                v.inv_norms.push(src.inv_norms[r as usize]);
                if seg.null_vectors(i).contains(r) {
                    v.nulls.insert(n as u32);
                }
            }
            v
        })
        .collect();
    Ok(NormalizedRows {
        keys,
        payload,
        vectors,
    })
}
