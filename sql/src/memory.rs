//! Memory for queries: one pool for the node and one for each session inside it, through
//! DataFusion's memory pools. Sorts, joins, aggregates and buffers ask their pool before they
//! grow; a query that would pass its session's share or the node's whole answers 53200
//! (PostgreSQL's "out of memory") and the node goes on. Nothing spills to disk: a query that
//! does not fit is refused rather than filling the disk.

use std::fmt;
use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

use crate::limits::Limits;

/// The node's pool, which every session's pool draws from.
#[derive(Debug, Clone)]
pub struct NodeMemory {
    node: Arc<GreedyMemoryPool>,
    query_bytes: usize,
}

impl NodeMemory {
    /// The memory pools of a node with `limits`.
    pub fn new(limits: &Limits) -> NodeMemory {
        NodeMemory {
            node: Arc::new(GreedyMemoryPool::new(limits.node_memory_bytes)),
            query_bytes: limits.query_memory_bytes,
        }
    }

    /// A runtime for one session: its own pool of the query limit (shared by the session's
    /// queries, one at a time but for suspended portals), drawing from the node's, and no
    /// spilling.
    pub fn session_runtime(&self) -> Arc<RuntimeEnv> {
        let pool = SessionPool {
            own: GreedyMemoryPool::new(self.query_bytes),
            node: self.node.clone(),
        };
        RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .expect("a runtime without disk or object store settings builds")
    }

    /// Bytes held by all queries of the node now.
    pub fn reserved_bytes(&self) -> usize {
        self.node.reserved()
    }
}

/// A session's share: every reservation counts against both the session's limit and the
/// node's.
struct SessionPool {
    own: GreedyMemoryPool,
    node: Arc<GreedyMemoryPool>,
}

impl fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What an "out of memory" error says of the pool.
impl fmt::Display for SessionPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "query memory {} of node memory {}", self.own, self.node)
    }
}

impl MemoryPool for SessionPool {
    fn name(&self) -> &str {
        "vecraft-session"
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.own.grow(reservation, additional);
        self.node.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.own.shrink(reservation, shrink);
        self.node.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.own.try_grow(reservation, additional)?;
        if let Err(e) = self.node.try_grow(reservation, additional) {
            self.own.shrink(reservation, additional);
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.own.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.own.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::MemoryConsumer;

    #[test]
    fn a_session_stops_at_its_share_and_the_node_at_its_total() {
        let limits = Limits {
            node_memory_bytes: 1000,
            query_memory_bytes: 600,
            ..Limits::default()
        };
        let node = NodeMemory::new(&limits);
        let (a, b) = (node.session_runtime(), node.session_runtime());
        let ra = MemoryConsumer::new("a").register(&a.memory_pool);
        let rb = MemoryConsumer::new("b").register(&b.memory_pool);
        ra.try_grow(500).unwrap();
        assert!(ra.try_grow(200).is_err(), "past the session's share");
        rb.try_grow(400).unwrap();
        let refused = rb.try_grow(150).unwrap_err();
        assert!(
            matches!(
                refused,
                datafusion::error::DataFusionError::ResourcesExhausted(_)
            ),
            "{refused}"
        );
        assert_eq!(b.memory_pool.reserved(), 400, "a refusal takes nothing");
        assert_eq!(node.reserved_bytes(), 900);
        drop(ra);
        assert_eq!(
            node.reserved_bytes(),
            400,
            "freed memory returns to the node"
        );
        rb.try_grow(150).unwrap();
    }
}
