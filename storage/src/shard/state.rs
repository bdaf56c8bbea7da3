//! The in-memory state of a shard behind its lock: segments, tombstones, key map, indexes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use roaring::RoaringBitmap;

use super::manifest::Manifest;
use super::txns::Txns;
use super::{Applied, ShardStats};
use crate::error::{Error, Result};
use crate::key::{Key, keys_of};
use crate::schema::{CollectionSchema, ColumnType};
use crate::segment::Segment;
use crate::segment::memory::MemSegment;
use crate::segment::rows::NormalizedRows;
use crate::segment::sealed::SealedSegment;

/// Where the live version of a key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowRef {
    pub segment: u64,
    pub row: u32,
}

pub enum SlotData {
    /// A former growing segment waiting to be written out; searched by brute force.
    Frozen(Arc<MemSegment>),
    Sealed(Arc<SealedSegment>),
}

impl SlotData {
    pub fn segment(&self) -> &dyn Segment {
        match self {
            SlotData::Frozen(m) => m.as_ref(),
            SlotData::Sealed(s) => s.as_ref(),
        }
    }
}

pub struct Slot {
    pub id: u64,
    pub data: SlotData,
    /// Tombstoned rows.
    pub dead: RoaringBitmap,
    /// Bumped on every change of `dead`; `persisted_version` is what the manifest names.
    pub dead_version: u64,
    pub persisted_version: u64,
    /// The applied index when the segment was frozen: all it holds is at or below it.
    pub frozen_at: u64,
}

pub struct State {
    pub schema: Arc<CollectionSchema>,
    pub applied_index: u64,
    /// What the manifest on disk says: log entries up to here may be purged.
    pub durable_index: u64,
    pub growing: MemSegment,
    pub growing_id: u64,
    pub growing_dead: RoaringBitmap,
    /// Oldest first: sealed segments, then frozen ones.
    pub slots: Vec<Slot>,
    pub keymap: HashMap<Key, RowRef>,
    pub next_segment_id: u64,
    /// Transactions prepared here and not yet resolved (and recent outcomes).
    pub txns: Txns,
}

pub fn segments_dir(dir: &Path) -> PathBuf {
    dir.join("segments")
}

pub fn segment_dir(dir: &Path, id: u64) -> PathBuf {
    segments_dir(dir).join(format!("seg-{id:012}"))
}

pub fn vector_dims(schema: &CollectionSchema) -> Vec<usize> {
    schema
        .vector_columns()
        .iter()
        .map(|&c| match schema.columns[c].ty {
            ColumnType::Vector(spec) => spec.dims,
            _ => unreachable!("vector_columns returns vector columns"),
        })
        .collect()
}

impl State {
    /// Loads the shard in `dir` from its manifest, or creates it with `schema`.
    pub fn open(dir: &Path, schema: Option<CollectionSchema>) -> Result<State> {
        crate::fsutil::create_dir_durable(&segments_dir(dir))?;
        let manifest = match Manifest::load(dir)? {
            Some(m) => m,
            None => {
                let schema = schema.ok_or_else(|| {
                    Error::InvalidArgument(format!("no shard at {} and no schema", dir.display()))
                })?;
                schema.validate()?;
                let m = Manifest::new(schema);
                m.store(dir)?;
                m
            }
        };
        let state = State::from_manifest(dir, &manifest)?;
        manifest.remove_unreferenced(dir)?;
        Ok(state)
    }

    /// Builds the state a manifest describes (segments opened, tombstones read, keys mapped).
    pub fn from_manifest(dir: &Path, manifest: &Manifest) -> Result<State> {
        let schema = Arc::new(manifest.schema.clone());
        let mut slots = Vec::new();
        for entry in &manifest.segments {
            let seg = SealedSegment::open(&segment_dir(dir, entry.id), &schema)?;
            let dead = manifest.read_tombstones(dir, entry)?;
            slots.push(Slot {
                id: entry.id,
                data: SlotData::Sealed(Arc::new(seg)),
                dead,
                dead_version: entry.tombstone_version,
                persisted_version: entry.tombstone_version,
                frozen_at: manifest.durable_index,
            });
        }
        let mut state = State {
            txns: Txns::load(&schema, &manifest.txns)?,
            growing: MemSegment::growing(&schema),
            schema,
            applied_index: manifest.durable_index,
            durable_index: manifest.durable_index,
            growing_id: manifest.next_segment_id,
            growing_dead: RoaringBitmap::new(),
            slots,
            keymap: HashMap::new(),
            next_segment_id: manifest.next_segment_id + 1,
        };
        state.rebuild_keymap()?;
        Ok(state)
    }

    fn rebuild_keymap(&mut self) -> Result<()> {
        let pk = self.pk_payload_position();
        self.keymap.clear();
        for slot in &self.slots {
            let mut row = 0u32;
            for batch in slot.data.segment().payload() {
                for key in keys_of(batch.column(pk))? {
                    if !slot.dead.contains(row) {
                        self.keymap.insert(
                            key,
                            RowRef {
                                segment: slot.id,
                                row,
                            },
                        );
                    }
                    row += 1;
                }
            }
        }
        Ok(())
    }

    pub fn pk_payload_position(&self) -> usize {
        let payload = self.schema.payload_columns();
        payload
            .iter()
            .position(|&c| c == self.schema.primary_key)
            .expect("pk is payload")
    }

    /// The version of the row at `at` (`Segment::versions`).
    pub fn version_at(&self, at: RowRef) -> u64 {
        let segment = match at.segment == self.growing_id {
            true => &self.growing as &dyn Segment,
            false => {
                let slot = self.slots.iter().find(|s| s.id == at.segment);
                slot.expect("the key map only points at live segments")
                    .data
                    .segment()
            }
        };
        segment.versions()[at.row as usize]
    }

    /// Tombstones a row wherever it lives.
    fn kill(&mut self, at: RowRef) {
        if at.segment == self.growing_id {
            self.growing_dead.insert(at.row);
            return;
        }
        let slot = self.slots.iter_mut().find(|s| s.id == at.segment);
        let slot = slot.expect("the key map only points at live segments");
        if slot.dead.insert(at.row) {
            slot.dead_version += 1;
        }
    }

    pub fn upsert(&mut self, index: u64, rows: NormalizedRows) -> Applied {
        if index <= self.applied_index {
            return Applied::default(); // applied by a concurrent caller meanwhile
        }
        let written = self.append_rows(rows, index);
        self.applied_index = index;
        Applied {
            fresh: true,
            rows_written: written,
            ..Applied::default()
        }
    }

    /// Appends `rows`, written by the command at log `index`, to the growing segment, each
    /// replacing its key's older row; returns how many were written.
    pub fn append_rows(&mut self, rows: NormalizedRows, index: u64) -> u64 {
        let keys = rows.keys.clone();
        let first = self.growing.append(rows, index);
        for (i, key) in keys.into_iter().enumerate() {
            let at = RowRef {
                segment: self.growing_id,
                row: first + i as u32,
            };
            if let Some(old) = self.keymap.insert(key, at) {
                self.kill(old);
            }
        }
        (self.growing.num_rows() - first) as u64
    }

    /// Removes the rows of `keys` (absent ones are ignored); returns how many there were.
    pub fn delete_keys(&mut self, keys: &[Key]) -> u64 {
        let mut deleted = 0;
        for key in keys {
            if let Some(old) = self.keymap.remove(key) {
                self.kill(old);
                deleted += 1;
            }
        }
        deleted
    }

    /// Drops every row; returns how many were live. The next persist removes the files.
    pub fn clear(&mut self) -> u64 {
        let deleted = self.keymap.len() as u64;
        self.freeze(); // moves the growing rows out of the way...
        self.slots.clear(); // ...and drops every segment (files go after the manifest)
        self.growing_dead.clear();
        self.keymap.clear();
        deleted
    }

    pub fn delete(&mut self, index: u64, keys: &[Key]) -> Applied {
        if index <= self.applied_index {
            return Applied::default();
        }
        let deleted = self.delete_keys(keys);
        self.applied_index = index;
        Applied {
            fresh: true,
            rows_deleted: deleted,
            ..Applied::default()
        }
    }

    /// Refuses keys that are live already or repeat among `keys` (an INSERT's check).
    pub fn check_new_keys(&self, keys: &[Key]) -> Result<()> {
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        for key in keys {
            if self.keymap.contains_key(key) || !seen.insert(key) {
                return Err(crate::error::Error::DuplicateKey(key.to_string()));
            }
        }
        Ok(())
    }

    /// Which of `keys` are new: not stored, and not earlier in `keys` (ON CONFLICT DO
    /// NOTHING keeps those rows).
    pub fn new_keys(&self, keys: &[Key]) -> Vec<bool> {
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        keys.iter()
            .map(|key| !self.keymap.contains_key(key) && seen.insert(key))
            .collect()
    }

    /// Consumes an index whose command was rejected.
    pub fn skip(&mut self, index: u64) {
        self.applied_index = self.applied_index.max(index);
    }

    /// Moves the growing segment into a frozen slot (if it has rows) and starts a new one.
    pub fn freeze(&mut self) {
        if self.growing.is_empty() {
            return;
        }
        let fresh = MemSegment::growing(&self.schema);
        let frozen = std::mem::replace(&mut self.growing, fresh);
        let dead = std::mem::take(&mut self.growing_dead);
        self.slots.push(Slot {
            id: self.growing_id,
            data: SlotData::Frozen(Arc::new(frozen)),
            dead_version: 1,
            persisted_version: 0,
            dead,
            frozen_at: self.applied_index,
        });
        self.growing_id = self.next_segment_id;
        self.next_segment_id += 1;
    }

    /// The growing segment and the frozen ones.
    pub fn in_memory_segments(&self) -> impl Iterator<Item = &MemSegment> {
        let frozen = self.slots.iter().filter_map(|s| match &s.data {
            SlotData::Frozen(m) => Some(m.as_ref()),
            SlotData::Sealed(_) => None,
        });
        frozen.chain(std::iter::once(&self.growing))
    }

    pub fn has_frozen(&self) -> bool {
        self.slots
            .iter()
            .any(|s| matches!(s.data, SlotData::Frozen(_)))
    }

    /// Log index up to which the sealed segments and tombstones alone are complete: the
    /// applied index when nothing is waiting in memory, else the freeze point of the newest
    /// sealed segment (segments are sealed oldest first).
    pub fn computed_durable_index(&self) -> u64 {
        if !self.has_frozen() && self.growing.is_empty() {
            return self.applied_index;
        }
        let sealed = self
            .slots
            .iter()
            .take_while(|s| matches!(s.data, SlotData::Sealed(_)));
        sealed
            .map(|s| s.frozen_at)
            .fold(self.durable_index, u64::max)
    }

    pub fn stats(&self) -> ShardStats {
        let frozen = self
            .slots
            .iter()
            .filter(|s| matches!(s.data, SlotData::Frozen(_)))
            .count();
        let dead: u64 =
            self.slots.iter().map(|s| s.dead.len()).sum::<u64>() + self.growing_dead.len();
        ShardStats {
            applied_index: self.applied_index,
            durable_index: self.durable_index,
            live_rows: self.keymap.len() as u64,
            growing_rows: self.growing.num_rows() as u64,
            live_indexed_rows: self
                .in_memory_segments()
                .map(|m| m.live_covered_rows() as u64)
                .sum(),
            frozen_segments: frozen,
            sealed_segments: self.slots.len() - frozen,
            dead_rows: dead,
            merges: 0,
            last_background_error: None,
            searches: Default::default(),
        }
    }
}
