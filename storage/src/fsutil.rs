//! Small durable-file helpers shared by the log, the manifest and snapshots.
//!
//! A file that must change atomically is written beside its final name, fsync'd, renamed over
//! it, and then its directory is fsync'd so the rename itself survives a crash.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp).ctx("create", &tmp)?;
        file.write_all(bytes).ctx("write", &tmp)?;
        file.sync_all().ctx("fsync", &tmp)?;
    }
    fs::rename(&tmp, path).ctx("rename into", path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes directory entries (creates, renames, deletes) in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .ctx("open dir", dir)?
        .sync_all()
        .ctx("fsync dir", dir)
}

/// Creates `dir` (and parents) and makes its entry durable in its parent.
pub fn create_dir_durable(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).ctx("create dir", dir)?;
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        sync_dir(parent)?;
    }
    Ok(())
}
