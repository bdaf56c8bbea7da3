//! Builds a segment's HNSW graph with hnsw_rs and copies it into our flat layout.
//!
//! hnsw_rs needs distances that are never negative and never NaN, and it panics (or exits the
//! process) otherwise. So it is handed a `BuildDistance` that is order-equivalent to the
//! metric and always finite and `>= 0`: squared L2; `1 - a·b` over unit-normalised copies for
//! cosine; `max|v|² - a·b` for inner product (every build query is a segment vector, so
//! `a·b <= max|v|²`); L1 as is. Inputs were validated (finite, right length) before they got
//! here, `m` was bounded (hnsw_rs exits on `m > 256`), and the build runs under
//! `catch_unwind` so a panic inside hnsw_rs becomes an error, not a dead node.

use std::panic::{AssertUnwindSafe, catch_unwind};

use hnsw_rs::anndists::dist::distances::Distance;
use hnsw_rs::hnsw::Hnsw;

use crate::distance::{self, Metric};
use crate::error::{Error, Result};
use crate::index::graph::{GraphShape, HnswGraph};
use crate::index::refine::refine_layer0;
use crate::index::vectors::{Backing, VectorStore};
use crate::schema::HnswParams;

/// Heuristic re-selection passes over layer 0 after the hnsw_rs build.
const REFINE_PASSES: usize = 2;

/// hnsw_rs's own cap on layers.
const MAX_LAYERS: usize = 16;

struct BuildDistance {
    metric: Metric,
    /// Upper bound of `a·b` over the indexed vectors (inner product only).
    max_dot: f32,
}

impl Distance<f32> for BuildDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let d = match self.metric {
            Metric::L2 => distance::l2_squared(a, b),
            Metric::Cosine => 1.0 - distance::dot(a, b),
            Metric::InnerProduct => self.max_dot - distance::dot(a, b),
            Metric::L1 => distance::l1(a, b),
        };
        if d.is_finite() { d.max(0.0) } else { f32::MAX }
    }
}

/// Rows an index may hold: a cosine index leaves out zero vectors (their distance is NaN),
/// as pgvector's does. `is_null` marks rows without a vector.
pub fn indexable_rows(
    vectors: &VectorStore,
    metric: Metric,
    is_null: &dyn Fn(u32) -> bool,
) -> Vec<u32> {
    (0..vectors.len() as u32)
        .filter(|&row| !is_null(row))
        .filter(|&row| metric != Metric::Cosine || vectors.inv_norm(row) > 0.0)
        .collect()
}

/// Builds the graph over `rows` of `vectors`. Rows not listed are nodes without links.
pub fn build_graph(
    vectors: &VectorStore,
    rows: &[u32],
    metric: Metric,
    params: HnswParams,
) -> Result<HnswGraph> {
    params.validate()?;
    let n = vectors.len();
    if n > u32::MAX as usize / 2 {
        return Err(Error::InvalidArgument(format!(
            "segment of {n} rows is too large to index"
        )));
    }
    if rows.is_empty() {
        return Ok(empty_graph(n, params.m));
    }
    let prepared = prepare(vectors, rows, metric);
    let exported = catch_unwind(AssertUnwindSafe(|| {
        let hnsw = Hnsw::<f32, BuildDistance>::new(
            params.m,
            rows.len(),
            MAX_LAYERS,
            params.ef_construction,
            BuildDistance {
                metric,
                max_dot: prepared.max_dot,
            },
        );
        let data: Vec<(&[f32], usize)> = rows
            .iter()
            .map(|&row| (prepared.vector(vectors, row), row as usize))
            .collect();
        hnsw.parallel_insert_slice(&data);
        export(&hnsw, n, params.m)
    }));
    // hnsw_rs's structures are gone; hand their memory back.
    crate::memory::release_free_heap();
    match exported {
        Ok(mut graph) => {
            refine(&mut graph, vectors, rows, metric);
            graph
                .validate()
                .map_err(|e| Error::InvalidArgument(format!("hnsw export: {e}")))?;
            Ok(graph)
        }
        Err(_) => Err(Error::InvalidArgument(
            "hnsw_rs panicked while building the index".into(),
        )),
    }
}

/// Re-selects layer 0 with the HNSW heuristic (see `refine.rs`).
fn refine(graph: &mut HnswGraph, vectors: &VectorStore, rows: &[u32], metric: Metric) {
    let mut indexed = vec![false; vectors.len()];
    for &r in rows {
        indexed[r as usize] = true;
    }
    let mut level0 = graph.level0.as_slice().to_vec();
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    for _ in 0..REFINE_PASSES {
        refine_layer0(
            &mut level0,
            graph.shape.m0 as usize,
            vectors.view(),
            metric,
            &|r| indexed[r as usize],
            threads,
        );
    }
    graph.level0 = Backing::owned(level0);
}

/// The vectors hnsw_rs sees: unit-normalised copies for cosine, the originals otherwise.
struct Prepared {
    normalized: Option<Vec<f32>>,
    max_dot: f32,
}

impl Prepared {
    fn vector<'a>(&'a self, vectors: &'a VectorStore, row: u32) -> &'a [f32] {
        match &self.normalized {
            Some(all) => {
                let d = vectors.dims();
                &all[row as usize * d..(row as usize + 1) * d]
            }
            None => vectors.get(row),
        }
    }
}

fn prepare(vectors: &VectorStore, rows: &[u32], metric: Metric) -> Prepared {
    match metric {
        Metric::Cosine => {
            let mut all = vec![0.0f32; vectors.data().len()];
            let d = vectors.dims();
            for &row in rows {
                let inv = vectors.inv_norm(row);
                let out = &mut all[row as usize * d..(row as usize + 1) * d];
                for (o, x) in out.iter_mut().zip(vectors.get(row)) {
                    *o = x * inv;
                }
            }
            Prepared {
                normalized: Some(all),
                max_dot: 1.0,
            }
        }
        Metric::InnerProduct => {
            let max_sq = rows
                .iter()
                .map(|&r| distance::dot(vectors.get(r), vectors.get(r)))
                .fold(0.0f32, f32::max);
            Prepared {
                normalized: None,
                // Slack for rounding: a·b can exceed max|v|² by a few ulps.
                max_dot: max_sq * 1.001 + 1e-6,
            }
        }
        _ => Prepared {
            normalized: None,
            max_dot: 0.0,
        },
    }
}

fn empty_graph(n: usize, m: usize) -> HnswGraph {
    HnswGraph {
        shape: GraphShape {
            nodes: n as u32,
            m: m as u16,
            m0: 2 * m as u16,
            max_level: 0,
            entry: 0,
        },
        level0: Backing::owned(vec![0; n * (1 + 2 * m)]),
        levels: Backing::owned(vec![0; n]),
        upper_offsets: Backing::owned(vec![0; n]),
        upper: Backing::owned(Vec::new()),
    }
}

/// Copies hnsw_rs's graph into the flat layout of `graph.rs`.
fn export(hnsw: &Hnsw<f32, BuildDistance>, n: usize, m: usize) -> HnswGraph {
    let m0 = 2 * m;
    let mut level0 = vec![0u32; n * (1 + m0)];
    let mut levels = vec![0u8; n];
    let mut upper_offsets = vec![0u32; n];
    let mut upper: Vec<u32> = Vec::new();
    let indexation = hnsw.get_point_indexation();
    let mut level_of = vec![0u8; n];
    for point in indexation {
        level_of[point.get_origin_id()] = point.get_point_id().0;
    }
    for point in indexation {
        let node = point.get_origin_id();
        let level = point.get_point_id().0;
        levels[node] = level;
        upper_offsets[node] = upper.len() as u32;
        let layers = point.get_neighborhood_id();
        for layer in 0..=level as usize {
            let width = if layer == 0 { m0 } else { m };
            let mut block = vec![0u32; 1 + width];
            // hnsw_rs can list a node on a layer above the node's own level; such a link
            // leads nowhere on that layer, so it is dropped.
            let ids = layers.get(layer).map(|l| l.as_slice()).unwrap_or(&[]);
            let on_layer = ids
                .iter()
                .map(|nb| nb.get_origin_id())
                .filter(|&id| level_of[id] as usize >= layer)
                .take(width);
            let mut count = 0;
            for (slot, id) in block[1..].iter_mut().zip(on_layer) {
                *slot = id as u32;
                count += 1;
            }
            block[0] = count as u32;
            if layer == 0 {
                level0[node * (1 + m0)..(node + 1) * (1 + m0)].copy_from_slice(&block);
            } else {
                upper.extend_from_slice(&block);
            }
        }
    }
    let max_level = indexation.get_max_level_observed();
    let entry = indexation
        .get_layer_iterator(max_level as usize)
        .next()
        .map_or(0, |p| p.get_origin_id() as u32);
    HnswGraph {
        shape: GraphShape {
            nodes: n as u32,
            m: m as u16,
            m0: m0 as u16,
            max_level,
            entry,
        },
        level0: Backing::owned(level0),
        levels: Backing::owned(levels),
        upper_offsets: Backing::owned(upper_offsets),
        upper: Backing::owned(upper),
    }
}
