//! The collections this gateway serves, by their SQL names. On a single node they are
//! directories under `<data-dir>/collections/`, named by their keys (`vecraft_storage::names`:
//! any SQL name, made safe for paths); a collection's schema lives in its shard manifest, so
//! the catalog is just the directory listing. In a cluster they are what the meta manager's
//! document says: the catalog follows the node's copy of it, and creating or dropping a
//! collection is a change of that document.

mod restore;
mod roles;
mod schemas;
mod sequences;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::error::{DataFusionError, Result};
use parking_lot::Mutex;
use std::sync::RwLock;
use vecraft_cluster::backup::StoreOptions;
use vecraft_cluster::collection::Collection;
use vecraft_cluster::meta::MetaState;
use vecraft_cluster::node::ClusterNode;
use vecraft_storage::names::{split_qualified, sql_name, storage_key};
use vecraft_storage::schema::CollectionSchema;
use vecraft_storage::shard::ShardOptions;

/// Values of a sequence reserved and not handed out yet.
pub(crate) type SequenceBlock = Arc<Mutex<std::ops::Range<i64>>>;

pub struct Catalog {
    backend: Backend,
    /// Bumped by every change of the set of collections or their schemas; sessions re-read
    /// their tables and re-plan prepared statements when it moves.
    generation: AtomicU64,
    collections: RwLock<BTreeMap<String, Arc<Collection>>>,
    /// Held by each CREATE and DROP on a single node, so that DDL on one name never
    /// interleaves: a name's directory is created only after the last one of that name was
    /// closed and moved away.
    ddl: Mutex<()>,
    /// The values of each sequence this gateway reserved and has not handed out yet, by
    /// where the sequence lives ([`Catalog::sequence_home`]).
    pub(crate) sequence_blocks: Mutex<std::collections::HashMap<String, SequenceBlock>>,
    /// The advisory locks this gateway's sessions hold.
    pub(crate) advisory_locks: Arc<crate::advisory_locks::AdvisoryLocks>,
    /// Settings of the object stores backups go to (the node's `[backup_store]`).
    backup_store: Mutex<StoreOptions>,
}

/// The prefix of a dropped collection's directory while it is deleted (removed at open if a
/// crash interrupted the deletion).
const TRASH_PREFIX: &str = ".trash-";

/// The directory beside `collections/` where backups spool files (emptied at open).
const SCRATCH_DIR: &str = "tmp";

enum Backend {
    /// Collections in directories under `root`.
    Local {
        root: PathBuf,
        schemas: schemas::LocalSchemas,
        roles: roles::LocalRoles,
    },
    /// Collections of a cluster, as `node` sees the metadata.
    Cluster {
        node: Arc<ClusterNode>,
        /// The metadata `collections` was built from.
        seen: RwLock<Arc<MetaState>>,
    },
}

/// A node of the cluster, as `vecraft_nodes` shows it.
pub struct NodeListing {
    pub id: u64,
    /// Its Flight address (none on a single node).
    pub rpc: Option<String>,
    /// Its SQL address, if it is a gateway (none on a single node).
    pub sql: Option<String>,
    /// Whether it keeps replicas.
    pub storage: bool,
    /// Whether it is a member of the meta group.
    pub meta: bool,
}

/// A single node keeps one replica of each shard.
pub const NODE_REPLICAS: usize = 1;
/// How many replicas a cluster gives a shard when the statement does not say (fewer when
/// it has fewer storage nodes).
pub const CLUSTER_REPLICAS: usize = 3;

fn io(e: std::io::Error) -> DataFusionError {
    DataFusionError::IoError(e)
}

fn storage(e: vecraft_storage::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl Catalog {
    /// Opens every collection under `data_dir` (replaying their logs).
    pub fn open(data_dir: &Path) -> Result<Catalog> {
        let root = data_dir.join("collections");
        std::fs::create_dir_all(&root).map_err(io)?;
        let mut collections = BTreeMap::new();
        for entry in std::fs::read_dir(&root).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().to_string();
            let interrupted = name.starts_with('.') && name.ends_with(".creating");
            if interrupted || name.starts_with(TRASH_PREFIX) {
                // A creation a crash interrupted (it never existed), or a dropped collection
                // whose files a crash left (it is gone).
                std::fs::remove_dir_all(entry.path()).map_err(io)?;
                continue;
            }
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            let Some(name) = sql_name(&name) else {
                eprintln!("vecraft: {name} in the collections directory is not a collection");
                continue;
            };
            let c =
                Collection::open(&entry.path(), None, ShardOptions::default()).map_err(storage)?;
            collections.insert(name, Arc::new(c));
        }
        let schemas = schemas::LocalSchemas::open(&data_dir.join("schemas"))?;
        let roles = roles::LocalRoles::open(data_dir)?;
        // Files a backup was spooling when the node stopped.
        match std::fs::remove_dir_all(data_dir.join(SCRATCH_DIR)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        Ok(Catalog {
            backend: Backend::Local {
                root,
                schemas,
                roles,
            },
            generation: AtomicU64::new(0),
            collections: RwLock::new(collections),
            ddl: Mutex::new(()),
            sequence_blocks: Mutex::default(),
            advisory_locks: Arc::default(),
            backup_store: Mutex::default(),
        })
    }

    /// The collections of the cluster `node` belongs to.
    pub fn cluster(node: Arc<ClusterNode>) -> Catalog {
        Catalog {
            backend: Backend::Cluster {
                node,
                seen: RwLock::new(Arc::new(MetaState::default())),
            },
            generation: AtomicU64::new(0),
            collections: RwLock::new(BTreeMap::new()),
            ddl: Mutex::new(()),
            sequence_blocks: Mutex::default(),
            advisory_locks: Arc::default(),
            backup_store: Mutex::default(),
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster { .. })
    }

    /// The node this gateway runs on, in a cluster.
    pub fn cluster_node(&self) -> Option<&Arc<ClusterNode>> {
        match &self.backend {
            Backend::Cluster { node, .. } => Some(node),
            Backend::Local { .. } => None,
        }
    }

    /// The cluster's nodes as the metadata lists them. A single node lists itself alone.
    pub fn nodes(&self) -> Vec<NodeListing> {
        match &self.backend {
            Backend::Local { .. } => vec![NodeListing {
                id: 1,
                rpc: None,
                sql: None,
                storage: true,
                meta: true,
            }],
            Backend::Cluster { node, .. } => {
                let meta = node.meta_members();
                node.view()
                    .nodes
                    .iter()
                    .map(|(id, n)| NodeListing {
                        id: *id,
                        rpc: Some(n.rpc.clone()),
                        sql: n.sql.clone(),
                        storage: n.storage,
                        meta: meta.contains(id),
                    })
                    .collect()
            }
        }
    }

    /// The replicas of each shard of `name`.
    pub fn replicas(&self, name: &str) -> usize {
        match &self.backend {
            Backend::Local { .. } => NODE_REPLICAS,
            Backend::Cluster { seen, .. } => read(seen)
                .collections
                .get(&storage_key(name).unwrap_or_default())
                .map_or_else(|| self.default_replicas(), |c| c.replicas),
        }
    }

    /// The replicas a new collection gets when its statement does not say.
    pub fn default_replicas(&self) -> usize {
        match &self.backend {
            Backend::Local { .. } => NODE_REPLICAS,
            Backend::Cluster { node, .. } => {
                let storage = node.view().nodes.values().filter(|n| n.storage).count();
                storage.clamp(1, CLUSTER_REPLICAS)
            }
        }
    }

    /// In a cluster: rebuilds the collections from the node's copy of the metadata when it
    /// moved on (collections whose placement did not change keep their router state).
    fn follow(&self) {
        let Backend::Cluster { node, seen } = &self.backend else {
            return;
        };
        let state = node.view();
        if read(seen).version >= state.version {
            return;
        }
        let mut seen = seen.write().unwrap_or_else(|p| p.into_inner());
        if seen.version >= state.version {
            return;
        }
        let mut collections = self.collections.write().unwrap_or_else(|p| p.into_inner());
        let mut rebuilt = BTreeMap::new();
        // A collection keeps its router state while its placement and its nodes' addresses
        // stay as they were.
        let same_nodes = seen.nodes == state.nodes;
        for (key, meta) in &state.collections {
            let Some(name) = sql_name(key) else {
                continue; // the meta manager makes only keys; nothing else is served
            };
            if meta.restoring.is_some() {
                continue; // served once its restore publishes it
            }
            let kept = collections
                .get(&name)
                .filter(|_| same_nodes && seen.collections.get(key) == Some(meta))
                .cloned();
            let collection = match kept {
                Some(c) => c,
                None => match node.collection(meta, &state) {
                    Ok(c) => Arc::new(c),
                    Err(_) => continue, // its nodes are not registered yet
                },
            };
            rebuilt.insert(name, collection);
        }
        *collections = rebuilt;
        *seen = state;
        self.changed();
    }

    /// In a cluster: reads the metadata from the meta leader now (a collection another gateway
    /// created a moment ago); whether anything changed.
    pub fn refresh(&self) -> bool {
        let Backend::Cluster { node, seen } = &self.backend else {
            return false;
        };
        let before = read(seen).version;
        if node.refresh().is_err() {
            return false;
        }
        self.follow();
        read(seen).version != before
    }

    pub fn get(&self, name: &str) -> Option<Arc<Collection>> {
        self.follow();
        let found = read(&self.collections).get(name).cloned();
        match found {
            None if self.refresh() => read(&self.collections).get(name).cloned(),
            found => found,
        }
    }

    pub fn generation(&self) -> u64 {
        self.follow();
        self.generation.load(Ordering::Acquire)
    }

    /// Tells sessions a collection's schema changed (its index, say).
    pub fn touch(&self) {
        self.changed();
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn names(&self) -> Vec<String> {
        self.follow();
        read(&self.collections).keys().cloned().collect()
    }

    /// Every collection, by name.
    pub fn all(&self) -> Vec<(String, Arc<Collection>)> {
        self.follow();
        let collections = read(&self.collections);
        collections
            .iter()
            .map(|(name, c)| (name.clone(), c.clone()))
            .collect()
    }

    /// Whether `name` can name a collection: any name PostgreSQL keeps (see
    /// `vecraft_storage::names`; its key is what becomes directory names).
    pub fn valid_name(name: &str) -> bool {
        storage_key(name).is_some()
    }

    /// Creates a collection of `shards` shards of `replicas` replicas; `Ok(false)` if it
    /// exists (for IF NOT EXISTS).
    pub fn create(
        &self,
        name: &str,
        schema: CollectionSchema,
        shards: usize,
        replicas: usize,
    ) -> Result<bool> {
        let Some(key) = storage_key(name) else {
            return datafusion::common::plan_err!("invalid collection name \"{name}\"");
        };
        match &self.backend {
            Backend::Local { root, .. } => {
                if replicas != NODE_REPLICAS {
                    return Err(DataFusionError::NotImplemented(format!(
                        "replicas = {replicas} needs a cluster: this node keeps \
                         {NODE_REPLICAS} replica of each shard"
                    )));
                }
                let _ddl = self.ddl.lock();
                if read(&self.collections).contains_key(name) {
                    return Ok(false);
                }
                // Checked again under the DDL lock: a DROP SCHEMA may have just run.
                if let (Some(s), _) = split_qualified(name)
                    && !self.has_schema(s)
                {
                    return datafusion::common::plan_err!("schema \"{s}\" does not exist");
                }
                let dir = root.join(&key);
                let c = Collection::create(&dir, schema, shards, ShardOptions::default())
                    .map_err(storage)?;
                let mut all = self.collections.write().unwrap_or_else(|p| p.into_inner());
                all.insert(name.to_string(), Arc::new(c));
                self.changed();
                Ok(true)
            }
            Backend::Cluster { node, .. } => {
                if schema.hidden_key {
                    return Err(DataFusionError::NotImplemented(
                        "a table in a cluster needs a primary key (rows are placed by it)".into(),
                    ));
                }
                let created = node
                    .create_collection(&key, schema, shards, replicas)
                    .map_err(storage)?;
                self.follow();
                Ok(created)
            }
        }
    }

    /// Sets the settings of the object stores backups go to.
    pub fn set_backup_store(&self, options: StoreOptions) {
        *self.backup_store.lock() = options;
    }

    pub fn backup_store(&self) -> StoreOptions {
        self.backup_store.lock().clone()
    }

    /// Where backups and restores spool files: `<data-dir>/tmp` on a single node, the system's
    /// temporary directory in a cluster's gateway.
    pub fn scratch_dir(&self) -> PathBuf {
        match &self.backend {
            Backend::Local { root, .. } => root.with_file_name(SCRATCH_DIR),
            Backend::Cluster { .. } => std::env::temp_dir(),
        }
    }

    /// Drops a collection and its files; `Ok(false)` if there was none.
    pub fn drop_collection(&self, name: &str) -> Result<bool> {
        if let Backend::Cluster { node, .. } = &self.backend {
            let Some(key) = storage_key(name) else {
                return Ok(false);
            };
            let dropped = node.drop_collection(&key).map_err(storage)?;
            self.follow();
            return Ok(dropped);
        }
        let Backend::Local { root, roles, .. } = &self.backend else {
            unreachable!("a cluster's catalog returned above");
        };
        let _ddl = self.ddl.lock();
        // Its owner and grants go first: a table made again under the name has none.
        roles.forget(&storage_key(name).unwrap_or_default())?;
        let removed = self
            .collections
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let Some(collection) = removed else {
            return Ok(false);
        };
        self.changed();
        // Statements still holding the collection finish first; later ones find it dropped.
        // Then nothing writes in its directory, which one rename takes away: a restart finds
        // the collection gone, whatever it interrupts.
        collection.close();
        let Some(dir) = collection.dir().map(Path::to_path_buf) else {
            return Ok(true);
        };
        // Its sequences go with it: a table made again under the name starts them afresh.
        let home = format!("{}/", dir.to_string_lossy());
        self.sequence_blocks
            .lock()
            .retain(|h, _| !h.starts_with(&home));
        let key = storage_key(name).unwrap_or_default();
        let trash = root.join(format!("{TRASH_PREFIX}{key}-{}", unique_suffix()));
        std::fs::rename(&dir, &trash).map_err(io)?;
        vecraft_storage::fsutil::sync_dir(root).map_err(storage)?;
        if let Err(e) = std::fs::remove_dir_all(&trash) {
            // Gone for SQL already; the next open deletes what is left.
            eprintln!("vecraft: dropped collection {name}: files left to delete at restart: {e}");
        }
        Ok(true)
    }
}

/// A suffix no other directory of this process has (time and a counter).
fn unique_suffix() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos}-{}", COUNT.fetch_add(1, Ordering::Relaxed))
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use vecraft_storage::schema::{ColumnDef, ColumnType, VectorSpec};

    use super::*;

    fn schema() -> CollectionSchema {
        let vector = ColumnType::Vector(VectorSpec::new(2));
        let columns = vec![
            ColumnDef::new("id", ColumnType::Int64, false),
            ColumnDef::new("v", vector, false),
        ];
        CollectionSchema::new(columns, "id").unwrap()
    }

    /// A creation a crash interrupted leaves a staging directory; the next open removes it,
    /// and the collection never existed.
    #[test]
    fn an_interrupted_creation_is_gone_after_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let catalog = Catalog::open(dir.path()).unwrap();
            assert!(catalog.create("docs", schema(), 3, 1).unwrap());
        }
        let root = dir.path().join("collections");
        let staging = vecraft_cluster::collection::staging_dir(&root.join("half"));
        std::fs::create_dir_all(staging.join("shards").join("0")).unwrap();
        std::fs::write(staging.join("SHARDS"), "3").unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        assert_eq!(catalog.names(), ["docs"]);
        assert_eq!(catalog.get("docs").unwrap().shards().len(), 3);
        assert!(!staging.exists(), "the half-built collection is removed");
    }
}
