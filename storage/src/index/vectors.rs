//! A column of fixed-length `f32` vectors laid out contiguously, plus `1/|v|` per row.
//!
//! The same type serves a sealed segment (bytes borrowed from an mmap'd file) and a freshly
//! built one (owned `Vec`s), so the graph search and brute force read one layout either way.

use std::sync::Arc;

use memmap2::Mmap;

use crate::distance::{Metric, inv_norm};

/// Where a slice of plain old data lives.
#[derive(Clone)]
pub enum Backing<T: Copy + 'static> {
    Owned(Arc<Vec<T>>),
    /// A window of `len` elements at `offset_bytes` in a shared mmap. The offset is aligned
    /// for `T` and the window lies inside the map (checked when the window is made).
    Mapped {
        map: Arc<Mmap>,
        offset_bytes: usize,
        len: usize,
    },
}

impl<T: Copy + 'static> Backing<T> {
    pub fn owned(v: Vec<T>) -> Self {
        Backing::Owned(Arc::new(v))
    }

    /// A typed window into `map`, or `None` if it is out of bounds or misaligned.
    pub fn mapped(map: Arc<Mmap>, offset_bytes: usize, len: usize) -> Option<Self> {
        let size_bytes = len.checked_mul(std::mem::size_of::<T>())?;
        let end = offset_bytes.checked_add(size_bytes)?;
        let aligned =
            (map.as_ptr() as usize + offset_bytes).is_multiple_of(std::mem::align_of::<T>());
        (end <= map.len() && aligned).then_some(Backing::Mapped {
            map,
            offset_bytes,
            len,
        })
    }

    #[inline]
    pub fn as_slice(&self) -> &[T] {
        match self {
            Backing::Owned(v) => v,
            Backing::Mapped {
                map,
                offset_bytes,
                len,
            } => {
                // SAFETY: `mapped` checked bounds and alignment; T is only instantiated with
                // f32, u32 and u8, for which every bit pattern is valid; the map is read-only
                // and lives as long as `self` through the Arc.
                unsafe { std::slice::from_raw_parts(map.as_ptr().add(*offset_bytes).cast(), *len) }
            }
        }
    }
}

/// `n` vectors of `dims` floats, and their inverse norms.
#[derive(Clone)]
pub struct VectorStore {
    dims: usize,
    data: Backing<f32>,
    inv_norms: Backing<f32>,
}

impl VectorStore {
    /// Wraps row-major vectors; computes the inverse norms.
    pub fn from_vec(dims: usize, data: Vec<f32>) -> Self {
        assert!(
            dims > 0 && data.len().is_multiple_of(dims),
            "vector data is not a whole number of rows"
        );
        let inv_norms = data.chunks_exact(dims).map(inv_norm).collect();
        VectorStore {
            dims,
            data: Backing::owned(data),
            inv_norms: Backing::owned(inv_norms),
        }
    }

    pub fn from_parts(dims: usize, data: Backing<f32>, inv_norms: Backing<f32>) -> Self {
        assert!(dims > 0, "vector dims must be positive");
        assert_eq!(data.as_slice().len(), inv_norms.as_slice().len() * dims);
        VectorStore {
            dims,
            data,
            inv_norms,
        }
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn len(&self) -> usize {
        self.inv_norms.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn get(&self, row: u32) -> &[f32] {
        let start = row as usize * self.dims;
        &self.data.as_slice()[start..start + self.dims]
    }

    #[inline]
    pub fn inv_norm(&self, row: u32) -> f32 {
        self.inv_norms.as_slice()[row as usize]
    }

    pub fn data(&self) -> &[f32] {
        self.data.as_slice()
    }

    pub fn inv_norms(&self) -> &[f32] {
        self.inv_norms.as_slice()
    }

    /// The ranking score between a prepared query and a row (see `Metric::score`).
    #[inline]
    pub fn score(&self, metric: Metric, query: &Query, row: u32) -> f32 {
        self.view().score(metric, query, row)
    }

    pub fn view(&self) -> VectorsRef<'_> {
        VectorsRef {
            dims: self.dims,
            data: self.data.as_slice(),
            inv_norms: self.inv_norms.as_slice(),
        }
    }

    pub fn size_bytes(&self) -> usize {
        (self.data.as_slice().len() + self.inv_norms.as_slice().len()) * 4
    }
}

/// Borrowed row-major vectors and inverse norms: what searches read, whoever owns the data.
#[derive(Clone, Copy)]
pub struct VectorsRef<'a> {
    pub dims: usize,
    pub data: &'a [f32],
    pub inv_norms: &'a [f32],
}

impl<'a> VectorsRef<'a> {
    pub fn len(&self) -> usize {
        self.inv_norms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inv_norms.is_empty()
    }

    #[inline]
    pub fn get(&self, row: u32) -> &'a [f32] {
        let start = row as usize * self.dims;
        &self.data[start..start + self.dims]
    }

    #[inline]
    pub fn score(&self, metric: Metric, query: &Query, row: u32) -> f32 {
        metric.score(
            &query.vector,
            self.get(row),
            query.inv_norm,
            inv_norm_for(metric, self.inv_norms, row),
        )
    }

    /// The ranking score between two rows.
    #[inline]
    pub fn score_rows(&self, metric: Metric, a: u32, b: u32) -> f32 {
        metric.score(
            self.get(a),
            self.get(b),
            inv_norm_for(metric, self.inv_norms, a),
            inv_norm_for(metric, self.inv_norms, b),
        )
    }
}

/// `inv_norms[row]` where `metric` divides by norms, else 0 (which it does not read).
///
/// Only cosine touches the array: on other metrics the load would be one more cache miss per
/// scored row (skipping it took 2–3% off a 1M × 128 L2 build).
#[inline]
pub fn inv_norm_for(metric: Metric, inv_norms: &[f32], row: u32) -> f32 {
    if metric.needs_norms() {
        inv_norms[row as usize]
    } else {
        0.0
    }
}

/// A query vector with what every distance evaluation against it reuses.
#[derive(Clone, Debug)]
pub struct Query {
    pub vector: Vec<f32>,
    pub inv_norm: f32,
}

impl Query {
    pub fn new(vector: Vec<f32>) -> Self {
        let inv_norm = inv_norm(&vector);
        Query { vector, inv_norm }
    }
}
