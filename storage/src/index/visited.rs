//! A reusable visited set for graph searches.
//!
//! Clearing an `n`-bit set per query costs more than a small search, so each thread keeps one
//! array of generation stamps: a node is visited when its stamp equals the current generation,
//! and starting a new query only bumps the generation (the array is wiped on wrap-around).

use std::cell::RefCell;

use crate::index::file::as_bytes;

pub struct VisitedSet {
    stamps: Vec<u16>,
    generation: u16,
}

impl VisitedSet {
    fn new() -> Self {
        VisitedSet {
            stamps: Vec::new(),
            generation: 0,
        }
    }

    /// Starts a new query over `n` nodes: afterwards nothing is visited.
    fn reset(&mut self, n: usize) {
        if self.stamps.len() < n {
            self.stamps.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamps.fill(0);
            self.generation = 1;
        }
    }

    /// Asks the CPU to fetch `node`'s stamp, so that checking a whole list of neighbours
    /// waits for their cache misses together rather than one after another.
    #[inline]
    pub fn prefetch(&self, node: u32) {
        if let Some(slot) = self.stamps.get(node as usize) {
            crate::index::search::prefetch_lines(as_bytes(std::slice::from_ref(slot)), 0, 1);
        }
    }

    /// Marks `node`; returns true if it was not visited before.
    #[inline]
    pub fn insert(&mut self, node: u32) -> bool {
        let slot = &mut self.stamps[node as usize];
        if *slot == self.generation {
            false
        } else {
            *slot = self.generation;
            true
        }
    }
}

thread_local! {
    static VISITED: RefCell<VisitedSet> = RefCell::new(VisitedSet::new());
}

/// Runs `f` with this thread's visited set, cleared for `n` nodes.
pub fn with_visited<R>(n: usize, f: impl FnOnce(&mut VisitedSet) -> R) -> R {
    VISITED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut set) => {
            set.reset(n);
            f(&mut set)
        }
        // Re-entered on this thread (a search inside a search): use a private set.
        Err(_) => {
            let mut set = VisitedSet::new();
            set.reset(n);
            f(&mut set)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_isolate_queries_even_across_wrap_around() {
        for round in 0..70_000u32 {
            with_visited(8, |v| {
                assert!(v.insert(round % 8), "round {round}");
                assert!(!v.insert(round % 8));
            });
        }
    }
}
