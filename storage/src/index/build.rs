//! Builds a segment's HNSW graph, on the flat layout it is served from.
//!
//! Each node's level is drawn up front from a hash of the seed and its row, and the first node
//! of the top level is inserted first, so the entry point never moves. The other nodes are
//! inserted by `threads` workers taking rows in order (`draft.rs` has the per-list locking and
//! the heuristic); with one thread the graph depends only on the seed and the data. Last,
//! `connect.rs` adds reverse links where lists have room and makes every indexed node
//! reachable from the entry point. From `sq8::MIN_DIMS` dimensions up, the inserts walk SQ8
//! codes of the vectors, as searches do, and the heuristic chooses among the rows found by
//! their exact distances.
//!
//! Distances are the metric's ranking scores (`Metric::score`): squared L2, `1 - cos`,
//! `-a·b`, L1. Inputs were validated (finite, right length) before they got here, and a cosine
//! index leaves out zero vectors, so no score is NaN.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::distance::Metric;
use crate::error::{Error, Result};
use crate::index::connect::{add_reverse_links, reach_all};
use crate::index::draft::Draft;
use crate::index::graph::HnswGraph;
use crate::index::sq8::{self, Sq8};
use crate::index::vectors::VectorStore;
use crate::schema::HnswParams;

/// The highest layer a node can be drawn for.
const MAX_LEVEL: u8 = 16;

/// How a build runs. The graph is a function of the data, the parameters and the seed when
/// `threads` is 1; with more threads, insert order (and so the graph) varies slightly.
#[derive(Clone, Copy, Debug)]
pub struct BuildOptions {
    pub seed: u64,
    pub threads: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            seed: 0x5eed_4e57,
            threads: std::thread::available_parallelism().map_or(1, |p| p.get()),
        }
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

/// Builds the graph over `rows` of `vectors` with the default options. Rows not listed are
/// nodes without links.
pub fn build_graph(
    vectors: &VectorStore,
    rows: &[u32],
    metric: Metric,
    params: HnswParams,
) -> Result<HnswGraph> {
    build_graph_with(vectors, rows, metric, params, BuildOptions::default())
}

pub fn build_graph_with(
    vectors: &VectorStore,
    rows: &[u32],
    metric: Metric,
    params: HnswParams,
    options: BuildOptions,
) -> Result<HnswGraph> {
    params.validate()?;
    let n = vectors.len();
    if n > u32::MAX as usize / 2 {
        return Err(Error::InvalidArgument(format!(
            "segment of {n} rows is too large to index"
        )));
    }
    let levels = draw_levels(n, rows, params.m, options.seed);
    let Some(entry) = top_node(rows, &levels) else {
        return Ok(Draft::new(vectors.view(), metric, params.m, 0, levels, 0).finish());
    };
    let mut draft = Draft::new(
        vectors.view(),
        metric,
        params.m,
        params.ef_construction,
        levels,
        entry,
    );
    // From the width at which searches walk codes, the inserts' walks do too.
    if vectors.dims() >= sq8::MIN_DIMS {
        draft.walk_codes(Sq8::encode(&vectors.view()));
    }
    insert_all(&draft, rows, entry, options.threads.max(1));
    add_reverse_links(&draft, rows);
    reach_all(&draft, rows);
    let graph = draft.finish();
    // The draft's lists were copied out; hand their memory back.
    crate::memory::release_free_heap();
    graph.validate().map_err(|e| {
        Error::InvalidArgument(format!("hnsw build produced an invalid graph: {e}"))
    })?;
    Ok(graph)
}

/// Builds of at least this many rows report their progress on stderr, once per tenth: a long
/// `CREATE INDEX` or seal shows in the server's log how far it got and how long it has left.
const PROGRESS_MIN_ROWS: usize = 100_000;

/// One progress line: `done` of `total` rows inserted after `elapsed_s` seconds, with the
/// time left at the rate so far.
fn progress_line(done: usize, total: usize, elapsed_s: f64) -> String {
    assert!(
        0 < done && done <= total,
        "progress of {done} out of {total}"
    );
    let left_s = elapsed_s * (total - done) as f64 / done as f64;
    format!(
        "vecraft: building an HNSW graph: {}% ({done} of {total} rows), {elapsed_s:.0} s, \
         about {left_s:.0} s left",
        (done * 100 + total / 2) / total
    )
}

/// Inserts every row but `entry` (already the graph's only node) from `threads` workers.
fn insert_all(draft: &Draft, rows: &[u32], entry: u32, threads: usize) {
    let next = AtomicUsize::new(0);
    let started = std::time::Instant::now();
    let report = rows.len() >= PROGRESS_MIN_ROWS;
    // Row `i` is the first of tenth `k` (1..=9) when it is `k * len / 10`.
    let starts_a_tenth = |i: usize| {
        let k = i * 10 / rows.len();
        (1..=9).contains(&k) && i == k * rows.len() / 10
    };
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if report && i < rows.len() && starts_a_tenth(i) {
                let elapsed_s = started.elapsed().as_secs_f64();
                eprintln!("{}", progress_line(i, rows.len(), elapsed_s));
            }
            let Some(&row) = rows.get(i) else { break };
            if row != entry {
                draft.insert(row);
            }
        }
    };
    if threads == 1 {
        work();
        return;
    }
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(work);
        }
    });
}

/// Each indexed row's level: `floor(-ln(u) / ln(m))` for a `u` in (0, 1] hashed from the seed
/// and the row, so a row's level does not depend on insert order.
fn draw_levels(n: usize, rows: &[u32], m: usize, seed: u64) -> Vec<u8> {
    let scale = 1.0 / (m as f64).ln();
    let mut levels = vec![0u8; n];
    for &row in rows {
        let bits = splitmix64(seed ^ splitmix64(row as u64)) >> 11;
        let u = (bits as f64 + 1.0) / (1u64 << 53) as f64;
        let level = (-u.ln() * scale).floor().min(MAX_LEVEL as f64);
        levels[row as usize] = level as u8;
    }
    levels
}

/// The first row of the highest level.
fn top_node(rows: &[u32], levels: &[u8]) -> Option<u32> {
    let top = rows.iter().map(|&r| levels[r as usize]).max()?;
    rows.iter().copied().find(|&r| levels[r as usize] == top)
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod progress_tests {
    use super::progress_line;

    #[test]
    fn a_progress_line_says_how_far_and_how_long_is_left() {
        assert_eq!(
            progress_line(300_000, 1_000_000, 30.0),
            "vecraft: building an HNSW graph: 30% (300000 of 1000000 rows), 30 s, about 70 s left"
        );
        assert!(progress_line(5, 5, 2.0).ends_with("100% (5 of 5 rows), 2 s, about 0 s left"));
    }
}
