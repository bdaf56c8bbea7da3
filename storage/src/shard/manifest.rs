//! The shard manifest: the one file whose atomic replacement switches the shard from one
//! persisted state to the next (schema, sealed segments, tombstone versions, durable index).
//!
//! Writing order makes every crash safe: new segment directories and tombstone files are
//! written and fsync'd first, then `MANIFEST` is replaced atomically, then files no manifest
//! names any more are deleted (also on every open, for what a crash left behind).

use std::fs;
use std::path::Path;

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use super::state::{segment_dir, segments_dir};
use super::txns::PersistedTxn;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::write_atomic;
use crate::schema::CollectionSchema;

const FORMAT: u32 = 1;
const FILE: &str = "MANIFEST";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestSegment {
    pub id: u64,
    /// Version of `tomb-<version>.roar` in the segment directory; 0 means no tombstones.
    pub tombstone_version: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub schema: CollectionSchema,
    pub durable_index: u64,
    pub next_segment_id: u64,
    pub segments: Vec<ManifestSegment>,
    /// Transactions prepared at or before `durable_index` (`txns.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub txns: Vec<PersistedTxn>,
}

pub fn tombstone_file(version: u64) -> String {
    format!("tomb-{version:012}.roar")
}

impl Manifest {
    pub fn new(schema: CollectionSchema) -> Manifest {
        Manifest {
            format: FORMAT,
            schema,
            durable_index: 0,
            next_segment_id: 1,
            segments: Vec::new(),
            txns: Vec::new(),
        }
    }

    pub fn load(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        Self::decode(&bytes)
            .map(Some)
            .map_err(|d| Error::corrupt(&path, d))
    }

    pub fn decode(bytes: &[u8]) -> std::result::Result<Manifest, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if m.format != FORMAT {
            return Err(format!("unsupported manifest format {}", m.format));
        }
        m.schema.validate().map_err(|e| e.to_string())?;
        let mut ids: Vec<u64> = m.segments.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != m.segments.len() || ids.last().is_some_and(|&id| id >= m.next_segment_id) {
            return Err("segment ids are not unique or not below next_segment_id".into());
        }
        Ok(m)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifest serialises")
    }

    pub fn store(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(FILE), &self.encode())
    }

    pub fn read_tombstones(&self, dir: &Path, entry: &ManifestSegment) -> Result<RoaringBitmap> {
        if entry.tombstone_version == 0 {
            return Ok(RoaringBitmap::new());
        }
        let path = segment_dir(dir, entry.id).join(tombstone_file(entry.tombstone_version));
        let bytes = fs::read(&path).ctx("read", &path)?;
        decode_tombstones(&bytes).map_err(|d| Error::corrupt(&path, d))
    }

    /// Deletes segment directories and tombstone files this manifest does not name.
    pub fn remove_unreferenced(&self, dir: &Path) -> Result<()> {
        let root = segments_dir(dir);
        for entry in fs::read_dir(&root).ctx("list", &root)? {
            let path = entry.ctx("list", &root)?.path();
            let named = self
                .segments
                .iter()
                .find(|s| segment_dir(dir, s.id) == path);
            match named {
                None => {
                    let _ = fs::remove_dir_all(&path);
                }
                Some(seg) => remove_old_tombstones(&path, seg.tombstone_version),
            }
        }
        Ok(())
    }
}

fn remove_old_tombstones(seg_dir: &Path, keep_version: u64) {
    let keep = tombstone_file(keep_version);
    let Ok(entries) = fs::read_dir(seg_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("tomb-") && name != keep {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Tombstone file: a CRC32C of the bitmap bytes, then the portable roaring serialisation.
pub fn encode_tombstones(dead: &RoaringBitmap) -> Vec<u8> {
    let mut body = Vec::with_capacity(dead.serialized_size());
    dead.serialize_into(&mut body)
        .expect("writing to a Vec cannot fail");
    let mut out = crc32c::crc32c(&body).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

pub fn decode_tombstones(bytes: &[u8]) -> std::result::Result<RoaringBitmap, String> {
    if bytes.len() < 4 {
        return Err("tombstone file too short".into());
    }
    let (crc, body) = bytes.split_at(4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err("tombstone checksum mismatch".into());
    }
    RoaringBitmap::deserialize_from(body).map_err(|e| e.to_string())
}
