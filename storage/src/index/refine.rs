//! A post-pass over layer 0 of an exported graph that restores the neighbour diversity
//! hnsw_rs loses.
//!
//! hnsw_rs picks a new node's links with the HNSW heuristic, but when a reverse link overflows
//! a neighbour's list it keeps the closest ones ("simple" shrink), which evicts the long,
//! diverse links that make the graph navigable. hnswlib and pgvector shrink with the heuristic
//! too, and their graphs reach a given recall at a smaller `ef`. So after the build we re-select
//! every node's layer-0 list with the heuristic (Malkov & Yashunin, alg. 4) from its current
//! neighbours and their neighbours, then add reverse links where lists have room. The pass reads
//! the old lists and writes new ones, so it runs in parallel without locks.

use std::collections::HashSet;

use crate::distance::Metric;
use crate::index::graph::Scored;
use crate::index::vectors::{Query, VectorsRef};

/// Candidates kept per node, as a multiple of the list width, before the heuristic runs.
const CANDIDATES_PER_SLOT: usize = 4;

/// Re-selects layer 0 (`n * (1 + m0)` count-prefixed lists) in place. `indexed(row)` says which
/// rows are in the graph (others keep empty lists).
pub fn refine_layer0(
    level0: &mut [u32],
    m0: usize,
    vectors: VectorsRef<'_>,
    metric: Metric,
    indexed: &(dyn Fn(u32) -> bool + Sync),
    threads: usize,
) {
    let width = 1 + m0;
    let n = level0.len() / width;
    assert_eq!(level0.len(), n * width, "layer 0 is n fixed-width lists");
    let old: &[u32] = &level0.to_vec();
    let chunk_nodes = n.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for (c, out) in level0.chunks_mut(chunk_nodes * width).enumerate() {
            scope.spawn(move || {
                let first = c * chunk_nodes;
                for (i, list) in out.chunks_mut(width).enumerate() {
                    let node = (first + i) as u32;
                    if indexed(node) {
                        reselect(node, old, width, vectors, metric, list);
                    }
                }
            });
        }
    });
    add_reverse_links(level0, width);
}

fn neighbours(lists: &[u32], width: usize, node: u32) -> &[u32] {
    let block = &lists[node as usize * width..(node as usize + 1) * width];
    &block[1..1 + block[0] as usize]
}

/// Writes the heuristic choice for `node` into `out` (count first).
fn reselect(
    node: u32,
    old: &[u32],
    width: usize,
    vectors: VectorsRef<'_>,
    metric: Metric,
    out: &mut [u32],
) {
    let m0 = width - 1;
    let mut seen: HashSet<u32> = HashSet::with_capacity(width * width);
    seen.insert(node);
    let here = Query {
        vector: vectors.get(node).to_vec(),
        inv_norm: vectors.inv_norms[node as usize],
    };
    let mut candidates: Vec<Scored> = Vec::with_capacity(width * width);
    for &v in neighbours(old, width, node) {
        for &c in std::iter::once(&v).chain(neighbours(old, width, v)) {
            if seen.insert(c) {
                candidates.push(Scored {
                    score: vectors.score(metric, &here, c),
                    row: c,
                });
            }
        }
    }
    candidates.sort_unstable();
    candidates.truncate(CANDIDATES_PER_SLOT * m0);
    let mut chosen: Vec<Scored> = Vec::with_capacity(m0);
    let mut chosen_queries: Vec<Query> = Vec::with_capacity(m0);
    for cand in &candidates {
        if chosen.len() == m0 {
            break;
        }
        // Keep `cand` only if it is closer to `node` than to every neighbour already kept:
        // otherwise that neighbour already leads towards it.
        let dominated = chosen_queries
            .iter()
            .any(|q| vectors.score(metric, q, cand.row) < cand.score);
        if !dominated {
            chosen.push(*cand);
            chosen_queries.push(Query {
                vector: vectors.get(cand.row).to_vec(),
                inv_norm: vectors.inv_norms[cand.row as usize],
            });
        }
    }
    out.fill(0);
    out[0] = chosen.len() as u32;
    for (slot, c) in out[1..].iter_mut().zip(&chosen) {
        *slot = c.row;
    }
}

/// Makes links symmetric where the target list has room.
fn add_reverse_links(level0: &mut [u32], width: usize) {
    let n = level0.len() / width;
    for node in 0..n as u32 {
        let forward: Vec<u32> = neighbours(level0, width, node).to_vec();
        for v in forward {
            let block = &mut level0[v as usize * width..(v as usize + 1) * width];
            let count = block[0] as usize;
            if count + 1 < width && !block[1..1 + count].contains(&node) {
                block[1 + count] = node;
                block[0] += 1;
            }
        }
    }
}
