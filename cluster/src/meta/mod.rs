//! The cluster's metadata and the meta manager that owns it: which nodes there are, which
//! collections, and where each shard's replicas live. It is one small document (`MetaState`)
//! kept in its own Raft group (`meta`) on the meta nodes, replaced whole by each change
//! (the leader applies the change under a lock and proposes the new document), so every meta
//! member holds the same history and any of them can serve it.
//!
//! Every node watches it (`MetaClient`): gateways build their catalog from it, storage nodes
//! start and stop their replicas by it, and the fail-over manager (on the meta leader) edits
//! the placement when a node dies.

mod client;
mod edit;
mod manager;
mod placement;
pub mod privileges;
pub mod roles;

use std::collections::{BTreeMap, BTreeSet};

use vecraft_storage::schema::CollectionSchema;

pub use client::MetaClient;
pub use manager::{MAX_RESERVATION, MetaManager, meta_schema};
pub use placement::place;

use crate::raft::NodeId;
use crate::rpc::GroupId;

/// The name of the sequence of column `column` (its key) of the collection whose first shard
/// group is `group`; `""` gives the prefix of all its sequences. A table made again under its
/// name has new groups, and so new sequences.
pub fn sequence_name(group: &str, column: &str) -> String {
    format!("{group}/{column}")
}

/// Whether `text` is an address a node can be reached at: `IP:PORT`, `[IPv6]:PORT`, or
/// `NAME:PORT` with a host name (a node behind NAT or in a container advertises its name;
/// container names may hold `_`), the port not 0.
pub fn is_host_port(text: &str) -> bool {
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return addr.port() > 0;
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    port.parse::<u16>().is_ok_and(|p| p > 0) && host.len() <= 253 && host.split('.').all(label_ok)
}

/// The meta group's id on every node's RPC server.
pub const META_GROUP: &str = "meta";
/// The action meta operations travel as.
pub const META_ACTION: &str = "meta.op";
/// The meta leader asks a spare node to open a meta member (`node/meta_members.rs`).
pub const META_JOIN: &str = "meta.join";
/// A gateway asks the meta leader to add or remove a member (`node/meta_change.rs`).
pub const META_MEMBERS: &str = "meta.members";

/// A change of the meta group's members an operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MetaMembersChange {
    Add(NodeId),
    Remove(NodeId),
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetaState {
    /// Bumped by every change.
    pub version: u64,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    pub collections: BTreeMap<String, CollectionMeta>,
    /// SQL schemas made by CREATE SCHEMA (`public` is always there and never listed).
    #[serde(default)]
    pub schemas: BTreeSet<String>,
    /// The meta group's voters once a lost member was replaced (`node/meta_members.rs`);
    /// empty while they are the `--meta-peers` the cluster started with.
    #[serde(default)]
    pub meta_members: BTreeSet<NodeId>,
    /// The roles made by CREATE ROLE, and the bootstrap superuser once altered (`roles.rs`).
    #[serde(default)]
    pub roles: roles::Roles,
    /// Owners and grants of collections and schemas (`privileges.rs`).
    #[serde(default)]
    pub privileges: privileges::Acls,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// Where its Flight server listens.
    pub rpc: String,
    /// Where its gateway accepts PostgreSQL clients, if it has one.
    pub sql: Option<String>,
    /// Whether it keeps shard replicas.
    pub storage: bool,
    /// Which start of the node registered (random per process): a restore the node began
    /// before it restarted is abandoned (`Restorer`).
    #[serde(default)]
    pub incarnation: u64,
}

/// The process restoring a collection: the node, and which start of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Restorer {
    pub node: NodeId,
    pub incarnation: u64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CollectionMeta {
    pub schema: CollectionSchema,
    pub replicas: usize,
    pub shards: Vec<ShardMeta>,
    /// Set while a RESTORE fills the collection: its replicas run and take the restorer's
    /// writes, but no gateway serves it to SQL until `Publish` clears this. The meta manager
    /// drops it when the restorer's node registers again (it restarted) or the restorer
    /// gives up. (Always written: the document also travels as postcard, which cannot skip.)
    #[serde(default)]
    pub restoring: Option<Restorer>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardMeta {
    pub group: GroupId,
    /// The nodes that should hold a voting replica, in placement order.
    pub replicas: Vec<NodeId>,
    /// The members the group was created with; the first of them initialises it. Emptied
    /// once the group changes members.
    pub initial: Vec<NodeId>,
}

impl MetaState {
    /// How many replicas each storage node holds.
    pub fn load(&self) -> BTreeMap<NodeId, usize> {
        let mut load: BTreeMap<NodeId, usize> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.storage)
            .map(|(id, _)| (*id, 0))
            .collect();
        for shard in self.collections.values().flat_map(|c| &c.shards) {
            for node in &shard.replicas {
                *load.entry(*node).or_default() += 1;
            }
        }
        load
    }

    /// The Flight address of `node`, if it registered.
    pub fn addr(&self, node: NodeId) -> Option<&str> {
        self.nodes.get(&node).map(|n| n.rpc.as_str())
    }
}

/// What a node asks the meta manager.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum MetaOp {
    /// The current document: from the leader after a read index (`strong`), or from whichever
    /// member answers.
    Read {
        strong: bool,
    },
    Register {
        id: NodeId,
        info: NodeInfo,
    },
    Create {
        name: String,
        schema: CollectionSchema,
        shards: usize,
        replicas: usize,
        /// A collection being restored: hidden until `Publish` (`CollectionMeta::restoring`).
        restoring: Option<Restorer>,
    },
    /// Serves a restored collection to SQL; `Done(false)` when `by` no longer restores it
    /// (abandoned: dropped, or taken over by a restart).
    Publish {
        name: String,
        by: Restorer,
    },
    Drop {
        name: String,
    },
    /// Moves a shard's replica off `dead` onto `new` (fail-over).
    Replace {
        group: GroupId,
        dead: NodeId,
        new: NodeId,
    },
    /// A SQL schema: a name collections may be created in.
    CreateSchema {
        name: String,
    },
    /// Removes an empty SQL schema (refused while a collection is in it).
    DropSchema {
        name: String,
    },
    /// Reserves `count` values of sequence `sequence`: the reply is the first, and the next
    /// reservation starts after the last. A sequence is a row of the meta group beside the
    /// document (it changes without changing the document's version).
    Reserve {
        sequence: String,
        count: u64,
    },
    /// The next value of every sequence whose name starts with `prefix`, read on the leader.
    Sequences {
        prefix: String,
    },
    /// Records the meta group's voters after a membership change (`meta_members`).
    SetMetaMembers {
        members: BTreeSet<NodeId>,
    },
    /// CREATE, ALTER or DROP ROLE (`roles.rs`).
    Role(roles::RoleOp),
    /// GRANT, REVOKE, or a new object's owner (`privileges.rs`).
    Privileges(privileges::PrivilegeOp),
}

impl MetaOp {
    /// Whether doing it twice does no more than doing it once (so a lost answer may be
    /// retried).
    fn idempotent(&self) -> bool {
        if let MetaOp::Role(op) = self {
            return op.idempotent();
        }
        !matches!(
            self,
            MetaOp::Create { .. }
                | MetaOp::Publish { .. }
                | MetaOp::Drop { .. }
                | MetaOp::CreateSchema { .. }
                | MetaOp::DropSchema { .. }
                | MetaOp::Reserve { .. }
        )
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum MetaReply {
    State(MetaState),
    /// Whether the operation changed anything (`false`: it existed, or was gone already).
    Done(bool),
    /// The first value a `Reserve` reserved.
    Reserved(i64),
    /// Each sequence `Sequences` found (its name after the prefix) with its next value.
    Sequences(BTreeMap<String, i64>),
}

#[cfg(test)]
mod tests {
    use super::is_host_port;

    #[test]
    fn addresses_are_ips_or_dns_names_with_a_port() {
        for good in [
            "127.0.0.1:7433",
            "[::1]:7433",
            "node-3:7433",
            "db.example.com:1",
            "project_node_1:7433",
        ] {
            assert!(is_host_port(good), "{good}");
        }
        for bad in [
            "",
            "node3",
            ":7433",
            "node3:",
            "node3:0",
            "node3:70000",
            "-node:1",
            "a..b:1",
            "a b:1",
            "http://node3:7433",
            "127.0.0.1:0",
        ] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }
}
