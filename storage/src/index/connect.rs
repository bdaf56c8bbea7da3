//! Makes every indexed node reachable on layer 0 from the entry point.
//!
//! The heuristic shrink can drop a node's last incoming link, and a node nobody links to is
//! never found by any search. After the build, nodes outside the entry point's reach are
//! adopted: linked from the nearest reachable node with a free slot, or, where all are full,
//! from the nearest one by replacing a link to a node that has another reachable way in.

use crate::index::draft::Draft;
use crate::index::graph::Scored;
use crate::index::search::{Links, greedy};

/// Adds the reverse of every layer-0 link where the target's list has room, nearest first as
/// lists are walked. A shrink keeps only the heuristic's choice, which can leave a node with
/// few links in: on a 3-d lattice about 1% of rows could not find themselves at `ef` 40.
pub fn add_reverse_links(draft: &Draft, rows: &[u32]) -> usize {
    let mut added = 0;
    for &node in rows {
        let forward = draft.with_neighbours(node, 0, |list| list.to_vec());
        for next in forward {
            if draft.with_neighbours(next, 0, |list| {
                list.len() < draft.m0 && !list.contains(&node)
            }) {
                draft.link(next, node, draft.distance(next, node), 0);
                added += 1;
            }
        }
    }
    added
}

/// Passes over the graph before giving up (each pass adopts every stray node it can).
const MAX_PASSES: usize = 4;

/// Links stray nodes of `rows` into the graph; returns how many it adopted.
pub fn reach_all(draft: &Draft, rows: &[u32]) -> usize {
    let mut adopted = 0;
    for _ in 0..MAX_PASSES {
        let mut reached = vec![false; draft.nodes()];
        mark_from(draft, draft.entry, &mut reached);
        let strays: Vec<u32> = rows
            .iter()
            .copied()
            .filter(|&r| !reached[r as usize])
            .collect();
        if strays.is_empty() {
            break;
        }
        let mut in_degree = reached_in_degrees(draft, &reached);
        for stray in strays {
            if !reached[stray as usize] && adopt(draft, stray, &reached, &mut in_degree) {
                adopted += 1;
                mark_from(draft, stray, &mut reached);
            }
        }
    }
    adopted
}

/// Marks every node reachable on layer 0 from `start`.
pub fn mark_from(draft: &Draft, start: u32, reached: &mut [bool]) {
    if reached[start as usize] {
        return;
    }
    reached[start as usize] = true;
    let mut stack = vec![start];
    while let Some(node) = stack.pop() {
        draft.with_neighbours(node, 0, |list| {
            for &next in list {
                if !reached[next as usize] {
                    reached[next as usize] = true;
                    stack.push(next);
                }
            }
        });
    }
}

/// Incoming layer-0 links of each node from reached nodes.
fn reached_in_degrees(draft: &Draft, reached: &[bool]) -> Vec<u32> {
    let mut in_degree = vec![0u32; draft.nodes()];
    for node in (0..draft.nodes() as u32).filter(|&n| reached[n as usize]) {
        draft.with_neighbours(node, 0, |list| {
            for &next in list {
                in_degree[next as usize] += 1;
            }
        });
    }
    in_degree
}

/// Links `stray` from a reachable node near it; false if none could take it.
fn adopt(draft: &Draft, stray: u32, reached: &[bool], in_degree: &mut [u32]) -> bool {
    let near = nearest_reached(draft, stray, reached);
    for hit in &near {
        if draft.with_neighbours(hit.row, 0, |list| list.len() < draft.m0) {
            draft.link(hit.row, stray, hit.score, 0);
            in_degree[stray as usize] += 1;
            return true;
        }
    }
    for hit in &near {
        // The farthest neighbour of `hit` that another reached node also links to.
        let victim = draft.with_neighbours(hit.row, 0, |list| {
            list.iter()
                .copied()
                .filter(|&v| in_degree[v as usize] >= 2)
                .max_by(|&a, &b| {
                    draft
                        .distance(hit.row, a)
                        .total_cmp(&draft.distance(hit.row, b))
                })
        });
        if let Some(victim) = victim {
            draft.relink(hit.row, victim, stray);
            in_degree[victim as usize] -= 1;
            in_degree[stray as usize] += 1;
            return true;
        }
    }
    false
}

/// Reached nodes near `node`, closest first, found by a search from the entry point.
fn nearest_reached(draft: &Draft, node: u32, reached: &[bool]) -> Vec<Scored> {
    let top = Scored {
        score: draft.distance(node, draft.entry),
        row: draft.entry,
    };
    let score = |row: u32| draft.distance(node, row);
    let mut descended = top;
    for layer in (1..=draft.max_level).rev() {
        descended = greedy(draft, descended, layer, &score);
    }
    // The descent may end outside the entry's reach on layer 0; the entry itself never does.
    let mut near = draft.search_layer(node, &[descended, top], 0, draft.ef_construction);
    near.retain(|hit| hit.row != node && reached[hit.row as usize]);
    near
}
