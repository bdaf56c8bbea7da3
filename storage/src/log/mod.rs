//! The shard's write-ahead log, built to serve as openraft's log store.
//!
//! Records are `(index, payload)` pairs with contiguous indexes, framed with a CRC
//! (`record.rs`) and stored in size-bounded segment files (`segment.rs`) so old ones can be
//! deleted whole after a snapshot. Appends are group-committed by one flusher thread
//! (`flusher.rs`): an append is acknowledged only after its bytes are fdatasync'd, but many
//! concurrent appends share one fsync. Small durable values (vote, committed index, purge
//! point) live beside the segments as one atomically replaced file per name.
//!
//! Recovery (`Log::open`) re-reads every segment. A damaged or torn tail in the *last* segment
//! is cut back to the last whole record and reported in `Recovery`; anything else that does not
//! verify (a bad record in an earlier segment, an index gap, an empty segment before the last)
//! is `Error::Corrupt`. If valid records follow a bad one in the last segment, that is also
//! `Corrupt`: a crash can only tear the final unsynced write, so data after the damage means
//! acknowledged records may be damaged, and the log refuses to silently drop them. (A power
//! loss that persists an unsynced batch's pages out of order could in principle trigger this
//! too; the operator then has to decide, the log will not.)
//!
//! Ordering guarantees: operations are applied in submission order. An append is validated
//! and becomes readable when `append_with_callback` returns; its callback runs once it is
//! durable. `truncate`, `purge` and `put_meta` block until they, and everything submitted
//! before them, are durable. `close` (or drop) lets the flusher finish everything already
//! queued, so pending callbacks get their real result; later submissions fail with
//! `Error::Closed`.

mod flusher;
mod record;
mod segment;
#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{create_dir_durable, sync_dir, write_atomic};
use flusher::{Callback, Queue, Tail};
use segment::{Disk, Segment};

pub use record::MAX_PAYLOAD_SIZE_BYTES;

/// Meta name under which the purge point is stored (8 bytes, little-endian).
pub const PURGED_META: &str = "purged";
const MAX_META_NAME_BYTES: usize = 64;
const LOCK_FILE: &str = "LOCK";
/// How long `open` waits for a directory lock held by someone else.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// Tuning for a `Log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// A segment rolls over to a new file once it reaches this size (a segment exceeds it by
    /// at most one record).
    pub segment_size_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_size_bytes: 64 << 20,
        }
    }
}

/// What `Log::open` found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files in use after recovery.
    pub segments: usize,
    /// Whole, valid records in those files (including a purged prefix not yet deleted).
    pub records: u64,
    /// First readable index after recovery.
    pub first_index: Option<u64>,
    /// Last readable index after recovery.
    pub last_index: Option<u64>,
    /// The durable purge point.
    pub last_purged: Option<u64>,
    /// Bytes cut from the torn tail of the last segment.
    pub truncated_bytes: u64,
    /// Partial or invalid records cut with them: 0 or 1, since valid records after a bad one
    /// make recovery fail instead (the rest of the cut bytes do not parse as records).
    pub truncated_records: u64,
    /// Why the tail was cut, if it was.
    pub torn_detail: Option<String>,
    /// Segment files deleted because they were empty (tail) or held only purged records.
    pub removed_segments: usize,
}

/// Counters for observing group commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Append calls made durable.
    pub appends: u64,
    /// Records in those appends.
    pub records: u64,
    /// fsync/fdatasync calls issued by the flusher, directory syncs included.
    pub fsyncs: u64,
    /// Record bytes written to segments.
    pub written_bytes: u64,
}

#[derive(Default)]
struct Counters {
    appends: AtomicU64,
    records: AtomicU64,
    fsyncs: AtomicU64,
    written_bytes: AtomicU64,
}

/// State shared by the API and the flusher thread.
///
/// Lock order: `queue` before `disk`. The flusher never holds `disk` while taking `queue`.
struct Shared {
    dir: PathBuf,
    opts: LogOptions,
    queue: Mutex<Queue>,
    wake: Condvar,
    disk: RwLock<Disk>,
    stats: Counters,
    flusher_thread: OnceLock<ThreadId>,
    /// Holds the exclusive lock on the directory for as long as anything uses the log.
    _lock: File,
}

/// A segmented, group-committed write-ahead log. All methods take `&self`.
pub struct Log {
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail = self.shared.queue.lock().tail;
        f.debug_struct("Log")
            .field("dir", &self.shared.dir)
            .field("span", &tail.span)
            .field("purged", &tail.purged)
            .finish()
    }
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, repairing a torn tail.
    pub fn open(dir: &Path, opts: LogOptions) -> Result<(Log, Recovery)> {
        if opts.segment_size_bytes == 0 {
            return Err(Error::InvalidArgument(
                "segment_size_bytes must be positive".into(),
            ));
        }
        create_dir_durable(dir)?;
        let lock = lock_dir(dir)?;
        let (disk, recovery) = recover(dir)?;
        let tail = Tail {
            span: disk.span(),
            purged: disk.purged,
        };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            opts,
            queue: Mutex::new(Queue::new(tail)),
            wake: Condvar::new(),
            disk: RwLock::new(disk),
            stats: Counters::default(),
            flusher_thread: OnceLock::new(),
            _lock: lock,
        });
        let worker = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name("vecraft-log-flusher".into())
            .spawn(move || flusher::run(&worker))
            .ctx("spawn log flusher for", dir)?;
        let _ = shared.flusher_thread.set(handle.thread().id());
        let log = Log {
            shared,
            flusher: Mutex::new(Some(handle)),
        };
        Ok((log, recovery))
    }

    /// Appends `entries` and returns once they are durable.
    pub fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<()> {
        self.blocking(|shared, queue, done| queue.submit_append(shared, entries, done))
    }

    /// Appends `entries` without waiting; `done` runs on the flusher thread once they are
    /// durable (or failed). Validation happens here, in call order: on `Err` nothing was
    /// queued and `done` is dropped uncalled. On `Ok` the entries are already readable.
    ///
    /// `done` must not call the blocking methods of this log (they would wait on the thread
    /// running it); they fail with `InvalidArgument` if it tries.
    pub fn append_with_callback(
        &self,
        entries: Vec<(u64, Vec<u8>)>,
        done: Box<dyn FnOnce(Result<()>) + Send>,
    ) -> Result<()> {
        self.submit(|shared, queue| queue.submit_append(shared, entries, done))
    }

    /// Drops every record with index `>= from` (a Raft conflict), after everything submitted
    /// earlier. Durable on return.
    pub fn truncate(&self, from: u64) -> Result<()> {
        self.blocking(|shared, queue, done| queue.submit_truncate(shared, from, done))
    }

    /// Forgets records with index `<= upto` and remembers `upto` durably; whole segment files
    /// below it are deleted. A purge at or below the current purge point does nothing.
    pub fn purge(&self, upto: u64) -> Result<()> {
        self.blocking(|shared, queue, done| queue.submit_purge(shared, upto, done))
    }

    /// Records in `range` that exist, in index order. Sees every accepted append.
    pub fn read(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>> {
        let queue = self.shared.queue.lock();
        let Some((lo, hi)) = clamp(range, queue.tail.span) else {
            return Ok(Vec::new());
        };
        let pending = queue.pending_in(lo, hi);
        let disk = self.shared.disk.read();
        drop(queue);
        let mut pending = pending.into_iter().peekable();
        let mut out = Vec::new();
        for index in lo..=hi {
            if let Some((_, payload)) = pending.next_if(|(i, _)| *i == index) {
                out.push((index, payload.as_ref().clone()));
                continue;
            }
            match disk.read(index)? {
                Some(payload) => out.push((index, payload)),
                None => {
                    let detail = format!("record {index} is in neither memory nor segments");
                    return Err(Error::corrupt(&self.shared.dir, detail));
                }
            }
        }
        Ok(out)
    }

    /// First readable index, `None` when empty.
    pub fn first_index(&self) -> Option<u64> {
        self.shared.queue.lock().tail.span.map(|(first, _)| first)
    }

    /// Last accepted index, `None` when empty.
    pub fn last_index(&self) -> Option<u64> {
        self.shared.queue.lock().tail.span.map(|(_, last)| last)
    }

    /// The highest purged index, surviving reopen.
    pub fn last_purged(&self) -> Option<u64> {
        self.shared.queue.lock().tail.purged
    }

    /// Stores `value` under `name` durably and atomically, ordered after earlier appends.
    /// Names are 1 to 64 ASCII letters, digits or underscores; `purged` is reserved.
    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<()> {
        validate_meta_name(name)?;
        if name == PURGED_META {
            return Err(Error::InvalidArgument(format!(
                "meta name \"{PURGED_META}\" is reserved for the log"
            )));
        }
        let (name, value) = (name.to_string(), value.to_vec());
        self.blocking(|shared, queue, done| queue.submit_meta(shared, name, value, done))
    }

    /// The value last stored under `name`, if any.
    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        validate_meta_name(name)?;
        read_meta(&self.shared.dir, name)
    }

    pub fn stats(&self) -> LogStats {
        let counters = &self.shared.stats;
        LogStats {
            appends: counters.appends.load(Ordering::Relaxed),
            records: counters.records.load(Ordering::Relaxed),
            fsyncs: counters.fsyncs.load(Ordering::Relaxed),
            written_bytes: counters.written_bytes.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting work, lets the flusher finish what is queued, and joins it. Idempotent;
    /// also run on drop.
    pub fn close(&self) {
        self.shared.queue.lock().closing = true;
        self.shared.wake.notify_all();
        if self.on_flusher_thread() {
            return;
        }
        if let Some(handle) = self.flusher.lock().take() {
            let _ = handle.join();
        }
    }

    fn on_flusher_thread(&self) -> bool {
        self.shared.flusher_thread.get() == Some(&thread::current().id())
    }

    fn submit(&self, op: impl FnOnce(&Shared, &mut Queue) -> Result<()>) -> Result<()> {
        let shared = &*self.shared;
        op(shared, &mut shared.queue.lock())?;
        shared.wake.notify_one();
        Ok(())
    }

    /// Submits an operation and waits for its callback.
    fn blocking(&self, op: impl FnOnce(&Shared, &mut Queue, Callback) -> Result<()>) -> Result<()> {
        if self.on_flusher_thread() {
            return Err(Error::InvalidArgument(
                "blocking log call from a log callback would deadlock".into(),
            ));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let done: Callback = Box::new(move |result| {
            let _ = tx.send(result);
        });
        self.submit(|shared, queue| op(shared, queue, done))?;
        rx.recv().unwrap_or(Err(Error::Closed))
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.close();
    }
}

/// `range` intersected with the readable span, as inclusive bounds.
fn clamp(range: Range<u64>, span: Option<(u64, u64)>) -> Option<(u64, u64)> {
    let (first, last) = span?;
    let lo = range.start.max(first);
    let hi = range.end.checked_sub(1)?.min(last);
    (lo <= hi).then_some((lo, hi))
}

/// Takes an exclusive advisory lock so two `Log`s never share a directory.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .ctx("open lock file", &path)?;
    // A child process forked by another thread briefly inherits our descriptors (until its
    // exec closes them) and with them the lock, so a held lock is retried for a moment.
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(Error::io(
                    "lock (log already open elsewhere)",
                    &path,
                    io::Error::from(io::ErrorKind::WouldBlock),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
    }
}

fn validate_meta_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_META_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "bad log meta name {name:?}: use 1 to {MAX_META_NAME_BYTES} letters, digits or _"
        )))
    }
}

fn meta_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("meta-{name}"))
}

/// Durably replaces a meta value; runs on the flusher thread.
fn write_meta(shared: &Shared, name: &str, value: &[u8]) -> Result<()> {
    write_atomic(&meta_path(&shared.dir, name), value)?;
    shared.stats.fsyncs.fetch_add(2, Ordering::Relaxed);
    Ok(())
}

fn read_meta(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = meta_path(dir, name);
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read meta", path, e)),
    }
}

fn read_purged(dir: &Path) -> Result<Option<u64>> {
    let Some(bytes) = read_meta(dir, PURGED_META)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| Error::corrupt(meta_path(dir, PURGED_META), "purge point is not 8 bytes"))?;
    Ok(Some(u64::from_le_bytes(bytes)))
}

/// Segment files in `dir`, ordered by first index.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).ctx("list", dir)? {
        let entry = entry.ctx("list", dir)?;
        let name = entry.file_name();
        if let Some(first) = name.to_str().and_then(segment::parse_file_name) {
            found.push((first, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(first, _)| *first);
    Ok(found)
}

/// Rebuilds the in-memory index from the segment files, repairing a torn tail.
fn recover(dir: &Path) -> Result<(Disk, Recovery)> {
    let purged = read_purged(dir)?;
    let mut report = Recovery::default();
    let mut names = list_segments(dir)?;
    report.removed_segments += remove_purged_by_name(&mut names, purged)?;
    let count = names.len();
    let mut disk = Disk {
        segments: Vec::with_capacity(count),
        purged,
    };
    for (k, (first_index, path)) in names.into_iter().enumerate() {
        let is_last = k + 1 == count;
        if let Some(segment) = recover_segment(path, first_index, is_last, &mut report)? {
            check_follows(disk.segments.last(), &segment)?;
            disk.segments.push(segment);
        }
    }
    report.removed_segments += disk.remove_purged_segments()?;
    if report.removed_segments > 0 {
        sync_dir(dir)?;
    }
    report.segments = disk.segments.len();
    report.records = disk.segments.iter().map(Segment::record_count).sum();
    report.first_index = disk.span().map(|(first, _)| first);
    report.last_index = disk.span().map(|(_, last)| last);
    report.last_purged = purged;
    Ok((disk, report))
}

/// Deletes segments that a later segment's name proves hold only purged records (finishing a
/// purge interrupted by a crash, in whatever order its deletions reached the disk).
fn remove_purged_by_name(names: &mut Vec<(u64, PathBuf)>, purged: Option<u64>) -> Result<usize> {
    let Some(limit) = purged.and_then(|p| p.checked_add(1)) else {
        return Ok(0);
    };
    let doomed = names
        .windows(2)
        .take_while(|pair| pair[1].0 <= limit)
        .count();
    for (_, path) in names.drain(..doomed) {
        fs::remove_file(&path).ctx("delete purged segment", &path)?;
    }
    Ok(doomed)
}

/// Opens one segment; cuts a torn tail if it is the last. `None` means the file was empty (or
/// held only a torn record) and has been deleted.
fn recover_segment(
    path: PathBuf,
    first_index: u64,
    is_last: bool,
    report: &mut Recovery,
) -> Result<Option<Segment>> {
    let (mut segment, stop) = Segment::open(path, first_index)?;
    if let Some(stop) = stop {
        let what = format!("{} at offset {}", stop.reason.describe(), stop.offset);
        if !is_last {
            return Err(Error::corrupt(
                segment.path(),
                format!("{what}, before the last segment"),
            ));
        }
        let min_index = first_index.saturating_add(segment.record_count());
        if let Some(at) = segment.find_valid_record_after(stop.offset, min_index)? {
            let detail = format!("{what}, but a valid record follows at offset {at}");
            return Err(Error::corrupt(segment.path(), detail));
        }
        segment.cut_torn_tail()?;
        report.truncated_bytes += stop.file_len_bytes - stop.offset;
        report.truncated_records += 1;
        report.torn_detail = Some(format!("{}: {what}", segment.path().display()));
    }
    if segment.record_count() > 0 {
        return Ok(Some(segment));
    }
    if !is_last {
        return Err(Error::corrupt(
            segment.path(),
            "empty segment before the last",
        ));
    }
    segment.remove()?;
    report.removed_segments += 1;
    Ok(None)
}

/// Segments must continue exactly where the previous one ended.
fn check_follows(previous: Option<&Segment>, next: &Segment) -> Result<()> {
    let Some(last) = previous.and_then(Segment::last_index) else {
        return Ok(());
    };
    if last.checked_add(1) != Some(next.first_index()) {
        let detail = format!("index gap: previous segment ends at {last}");
        return Err(Error::corrupt(next.path(), detail));
    }
    Ok(())
}
