//! `vecraft-cluster`: where collections live. A [`collection::LocalCollection`] is one or more
//! shards, each a [`local::LocalShard`]: the shard behind its Raft group ([`raft`]; one member
//! on one node, several across nodes over [`rpc`]), so every acknowledged write is durable and
//! went through Raft. The meta manager, the shard router and fail-over build on this
//! shape (see `docs/design.md`). `http` is the node's metrics exporter; [`txn`] commits a
//! transaction atomically across shards.

pub mod backup;
mod batch;
mod chunks;
pub mod collection;
pub mod http;
pub mod local;
pub mod meta;
mod metrics;
pub mod node;
mod pipe;
pub mod raft;
pub mod read;
pub mod remote;
mod route;
pub mod rpc;
pub mod shard_handle;
pub mod txn;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;
