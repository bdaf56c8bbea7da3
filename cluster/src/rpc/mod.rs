//! Node-to-node traffic over Arrow Flight (tonic; its service code comes generated with
//! `arrow-flight`, so no `protoc` at build time). One server per node carries every Raft
//! group on it: each message names its group. Raft messages are `DoAction` calls whose body
//! is postcard-encoded `(group, request)` and whose one result is the postcard-encoded reply:
//!
//! | action | request | reply |
//! | --- | --- | --- |
//! | `raft.append` | `AppendEntriesRequest` | `Result<AppendEntriesResponse, RaftError>` |
//! | `raft.vote` | `VoteRequest` | `Result<VoteResponse, RaftError>` |
//! | `raft.snapshot` | `(Vote, SnapshotMeta, snapshot stream bytes)` | `Result<SnapshotResponse, Fatal>` |
//!
//! The data plane: `DoGet` with a ticket of postcard-encoded `(group, SearchRequest)` answers
//! with the replica's k nearest as Arrow Flight data (`rpc::search`); scans come with the
//! router.

mod client;
mod server;
#[cfg(test)]
mod tests;

pub use client::{FlightNetwork, Peers, search};
pub use server::{RaftService, serve};

/// Names a Raft group across the cluster: one shard of one collection.
pub type GroupId = String;

pub(crate) const APPEND: &str = "raft.append";
pub(crate) const VOTE: &str = "raft.vote";
pub(crate) const SNAPSHOT: &str = "raft.snapshot";

/// The largest message either side accepts: a snapshot travels as one, for now.
pub(crate) const MAX_MESSAGE_BYTES: usize = 1 << 30;
