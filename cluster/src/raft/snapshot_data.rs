//! What openraft carries as a shard snapshot (`generic-snapshot-data`), in neither case held in
//! memory: a replica's own shard, whose snapshot stream is written only when a peer needs it,
//! or a stream received from a peer, spooled to a file beside the receiving replica (after it
//! was checked, `rpc::snapshot_push`) until the state machine installs it.
//!
//! A spool file is removed when its `Spool` is dropped (installed, refused, or the transfer
//! broke), and any left by a crash when the replica opens ([`Spool::clear`]).

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vecraft_storage::shard::{Shard, SnapshotInfo};

use crate::pipe::pipe;

const SPOOL_PREFIX: &str = "incoming-";
const SPOOL_SUFFIX: &str = ".snapshot";
/// Chunks of 1 MiB between the two threads of an in-process install.
const PIPE_CHUNKS: usize = 4;

pub enum SnapshotData {
    /// A replica's own shard: streamed when read, so taking a snapshot copies nothing.
    Shard(Arc<Shard>),
    /// A snapshot stream a peer sent, in a file until it is installed.
    Spooled(Spool),
    /// Nothing: what the state machine hands openraft's chunked transport, which Vecraft
    /// does not use (openraft's storage tests fill it in). It cannot be installed.
    Empty,
}

impl SnapshotData {
    /// Writes the snapshot stream to `out` (blocking: disk work).
    pub fn write_to(&self, out: &mut dyn Write) -> vecraft_storage::Result<()> {
        match self {
            SnapshotData::Shard(shard) => shard.write_snapshot(out).map(|_| ()),
            SnapshotData::Spooled(spool) => {
                let copy = |out: &mut dyn Write| {
                    io::copy(&mut BufReader::new(File::open(&spool.path)?), out)?;
                    out.flush()
                };
                copy(out).map_err(|e| vecraft_storage::Error::io("read", &spool.path, e))
            }
            SnapshotData::Empty => Ok(()),
        }
    }

    /// Installs the snapshot on `shard`, replacing its state (blocking: disk work).
    pub fn install_into(self, shard: &Shard) -> vecraft_storage::Result<SnapshotInfo> {
        match self {
            SnapshotData::Spooled(spool) => {
                let file = File::open(&spool.path)
                    .map_err(|e| vecraft_storage::Error::io("open", &spool.path, e))?;
                shard.install_snapshot(&mut BufReader::new(file))
            }
            SnapshotData::Empty => Err(vecraft_storage::Error::corrupt(
                Path::new("snapshot"),
                "an empty snapshot cannot be installed",
            )),
            SnapshotData::Shard(source) if std::ptr::eq(Arc::as_ptr(&source), shard) => {
                // Already there (and piping it into itself would wait on its own lock).
                shard.write_snapshot(&mut io::sink())
            }
            // Another replica in this process (openraft's storage tests): through a pipe.
            source => {
                let (mut writer, mut reader) = pipe(PIPE_CHUNKS);
                std::thread::scope(|scope| {
                    let written = scope.spawn(move || source.write_to(&mut writer));
                    let installed = shard.install_snapshot(&mut reader);
                    drop(reader);
                    let written = written.join().expect("a snapshot writer does not panic");
                    // An install that failed first makes the writer fail too: say why it did.
                    installed.and_then(|info| written.map(|()| info))
                })
            }
        }
    }
}

/// A file holding a received snapshot stream, removed when dropped.
pub struct Spool {
    path: PathBuf,
}

impl Spool {
    /// A new, empty spool file in `dir` (a replica's directory).
    pub fn create(dir: &Path) -> io::Result<(Spool, File)> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{SPOOL_PREFIX}{n}{SPOOL_SUFFIX}"));
        let file = File::create(&path)?;
        Ok((Spool { path }, file))
    }

    /// Removes the spool files a crash left in `dir`.
    pub fn clear(dir: &Path) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(SPOOL_PREFIX) && name.ends_with(SPOOL_SUFFIX) {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// The spool files in `dir` now.
    #[cfg(test)]
    pub fn count(dir: &Path) -> usize {
        fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(SPOOL_PREFIX))
                .count()
        })
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
