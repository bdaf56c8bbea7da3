//! The HNSW walk shared by searches and the builder: a greedy descent and a beam search over
//! any adjacency that implements [`Links`].
//!
//! A sealed segment's finished graph (`graph.rs`) hands out its lists as plain slices; the
//! builder's graph (`build.rs`) copies each list under its node's lock. Both get the same
//! loop, monomorphised, so the builder finds a new node's neighbours exactly as a query would.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::index::graph::{MAX_M0, Scored};
use crate::index::sq8::Sq8;
use crate::index::vectors::VectorsRef;
use crate::index::visited::VisitedSet;

/// Adjacency lists a walk can read.
pub trait Links {
    /// Runs `f` over the neighbours of `node` on `layer`.
    fn with_neighbours<R>(&self, node: u32, layer: u8, f: impl FnOnce(&[u32]) -> R) -> R;

    /// Asks the CPU to start loading the list of `node` on `layer`, which the walk is about to
    /// read. A hint only: the default does nothing.
    #[inline]
    fn prefetch_neighbours(&self, _node: u32, _layer: u8) {}
}

/// The rows a walk scores, as bytes it can ask the CPU to fetch before it scores them: the
/// vectors themselves, or their SQ8 codes.
pub trait RowBytes {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn bytes(&self, row: u32) -> &[u8];
}

impl RowBytes for VectorsRef<'_> {
    fn len(&self) -> usize {
        VectorsRef::len(self)
    }

    #[inline]
    fn bytes(&self, row: u32) -> &[u8] {
        crate::index::file::as_bytes(self.get(row))
    }
}

impl RowBytes for Sq8 {
    fn len(&self) -> usize {
        Sq8::len(self)
    }

    #[inline]
    fn bytes(&self, row: u32) -> &[u8] {
        self.row(row)
    }
}

/// Asks the CPU to start loading the cache lines of `v` that begin in `from..to`.
#[inline(always)]
pub(crate) fn prefetch_lines(v: &[u8], from: usize, to: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = v.as_ptr().cast::<i8>();
        // SAFETY: prefetch is a hint; it never faults, even on an invalid address. SSE is part
        // of the x86_64 baseline.
        unsafe {
            for at in (from..to.min(v.len())).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(p.add(at));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (v, from, to);
}

/// Walks `layer` greedily from `entry` to a local minimum of `score`.
pub fn greedy(
    links: &impl Links,
    mut entry: Scored,
    layer: u8,
    score: &impl Fn(u32) -> f32,
) -> Scored {
    loop {
        let before = entry.row;
        entry = links.with_neighbours(entry.row, layer, |list| {
            let mut best = entry;
            for &next in list {
                let s = score(next);
                if s < best.score {
                    best = Scored {
                        score: s,
                        row: next,
                    };
                }
            }
            best
        });
        if entry.row == before {
            return entry;
        }
    }
}

/// Beam search on `layer` from `entries`: the `ef` best rows that `accept` admits, unsorted.
/// Rows failing `accept` are still walked through, so a filter never disconnects the graph.
#[allow(clippy::too_many_arguments)]
pub fn beam(
    links: &impl Links,
    entries: &[Scored],
    layer: u8,
    ef: usize,
    visited: &mut VisitedSet,
    rows: &impl RowBytes,
    score: &impl Fn(u32) -> f32,
    accept: &dyn Fn(u32) -> bool,
) -> Vec<Scored> {
    debug_assert!(ef > 0, "a beam holds at least one row");
    // `frontier` pops the closest unexpanded node; `found` keeps the ef best accepted rows
    // with the worst on top.
    let nodes = rows.len();
    let mut frontier = BinaryHeap::with_capacity((ef * 2).min(nodes));
    let mut found: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef.min(nodes) + 1);
    for &entry in entries {
        if visited.insert(entry.row) {
            frontier.push(Reverse(entry));
            if accept(entry.row) {
                found.push(entry);
                if found.len() > ef {
                    found.pop();
                }
            }
        }
    }
    while let Some(Reverse(current)) = frontier.pop() {
        if found.len() >= ef && current.score > found.peek().map_or(f32::INFINITY, |w| w.score) {
            break;
        }
        // The next node to expand is most often the frontier's best now; its list arrives
        // while this node's neighbours are scored.
        if let Some(Reverse(next)) = frontier.peek() {
            links.prefetch_neighbours(next.row, layer);
        }
        // Mark and prefetch the unvisited neighbours first, then score them: the vectors'
        // cache misses overlap instead of queueing one behind another.
        let mut fresh = [0u32; MAX_M0];
        let fresh_len = links.with_neighbours(current.row, layer, |list| {
            for &next in list {
                visited.prefetch(next);
            }
            let mut len = 0;
            for &next in list {
                if visited.insert(next) && len < MAX_M0 {
                    prefetch_lines(rows.bytes(next), 0, 128);
                    fresh[len] = next;
                    len += 1;
                }
            }
            len
        });
        for (i, &next) in fresh[..fresh_len].iter().enumerate() {
            // The rest of the next row arrives while this one is scored.
            if i + 1 < fresh_len {
                let after = rows.bytes(fresh[i + 1]);
                prefetch_lines(after, 128, after.len());
            }
            let s = score(next);
            let bound = if found.len() < ef {
                f32::INFINITY
            } else {
                found.peek().map_or(f32::INFINITY, |w| w.score)
            };
            if s < bound {
                let hit = Scored {
                    score: s,
                    row: next,
                };
                frontier.push(Reverse(hit));
                if accept(next) {
                    found.push(hit);
                    if found.len() > ef {
                        found.pop();
                    }
                }
            }
        }
    }
    found.into_vec()
}
