//! `vecraft-cluster`: where collections live. Today one node: [`local::LocalCollection`] is a
//! shard behind its Raft group ([`raft`], one member), so every acknowledged write is durable
//! and went through Raft. The meta manager, the shard router and fail-over build on this
//! shape (see `../shared/DESIGN.md`). `http` is the node's metrics exporter.

pub mod http;
pub mod local;
mod metrics;
pub mod raft;
pub mod rpc;

#[cfg(test)]
mod tests;
