//! Restoring a collection from a backup. On a single node the collection is built where new
//! ones are built (`Collection::build_staged`) and renamed into place at the end, so a failure
//! or a crash halfway leaves nothing visible.
//!
//! With as many shards as the backup, each shard installs its snapshot as a new log's start:
//! segments, tombstones and graphs are taken as they were stored. With another count, each
//! backed-up shard is installed aside and its rows are written to the new collection, which
//! routes them by key and builds new graphs. A cluster's collection is filled that way too
//! ([`restore_routed`]), through its shard groups, while the meta document keeps it hidden.

use std::path::Path;
use std::time::Instant;

use arrow::array::RecordBatch;
use vecraft_storage::command::Command;
use vecraft_storage::shard::{Shard, ShardOptions, SnapshotInfo, SnapshotWriter};
use vecraft_storage::{Error, Result};

use super::Report;
use super::manifest::{CollectionBackup, ShardBackup};
use super::progress::Progress;
use super::store::BackupStore;
use super::take::mb;
use crate::collection::{Collection, shard_dir};
use crate::pipe::pipe;

/// Rows per write when rows are routed anew.
const ROUTED_BATCH_ROWS: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreInfo {
    pub shards: usize,
    pub rows: u64,
    /// Bytes read from the store.
    pub size_bytes: u64,
    /// Whether rows were routed anew (another shard count) rather than installed as stored.
    pub rerouted: bool,
}

/// Restores `part` from `store` as a new collection of `shards` shards in `dir` (which must not
/// exist), and opens it.
pub fn restore_into(
    dir: &Path,
    part: &CollectionBackup,
    store: &BackupStore,
    shards: usize,
    opts: ShardOptions,
    report: Report,
) -> Result<(Collection, RestoreInfo)> {
    let total_bytes = Some(part.shards.iter().map(ShardBackup::size_bytes).sum());
    let progress = Progress::start(
        "restore",
        store.url(),
        &part.name,
        part.shards.len(),
        total_bytes,
    );
    let staging = Collection::build_staged(dir, part.schema.clone(), shards, &opts)?;
    let filled = fill(&staging, part, store, shards, &opts, report, &progress);
    let info = match filled {
        Ok(info) => info,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let collection = Collection::publish(&staging, dir, opts)?;
    Ok((collection, info))
}

fn fill(
    staging: &Path,
    part: &CollectionBackup,
    store: &BackupStore,
    shards: usize,
    opts: &ShardOptions,
    report: Report,
    progress: &Progress,
) -> Result<RestoreInfo> {
    let rerouted = shards != part.shards.len();
    let mut info = RestoreInfo {
        shards,
        rows: 0,
        size_bytes: 0,
        rerouted,
    };
    if rerouted {
        let collection = Collection::open_existing(staging, opts.clone())?;
        let routed = route_all(&collection, part, store, staging, opts, report, progress);
        collection.close();
        info.rows = routed?;
        info.size_bytes = part.shards.iter().map(ShardBackup::size_bytes).sum();
    } else {
        for (i, backed) in part.shards.iter().enumerate() {
            let started = Instant::now();
            let dir = shard_dir(staging, shards, i).join("shard");
            let shard = Shard::open(&dir, None, opts.clone())?;
            let installed = install(&shard, store, backed, progress);
            shard.close();
            let installed = installed?;
            progress.shard_done();
            info.rows += installed.rows;
            info.size_bytes += backed.size_bytes();
            report(&format!(
                "restore {}: shard {i}: {} rows, {} files, {:.1} MB in {:.1} s",
                part.name,
                installed.rows,
                installed.files,
                mb(backed.size_bytes()),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    write_sequences(staging, part)?;
    Ok(info)
}

/// Fills `collection` (new and empty, of any shard count, on this node or a cluster's) with
/// the rows of `part`, routed by key: each backed-up shard is installed aside under `scratch`
/// and its rows written. What a restore into a cluster does; the caller publishes the
/// collection once this returns. Returns the info the caller reports.
pub fn restore_routed(
    collection: &Collection,
    part: &CollectionBackup,
    store: &BackupStore,
    scratch: &Path,
    report: Report,
) -> Result<RestoreInfo> {
    let size_bytes = part.shards.iter().map(ShardBackup::size_bytes).sum();
    let progress = Progress::start(
        "restore",
        store.url(),
        &part.name,
        part.shards.len(),
        Some(size_bytes),
    );
    let opts = ShardOptions {
        background_seal: false, // a shard aside is only read
        live_index: false,
        ..ShardOptions::default()
    };
    let rows = route_all(collection, part, store, scratch, &opts, report, &progress)?;
    Ok(RestoreInfo {
        shards: collection.shards().len(),
        rows,
        size_bytes,
        rerouted: true,
    })
}

/// Writes the rows of every shard of `part` to `collection`; how many.
fn route_all(
    collection: &Collection,
    part: &CollectionBackup,
    store: &BackupStore,
    scratch: &Path,
    opts: &ShardOptions,
    report: Report,
    progress: &Progress,
) -> Result<u64> {
    let mut rows = 0;
    for (i, backed) in part.shards.iter().enumerate() {
        let started = Instant::now();
        let routed = route_shard(collection, store, backed, progress, scratch, opts)?;
        progress.shard_done();
        rows += routed;
        report(&format!(
            "restore {}: shard {i} of the backup: {routed} rows routed to {} shards, \
             {:.1} MB read in {:.1} s",
            part.name,
            collection.shards().len(),
            mb(backed.size_bytes()),
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(rows)
}

/// Installs the backed-up shard `backed` in `shard` (a new one), streaming it from the store:
/// every blob is checked against its hash as it passes, and a bad one fails the install
/// before the shard takes anything.
fn install(
    shard: &Shard,
    store: &BackupStore,
    backed: &ShardBackup,
    progress: &Progress,
) -> Result<SnapshotInfo> {
    let (mut writer, mut reader) = pipe(8);
    let (composed, installed) = std::thread::scope(|scope| {
        let composer = scope.spawn(move || -> Result<()> {
            let mut stream = SnapshotWriter::start(&mut writer)?;
            for file in &backed.files {
                let mut body = store.blob_reader(&file.sha256, file.size_bytes)?;
                stream.file(&file.name, file.size_bytes, &mut body)?;
                // Before the next file: a bad blob ends the stream short of its manifest.
                body.verify()?;
                progress.add_bytes(file.size_bytes);
            }
            let mut manifest = Vec::new();
            let mut body =
                store.blob_reader(&backed.manifest.sha256, backed.manifest.size_bytes)?;
            std::io::Read::read_to_end(&mut body, &mut manifest)
                .map_err(|e| Error::io("read", Path::new(&backed.manifest.name), e))?;
            stream.finish(&manifest)
        });
        let installed = shard.restore_snapshot(&mut reader);
        drop(reader);
        let composed = composer.join().unwrap_or(Err(Error::Closed));
        (composed, installed)
    });
    // A blob that failed its check is why the install saw a stream cut short.
    composed.map_err(corrupt_blob)?;
    installed
}

/// A blob that failed its hash or length check, as the corruption it is (not an I/O error).
fn corrupt_blob(e: Error) -> Error {
    match e {
        Error::Io { path, source, .. } if source.kind() == std::io::ErrorKind::InvalidData => {
            Error::corrupt(path, source.to_string())
        }
        other => other,
    }
}

/// Installs `backed` aside (under `scratch`), then writes its rows to `collection`; how many.
fn route_shard(
    collection: &Collection,
    store: &BackupStore,
    backed: &ShardBackup,
    progress: &Progress,
    scratch: &Path,
    opts: &ShardOptions,
) -> Result<u64> {
    let aside = tempfile::Builder::new()
        .prefix(".restore-")
        .tempdir_in(scratch)
        .map_err(|e| Error::io("create", scratch, e))?;
    let schema = (*collection.schema()).clone();
    let shard = Shard::open(aside.path(), Some(schema), opts.clone())?;
    let routed = install(&shard, store, backed, progress).and_then(|_| {
        let mut rows = 0;
        for batch in shard.scan(None, None)? {
            for at in (0..batch.num_rows()).step_by(ROUTED_BATCH_ROWS) {
                let len = ROUTED_BATCH_ROWS.min(batch.num_rows() - at);
                let part: RecordBatch = batch.slice(at, len);
                collection.write(&Command::Insert(part))?;
                rows += len as u64;
            }
        }
        Ok(rows)
    });
    shard.close();
    routed
}

/// The collection's sequences go on from where they were.
fn write_sequences(staging: &Path, part: &CollectionBackup) -> Result<()> {
    if part.sequences.is_empty() {
        return Ok(());
    }
    let dir = staging.join("sequences");
    vecraft_storage::fsutil::create_dir_durable(&dir)?;
    for (name, next) in &part.sequences {
        if name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(Error::corrupt(&dir, format!("bad sequence name {name:?}")));
        }
        vecraft_storage::fsutil::write_atomic(&dir.join(name), next.to_string().as_bytes())?;
    }
    Ok(())
}
