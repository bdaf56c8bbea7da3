//! The growing segment: rows appended in memory as writes apply, searched through a live
//! hnsw_rs index (`index/live.rs`) for the rows it has taken so far and by brute force for
//! the rest.
//!
//! When it passes the seal threshold the shard freezes it (moves it behind an `Arc`, so
//! searches and the sealer share it without copying) and starts a new one.

use std::sync::Arc;

use arrow::array::RecordBatch;
use roaring::RoaringBitmap;

use crate::distance::Metric;
use crate::index::VectorIndex;
use crate::index::live::{Backlog, LiveIndex};
use crate::index::vectors::VectorsRef;
use crate::key::Key;
use crate::schema::{CollectionSchema, ColumnType};
use crate::segment::Segment;
use crate::segment::rows::NormalizedRows;

/// One vector column held in memory.
#[derive(Default)]
pub struct MemVectors {
    pub dims: usize,
    pub data: Vec<f32>,
    pub inv_norms: Vec<f32>,
    pub nulls: RoaringBitmap,
    /// The live index of an indexed column whose metric hnsw_rs can serve.
    pub live: Option<Arc<LiveIndex>>,
}

pub struct MemSegment {
    payload: Vec<RecordBatch>,
    rows: u32,
    vectors: Vec<MemVectors>,
    keys: Vec<Key>,
    versions: Vec<u64>,
}

impl MemSegment {
    /// An empty segment for vector columns of the given dimensions.
    pub fn new(vector_dims: &[usize]) -> Self {
        MemSegment {
            payload: Vec::new(),
            rows: 0,
            vectors: vector_dims
                .iter()
                .map(|&dims| MemVectors {
                    dims,
                    ..Default::default()
                })
                .collect(),
            keys: Vec::new(),
            versions: Vec::new(),
        }
    }

    /// An empty growing segment for `schema`, with a live index on each indexed vector
    /// column that can have one.
    pub fn growing(schema: &CollectionSchema) -> Self {
        let mut segment = MemSegment::new(&[]);
        segment.vectors = schema
            .vector_columns()
            .iter()
            .map(|&c| {
                let column = &schema.columns[c];
                let ColumnType::Vector(spec) = column.ty else {
                    unreachable!("vector_columns returns vector columns")
                };
                let live = match schema.is_indexed(&column.name) {
                    true => LiveIndex::new(spec.metric, spec.hnsw, spec.dims).map(Arc::new),
                    false => None,
                };
                MemVectors {
                    dims: spec.dims,
                    live,
                    ..Default::default()
                }
            })
            .collect();
        segment
    }

    /// Starts the live indexes over for a changed schema (an index created or changed).
    pub fn reset_live(&mut self, schema: &CollectionSchema) {
        let fresh = MemSegment::growing(schema);
        for (column, new) in self.vectors.iter_mut().zip(fresh.vectors) {
            column.live = new.live;
        }
    }

    /// The next rows (at most `max_rows`) a live index lacks, copied out, with that index.
    pub fn live_backlog(&self, max_rows: usize) -> Option<(Arc<LiveIndex>, Backlog)> {
        self.vectors.iter().enumerate().find_map(|(i, column)| {
            let live = column.live.as_ref()?;
            let backlog = live.backlog(self.vectors(i), &column.nulls, max_rows)?;
            Some((live.clone(), backlog))
        })
    }

    /// Whether a live index lacks some of the segment's rows.
    pub fn live_lags(&self) -> bool {
        let mut live = self.vectors.iter().filter_map(|c| c.live.as_ref());
        live.any(|l| l.covered() < self.rows)
    }

    /// Rows every live index has taken (0 when there is none).
    pub fn live_covered_rows(&self) -> u32 {
        let live = self.vectors.iter().filter_map(|c| c.live.as_ref());
        live.map(|l| l.covered()).min().unwrap_or(0)
    }

    /// Appends validated rows written by the command at log `index`; returns the first new
    /// row number.
    pub fn append(&mut self, rows: NormalizedRows, index: u64) -> u32 {
        let n = rows.keys.len();
        self.append_versioned(rows, &vec![index; n])
    }

    /// Appends validated rows keeping the `versions` they had (a merge moving them);
    /// returns the first new row number.
    pub fn append_versioned(&mut self, rows: NormalizedRows, versions: &[u64]) -> u32 {
        let first = self.rows;
        let n = rows.keys.len() as u32;
        assert_eq!(versions.len(), n as usize, "a version per row");
        assert_eq!(
            rows.payload.num_rows() as u32,
            n,
            "payload and keys disagree"
        );
        assert_eq!(
            rows.vectors.len(),
            self.vectors.len(),
            "vector column count"
        );
        for (col, new) in self.vectors.iter_mut().zip(rows.vectors) {
            assert_eq!(new.dims, col.dims, "vector dims were validated");
            col.data.extend_from_slice(&new.data);
            col.inv_norms.extend_from_slice(&new.inv_norms);
            col.nulls.extend(new.nulls.iter().map(|r| r + first));
        }
        if n > 0 {
            self.payload.push(rows.payload);
            self.merge_small_batches();
        }
        self.keys.extend(rows.keys);
        self.versions.extend_from_slice(versions);
        self.rows += n;
        first
    }

    /// Keeps the payload at O(log rows) batches, like a binary counter: the last two batches
    /// merge while the older one is no larger. Single-row inserts then cost O(log n) copies
    /// each, and filters and gathers walk a few batches, not one per insert.
    fn merge_small_batches(&mut self) {
        while let [.., older, newer] = self.payload.as_slice() {
            if older.num_rows() > newer.num_rows() {
                break;
            }
            let merged = arrow::compute::concat_batches(&older.schema(), [older, newer])
                .expect("batches of one segment share a schema");
            self.payload.truncate(self.payload.len() - 2);
            self.payload.push(merged);
        }
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn mem_vectors(&self) -> &[MemVectors] {
        &self.vectors
    }

    pub fn size_bytes(&self) -> usize {
        let vectors: usize = self
            .vectors
            .iter()
            .map(|v| {
                let live = v.live.as_ref().map_or(0, |l| l.size_bytes());
                (v.data.len() + v.inv_norms.len()) * 4 + live
            })
            .sum();
        let payload: usize = self.payload.iter().map(|b| b.get_array_memory_size()).sum();
        vectors + payload
    }
}

impl Segment for MemSegment {
    fn num_rows(&self) -> u32 {
        self.rows
    }

    fn payload(&self) -> &[RecordBatch] {
        &self.payload
    }

    fn vectors(&self, i: usize) -> VectorsRef<'_> {
        let v = &self.vectors[i];
        VectorsRef {
            dims: v.dims,
            data: &v.data,
            inv_norms: &v.inv_norms,
        }
    }

    fn null_vectors(&self, i: usize) -> &RoaringBitmap {
        &self.vectors[i].nulls
    }

    fn versions(&self) -> &[u64] {
        &self.versions
    }

    fn index(&self, i: usize) -> Option<(Metric, &dyn VectorIndex)> {
        let live = self.vectors[i].live.as_deref()?;
        (live.covered() > 0).then(|| (live.metric(), live as &dyn VectorIndex))
    }
}
