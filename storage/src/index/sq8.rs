//! Scalar quantisation (SQ8) of a sealed segment's vectors, for walking its graph.
//!
//! A graph search reads a few hundred vectors at random, so at hundreds of dimensions it waits
//! on memory more than it computes: 384 floats are 24 cache lines. Each dimension is mapped
//! affinely onto a byte (`x ≈ lo[d] + step[d] * code`), which makes a row a quarter of the
//! size, and the walk scores the full-precision query against the bytes (asymmetric distance:
//! only the rows are approximated). The `ef` rows the walk keeps are then re-scored exactly,
//! so results and reported distances are the full-precision ones; only which rows the beam
//! visits can differ. Qdrant and Milvus search the same way.
//!
//! The codes are made while the segment's graph is built (its inserts walk them too) and
//! stored in the column's file (`file.rs`), so an opened segment reads them from the mmap like
//! the floats: a replica installing a snapshot, or a node restarting, neither spends a second
//! per million 128-d rows making them again nor holds them in anonymous memory. Files written
//! before codes were stored get them made when opened.

use crate::distance::{Metric, cosine_from_parts};
use crate::index::vectors::{Backing, Query, VectorsRef};

/// Quantise only from this many dimensions up: below it a row is a cache line or two
/// anyway, and low-dimensional data (a 3-d lattice) is where a byte per dimension is coarse.
pub const MIN_DIMS: usize = 64;

/// One byte per dimension per row, with each dimension's range.
pub struct Sq8 {
    dims: usize,
    lo: Vec<f32>,
    step: Vec<f32>,
    codes: Backing<u8>,
}

/// A query prepared for scoring against codes (see `Sq8::prepare`).
pub struct Sq8Query {
    metric: Metric,
    /// L2 and L1: `q - lo`, compared with `step * code`.
    /// Inner product and cosine: `q * step`, dotted with `code`.
    terms: Vec<f32>,
    /// Inner product and cosine: `q · lo`, the part of the dot that no code changes.
    offset: f32,
    inv_norm: f32,
}

impl Sq8 {
    /// Codes for every row of `vectors`, each dimension spanning its own minimum to maximum.
    pub fn encode(vectors: &VectorsRef) -> Sq8 {
        let dims = vectors.dims;
        let mut lo = vec![f32::INFINITY; dims];
        let mut hi = vec![f32::NEG_INFINITY; dims];
        for row in vectors.data.chunks_exact(dims) {
            for ((l, h), &x) in lo.iter_mut().zip(hi.iter_mut()).zip(row) {
                *l = l.min(x);
                *h = h.max(x);
            }
        }
        if vectors.is_empty() {
            lo.fill(0.0);
            hi.fill(0.0);
        }
        // In f64: the range of two finite floats can overflow f32 (-3e38 to 3e38).
        let step: Vec<f32> = lo
            .iter()
            .zip(&hi)
            .map(|(&l, &h)| ((h as f64 - l as f64) / 255.0) as f32)
            .collect();
        let inv_step: Vec<f32> = step
            .iter()
            .map(|&s| if s > 0.0 { 1.0 / s } else { 0.0 })
            .collect();
        let mut codes = Vec::with_capacity(vectors.data.len());
        for row in vectors.data.chunks_exact(dims) {
            for d in 0..dims {
                let code = ((row[d] - lo[d]) * inv_step[d]).round().clamp(0.0, 255.0);
                codes.push(code as u8);
            }
        }
        debug_assert_eq!(codes.len(), vectors.len() * dims);
        Sq8::from_parts(dims, lo, step, Backing::owned(codes))
    }

    /// Codes as stored (`file.rs`): each dimension's `lo` and `step`, and `dims` bytes a row.
    pub fn from_parts(dims: usize, lo: Vec<f32>, step: Vec<f32>, codes: Backing<u8>) -> Sq8 {
        assert!(dims > 0, "codes of a column without dimensions");
        assert!(
            lo.len() == dims && step.len() == dims,
            "a range per dimension"
        );
        assert_eq!(codes.as_slice().len() % dims, 0, "codes of whole rows");
        Sq8 {
            dims,
            lo,
            step,
            codes,
        }
    }

    pub fn len(&self) -> usize {
        self.codes.as_slice().len() / self.dims
    }

    pub fn is_empty(&self) -> bool {
        self.codes.as_slice().is_empty()
    }

    /// Each dimension's lowest value, the code 0.
    pub fn lo(&self) -> &[f32] {
        &self.lo
    }

    /// Each dimension's value per code step.
    pub fn step(&self) -> &[f32] {
        &self.step
    }

    /// Whether the codes are read in place from a file's map rather than held in memory.
    pub fn is_mapped(&self) -> bool {
        matches!(self.codes, Backing::Mapped { .. })
    }

    /// Every row's codes, row-major.
    pub fn codes(&self) -> &[u8] {
        self.codes.as_slice()
    }

    /// The codes of `row`.
    #[inline]
    pub fn row(&self, row: u32) -> &[u8] {
        let start = row as usize * self.dims;
        &self.codes.as_slice()[start..start + self.dims]
    }

    pub fn size_bytes(&self) -> usize {
        self.codes.as_slice().len() + 8 * self.dims
    }

    /// What every score against `query` under `metric` reuses.
    pub fn prepare(&self, metric: Metric, query: &Query) -> Sq8Query {
        assert_eq!(query.vector.len(), self.dims, "query of the column's width");
        let q = &query.vector;
        let (terms, offset) = match metric {
            Metric::L2 | Metric::L1 => (q.iter().zip(&self.lo).map(|(x, l)| x - l).collect(), 0.0),
            Metric::InnerProduct | Metric::Cosine => (
                q.iter().zip(&self.step).map(|(x, s)| x * s).collect(),
                q.iter().zip(&self.lo).map(|(x, l)| x * l).sum(),
            ),
        };
        Sq8Query {
            metric,
            terms,
            offset,
            inv_norm: query.inv_norm,
        }
    }

    /// The approximate ranking score (as `Metric::score`) between `query` and `row`; the
    /// rows' inverse norms `inv_norms` are read only for cosine.
    #[inline]
    pub fn score(&self, query: &Sq8Query, row: u32, inv_norms: &[f32]) -> f32 {
        let codes = self.row(row);
        match query.metric {
            Metric::L2 => kernels::residual_squared(&query.terms, &self.step, codes),
            Metric::L1 => kernels::residual_abs(&query.terms, &self.step, codes),
            Metric::InnerProduct => -(query.offset + kernels::weighted(&query.terms, codes)),
            Metric::Cosine => {
                let dot = query.offset + kernels::weighted(&query.terms, codes);
                cosine_from_parts(dot, query.inv_norm, inv_norms[row as usize])
            }
        }
    }
}

/// `Σ w·c`, `Σ (r - s·c)²` and `Σ |r - s·c|` over a row of codes `c`: AVX2 + FMA where the
/// CPU has it, a plain loop otherwise.
mod kernels {
    macro_rules! dispatch {
        ($name:ident, ($($arg:ident: $ty:ty),*)) => {
            #[inline]
            pub fn $name($($arg: $ty),*) -> f32 {
                #[cfg(target_arch = "x86_64")]
                if *crate::distance::HAS_AVX2_FMA {
                    // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                    return unsafe { avx2::$name($($arg),*) };
                }
                portable::$name($($arg),*)
            }
        };
    }

    dispatch!(weighted, (w: &[f32], c: &[u8]));
    dispatch!(residual_squared, (r: &[f32], s: &[f32], c: &[u8]));
    dispatch!(residual_abs, (r: &[f32], s: &[f32], c: &[u8]));

    pub mod portable {
        pub fn weighted(w: &[f32], c: &[u8]) -> f32 {
            w.iter().zip(c).map(|(w, &c)| w * c as f32).sum()
        }
        pub fn residual_squared(r: &[f32], s: &[f32], c: &[u8]) -> f32 {
            r.iter()
                .zip(s)
                .zip(c)
                .map(|((r, s), &c)| {
                    let d = r - s * c as f32;
                    d * d
                })
                .sum()
        }
        pub fn residual_abs(r: &[f32], s: &[f32], c: &[u8]) -> f32 {
            r.iter()
                .zip(s)
                .zip(c)
                .map(|((r, s), &c)| (r - s * c as f32).abs())
                .sum()
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use std::arch::x86_64::*;

        /// Eight codes at `c[i..i + 8]` as floats. The caller keeps `i + 8 <= c.len()`.
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn codes8(c: &[u8], i: usize) -> __m256 {
            // SAFETY: reads 8 bytes at `i`, inside `c` by the caller's bound.
            unsafe {
                let bytes = _mm_loadl_epi64(c.as_ptr().add(i).cast());
                _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes))
            }
        }

        /// `r - s * c` for the eight dimensions at `i`. The caller keeps `i + 8` within all three.
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn residual8(r: &[f32], s: &[f32], c: &[u8], i: usize) -> __m256 {
            // SAFETY: reads 8 elements at `i` of each, inside them by the caller's bound.
            unsafe {
                _mm256_fnmadd_ps(
                    _mm256_loadu_ps(s.as_ptr().add(i)),
                    codes8(c, i),
                    _mm256_loadu_ps(r.as_ptr().add(i)),
                )
            }
        }

        /// Runs `$step(acc, i)` over `n / 8` blocks of eight with two accumulators, then
        /// `$tail(j)` over what remains.
        macro_rules! blocks {
            ($n:expr, |$acc:ident, $i:ident| $step:expr, |$j:ident| $tail:expr) => {{
                let n = $n;
                let mut accs = [_mm256_setzero_ps(); 2];
                let mut $i = 0;
                while $i + 16 <= n {
                    for k in 0..2 {
                        let $acc = accs[k];
                        accs[k] = {
                            let $i = $i + 8 * k;
                            $step
                        };
                    }
                    $i += 16;
                }
                while $i + 8 <= n {
                    let $acc = accs[0];
                    accs[0] = $step;
                    $i += 8;
                }
                let mut total = crate::distance::avx2::lane_sum(_mm256_add_ps(accs[0], accs[1]));
                for $j in $i..n {
                    total += $tail;
                }
                total
            }};
        }

        #[target_feature(enable = "avx2,fma")]
        pub unsafe fn weighted(w: &[f32], c: &[u8]) -> f32 {
            let n = w.len().min(c.len());
            // SAFETY: every load reads 8 elements at `i` with `i + 8 <= n`.
            unsafe {
                blocks!(
                    n,
                    |acc, i| _mm256_fmadd_ps(_mm256_loadu_ps(w.as_ptr().add(i)), codes8(c, i), acc),
                    |j| w[j] * c[j] as f32
                )
            }
        }

        #[target_feature(enable = "avx2,fma")]
        pub unsafe fn residual_squared(r: &[f32], s: &[f32], c: &[u8]) -> f32 {
            let n = r.len().min(s.len()).min(c.len());
            // SAFETY: every load reads 8 elements at `i` with `i + 8 <= n`.
            unsafe {
                blocks!(
                    n,
                    |acc, i| {
                        let d = residual8(r, s, c, i);
                        _mm256_fmadd_ps(d, d, acc)
                    },
                    |j| {
                        let d = r[j] - s[j] * c[j] as f32;
                        d * d
                    }
                )
            }
        }

        #[target_feature(enable = "avx2,fma")]
        pub unsafe fn residual_abs(r: &[f32], s: &[f32], c: &[u8]) -> f32 {
            let n = r.len().min(s.len()).min(c.len());
            // SAFETY: every load reads 8 elements at `i` with `i + 8 <= n`.
            unsafe {
                blocks!(
                    n,
                    |acc, i| {
                        let d = residual8(r, s, c, i);
                        _mm256_add_ps(acc, _mm256_andnot_ps(_mm256_set1_ps(-0.0), d))
                    },
                    |j| (r[j] - s[j] * c[j] as f32).abs()
                )
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn simd_and_portable_kernels_agree_for_every_length() {
            for n in 0..70usize {
                let w: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
                let s: Vec<f32> = (0..n)
                    .map(|i| 0.01 + (i as f32 * 0.11).cos().abs())
                    .collect();
                let c: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
                let close = |a: f32, b: f32| (a - b).abs() <= 1e-3 * (1.0 + b.abs());
                assert!(close(
                    super::weighted(&w, &c),
                    super::portable::weighted(&w, &c)
                ));
                assert!(close(
                    super::residual_squared(&w, &s, &c),
                    super::portable::residual_squared(&w, &s, &c)
                ));
                assert!(close(
                    super::residual_abs(&w, &s, &c),
                    super::portable::residual_abs(&w, &s, &c)
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::vectors::VectorStore;

    #[test]
    fn quantised_scores_stay_close_to_exact_ones() {
        let (rows, dims) = (300usize, 96usize);
        let data: Vec<f32> = (0..rows * dims)
            .map(|i| ((i as f32 * 0.7311).sin() * 3.0) + (i % 7) as f32 * 0.1)
            .collect();
        let store = VectorStore::from_vec(dims, data);
        let view = store.view();
        let sq8 = Sq8::encode(&view);
        assert_eq!(sq8.len(), rows);
        let query = Query::new((0..dims).map(|d| (d as f32 * 0.05).cos()).collect());
        // Each coordinate is off by at most half a step, which bounds each metric's error.
        let half_steps: Vec<f32> = sq8.step.iter().map(|s| s / 2.0).collect();
        let weighted: f32 = query
            .vector
            .iter()
            .zip(&half_steps)
            .map(|(q, h)| q.abs() * h)
            .sum();
        let euclidean = half_steps.iter().map(|h| h * h).sum::<f32>().sqrt();
        let manhattan: f32 = half_steps.iter().sum();
        for metric in [Metric::L2, Metric::L1, Metric::InnerProduct, Metric::Cosine] {
            let prepared = sq8.prepare(metric, &query);
            for row in 0..rows as u32 {
                let inv_norm = view.inv_norms[row as usize];
                let exact = view.score(metric, &query, row);
                let approx = sq8.score(&prepared, row, view.inv_norms);
                let (error, bound) = match metric {
                    Metric::L2 => ((exact.sqrt() - approx.sqrt()).abs(), euclidean),
                    Metric::L1 => ((exact - approx).abs(), manhattan),
                    Metric::InnerProduct => ((exact - approx).abs(), weighted),
                    Metric::Cosine => {
                        let bound = weighted * query.inv_norm * inv_norm;
                        ((exact - approx).abs(), bound)
                    }
                };
                assert!(
                    error <= bound * 1.001 + 1e-5,
                    "{metric:?} row {row}: {exact} vs {approx}, bound {bound}"
                );
            }
        }
    }

    #[test]
    fn a_constant_dimension_and_an_empty_column_encode() {
        let store = VectorStore::from_vec(64, vec![1.5; 64 * 3]);
        let sq8 = Sq8::encode(&store.view());
        let query = Query::new(vec![1.5; 64]);
        let prepared = sq8.prepare(Metric::L2, &query);
        assert_eq!(sq8.score(&prepared, 2, &[]), 0.0);
        let empty = VectorStore::from_vec(64, Vec::new());
        assert!(Sq8::encode(&empty.view()).is_empty());
        // A range wider than f32::MAX still has a finite step, so codes and scores are defined.
        let mut wide = vec![0.0f32; 64 * 2];
        wide[0] = -3e38;
        wide[64] = 3e38;
        let wide = Sq8::encode(&VectorStore::from_vec(64, wide).view());
        assert!(wide.step.iter().all(|s| s.is_finite()));
        let prepared = wide.prepare(Metric::InnerProduct, &Query::new(vec![0.5; 64]));
        assert!(!wide.score(&prepared, 1, &[]).is_nan());
    }
}
