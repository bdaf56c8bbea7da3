//! Background and maintenance work on a shard: feeding the growing segment's live index,
//! sealing frozen segments, persisting the manifest, truncating, and compaction (rewriting
//! segments without their dead rows), which also merges small sealed segments.
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
//! All of it runs under `Inner::maintenance`, so at most one of these changes the segment
//! set at a time; the slow parts (graph builds, file writes) run without the state lock.

use std::sync::Arc;

use roaring::RoaringBitmap;

use super::manifest::{Manifest, ManifestSegment, encode_tombstones, tombstone_file};
use super::state::{RowRef, SlotData, segment_dir};
use super::{Applied, Inner, Shard, Worker};
use crate::error::{Error, Result};
use crate::index::build::BuildOptions;
use crate::key::keys_of;
use crate::segment::Segment;
use crate::segment::memory::MemSegment;
use crate::segment::rows::{NormalizedRows, take_column};
use crate::segment::sealed::SealedSegment;

/// Rows the live-index feeder copies out and inserts per turn.
const LIVE_BATCH_ROWS: usize = 64;

/// A sealed segment with this fraction of its rows dead is rewritten without them.
pub const REWRITE_DEAD_FRACTION: f64 = 0.2;
/// … if it has at least this many dead rows (a rewrite of a few is not worth its graph build).
pub const REWRITE_MIN_DEAD_ROWS: u64 = 100;

/// Starts `body` on a thread named `name` unless `worker` runs one already (which checks for
/// more work under the worker's lock before it stops).
fn spawn_worker(
    worker: &parking_lot::Mutex<Worker>,
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let mut worker = worker.lock();
    if worker.running {
        return Ok(());
    }
    worker.running = true;
    match std::thread::Builder::new().name(name.into()).spawn(body) {
        Ok(handle) => {
            worker.handle = Some(handle);
            Ok(())
        }
        Err(e) => {
            worker.running = false;
            Err(e)
        }
    }
}

/// The nice value of the live-index feeder: below foreground work, above merges.
const FEEDER_NICE: i32 = 10;
/// The nice value of merges and rewrites (and the graph builders they start, which inherit
/// it): the lowest, work that can always wait.
const MERGER_NICE: i32 = 19;

/// Makes this thread yield the CPU to foreground work (`nice`, 0 to 19); best effort.
fn lower_thread_priority(nice: i32) {
    debug_assert!((0..=19).contains(&nice), "a nice value that lowers");
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority takes no pointers; on Linux a thread id names one thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice);
    }
}

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
    /// What follows every applied write: a seal if the growing segment is full, a merge or
    /// rewrite if the write left one to do.
    pub(super) fn after_write(self: &Arc<Self>) {
        self.maybe_seal();
        self.maybe_merge();
    }

    /// Freezes a full growing segment and makes sure something will seal it, and something
    /// feeds the live index of the growing one. Sealing errors are recorded (see
    /// `ShardStats::last_background_error`), never returned: the command that triggered the
    /// seal was applied all the same.
    pub(super) fn maybe_seal(self: &Arc<Self>) {
        let pending = {
            let mut state = self.state.write();
            if state.growing.num_rows() as usize >= self.opts.seal_threshold_rows {
                state.freeze();
            }
            state.has_frozen()
        };
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        self.feed_live();
        if !pending {
            return;
        }
        if !self.opts.background_seal {
            let result = self.seal_pending();
            self.record(result);
            return;
        }
        let inner = self.clone();
        if let Err(e) = spawn_worker(&self.sealer, "vecraft-seal", move || inner.sealer_loop()) {
            self.record(Err(Error::io("spawn sealer", &self.dir, e)));
        }
    }

    /// Makes sure something feeds the growing segment's live index the rows it lacks: a
    /// background thread at a lower CPU priority than queries and writes, or, without
    /// background work, this caller at once.
    pub(super) fn feed_live(self: &Arc<Self>) {
        if !self.opts.live_index || !self.state.read().growing.live_lags() {
            return;
        }
        if !self.opts.background_seal {
            let _feeder = self.feeder.lock();
            while self.feed_live_once() {}
            return;
        }
        let inner = self.clone();
        let spawned = spawn_worker(&self.feeder, "vecraft-live-index", move || {
            inner.feeder_loop()
        });
        if let Err(e) = spawned {
            self.record(Err(Error::io("spawn live-index feeder", &self.dir, e)));
        }
    }

    fn feeder_loop(&self) {
        lower_thread_priority(FEEDER_NICE);
        loop {
            let closed = self.closed.load(std::sync::atomic::Ordering::Acquire);
            if closed || !self.feed_live_once() {
                let mut feeder = self.feeder.lock();
                // Checked under the feeder lock: a writer that adds rows after this sees
                // `running == false` and starts a new feeder.
                if closed || !self.state.read().growing.live_lags() {
                    feeder.running = false;
                    return;
                }
            }
        }
    }

    /// Inserts one batch of rows the growing segment's live index lacks; false if none.
    fn feed_live_once(&self) -> bool {
        // Copied out under the state lock, inserted without it: writes never wait for hnsw_rs.
        let job = self.state.read().growing.live_backlog(LIVE_BATCH_ROWS);
        match job {
            Some((index, backlog)) => {
                index.insert(&backlog);
                true
            }
            None => false,
        }
    }

    fn sealer_loop(self: &Arc<Self>) {
        loop {
            let result = self.seal_pending();
            let failed = result.is_err();
            self.record(result);
            let mut sealer = self.sealer.lock();
            // Stop only when nothing is frozen; a failure waits for the next write to retry.
            if failed || !self.state.read().has_frozen() {
                sealer.running = false;
                drop(sealer);
                self.maybe_merge();
                return;
            }
        }
    }

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

    fn record(&self, result: Result<()>) {
        *self.background_error.lock() = result.err().map(|e| e.to_string());
    }

    /// Seals every frozen slot, oldest first, persisting after each.
    pub(super) fn seal_pending(&self) -> Result<()> {
        let _guard = self.maintenance.lock();
        self.seal_pending_locked()
    }

    pub(super) fn seal_pending_locked(&self) -> Result<()> {
        loop {
            let job = {
                let state = self.state.read();
                state.slots.iter().find_map(|s| match &s.data {
                    SlotData::Frozen(mem) => Some((s.id, mem.clone(), s.dead.clone())),
                    SlotData::Sealed(_) => None,
                })
            };
            let Some((id, mem, dead)) = job else {
                return Ok(());
            };
            let schema = self.state.read().schema.clone();
            let dir = segment_dir(&self.dir, id);
            let sealed =
                SealedSegment::write(&dir, &schema, &*mem, &dead, BuildOptions::default())?;
            {
                let mut state = self.state.write();
                match state.slots.iter_mut().find(|s| s.id == id) {
                    Some(slot) => slot.data = SlotData::Sealed(Arc::new(sealed)),
                    None => {} // truncated meanwhile: the next persist removes the directory
                }
            }
            // The frozen segment and its live index go once no search holds them.
            drop(mem);
            crate::memory::release_free_heap();
            self.persist_locked()?;
        }
    }

    /// Writes changed tombstones and a new manifest. Caller holds `maintenance`.
    pub(super) fn persist_locked(&self) -> Result<()> {
        let (manifest, tombstones) = {
            let state = self.state.read();
            let durable = state.computed_durable_index();
            let mut segments = Vec::new();
            let mut tombstones = Vec::new();
            for (i, slot) in state.slots.iter().enumerate() {
                if !matches!(slot.data, SlotData::Sealed(_)) {
                    // Frozen slots are not persisted yet, and nothing sealed may follow one.
                    let later = &state.slots[i..];
                    assert!(later.iter().all(|s| matches!(s.data, SlotData::Frozen(_))));
                    break;
                }
                let version = if slot.dead.is_empty() {
                    0
                } else {
                    slot.dead_version
                };
                if version != 0 && version != slot.persisted_version {
                    tombstones.push((slot.id, version, encode_tombstones(&slot.dead)));
                }
                segments.push(ManifestSegment {
                    id: slot.id,
                    tombstone_version: version,
                });
            }
            let manifest = Manifest {
                format: 1,
                schema: (*state.schema).clone(),
                durable_index: durable,
                next_segment_id: state.next_segment_id,
                segments,
                txns: state.txns.persisted(durable)?,
            };
            (manifest, tombstones)
        };
        for (id, version, bytes) in &tombstones {
            let path = segment_dir(&self.dir, *id).join(tombstone_file(*version));
            crate::fsutil::write_atomic(&path, bytes)?;
        }
        manifest.store(&self.dir)?;
        {
            let mut state = self.state.write();
            // Only now may callers purge the log up to it.
            state.durable_index = state.durable_index.max(manifest.durable_index);
            state.txns.forget_durable(manifest.durable_index);
            for entry in &manifest.segments {
                if let Some(slot) = state.slots.iter_mut().find(|s| s.id == entry.id) {
                    slot.persisted_version = slot.persisted_version.max(entry.tombstone_version);
                }
            }
        }
        manifest.remove_unreferenced(&self.dir)
    }

    pub(super) fn truncate(&self, index: u64) -> Result<Applied> {
        let _guard = self.maintenance.lock();
        let deleted = {
            let mut state = self.state.write();
            if index <= state.applied_index {
                return Ok(Applied::default());
            }
            if let Err(e) = state.txns.check_free(None, true, std::iter::empty(), "") {
                state.skip(index);
                return Err(e);
            }
            let deleted = state.clear();
            state.applied_index = index;
            deleted
        };
        self.persist_locked()?;
        Ok(Applied {
            fresh: true,
            rows_deleted: deleted,
            ..Applied::default()
        })
    }

    /// Changes a vector column's metric and HNSW parameters (see [`crate::command::Command::SetIndex`]).
    pub(super) fn set_index(
        &self,
        index: u64,
        column: &str,
        metric: crate::distance::Metric,
        hnsw: crate::schema::HnswParams,
    ) -> Result<Applied> {
        let _guard = self.maintenance.lock();
        {
            let mut state = self.state.write();
            if index <= state.applied_index {
                return Ok(Applied::default());
            }
            match state.schema.with_index(column, metric, hnsw) {
                Ok(schema) => {
                    state.growing.reset_live(&schema);
                    state.schema = Arc::new(schema);
                }
                Err(e) => {
                    state.skip(index);
                    return Err(e);
                }
            }
            state.applied_index = index;
        }
        self.persist_locked()?;
        Ok(Applied {
            fresh: true,
            ..Applied::default()
        })
    }

    pub(super) fn flush(self: &Arc<Self>) -> Result<u64> {
        let durable = {
            let _guard = self.maintenance.lock();
            self.flush_locked()?
        };
        self.maybe_merge();
        Ok(durable)
    }

    /// Seals every growing row and persists the manifest; returns the durable index. The
    /// caller holds `maintenance`.
    pub(super) fn flush_locked(&self) -> Result<u64> {
        self.state.write().freeze();
        self.seal_pending_locked()?;
        self.persist_locked()?;
        Ok(self.state.read().durable_index)
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
