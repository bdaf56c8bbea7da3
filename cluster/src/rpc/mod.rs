//! Node-to-node traffic over Arrow Flight (tonic; its service code comes generated with
//! `arrow-flight`, so no `protoc` at build time). One server per node carries every Raft
//! group on it: each message names its group. Raft messages are `DoAction` calls whose body
//! is postcard-encoded `(group, request)` and whose one result is the postcard-encoded reply:
//!
//! | action | request | reply |
//! | --- | --- | --- |
//! | `raft.append` | `AppendEntriesRequest` | `Result<AppendEntriesResponse, RaftError>` |
//! | `raft.vote` | `VoteRequest` | `Result<VoteResponse, RaftError>` |
//! | `raft.pre_vote` | `PreVote` | `bool`: would vote for the asker now (`raft/prevote.rs`) |
//!
//! Shard and node actions, for the router, the meta manager and fail-over:
//!
//! | action | request | reply |
//! | --- | --- | --- |
//! | `shard.write` | `(group, command bytes)` | `Result<(Applied, log index), Failure>` (leader only) |
//! | `shard.status` | `group` | `Result<ShardStatus, Failure>` |
//! | `shard.checkpoint` | `group` | `Result<u64, Failure>` |
//! | `shard.members` | `(group, voters: node → address)` | `Result<(), Failure>` (leader only) |
//! | `shard.hand_over` | `(group, to: node)` | `Result<leader after, Failure>` (leader only; `raft/handoff.rs`) |
//! | `shard.elect` | `(group, term)` | `Result<(), Failure>`: the member campaigns unless it saw a later term (the leader of `term` asks: `raft/handoff.rs`, `step_aside.rs`) |
//! | `node.ping` | `()` | `Pong`: the node answers, and whether it drains |
//! | others (`meta.*`) | handled by whoever registered them (`RaftService::handle`) | |
//!
//! Every call carries the cluster's secret (`auth.rs`); a call without it is refused before
//! its body is read. With the cluster's CA given, the nodes speak TLS to each other, and
//! take only peers whose certificate it signed (`tls.rs`).
//!
//! The data plane: `DoGet` with a ticket of postcard-encoded `ReadTicket` answers a search or
//! a scan of the node's replica of a shard as Arrow Flight data (`Peers::read`), after the
//! replica made sure it may answer at the read's consistency; a refusal comes back as a
//! `Failure` in the status details. A ticket of kind `Snapshot` streams the replica's shard
//! snapshot instead (`snapshot_stream.rs`), in chunks, for a backup. `DoPut` carries a leader's
//! snapshot to a member that fell behind the purged log (`snapshot_push.rs`), in chunks too.

mod auth;
mod client;
mod leading;
mod membership;
mod server;
mod snapshot_check;
mod snapshot_push;
mod snapshot_stream;
mod step_aside;
#[cfg(test)]
mod tests;
mod tls;

pub use auth::ClusterSecret;
pub use client::{CallError, FlightCanvass, FlightNetwork, Peers, Silence};
pub(crate) use membership::{hand_over, set_voters};
pub(crate) use server::encode;
pub use server::{ActionHandler, RaftService, serve, serve_with_tls};
pub(crate) use step_aside::stand_aside_when_cut_off;
pub use tls::ClusterTls;

use std::time::Duration;

use vecraft_storage::error::Refusal;
use vecraft_storage::filter::Filter;
use vecraft_storage::shard::SearchRequest;

use crate::raft::NodeId;
use crate::read::Consistency;

/// Names a Raft group across the cluster: one shard of one collection, or `meta`.
pub type GroupId = String;

pub(crate) const APPEND: &str = "raft.append";
pub(crate) const VOTE: &str = "raft.vote";
pub(crate) const PRE_VOTE: &str = "raft.pre_vote";
pub const WRITE: &str = "shard.write";
pub const STATUS: &str = "shard.status";
pub const CHECKPOINT: &str = "shard.checkpoint";
pub const MEMBERS: &str = "shard.members";
pub const HAND_OVER: &str = "shard.hand_over";
pub const ELECT: &str = "shard.elect";
pub const PING: &str = "node.ping";

/// How long a ping may take: a node that answers no sooner counts as gone.
pub(crate) const PING_TTL: Duration = Duration::from_millis(500);

/// A node's answer to `node.ping`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pong {
    /// The node drains: it takes no leadership and is about to stop.
    pub draining: bool,
}

/// Pings the node at `addr`; its answer, or `None` if it gave none within `PING_TTL`.
pub(crate) async fn ping(peers: &Peers, addr: &str) -> Option<Pong> {
    peers.call::<_, Pong>(addr, PING, &(), PING_TTL).await.ok()
}

/// The largest message either side accepts: a snapshot travels as one, for now.
pub(crate) const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// Why a node did not do what it was asked, in a form the asking node can act on.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Failure {
    /// This member does not lead its group; the leader it knows of, if any. Nothing was done.
    NotLeader(Option<NodeId>),
    /// The node has no member of that group (yet, or any more).
    NoGroup,
    /// The shard refused the command (on every replica alike).
    Refused(Refusal),
    /// A `bounded` read this replica is too far behind for.
    Stale,
    /// The group cannot serve now (an election, shutting down); the outcome of a write that
    /// got this far is unknown.
    Unavailable(String),
    /// The group stopped on a storage failure.
    Stopped(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotLeader(Some(id)) => write!(f, "not the leader (node {id} is)"),
            Failure::NotLeader(None) => f.write_str("not the leader (no leader known)"),
            Failure::NoGroup => f.write_str("no replica of the shard on that node"),
            Failure::Refused(r) => write!(f, "{}", vecraft_storage::Error::from(r.clone())),
            Failure::Stale => f.write_str("the replica is behind the bounded read's index"),
            Failure::Unavailable(m) | Failure::Stopped(m) => f.write_str(m),
        }
    }
}

/// What a `DoGet` reads.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ReadTicket {
    pub group: GroupId,
    pub read: Consistency,
    /// For `bounded`: the applied index the replica must have reached.
    pub min_applied: u64,
    pub kind: ReadKind,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum ReadKind {
    Search(SearchRequest),
    Scan {
        projection: Option<Vec<String>>,
        filter: Option<Filter>,
    },
    /// The replica's shard snapshot (`Shard::write_snapshot`'s stream), for a backup.
    Snapshot,
}

impl ReadKind {
    /// A scan of `projection`'s columns (all, for `None`) of the rows passing `filter`.
    pub fn scan(projection: Option<&[String]>, filter: Option<&Filter>) -> ReadKind {
        ReadKind::Scan {
            projection: projection.map(<[String]>::to_vec),
            filter: filter.cloned(),
        }
    }
}
