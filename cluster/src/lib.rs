//! `vecraft-cluster`: where collections live. Today one node: [`local::LocalCollection`]
//! puts the storage log in front of a shard so every acknowledged write is durable. The
//! openraft groups, the meta manager, the shard router and fail-over build on this shape
//! (see `../shared/DESIGN.md`). `http` is the node's metrics exporter.

pub mod http;
pub mod local;
mod metrics;

#[cfg(test)]
mod tests;
