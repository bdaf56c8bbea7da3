//! The growing segment's live index: an hnsw_rs graph that takes inserts while it is searched.
//!
//! Sealed segments get our own builder (`build.rs`), which needs all rows up front. A growing
//! segment's rows arrive one write at a time and must be searchable at once; a graph that
//! takes concurrent inserts and searches is exactly what hnsw_rs is, so it serves here. A
//! background thread of the shard (`shard/maintain.rs`) feeds it the rows it lacks, in order:
//! rows `0..covered` have been offered to the graph, and a search walks the graph for those
//! and scans the rest (`covered..`) exactly, so a row is findable from the moment it is
//! written and through the graph soon after. When the segment seals, the sealed graph
//! replaces this one.
//!
//! hnsw_rs needs distances that are never negative or NaN (it panics or exits otherwise), so
//! it sees squared L2, L1, and `1 - a·b` over unit-normalised copies for cosine. Inner product
//! has no such form without a bound on the norms, which a growing segment does not have:
//! such a column is scanned until it seals. NULL vectors, and zero vectors under cosine, are
//! not in the graph, as in a sealed one. Inputs were validated (finite, right length) before
//! they got here, and `m` is at most 100 (hnsw_rs exits the process above 256).

use std::sync::atomic::{AtomicU32, Ordering};

use hnsw_rs::anndists::dist::distances::Distance;
use hnsw_rs::hnsw::Hnsw;
use roaring::RoaringBitmap;

use crate::distance::{self, Metric};
use crate::index::VectorIndex;
use crate::index::graph::{Scored, brute_force_rows};
use crate::index::vectors::{Query, VectorsRef};
use crate::schema::HnswParams;

/// hnsw_rs's cap on layers.
const MAX_LAYERS: usize = 16;

/// The size hnsw_rs preallocates for (a hint; it grows past it).
const CAPACITY_HINT_ROWS: usize = 50_000;

struct LiveDistance {
    metric: Metric,
}

impl Distance<f32> for LiveDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let d = match self.metric {
            Metric::L2 => distance::l2_squared(a, b),
            Metric::Cosine => 1.0 - distance::dot(a, b),
            Metric::L1 => distance::l1(a, b),
            Metric::InnerProduct => unreachable!("no live index is made for inner product"),
        };
        if d.is_finite() { d.max(0.0) } else { f32::MAX }
    }
}

pub struct LiveIndex {
    metric: Metric,
    dims: usize,
    graph: Hnsw<'static, f32, LiveDistance>,
    /// Rows below this were offered to the graph (NULL and zero vectors are skipped).
    covered: AtomicU32,
}

/// Rows a live index lacks, copied out of the segment so they are inserted without its lock.
pub struct Backlog {
    pub first_row: u32,
    pub end_row: u32,
    dims: usize,
    /// `(row, vector)` for the rows to insert, vectors as hnsw_rs compares them.
    rows: Vec<u32>,
    vectors: Vec<f32>,
}

impl LiveIndex {
    /// A live index for `metric`, or `None` where hnsw_rs cannot serve it (inner product).
    pub fn new(metric: Metric, params: HnswParams, dims: usize) -> Option<LiveIndex> {
        if metric == Metric::InnerProduct || params.validate().is_err() {
            return None;
        }
        let graph = Hnsw::new(
            params.m,
            CAPACITY_HINT_ROWS,
            MAX_LAYERS,
            params.ef_construction,
            LiveDistance { metric },
        );
        Some(LiveIndex {
            metric,
            dims,
            graph,
            covered: AtomicU32::new(0),
        })
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Rows `0..covered()` have been offered to the graph.
    pub fn covered(&self) -> u32 {
        self.covered.load(Ordering::Acquire)
    }

    /// The next rows, at most `max_rows`, that the graph lacks among the `vectors` of a
    /// segment (NULL rows in `nulls`); `None` when it has them all.
    pub fn backlog(
        &self,
        vectors: VectorsRef<'_>,
        nulls: &RoaringBitmap,
        max_rows: usize,
    ) -> Option<Backlog> {
        let first_row = self.covered();
        let end_row = (vectors.len() as u32).min(first_row.saturating_add(max_rows as u32));
        if first_row >= end_row {
            return None;
        }
        debug_assert_eq!(vectors.dims, self.dims);
        let mut backlog = Backlog {
            first_row,
            end_row,
            dims: self.dims,
            rows: Vec::new(),
            vectors: Vec::new(),
        };
        for row in first_row..end_row {
            let inv_norm = vectors.inv_norms[row as usize];
            if nulls.contains(row) || (self.metric == Metric::Cosine && inv_norm <= 0.0) {
                continue;
            }
            backlog.rows.push(row);
            let v = vectors.get(row);
            match self.metric {
                Metric::Cosine => backlog.vectors.extend(v.iter().map(|x| x * inv_norm)),
                _ => backlog.vectors.extend_from_slice(v),
            }
        }
        Some(backlog)
    }

    /// Inserts `backlog` (taken from this index by `backlog`) and moves `covered` past it.
    pub fn insert(&self, backlog: &Backlog) {
        assert_eq!(
            backlog.first_row,
            self.covered(),
            "one feeder, in row order"
        );
        let vectors = backlog.vectors.chunks_exact(backlog.dims.max(1));
        for (&row, vector) in backlog.rows.iter().zip(vectors) {
            self.graph.insert_slice((vector, row as usize));
        }
        self.covered.store(backlog.end_row, Ordering::Release);
    }
}

impl VectorIndex for LiveIndex {
    /// The graph's hits among covered rows and an exact scan of the rest, merged; scores are
    /// the metric's ranking scores, as every other segment gives them.
    fn search(
        &self,
        vectors: &VectorsRef,
        metric: Metric,
        query: &Query,
        k: usize,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<Scored> {
        debug_assert_eq!(
            metric, self.metric,
            "searched with the metric it was built for"
        );
        let covered = self.covered().min(vectors.len() as u32);
        let mut hits = if covered == 0 || k == 0 {
            Vec::new()
        } else {
            let unit: Vec<f32>;
            let probe = match metric {
                Metric::Cosine => {
                    unit = query.vector.iter().map(|x| x * query.inv_norm).collect();
                    &unit
                }
                _ => &query.vector,
            };
            // Rows inserted after `covered` was read are left to the scan below.
            let filter = |id: &usize| *id < covered as usize && accept(*id as u32);
            self.graph
                .search_filter(probe, k, ef.max(k), Some(&filter))
                .into_iter()
                .map(|n| {
                    let row = n.d_id as u32;
                    Scored {
                        score: vectors.score(metric, query, row),
                        row,
                    }
                })
                .collect()
        };
        let tail = covered..vectors.len() as u32;
        let score = |row: u32| vectors.score(metric, query, row);
        hits.extend(brute_force_rows(tail, score, k, accept));
        hits.sort_unstable();
        hits.dedup_by_key(|h| h.row);
        hits.truncate(k);
        hits
    }

    fn kind(&self) -> crate::index::IndexKind {
        crate::index::IndexKind::Live
    }

    fn size_bytes(&self) -> usize {
        // A copy of each vector, and about `2m` links on layer 0 (hnsw_rs keeps a pointer and
        // a distance for each).
        let rows = self.graph.get_nb_point();
        let links = 2 * self.graph.get_max_nb_connection() as usize;
        rows * (4 * self.dims + 16 * links)
    }
}
