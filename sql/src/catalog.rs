//! The collections this node serves, one directory each under `<data-dir>/collections/`.
//! A collection's schema lives in its shard manifest, so the catalog is just the directory
//! listing; creating or dropping one is a directory appearing or going away.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::error::{DataFusionError, Result};
use std::sync::RwLock;
use vecraft_cluster::collection::LocalCollection;
use vecraft_storage::schema::CollectionSchema;
use vecraft_storage::shard::ShardOptions;

pub struct Catalog {
    root: PathBuf,
    /// Bumped by every change of the set of collections or their schemas; sessions re-read
    /// their tables and re-plan prepared statements when it moves.
    generation: AtomicU64,
    collections: RwLock<BTreeMap<String, Arc<LocalCollection>>>,
}

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
            if name.starts_with('.') && name.ends_with(".creating") {
                // A collection whose creation a crash interrupted: it never existed.
                std::fs::remove_dir_all(entry.path()).map_err(io)?;
                continue;
            }
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            let c = LocalCollection::open(&entry.path(), None, ShardOptions::default())
                .map_err(storage)?;
            collections.insert(name, Arc::new(c));
        }
        Ok(Catalog {
            root,
            generation: AtomicU64::new(0),
            collections: RwLock::new(collections),
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<LocalCollection>> {
        self.collections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn generation(&self) -> u64 {
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
        self.collections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Every collection, by name.
    pub fn all(&self) -> Vec<(String, Arc<LocalCollection>)> {
        let collections = self.collections.read().unwrap_or_else(|p| p.into_inner());
        collections
            .iter()
            .map(|(name, c)| (name.clone(), c.clone()))
            .collect()
    }

    /// Whether `name` can name a collection: it becomes a directory name, so only lowercase
    /// letters, digits and `_`, starting with a letter or `_`, at most 63 bytes (as PostgreSQL).
    pub fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        first_ok
            && name.len() <= 63
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }

    /// Creates a collection of `shards` shards; `Ok(false)` if it exists (for IF NOT EXISTS).
    pub fn create(&self, name: &str, schema: CollectionSchema, shards: usize) -> Result<bool> {
        if !Self::valid_name(name) {
            return datafusion::common::plan_err!(
                "invalid collection name \"{name}\": use lowercase letters, digits and _"
            );
        }
        let mut all = self.collections.write().unwrap_or_else(|p| p.into_inner());
        if all.contains_key(name) {
            return Ok(false);
        }
        let dir = self.root.join(name);
        let c = LocalCollection::create(&dir, schema, shards, ShardOptions::default())
            .map_err(storage)?;
        all.insert(name.to_string(), Arc::new(c));
        self.changed();
        Ok(true)
    }

    /// Drops a collection and its files; `Ok(false)` if there was none.
    pub fn drop_collection(&self, name: &str) -> Result<bool> {
        let removed = self
            .collections
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let Some(collection) = removed else {
            return Ok(false);
        };
        self.changed();
        let dir = collection.dir().to_path_buf();
        drop(collection);
        std::fs::remove_dir_all(&dir).map_err(io)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use vecraft_storage::schema::{ColumnDef, ColumnType, HnswParams, VectorSpec};

    use super::*;

    fn schema() -> CollectionSchema {
        let vector = ColumnType::Vector(VectorSpec {
            dims: 2,
            metric: vecraft_storage::distance::Metric::L2,
            hnsw: HnswParams::default(),
        });
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
            assert!(catalog.create("docs", schema(), 3).unwrap());
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
