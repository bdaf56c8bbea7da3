//! RESTORE's part in the catalog: a collection made from a backup appears whole when done, or
//! not at all. On a single node it is built in a staging directory renamed into place
//! (`vecraft_cluster::backup::restore_into`). In a cluster it is created hidden in the meta
//! document (`CollectionMeta::restoring`), filled through its shard groups with the backup's
//! rows routed by key, given its sequences, then published; a failure drops it, and so does
//! the meta manager when this node restarts before publishing.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use vecraft_cluster::backup::{
    BackupStore, CollectionBackup, Report, RestoreInfo, restore_into, restore_routed,
};
use vecraft_cluster::meta::{MAX_RESERVATION, sequence_name};
use vecraft_cluster::node::ClusterNode;
use vecraft_storage::names::{split_qualified, storage_key};
use vecraft_storage::shard::ShardOptions;

use super::{Backend, Catalog, NODE_REPLICAS, read, storage};

impl Catalog {
    /// Restores `part` of a backup in `store` as the new collection `name` of `shards` shards
    /// of `replicas` replicas; `Ok(None)` if `name` exists. The collection appears whole when
    /// done, or not at all.
    pub fn restore(
        &self,
        name: &str,
        part: &CollectionBackup,
        store: &BackupStore,
        shards: usize,
        replicas: usize,
        report: Report,
    ) -> Result<Option<RestoreInfo>> {
        let Some(key) = storage_key(name) else {
            return datafusion::common::plan_err!("invalid collection name \"{name}\"");
        };
        let root = match &self.backend {
            Backend::Local { root, .. } => root,
            Backend::Cluster { node, .. } => {
                let target = (name, key.as_str());
                return self.restore_in_cluster(
                    node,
                    target,
                    part,
                    store,
                    (shards, replicas),
                    report,
                );
            }
        };
        if replicas != NODE_REPLICAS {
            return Err(DataFusionError::NotImplemented(format!(
                "replicas = {replicas} needs a cluster: this node keeps {NODE_REPLICAS} replica \
                 of each shard"
            )));
        }
        // Held throughout: the name's staging directory is this restore's alone.
        let _ddl = self.ddl.lock();
        if read(&self.collections).contains_key(name) {
            return Ok(None);
        }
        self.check_schema(name)?; // under the DDL lock: a DROP SCHEMA may have just run
        let (collection, info) = restore_into(
            &root.join(&key),
            part,
            store,
            shards,
            ShardOptions::default(),
            report,
        )
        .map_err(storage)?;
        let mut all = self.collections.write().unwrap_or_else(|p| p.into_inner());
        all.insert(name.to_string(), Arc::new(collection));
        self.changed();
        Ok(Some(info))
    }

    /// [`Catalog::restore`] in a cluster, into `target` (the name and its key).
    fn restore_in_cluster(
        &self,
        node: &Arc<ClusterNode>,
        target: (&str, &str),
        part: &CollectionBackup,
        store: &BackupStore,
        (shards, replicas): (usize, usize),
        report: Report,
    ) -> Result<Option<RestoreInfo>> {
        let (name, key) = target;
        self.check_schema(name)?;
        if part.schema.hidden_key {
            return Err(DataFusionError::NotImplemented(
                "a table in a cluster needs a primary key (rows are placed by it)".into(),
            ));
        }
        let created = node
            .create_restoring(key, part.schema.clone(), shards, replicas)
            .map_err(storage)?;
        let Some(collection) = created else {
            return Ok(None);
        };
        let filled = restore_routed(&collection, part, store, &self.scratch_dir(), report)
            .map_err(storage)
            .and_then(|info| restore_sequences(node, key, part).map(|()| info));
        let info = match filled {
            Ok(info) => info,
            Err(e) => {
                if let Err(dropped) = node.drop_collection(key) {
                    eprintln!(
                        "vecraft: restore of {name} failed; dropping it failed too: {dropped}"
                    );
                }
                return Err(e);
            }
        };
        if !node.publish_restored(key).map_err(storage)? {
            return Err(DataFusionError::Execution(format!(
                "the restore of \"{name}\" was abandoned: the collection was dropped meanwhile"
            )));
        }
        self.follow();
        Ok(Some(info))
    }

    /// Refuses a name in a schema that does not exist.
    fn check_schema(&self, name: &str) -> Result<()> {
        match split_qualified(name) {
            (Some(s), _) if !self.has_schema(s) => {
                datafusion::common::plan_err!("schema \"{s}\" does not exist")
            }
            _ => Ok(()),
        }
    }
}

/// Sets the sequences of the cluster collection `key` (new: each at 1) to go on from where
/// the backup's were, by reserving the values before them in the meta group.
fn restore_sequences(node: &Arc<ClusterNode>, key: &str, part: &CollectionBackup) -> Result<()> {
    let state = node.view();
    let first = state.collections.get(key).and_then(|c| c.shards.first());
    let Some(first) = first else {
        return Err(DataFusionError::Execution(format!(
            "collection {key} vanished while being restored"
        )));
    };
    for (column, &next) in &part.sequences {
        let home = sequence_name(&first.group, column);
        let mut left = u64::try_from(next.saturating_sub(1)).unwrap_or(0);
        while left > 0 {
            let count = left.min(MAX_RESERVATION);
            node.reserve_sequence(&home, count).map_err(storage)?;
            left -= count;
        }
    }
    Ok(())
}
