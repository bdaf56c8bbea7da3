//! The HNSW graph of a sealed segment in a flat layout we own, and its search loop.
//!
//! Our builder (`build.rs`) writes the graph straight into fixed-width adjacency arrays, so a
//! search touches a few contiguous arrays, reuses one visited set per thread and calls our own
//! SIMD kernels. That is the layout hnswlib searches from, and it is what makes a sealed
//! segment several times faster than hnsw_rs's pointer-chasing search (see the storage
//! benchmark). The same arrays are written to and mmap'd from the segment's vector file; the
//! walk itself is in `search.rs`, shared with the builder.
//!
//! Layout, `n` nodes, node id == segment row:
//! - `level0`: `n * (1 + m0)` u32: a neighbour count, then up to `m0 = 2m` neighbours;
//! - `levels`: `n` u8, the top layer of each node (0 for most);
//! - `upper_offsets`: `n` u32, where a node's upper-layer blocks start in `upper`;
//! - `upper`: for a node of level `l`, `l` blocks of `1 + m` u32 (layer 1 first).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::distance::Metric;
use crate::index::VectorIndex;
use crate::index::search::{Links, RowBytes, beam, greedy, prefetch_lines};
use crate::index::sq8::Sq8;
use crate::index::vectors::{Backing, Query, VectorsRef};
use crate::index::visited::with_visited;

/// A search hit: segment row and ranking score (lower is closer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub score: f32,
    pub row: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(self.row.cmp(&other.row))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Widest beam on layer 1 (it is `ef / 2` when that is smaller); its finds are layer 0's
/// entry points. On 1M × 128 in 1,000 tight clusters, a beam of 32 reached recall@10 0.95 at
/// `ef` 160 where a beam of 8 needed 640; on 100k, where one greedy path finds the cluster,
/// the narrower beam of a small `ef` is up to 25% faster at the same recall.
const UPPER_BEAM: usize = 32;

/// Widest layer-0 list a graph may have (`2 * m` with pgvector's `m <= 100`).
pub const MAX_M0: usize = 200;

/// Scores that are NaN (cosine against a zero vector) rank after everything.
#[inline]
fn rankable(score: f32) -> f32 {
    if score.is_nan() { f32::INFINITY } else { score }
}

/// Parameters fixed when the graph was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphShape {
    pub nodes: u32,
    pub m: u16,
    pub m0: u16,
    pub max_level: u8,
    pub entry: u32,
}

#[derive(Clone)]
pub struct HnswGraph {
    pub shape: GraphShape,
    pub level0: Backing<u32>,
    pub levels: Backing<u8>,
    pub upper_offsets: Backing<u32>,
    pub upper: Backing<u32>,
    /// SQ8 codes of the vectors the graph links, from `sq8::MIN_DIMS` dimensions up (`sq8.rs`;
    /// made by the build, read from the column's file, or made at open for files written
    /// before codes were stored): the walk scores codes and re-scores the `ef` rows it keeps
    /// exactly.
    pub codes: Option<Arc<Sq8>>,
}

impl HnswGraph {
    /// Checks every array length and every neighbour id, so search can index without fear.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_shape()?;
        self.validate_nodes(0..self.shape.nodes)
    }

    /// The array lengths and the entry point: what [`HnswGraph::validate_nodes`] relies on.
    pub fn validate_shape(&self) -> Result<(), String> {
        let s = self.shape;
        let n = s.nodes as usize;
        let (m0, m) = (s.m0 as usize, s.m as usize);
        if self.level0.as_slice().len() != n * (1 + m0) {
            return Err("level0 size".into());
        }
        if self.levels.as_slice().len() != n || self.upper_offsets.as_slice().len() != n {
            return Err("per-node array size".into());
        }
        if self.codes.as_ref().is_some_and(|c| c.len() != n) {
            return Err("a code row per node".into());
        }
        if m0 > MAX_M0 || m > MAX_M0 {
            return Err("list width above the maximum".into());
        }
        if n > 0 && s.entry as usize >= n {
            return Err("entry point out of range".into());
        }
        if n > 0 && self.levels.as_slice()[s.entry as usize] != s.max_level {
            return Err("entry point is not on the top layer".into());
        }
        Ok(())
    }

    /// The levels, upper blocks and neighbour ids of the nodes in `nodes`, once
    /// [`HnswGraph::validate_shape`] has passed.
    pub fn validate_nodes(&self, nodes: std::ops::Range<u32>) -> Result<(), String> {
        let s = self.shape;
        let n = s.nodes as usize;
        let (m0, m) = (s.m0 as usize, s.m as usize);
        assert!(nodes.end as usize <= n, "nodes of the graph");
        for node in nodes {
            let level = self.levels.as_slice()[node as usize];
            if level > s.max_level {
                return Err(format!("node {node} above max level"));
            }
            let end =
                self.upper_offsets.as_slice()[node as usize] as usize + level as usize * (1 + m);
            if end > self.upper.as_slice().len() {
                return Err(format!("node {node} upper blocks out of range"));
            }
            for layer in 0..=level {
                let list = self.raw_neighbours(node, layer);
                let width = if layer == 0 { m0 } else { m };
                if list.is_empty() || list[0] as usize > width {
                    return Err(format!("node {node} layer {layer} count"));
                }
                let levels = self.levels.as_slice();
                let bad = |v: &u32| *v as usize >= n || levels[*v as usize] < layer;
                if list[1..=list[0] as usize].iter().any(bad) {
                    return Err(format!("node {node} layer {layer} neighbour out of range"));
                }
            }
        }
        Ok(())
    }

    /// The count-prefixed neighbour block of `node` on `layer`.
    #[inline]
    fn raw_neighbours(&self, node: u32, layer: u8) -> &[u32] {
        if layer == 0 {
            let width = 1 + self.shape.m0 as usize;
            let start = node as usize * width;
            &self.level0.as_slice()[start..start + width]
        } else {
            let width = 1 + self.shape.m as usize;
            let start = self.upper_offsets.as_slice()[node as usize] as usize
                + (layer as usize - 1) * width;
            &self.upper.as_slice()[start..start + width]
        }
    }

    #[inline]
    pub fn neighbours(&self, node: u32, layer: u8) -> &[u32] {
        let block = self.raw_neighbours(node, layer);
        &block[1..1 + block[0] as usize]
    }
}

impl HnswGraph {
    /// Down the upper layers to layer 0, then the `ef` best rows there that `accept` admits,
    /// unsorted, ranked by `score` over `rows`.
    fn walk(
        &self,
        rows: &impl RowBytes,
        score: &impl Fn(u32) -> f32,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<Scored> {
        let mut entry = Scored {
            score: score(self.shape.entry),
            row: self.shape.entry,
        };
        for layer in (2..=self.shape.max_level).rev() {
            entry = greedy(self, entry, layer, score);
        }
        // Layer 1 is searched with a small beam, and layer 0 starts from all it found: on
        // tightly clustered data a single greedy path can end in a neighbouring cluster that
        // layer 0 has few links out of.
        let nodes = self.shape.nodes as usize;
        let entries = if self.shape.max_level >= 1 {
            with_visited(nodes, |visited| {
                let all = &|_: u32| true;
                let width = (ef / 2).clamp(1, UPPER_BEAM);
                beam(self, &[entry], 1, width, visited, rows, score, all)
            })
        } else {
            vec![entry]
        };
        with_visited(nodes, |visited| {
            beam(self, &entries, 0, ef, visited, rows, score, accept)
        })
    }
}

impl Links for HnswGraph {
    #[inline]
    fn with_neighbours<R>(&self, node: u32, layer: u8, f: impl FnOnce(&[u32]) -> R) -> R {
        f(self.neighbours(node, layer))
    }

    #[inline]
    fn prefetch_neighbours(&self, node: u32, layer: u8) {
        let block = crate::index::file::as_bytes(self.raw_neighbours(node, layer));
        prefetch_lines(block, 0, block.len());
    }
}

impl VectorIndex for HnswGraph {
    /// The `k` best rows passing `accept`, searching layer 0 with a beam of `max(ef, k)`.
    /// Rows failing `accept` are still walked through, so a filter never disconnects the graph.
    /// Returns hits sorted by score.
    fn search(
        &self,
        vectors: &VectorsRef,
        metric: Metric,
        query: &Query,
        k: usize,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<Scored> {
        if self.shape.nodes == 0 || k == 0 {
            return Vec::new();
        }
        debug_assert_eq!(vectors.len(), self.shape.nodes as usize);
        let exact = |row: u32| rankable(vectors.score(metric, query, row));
        let mut best = match self.codes.as_deref() {
            Some(codes) => {
                let prepared = codes.prepare(metric, query);
                let inv_norms = vectors.inv_norms;
                let approx = |row: u32| rankable(codes.score(&prepared, row, inv_norms));
                let mut kept = self.walk(codes, &approx, ef.max(k), accept);
                // Each kept row's vector is a few cache lines nothing has read yet: fetch the
                // next ones while this one is scored.
                const AHEAD: usize = 2;
                let fetch = |hit: Option<&Scored>| {
                    if let Some(hit) = hit {
                        let v = RowBytes::bytes(vectors, hit.row);
                        prefetch_lines(v, 0, v.len());
                    }
                };
                for i in 0..AHEAD {
                    fetch(kept.get(i));
                }
                for i in 0..kept.len() {
                    fetch(kept.get(i + AHEAD));
                    kept[i].score = exact(kept[i].row);
                }
                kept
            }
            None => self.walk(vectors, &exact, ef.max(k), accept),
        };
        best.sort_unstable();
        best.truncate(k);
        best
    }

    fn kind(&self) -> crate::index::IndexKind {
        crate::index::IndexKind::Graph
    }

    fn size_bytes(&self) -> usize {
        4 * (self.level0.as_slice().len()
            + self.upper_offsets.as_slice().len()
            + self.upper.as_slice().len())
            + self.levels.as_slice().len()
            + self.codes.as_ref().map_or(0, |c| c.size_bytes())
    }
}

/// Exact top-`k` over rows `0..n` passing `accept`, for ground truth, small segments and very
/// selective filters. NaN scores (zero vectors under cosine) rank last, as PostgreSQL sorts NaN;
/// they come back as NaN.
pub fn brute_force(
    n: usize,
    score: impl Fn(u32) -> f32,
    k: usize,
    accept: &dyn Fn(u32) -> bool,
) -> Vec<Scored> {
    brute_force_rows(0..n as u32, score, k, accept)
}

/// `brute_force` over the rows of `rows` only.
pub fn brute_force_rows(
    rows: std::ops::Range<u32>,
    score: impl Fn(u32) -> f32,
    k: usize,
    accept: &dyn Fn(u32) -> bool,
) -> Vec<Scored> {
    if k == 0 || rows.is_empty() {
        return Vec::new();
    }
    let n = rows.len();
    let mut heap: BinaryHeap<Scored> = BinaryHeap::with_capacity(k.min(n) + 1);
    for row in rows {
        if !accept(row) {
            continue;
        }
        let hit = Scored {
            score: rankable(score(row)),
            row,
        };
        if heap.len() < k {
            heap.push(hit);
        } else if hit < *heap.peek().expect("heap holds k > 0 hits") {
            heap.pop();
            heap.push(hit);
        }
    }
    let mut best = heap.into_vec();
    best.sort_unstable();
    for hit in &mut best {
        if hit.score == f32::INFINITY {
            hit.score = score(hit.row);
        }
    }
    best
}
