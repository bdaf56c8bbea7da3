//! Retention: keep the newest `keep` backups in a store, delete the older ones, and then sweep
//! the blobs no remaining backup names — never one that a kept backup, or a backup still being
//! taken, needs.
//!
//! Blobs are shared between backups, and a backup skips the blobs the store already has, so a
//! sweep and a backup must not overlap: a sweep could delete a blob a running backup just found
//! present. Each side announces itself before it looks at the other:
//!
//! - a backup writes `backups/<id>/started`, then waits while any sweep is running
//!   (`sweeps/<id>`), and only then checks which blobs the store has;
//! - a sweep writes `sweeps/<id>`, then lists the backups, and deletes nothing if one of them
//!   is in flight (started, with no manifest yet).
//!
//! The store orders writes before later lists (S3 and local directories both do), so at least
//! one side sees the other: the sweep stands down, or the backup waits for it to end. A sweep
//! deletes for at most [`SWEEP_MAX`], and a backup waits at most [`SWEEP_WAIT`] (longer), so a
//! sweep that died holding its mark delays backups but never lets one through while it runs.
//! A backup interrupted before its manifest leaves its `started` mark; sweeps stand down for
//! [`IN_FLIGHT_MAX`] after it, then take its blobs.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use vecraft_storage::Result;

use super::Report;
use super::manifest::BackupManifest;
use super::store::{BackupStore, manifests_in};

/// A backup started this long ago without a manifest is taken to be dead.
pub const IN_FLIGHT_MAX: Duration = Duration::from_secs(24 * 3600);
/// A sweep stops deleting after this long (the rest waits for the next one).
pub const SWEEP_MAX: Duration = Duration::from_secs(5 * 60);
/// A backup waits at most this long for running sweeps (more than `SWEEP_MAX`).
pub const SWEEP_WAIT: Duration = Duration::from_secs(10 * 60);
/// A sweep mark this old (by the store's clock) is a dead sweep's: nobody waits for it.
const SWEEP_MARK_STALE: Duration = Duration::from_secs(3600);
/// How often a waiting backup looks again.
const SWEEP_POLL: Duration = Duration::from_millis(500);
const STARTED: &str = "started";

/// What a retention pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Retained {
    /// The backups deleted, oldest first.
    pub deleted: Vec<String>,
    /// Whether the blob sweep ran (it stands down while a backup is in flight).
    pub swept: bool,
    pub deleted_blobs: usize,
    pub freed_bytes: u64,
}

/// Deletes all but the newest `keep` backups in `store`, then the blobs no backup names.
pub fn retain(store: &BackupStore, keep: usize, report: Report) -> Result<Retained> {
    assert!(keep >= 1, "retention keeps at least one backup");
    let manifests = store.manifests()?;
    let old = manifests.len().saturating_sub(keep);
    let mut retained = Retained::default();
    for manifest in &manifests[..old] {
        store.delete_backup(&manifest.id)?;
        report(&format!("retention: deleted backup {}", manifest.id));
        retained.deleted.push(manifest.id.clone());
    }
    if let Some((blobs, bytes)) = sweep(store, report)? {
        (retained.swept, retained.deleted_blobs, retained.freed_bytes) = (true, blobs, bytes);
    }
    Ok(retained)
}

/// Deletes the blobs no manifest names; `None` if a backup in flight made it stand down.
fn sweep(store: &BackupStore, report: Report) -> Result<Option<(usize, u64)>> {
    let started = Instant::now();
    let mark = format!("{:016x}", rand::random::<u64>());
    store.put_small(&["sweeps", &mark], b"")?;
    let swept = sweep_marked(store, started, report);
    let unmarked = store.delete_object(&["sweeps", &mark]);
    let swept = swept?;
    unmarked?;
    Ok(swept)
}

fn sweep_marked(
    store: &BackupStore,
    started: Instant,
    report: Report,
) -> Result<Option<(usize, u64)>> {
    let now = chrono::Utc::now();
    // One listing serves both questions: a manifest written after it would be a backup's that
    // was in flight here (and the sweep stands down) or began after the mark (and waits).
    let objects = store.list(&["backups"])?;
    let manifests = manifests_in(&objects);
    let complete: HashSet<&str> = manifests.iter().map(|m| m.id.as_str()).collect();
    for mark in objects
        .iter()
        .filter(|o| o.below.len() == 2 && o.below[1] == STARTED)
    {
        let id = mark.below[0].as_str();
        if complete.contains(id) {
            continue;
        }
        let age = (now - mark.modified).to_std().unwrap_or_default();
        if age < IN_FLIGHT_MAX {
            report(&format!(
                "retention: backup {id} is in flight: no blob deleted this time"
            ));
            return Ok(None);
        }
        store.delete(&mark.location)?;
    }
    let mut named = HashSet::new();
    for manifest in &manifests {
        let decoded = BackupManifest::decode(&store.read_manifest(manifest)?, &manifest.id)?;
        named.extend(decoded.blobs().map(|blob| blob.sha256.clone()));
    }
    let (mut blobs, mut bytes) = (0, 0);
    for blob in store.list(&["blobs"])? {
        let [sha256] = blob.below.as_slice() else {
            continue;
        };
        if named.contains(sha256) {
            continue;
        }
        if started.elapsed() > SWEEP_MAX {
            report("retention: the sweep ran out of time; the next one goes on");
            break;
        }
        store.delete(&blob.location)?;
        (blobs, bytes) = (blobs + 1, bytes + blob.size_bytes);
    }
    report(&format!(
        "retention: {blobs} blob(s) no backup names deleted, {:.1} MB freed",
        bytes as f64 / 1e6
    ));
    Ok(Some((blobs, bytes)))
}

/// Marks backup `id` as in flight and waits while a sweep runs: after this, the blobs the
/// store has stay until the backup's manifest names them.
pub(super) fn begin_backup(store: &BackupStore, id: &str, report: Report) -> Result<()> {
    store.put_small(&["backups", id, STARTED], b"")?;
    let deadline = Instant::now() + SWEEP_WAIT;
    let mut said = false;
    loop {
        let now = chrono::Utc::now();
        let running = store
            .list(&["sweeps"])?
            .into_iter()
            .any(|mark| (now - mark.modified).to_std().unwrap_or_default() < SWEEP_MARK_STALE);
        if !running || Instant::now() > deadline {
            return Ok(());
        }
        if !said {
            report(&format!(
                "backup {id}: waiting for a retention sweep to end"
            ));
            said = true;
        }
        std::thread::sleep(SWEEP_POLL); // pace the polls of the store
    }
}

/// Clears backup `id`'s in-flight mark once its manifest is stored.
pub(super) fn end_backup(store: &BackupStore, id: &str) -> Result<()> {
    store.delete_object(&["backups", id, STARTED])
}
