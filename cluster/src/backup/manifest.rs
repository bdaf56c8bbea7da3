//! A backup's manifest: what it holds, by collection and shard, and which blobs make each
//! shard's snapshot. Written last (`store.rs`): a backup is what its manifest says.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vecraft_storage::schema::CollectionSchema;
use vecraft_storage::{Error, Result};

const FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupManifest {
    pub format: u32,
    /// Sorts by the time it was taken: `YYYYMMDDTHHMMSSmmmZ-<random>` (UTC, milliseconds).
    pub id: String,
    pub created_unix_ms: u64,
    pub collections: Vec<CollectionBackup>,
    /// Bytes this backup uploaded (the rest were stored by earlier backups).
    pub uploaded_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollectionBackup {
    /// The collection's SQL name when it was backed up (`schema.name` or `name`).
    pub name: String,
    pub schema: CollectionSchema,
    /// In shard order: the key of a row decides its shard among `shards.len()`.
    pub shards: Vec<ShardBackup>,
    /// The next value of each of its sequences, by the sequence's file name.
    #[serde(default)]
    pub sequences: BTreeMap<String, i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardBackup {
    /// The Raft log index the shard's snapshot reflects.
    pub applied_index: u64,
    pub rows: u64,
    /// The snapshot's segment files ("seg-<id>/<file>"), in stream order.
    pub files: Vec<BlobRef>,
    /// The shard's own manifest.
    pub manifest: BlobRef,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub name: String,
    pub sha256: String,
    pub size_bytes: u64,
}

impl BackupManifest {
    pub fn new(id: String, created_unix_ms: u64) -> BackupManifest {
        BackupManifest {
            format: FORMAT,
            id,
            created_unix_ms,
            collections: Vec::new(),
            uploaded_bytes: 0,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest serialises")
    }

    pub fn decode(bytes: &[u8], location: &str) -> Result<BackupManifest> {
        let corrupt = |detail: String| Error::corrupt(std::path::Path::new(location), detail);
        let manifest: BackupManifest =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(corrupt(format!(
                "unknown backup format {}",
                manifest.format
            )));
        }
        Ok(manifest)
    }

    /// Every blob the backup names (each shard's files and its manifest).
    pub fn blobs(&self) -> impl Iterator<Item = &BlobRef> {
        let shards = self.collections.iter().flat_map(|c| &c.shards);
        shards.flat_map(|s| s.files.iter().chain([&s.manifest]))
    }

    pub fn rows(&self) -> u64 {
        self.collections.iter().map(CollectionBackup::rows).sum()
    }

    /// Bytes of every blob the backup names (what a restore reads).
    pub fn size_bytes(&self) -> u64 {
        self.collections
            .iter()
            .map(CollectionBackup::size_bytes)
            .sum()
    }

    /// The collection backed up as `name`.
    pub fn collection(&self, name: &str) -> Option<&CollectionBackup> {
        self.collections.iter().find(|c| c.name == name)
    }
}

impl CollectionBackup {
    pub fn rows(&self) -> u64 {
        self.shards.iter().map(|s| s.rows).sum()
    }

    pub fn size_bytes(&self) -> u64 {
        self.shards.iter().map(ShardBackup::size_bytes).sum()
    }
}

impl ShardBackup {
    pub fn size_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size_bytes).sum::<u64>() + self.manifest.size_bytes
    }
}
