//! A node of a cluster: its Flight server, its member of the meta group (meta role), the
//! shard replicas the placement gives it (storage role), and what its gateway needs (the
//! metadata, kept fresh, and the router's shards). One binary plays every role; which ones a
//! node plays is its configuration (`NodeOptions`).
//!
//! Background work runs on the groups' runtime: a watcher keeps the node's copy of the
//! metadata fresh (`view`), the replica keeper starts and removes replicas as the placement
//! says (`replicas.rs`), and on the meta leader the fail-over manager watches the storage
//! nodes and moves replicas off dead ones (`failover.rs`) while the balancer evens out
//! which node leads how many shards (`balance.rs`). A node that drains hands its
//! leaderships over first (`drain.rs`).

mod balance;
mod drain;
mod failover;
mod meta_change;
mod meta_members;
mod replicas;
mod spread;

pub use drain::HandedOver;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use openraft::BasicNode;
use tokio::sync::watch;
use vecraft_storage::schema::CollectionSchema;
use vecraft_storage::shard::ShardOptions;
use vecraft_storage::{Error, Result};

use crate::collection::{Collection, SequenceReader};
use crate::local::LocalShard;
use crate::meta::{
    CollectionMeta, META_ACTION, META_GROUP, MetaClient, MetaManager, MetaOp, MetaState, NodeInfo,
    Restorer, sequence_name,
};
use crate::raft::NodeId;
use crate::remote::RemoteShard;
use crate::rpc::{ClusterSecret, ClusterTls, Peers, RaftService};
use crate::shard_handle::ShardHandle;

/// How often a node refreshes its copy of the metadata.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);
/// How long `create_collection` waits for every new shard to elect a leader.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
/// The meta group checkpoints after this many bytes of documents (a few hundred DDLs).
const META_CHECKPOINT_LOG_BYTES: u64 = 4 << 20;

/// What a node is and where it finds the others.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub id: NodeId,
    /// Where the Flight server listens.
    pub rpc: SocketAddr,
    /// Where other nodes reach the Flight server, when not at `rpc` (NAT, a container's
    /// mapped port, a proxy): `HOST:PORT`.
    pub advertise_rpc: Option<String>,
    /// Where the gateway accepts PostgreSQL clients (gateway role), as others should reach it.
    pub sql: Option<String>,
    pub data_dir: PathBuf,
    pub meta: bool,
    pub storage: bool,
    /// The meta group: node id → Flight address, the same on every node.
    pub meta_peers: BTreeMap<NodeId, String>,
    /// How long a storage node may be unreachable before its replicas are rebuilt elsewhere.
    pub failover_after: Duration,
    /// What every node of the cluster holds, and every call between them carries.
    pub secret: ClusterSecret,
    /// TLS between the nodes, with the cluster's CA (`rpc/tls.rs`); `None`: plain TCP.
    pub tls: Option<ClusterTls>,
}

pub struct ClusterNode {
    options: NodeOptions,
    service: RaftService,
    peers: Peers,
    meta_client: Arc<MetaClient>,
    /// Its member of the meta group: from the start (meta role, or a member made to replace
    /// a lost one before a restart), or once the meta leader asks (`meta_members.rs`).
    meta: OnceLock<Arc<MetaManager>>,
    /// Held while the meta member is being opened.
    joining_meta: parking_lot::Mutex<()>,
    /// Held by a change of the meta group's members (a command's, or a replacement's).
    meta_change: tokio::sync::Mutex<()>,
    view: watch::Sender<Arc<MetaState>>,
    /// Tells this start of the node from earlier ones (`NodeInfo::incarnation`).
    incarnation: u64,
    /// Set by [`ClusterNode::drain`].
    draining: AtomicBool,
}

impl ClusterNode {
    /// Starts the node's server and roles; returns once it listens (the meta group and the
    /// replicas come up in the background).
    pub fn start(mut options: NodeOptions) -> Result<Arc<ClusterNode>> {
        let listed = options.meta_peers.contains_key(&options.id);
        if options.meta != listed {
            let why = match listed {
                false => "has the meta role but is not among the meta peers",
                true => "is among the meta peers but does not have the meta role",
            };
            return Err(Error::InvalidArgument(format!("node {} {why}", options.id)));
        }
        let listener = std::net::TcpListener::bind(options.rpc).map_err(|e| {
            Error::io(
                "listen for peers on",
                PathBuf::from(options.rpc.to_string()),
                e,
            )
        })?;
        let service = RaftService::default();
        // The bound address (port 0 picks one) is the one others are told.
        let (secret, tls) = (options.secret.clone(), options.tls.clone());
        options.rpc = crate::rpc::serve_with_tls(listener, service.clone(), secret, tls)
            .map_err(|e| Error::io("serve peers on", PathBuf::from(options.rpc.to_string()), e))?;
        let peers = Peers::with_tls(options.secret.clone(), options.tls.clone());
        let (view, _) = watch::channel(Arc::new(MetaState::default()));
        let node = Arc::new(ClusterNode {
            meta_client: Arc::new(MetaClient::new(peers.clone(), options.meta_peers.clone())),
            options,
            service,
            peers,
            meta: OnceLock::new(),
            joining_meta: parking_lot::Mutex::new(()),
            meta_change: tokio::sync::Mutex::new(()),
            view,
            incarnation: rand::random(),
            draining: AtomicBool::new(false),
        });
        if node.options.meta || meta_members::was_made_a_member(&node.options.data_dir) {
            node.join_meta(founding_members(&node.options))?;
        }
        meta_members::serve_joins(&node);
        meta_change::serve(&node);
        crate::raft::spawn(Arc::clone(&node).register());
        crate::raft::spawn(Arc::clone(&node).watch());
        if node.options.storage {
            crate::raft::spawn(replicas::keep(Arc::clone(&node)));
        }
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.options.id
    }

    /// Whether this node leads the meta group now (the node that runs cluster-wide chores:
    /// fail-over, scheduled backups).
    pub fn leads_meta(&self) -> bool {
        self.meta.get().is_some_and(|m| m.leads())
    }

    /// Where other nodes reach this one's Flight server: `--advertise-rpc`, or where it
    /// listens.
    pub fn advertised_rpc(&self) -> String {
        match &self.options.advertise_rpc {
            Some(addr) => addr.clone(),
            None => self.options.rpc.to_string(),
        }
    }

    /// Where this node's Flight server listens.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.options.rpc
    }

    /// The metadata as this node last saw it.
    pub fn view(&self) -> Arc<MetaState> {
        self.view.borrow().clone()
    }

    /// Tells when the metadata this node sees changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetaState>> {
        self.view.subscribe()
    }

    /// Reads the metadata from the meta leader now (after a change this node made).
    pub fn refresh(self: &Arc<Self>) -> Result<Arc<MetaState>> {
        let node = Arc::clone(self);
        let state = crate::raft::run(async move { node.meta_client.read(true).await })??;
        Ok(self.publish(state))
    }

    /// Takes `state` as this node's view unless it is older than the view (a member that
    /// fell behind, or that the group no longer has, answered the read): an old document
    /// would teach the client old members, and let a removed meta member campaign.
    fn publish(&self, state: MetaState) -> Arc<MetaState> {
        if state.version < self.view.borrow().version {
            return self.view();
        }
        self.meta_client.learn(&state);
        meta_members::campaign_while_a_member(self, &state);
        let state = Arc::new(state);
        self.view.send_if_modified(|seen| {
            let newer = state.version > seen.version;
            if newer {
                *seen = Arc::clone(&state);
            }
            newer
        });
        self.view()
    }

    /// Creates a collection of `shards` shards with `replicas` replicas each, placed on the
    /// storage nodes; returns once every shard has a leader. `Ok(false)` if it existed.
    pub fn create_collection(
        self: &Arc<Self>,
        name: &str,
        schema: CollectionSchema,
        shards: usize,
        replicas: usize,
    ) -> Result<bool> {
        let created = self.create(name, schema, shards, replicas, None)?;
        Ok(created.is_some())
    }

    /// Creates a collection for this process to restore into: hidden from SQL until
    /// [`ClusterNode::publish_restored`], dropped by the meta manager if this node restarts
    /// first. Returns the router's handle on it once every shard has a leader; `Ok(None)` if
    /// the name is taken.
    pub fn create_restoring(
        self: &Arc<Self>,
        name: &str,
        schema: CollectionSchema,
        shards: usize,
        replicas: usize,
    ) -> Result<Option<Collection>> {
        self.create(name, schema, shards, replicas, Some(self.restorer()))
    }

    /// Serves the collection this process restored to SQL; `Ok(false)` if the restore was
    /// abandoned meanwhile (dropped by someone, or this node was taken for restarted).
    pub fn publish_restored(self: &Arc<Self>, name: &str) -> Result<bool> {
        self.change(MetaOp::Publish {
            name: name.to_string(),
            by: self.restorer(),
        })
    }

    fn restorer(&self) -> Restorer {
        Restorer {
            node: self.options.id,
            incarnation: self.incarnation,
        }
    }

    fn create(
        self: &Arc<Self>,
        name: &str,
        schema: CollectionSchema,
        shards: usize,
        replicas: usize,
        restoring: Option<Restorer>,
    ) -> Result<Option<Collection>> {
        let op = MetaOp::Create {
            name: name.to_string(),
            schema,
            shards,
            replicas,
            restoring,
        };
        let node = Arc::clone(self);
        let created = crate::raft::run(async move { node.meta_client.change(op).await })??;
        let state = self.refresh()?;
        let meta = state.collections.get(name).filter(|_| created);
        let Some(meta) = meta else {
            return Ok(None);
        };
        let collection = self.collection(meta, &state)?;
        self.wait_for_leaders(&collection)?;
        Ok(Some(collection))
    }

    /// Drops a collection; its replicas go as each storage node sees it gone.
    pub fn drop_collection(self: &Arc<Self>, name: &str) -> Result<bool> {
        self.change(MetaOp::Drop {
            name: name.to_string(),
        })
    }

    /// Makes SQL schema `key`; `Ok(false)` if it existed.
    pub fn create_schema(self: &Arc<Self>, key: &str) -> Result<bool> {
        self.change(MetaOp::CreateSchema { name: key.into() })
    }

    /// Reserves `count` values of sequence `name` (durably, in the meta group); the first.
    pub fn reserve_sequence(self: &Arc<Self>, name: &str, count: u64) -> Result<i64> {
        let node = Arc::clone(self);
        let name = name.to_string();
        crate::raft::run(async move { node.meta_client.reserve(&name, count).await })?
    }

    /// Removes the empty SQL schema `key`; `Ok(false)` if there was none.
    pub fn drop_schema(self: &Arc<Self>, key: &str) -> Result<bool> {
        self.change(MetaOp::DropSchema { name: key.into() })
    }

    /// CREATE, ALTER or DROP ROLE, through the meta group; whether it changed anything.
    pub fn change_role(self: &Arc<Self>, op: crate::meta::roles::RoleOp) -> Result<bool> {
        self.change(MetaOp::Role(op))
    }

    /// GRANT, REVOKE or a new object's owner, through the meta group.
    pub fn change_privileges(
        self: &Arc<Self>,
        op: crate::meta::privileges::PrivilegeOp,
    ) -> Result<bool> {
        self.change(MetaOp::Privileges(op))
    }

    /// Makes `op` on the meta leader and reads the document back, so this node sees what it
    /// did; whether it changed anything.
    fn change(self: &Arc<Self>, op: MetaOp) -> Result<bool> {
        let node = Arc::clone(self);
        let changed = crate::raft::run(async move { node.meta_client.change(op).await })??;
        self.refresh()?;
        Ok(changed)
    }

    /// The router's handle on a collection of `state`.
    pub fn collection(&self, meta: &CollectionMeta, state: &MetaState) -> Result<Collection> {
        let schema = Arc::new(meta.schema.clone());
        let shards = meta
            .shards
            .iter()
            .map(|shard| {
                let replicas = shard
                    .replicas
                    .iter()
                    .filter_map(|id| state.addr(*id).map(|a| (*id, a.to_string())))
                    .collect::<Vec<_>>();
                if replicas.is_empty() {
                    return Err(Error::Unavailable(format!(
                        "no known node holds shard {}",
                        shard.group
                    )));
                }
                let remote = RemoteShard::new(
                    shard.group.clone(),
                    Arc::clone(&schema),
                    replicas,
                    self.peers.clone(),
                );
                Ok(Arc::new(remote) as Arc<dyn ShardHandle>)
            })
            .collect::<Result<Vec<_>>>()?;
        let collection = Collection::remote(shards)?; // it has a shard
        let prefix = sequence_name(&meta.shards[0].group, "");
        let client = Arc::clone(&self.meta_client);
        let sequences: SequenceReader = Arc::new(move || {
            let (client, prefix) = (Arc::clone(&client), prefix.clone());
            crate::raft::run(async move { client.sequences(&prefix).await })?
        });
        Ok(collection.with_sequences(sequences))
    }

    fn wait_for_leaders(&self, collection: &Collection) -> Result<()> {
        let started = Instant::now();
        for shard in collection.shards() {
            loop {
                match shard.status() {
                    Ok(status) if status.group.leader.is_some() => break,
                    _ if started.elapsed() > CREATE_TIMEOUT => {
                        return Err(Error::Unavailable(format!(
                            "the collection was created, but a shard has no leader after {} s",
                            CREATE_TIMEOUT.as_secs()
                        )));
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        Ok(())
    }

    /// Registers this node with the meta manager, retrying until it answers.
    async fn register(self: Arc<Self>) {
        let info = NodeInfo {
            rpc: self.advertised_rpc(),
            sql: self.options.sql.clone(),
            storage: self.options.storage,
            incarnation: self.incarnation,
        };
        let op = MetaOp::Register {
            id: self.options.id,
            info,
        };
        while self.meta_client.change(op.clone()).await.is_err() {
            tokio::time::sleep(WATCH_INTERVAL).await;
        }
        // Launchers and tests read this line.
        eprintln!("vecraft: node {} joined the cluster", self.options.id);
    }

    /// Keeps `view` fresh.
    async fn watch(self: Arc<Self>) {
        loop {
            if let Ok(state) = self.meta_client.read(false).await {
                self.publish(state);
            }
            tokio::time::sleep(WATCH_INTERVAL).await;
        }
    }

    /// Where this node keeps its replica of `group` (see [`replica_dir_in`]).
    fn replica_dir(&self, group: &str) -> Option<PathBuf> {
        replica_dir_in(&self.options.data_dir, group)
    }
}

/// Where a node with its data in `data_dir` keeps its replica of `group`: `None` for a group
/// id that is not `<collection>.<version>.<shard>`, so that no document, however written,
/// names a path outside the node's data directory.
pub fn replica_dir_in(data_dir: &Path, group: &str) -> Option<PathBuf> {
    let mut parts = group.split('.');
    let well_formed = parts
        .next()
        .is_some_and(vecraft_storage::schema::valid_collection_name)
        && parts.next().is_some_and(|v| v.parse::<u64>().is_ok())
        && parts.next().is_some_and(|s| s.parse::<u64>().is_ok())
        && parts.next().is_none();
    well_formed.then(|| data_dir.join("replicas").join(group))
}

/// The meta group's founding members, if this node is the one to initialise a new group
/// (the lowest-numbered meta peer).
fn founding_members(options: &NodeOptions) -> Option<BTreeMap<NodeId, BasicNode>> {
    let first = options.meta_peers.keys().next().copied();
    (options.meta && first == Some(options.id)).then(|| {
        options
            .meta_peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect::<BTreeMap<_, _>>()
    })
}

/// Opens this node's member of the meta group (`initial`: the founding members, to
/// initialise a new group with) and serves meta operations.
fn start_meta_member(
    options: &NodeOptions,
    service: &RaftService,
    peers: &Peers,
    initial: Option<BTreeMap<NodeId, BasicNode>>,
) -> Result<Arc<MetaManager>> {
    let member = LocalShard::open_member(
        &options.data_dir.join(META_GROUP),
        Some(crate::meta::meta_schema()),
        ShardOptions {
            // The meta group's entries are whole documents: checkpoint it sooner.
            checkpoint_log_bytes: META_CHECKPOINT_LOG_BYTES,
            ..ShardOptions::default()
        },
        (META_GROUP.to_string(), options.id),
        peers.clone(),
        initial,
    )?;
    let member = Arc::new(member);
    service.register(META_GROUP.to_string(), Arc::clone(&member));
    let manager = Arc::new(MetaManager::new(member));
    service.handle(META_ACTION, Arc::new(Arc::clone(&manager)));
    Ok(manager)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_directories_stay_inside_the_data_directory() {
        let root = Path::new("/data");
        assert_eq!(
            replica_dir_in(root, "items.3.0"),
            Some(PathBuf::from("/data/replicas/items.3.0"))
        );
        for bad in [
            "../../x.1.0",
            "items.1",
            "items.1.0.0",
            "items.x.0",
            "a/b.1.0",
            "",
            "..",
        ] {
            assert_eq!(replica_dir_in(root, bad), None, "{bad:?}");
        }
    }
}
