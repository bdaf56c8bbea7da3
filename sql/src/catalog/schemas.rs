//! Schemas other than `public`: made by CREATE SCHEMA, kept as directories under
//! `<data-dir>/schemas/` on a single node (so an empty one outlives a restart) and in the meta
//! document in a cluster.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use datafusion::error::Result;
use vecraft_storage::names::{split_qualified, sql_name, storage_key};

use super::{Backend, Catalog, io, read, storage};

impl Catalog {
    /// The schemas made by CREATE SCHEMA (`public` is always there and not listed).
    pub fn schemas(&self) -> Vec<String> {
        match &self.backend {
            Backend::Local { schemas, .. } => read(&schemas.names).iter().cloned().collect(),
            Backend::Cluster { node, .. } => node
                .view()
                .schemas
                .iter()
                .filter_map(|key| sql_name(key))
                .collect(),
        }
    }

    /// Whether schema `name` exists.
    pub fn has_schema(&self, name: &str) -> bool {
        name == crate::idents::PUBLIC || self.schemas().iter().any(|s| s == name)
    }

    /// Makes schema `name`; `Ok(false)` if it exists.
    pub fn create_schema(&self, name: &str) -> Result<bool> {
        let Some(key) = storage_key(name) else {
            return datafusion::common::plan_err!("invalid schema name \"{name}\"");
        };
        let created = match &self.backend {
            Backend::Local { schemas, .. } => schemas.create(name, &key)?,
            Backend::Cluster { node, .. } => node.create_schema(&key).map_err(storage)?,
        };
        self.changed();
        Ok(created)
    }

    /// Removes the empty schema `name`; `Ok(false)` if there was none. Refused while a
    /// collection is in it: checked under the DDL lock on a node, by the meta manager in a
    /// cluster (the gateway checks first, for PostgreSQL's 2BP01).
    pub fn drop_schema(&self, name: &str) -> Result<bool> {
        let Some(key) = storage_key(name) else {
            return Ok(false);
        };
        let dropped = match &self.backend {
            Backend::Local { schemas, roles, .. } => {
                // Under the DDL lock, so no CREATE TABLE puts a table in it meanwhile.
                let _ddl = self.ddl.lock();
                let inside = read(&self.collections)
                    .keys()
                    .any(|c| split_qualified(c).0 == Some(name));
                if inside {
                    return datafusion::common::plan_err!("schema \"{name}\" is not empty");
                }
                roles.forget(&vecraft_cluster::meta::privileges::schema_object(&key))?;
                schemas.drop(name, &key)?
            }
            Backend::Cluster { node, .. } => node.drop_schema(&key).map_err(storage)?,
        };
        self.changed();
        Ok(dropped)
    }
}

/// A single node's schemas (other than `public`): directories under `<data-dir>/schemas/`,
/// named by their keys, so that one made by CREATE SCHEMA outlives a restart while empty.
pub(super) struct LocalSchemas {
    root: PathBuf,
    names: RwLock<BTreeSet<String>>,
}

impl LocalSchemas {
    pub(super) fn open(root: &Path) -> Result<LocalSchemas> {
        std::fs::create_dir_all(root).map_err(io)?;
        let mut names = BTreeSet::new();
        for entry in std::fs::read_dir(root).map_err(io)? {
            let key = entry.map_err(io)?.file_name().to_string_lossy().to_string();
            if let Some(name) = sql_name(&key) {
                names.insert(name);
            }
        }
        Ok(LocalSchemas {
            root: root.to_path_buf(),
            names: RwLock::new(names),
        })
    }

    fn create(&self, name: &str, key: &str) -> Result<bool> {
        let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
        if names.contains(name) {
            return Ok(false);
        }
        vecraft_storage::fsutil::create_dir_durable(&self.root.join(key)).map_err(storage)?;
        names.insert(name.to_string());
        Ok(true)
    }

    fn drop(&self, name: &str, key: &str) -> Result<bool> {
        let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
        if !names.remove(name) {
            return Ok(false);
        }
        std::fs::remove_dir(self.root.join(key)).map_err(io)?;
        vecraft_storage::fsutil::sync_dir(&self.root).map_err(storage)?;
        Ok(true)
    }
}
