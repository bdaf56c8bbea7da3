//! Taking a backup: each shard's snapshot is spooled to local files (hashed as they pass), so
//! the shard holds its snapshot only as long as a local copy takes; then the files the store
//! does not have yet are uploaded, and the manifest last.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use vecraft_storage::shard::split_snapshot;
use vecraft_storage::{Error, Result};

use super::manifest::{BackupManifest, BlobRef, CollectionBackup, ShardBackup};
use super::progress::Progress;
use super::store::{BackupStore, hex};
use super::{Report, retention};
use crate::collection::Collection;
use crate::pipe::pipe;
use crate::shard_handle::ShardHandle;

/// Backs `collections` (SQL name, collection) up to `store`, spooling under `scratch`; returns
/// the manifest once the store holds it (the backup is complete and durable).
pub fn backup(
    store: &BackupStore,
    collections: &[(String, Arc<Collection>)],
    scratch: &Path,
    report: Report,
) -> Result<BackupManifest> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let id = format!(
        "{}-{:06x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ"),
        rand::random::<u32>() & 0xff_ffff
    );
    let names: Vec<&str> = collections.iter().map(|(name, _)| name.as_str()).collect();
    let shards = collections.iter().map(|(_, c)| c.shards().len()).sum();
    let progress = Progress::start("backup", store.url(), &names.join(", "), shards, None);
    retention::begin_backup(store, &id, report)?;
    let mut manifest = BackupManifest::new(id, now.as_millis() as u64);
    for (name, collection) in collections {
        let mut part = CollectionBackup {
            name: name.clone(),
            schema: (*collection.schema()).clone(),
            shards: Vec::new(),
            sequences: BTreeMap::new(),
        };
        for (i, shard) in collection.shards().iter().enumerate() {
            let started = Instant::now();
            let (shard_part, uploaded) = backup_shard(store, shard.as_ref(), scratch, &progress)?;
            progress.shard_done();
            report(&format!(
                "backup {}: {name} shard {i}: {} rows, {} files, {:.1} MB ({:.1} MB new) in {:.1} s",
                manifest.id,
                shard_part.rows,
                shard_part.files.len(),
                mb(shard_part.size_bytes()),
                mb(uploaded),
                started.elapsed().as_secs_f64()
            ));
            manifest.uploaded_bytes += uploaded;
            part.shards.push(shard_part);
        }
        // Read after the snapshots: a sequence is then past every id they hold (values are
        // reserved before they are given out).
        part.sequences = collection.sequences()?;
        manifest.collections.push(part);
    }
    store.put_manifest(&manifest.id, &manifest.encode())?;
    retention::end_backup(store, &manifest.id)?;
    report(&format!(
        "backup {}: complete: {} collection(s), {} rows, {:.1} MB ({:.1} MB uploaded)",
        manifest.id,
        manifest.collections.len(),
        manifest.rows(),
        mb(manifest.size_bytes()),
        mb(manifest.uploaded_bytes)
    ));
    Ok(manifest)
}

pub(super) fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// One shard's snapshot in the store; the part of the manifest that names it, and the bytes
/// uploaded.
fn backup_shard(
    store: &BackupStore,
    shard: &dyn ShardHandle,
    scratch: &Path,
    progress: &Progress,
) -> Result<(ShardBackup, u64)> {
    std::fs::create_dir_all(scratch).map_err(|e| Error::io("create", scratch, e))?;
    let spool = tempfile::Builder::new()
        .prefix("backup-")
        .tempdir_in(scratch)
        .map_err(|e| Error::io("create spool in", scratch, e))?;
    let mut files: Vec<(BlobRef, std::path::PathBuf)> = Vec::new();
    let (mut writer, mut reader) = pipe(8);
    let (taken, split) = std::thread::scope(|scope| {
        let taker = scope.spawn(move || shard.snapshot(&mut writer));
        let split = split_snapshot(&mut reader, &mut |name, size_bytes, body| {
            let path = spool.path().join(files.len().to_string());
            let sha256 = spool_file(body, &path)?;
            progress.add_bytes(size_bytes);
            let blob = BlobRef {
                name: name.to_string(),
                sha256,
                size_bytes,
            };
            files.push((blob, path));
            Ok(())
        });
        // A failed split stops the snapshot: its next write finds no reader.
        drop(reader);
        let taken = taker.join().unwrap_or(Err(Error::Closed));
        (taken, split)
    });
    // The snapshot's own failure says more than the stream it cut short.
    let info = taken?;
    let shard_manifest = split?;
    let manifest_path = spool.path().join("manifest");
    let manifest_sha = spool_file(&mut shard_manifest.as_slice(), &manifest_path)?;
    let manifest = BlobRef {
        name: "MANIFEST".into(),
        sha256: manifest_sha,
        size_bytes: shard_manifest.len() as u64,
    };
    let mut uploaded = 0;
    for (blob, path) in files.iter().chain([&(manifest.clone(), manifest_path)]) {
        if !store.has_blob(&blob.sha256)? {
            store.put_blob(&blob.sha256, path)?;
            uploaded += blob.size_bytes;
        }
        // Gone as soon as stored: the spool never holds more than the shard's snapshot.
        let _ = std::fs::remove_file(path);
    }
    let part = ShardBackup {
        applied_index: info.applied_index,
        rows: info.rows,
        files: files.into_iter().map(|(blob, _)| blob).collect(),
        manifest,
    };
    Ok((part, uploaded))
}

/// Copies `body` to a new file at `path`; the SHA-256 of what it copied.
fn spool_file(body: &mut dyn Read, path: &Path) -> Result<String> {
    let file = std::fs::File::create(path).map_err(|e| Error::io("create", path, e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|e| Error::io("read snapshot", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| Error::io("write", path, e))?;
    }
    out.flush().map_err(|e| Error::io("write", path, e))?;
    Ok(hex(&hasher.finalize()))
}
