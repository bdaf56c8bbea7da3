//! `vecraft-cluster`: where collections live. A [`collection::LocalCollection`] is one or more
//! shards, each a [`local::LocalShard`]: the shard behind its Raft group ([`raft`]; one member
//! on one node, several across nodes over [`rpc`]), so every acknowledged write is durable and
//! went through Raft. The meta manager, the shard router and fail-over build on this
//! shape (see `../shared/DESIGN.md`). `http` is the node's metrics exporter.

pub mod collection;
pub mod http;
pub mod local;
mod metrics;
pub mod raft;
mod route;
pub mod rpc;

#[cfg(test)]
mod tests;
