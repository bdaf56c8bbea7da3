//! Background and maintenance work on a shard: feeding the growing segment's live index,
//! sealing frozen segments, persisting the manifest, truncating and flushing. Compaction and
//! merges (`compact.rs`) start from here too, after every write.
//!
//! All of it runs under `Inner::maintenance`, so at most one of these changes the segment
//! set at a time; the slow parts (graph builds, file writes) run without the state lock.

use std::sync::Arc;

use super::manifest::{Manifest, ManifestSegment, encode_tombstones, tombstone_file};
use super::state::{SlotData, segment_dir};
use super::{Applied, Inner, Worker};
use crate::error::{Error, Result};
use crate::index::build::BuildOptions;
use crate::segment::Segment;
use crate::segment::sealed::SealedSegment;

/// Rows the live-index feeder copies out and inserts per turn.
const LIVE_BATCH_ROWS: usize = 64;

/// Starts `body` on a thread named `name` unless `worker` runs one already (which checks for
/// more work under the worker's lock before it stops).
pub(super) fn spawn_worker(
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
/// Makes this thread yield the CPU to foreground work (`nice`, 0 to 19); best effort.
pub(super) fn lower_thread_priority(nice: i32) {
    debug_assert!((0..=19).contains(&nice), "a nice value that lowers");
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority takes no pointers; on Linux a thread id names one thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice);
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

    pub(super) fn record(&self, result: Result<()>) {
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
                // None: truncated meanwhile; the next persist removes the directory.
                if let Some(slot) = state.slots.iter_mut().find(|s| s.id == id) {
                    slot.data = SlotData::Sealed(Arc::new(sealed));
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
