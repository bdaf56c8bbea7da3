//! The submission queue and the group-commit thread behind it.
//!
//! Appends, truncations, purges and meta writes are validated and ordered at submission time
//! (under the queue lock) and then executed in that order by one flusher thread. The thread
//! takes everything queued at once, writes all consecutive appends with one `write` per touched
//! segment and one fdatasync, and only then publishes the new records to readers and runs the
//! callbacks. Many concurrent appenders therefore share few fsyncs.
//!
//! Accepted but not yet durable entries are kept in `Queue::pending` so that reads see them as
//! soon as the append call returns (openraft's `append` contract); `Queue::tail` is the logical
//! view including them. Any failure to write, truncate or purge poisons the log: the on-disk
//! state is then unknown, so every later operation fails until the log is reopened.

use std::collections::VecDeque;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::segment::{Appender, Disk, Segment};
use super::{PURGED_META, Shared, write_meta};
use crate::error::{Error, Result};
use crate::fsutil::sync_dir;

/// Completion callback for any queued operation; runs on the flusher thread.
pub type Callback = Box<dyn FnOnce(Result<()>) + Send>;

pub struct AppendCmd {
    seq: u64,
    entries: Vec<(u64, Arc<Vec<u8>>)>,
    done: Callback,
}

pub enum Command {
    Append(AppendCmd),
    Truncate {
        from: u64,
        done: Callback,
    },
    Purge {
        upto: u64,
        done: Callback,
    },
    PutMeta {
        name: String,
        value: Vec<u8>,
        done: Callback,
    },
}

/// An accepted entry not yet published from disk; `seq` names the append that carries it.
pub struct PendingEntry {
    pub seq: u64,
    pub index: u64,
    pub payload: Arc<Vec<u8>>,
}

/// The log as callers see it: accepted operations applied, durable or not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tail {
    /// First and last readable index; `None` when the log is empty.
    pub span: Option<(u64, u64)>,
    pub purged: Option<u64>,
}

impl Tail {
    /// Checks that `entries` continue the log without a gap and fit in a record.
    fn check_append(&self, entries: &[(u64, Vec<u8>)]) -> Result<()> {
        let Some((first, _)) = entries.first() else {
            return Ok(());
        };
        match (self.span, self.purged) {
            (Some((_, u64::MAX)), _) => {
                return Err(Error::InvalidArgument(
                    "log index space is exhausted".into(),
                ));
            }
            (Some((_, last)), _) if last + 1 != *first => {
                return Err(Error::InvalidArgument(format!(
                    "log append must start at {}, not {first}",
                    last + 1
                )));
            }
            (None, Some(purged)) if *first <= purged => {
                return Err(Error::InvalidArgument(format!(
                    "log append at {first} is at or below the purged index {purged}"
                )));
            }
            _ => {}
        }
        for pair in entries.windows(2) {
            if pair[0].0.checked_add(1) != Some(pair[1].0) {
                return Err(Error::InvalidArgument(format!(
                    "log append entries are not contiguous: {} then {}",
                    pair[0].0, pair[1].0
                )));
            }
        }
        entries
            .iter()
            .try_for_each(|(index, payload)| super::record::check_payload_size(*index, payload))
    }

    fn apply_append(&mut self, first: u64, last: u64) {
        let start = self.span.map_or(first, |(start, _)| start);
        self.span = Some((start, last));
    }

    fn apply_truncate(&mut self, from: u64) {
        self.span = match self.span {
            Some((first, _)) if from <= first => None,
            Some((first, last)) if from <= last => Some((first, from - 1)),
            other => other,
        };
    }

    fn apply_purge(&mut self, upto: u64) {
        if self.purged.is_some_and(|purged| purged >= upto) {
            return;
        }
        self.purged = Some(upto);
        self.span = match self.span {
            Some((_, last)) if upto >= last => None,
            Some((first, last)) if upto >= first => Some((upto + 1, last)),
            other => other,
        };
    }
}

/// Everything guarded by the queue lock.
#[derive(Default)]
pub struct Queue {
    pub tail: Tail,
    /// Accepted entries not yet published by the flusher, in index order.
    pub pending: VecDeque<PendingEntry>,
    commands: Vec<Command>,
    next_seq: u64,
    pub closing: bool,
    poisoned: Option<String>,
}

impl Queue {
    pub fn new(tail: Tail) -> Queue {
        Queue {
            tail,
            ..Queue::default()
        }
    }

    fn check_usable(&self, shared: &Shared) -> Result<()> {
        if self.closing {
            return Err(Error::Closed);
        }
        match &self.poisoned {
            Some(reason) => Err(poisoned_error(shared, reason)),
            None => Ok(()),
        }
    }

    /// Validates `entries` against the tail and queues them; they are readable on return.
    pub fn submit_append(
        &mut self,
        shared: &Shared,
        entries: Vec<(u64, Vec<u8>)>,
        done: Callback,
    ) -> Result<()> {
        self.check_usable(shared)?;
        self.tail.check_append(&entries)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        if let (Some((first, _)), Some((last, _))) = (entries.first(), entries.last()) {
            self.tail.apply_append(*first, *last);
        }
        let entries: Vec<(u64, Arc<Vec<u8>>)> = entries
            .into_iter()
            .map(|(index, payload)| (index, Arc::new(payload)))
            .collect();
        self.pending
            .extend(entries.iter().map(|(index, payload)| PendingEntry {
                seq,
                index: *index,
                payload: Arc::clone(payload),
            }));
        self.commands
            .push(Command::Append(AppendCmd { seq, entries, done }));
        Ok(())
    }

    pub fn submit_truncate(&mut self, shared: &Shared, from: u64, done: Callback) -> Result<()> {
        self.check_usable(shared)?;
        self.tail.apply_truncate(from);
        while self.pending.back().is_some_and(|e| e.index >= from) {
            self.pending.pop_back();
        }
        self.commands.push(Command::Truncate { from, done });
        Ok(())
    }

    pub fn submit_purge(&mut self, shared: &Shared, upto: u64, done: Callback) -> Result<()> {
        self.check_usable(shared)?;
        self.tail.apply_purge(upto);
        while self.pending.front().is_some_and(|e| e.index <= upto) {
            self.pending.pop_front();
        }
        self.commands.push(Command::Purge { upto, done });
        Ok(())
    }

    pub fn submit_meta(
        &mut self,
        shared: &Shared,
        name: String,
        value: Vec<u8>,
        done: Callback,
    ) -> Result<()> {
        self.check_usable(shared)?;
        self.commands.push(Command::PutMeta { name, value, done });
        Ok(())
    }

    /// Pending entries with index in `lo..=hi`, oldest first.
    pub fn pending_in(&self, lo: u64, hi: u64) -> Vec<(u64, Arc<Vec<u8>>)> {
        let start = self.pending.partition_point(|e| e.index < lo);
        self.pending
            .range(start..)
            .take_while(|e| e.index <= hi)
            .map(|e| (e.index, Arc::clone(&e.payload)))
            .collect()
    }
}

fn poisoned_error(shared: &Shared, reason: &str) -> Error {
    Error::io(
        "log is unusable after an earlier write failure; reopen it",
        &shared.dir,
        io::Error::other(reason.to_string()),
    )
}

/// A copy of `error` for the second and later callbacks of a failed group.
fn duplicate(shared: &Shared, error: &Error) -> Error {
    match error {
        Error::Io {
            context,
            path,
            source,
        } => Error::io(
            context,
            path.clone(),
            io::Error::new(source.kind(), source.to_string()),
        ),
        Error::Corrupt { path, detail } => Error::corrupt(path.clone(), detail.clone()),
        Error::InvalidArgument(message) => Error::InvalidArgument(message.clone()),
        Error::Closed => Error::Closed,
        other => Error::io("log", &shared.dir, io::Error::other(other.to_string())),
    }
}

/// Runs a callback, containing any panic so the flusher keeps serving everyone else.
fn complete(done: Callback, result: Result<()>) {
    let _ = catch_unwind(AssertUnwindSafe(move || done(result)));
}

/// The flusher thread's body: execute queued commands until closed and drained.
pub fn run(shared: &Shared) {
    let _guard = ExitGuard(shared);
    while let Some(batch) = next_batch(shared) {
        execute(shared, batch);
    }
}

/// On any exit (including a panic), refuse new work and fail whatever is still queued.
struct ExitGuard<'a>(&'a Shared);

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        let (leftovers, poisoned) = {
            let mut queue = self.0.queue.lock();
            queue.closing = true;
            (
                std::mem::take(&mut queue.commands),
                queue.poisoned.is_some(),
            )
        };
        for command in leftovers {
            complete(callback_of(command), Err(Error::Closed));
        }
        // A clean close leaves files that end with their last record. (Zeros left by a
        // crash are read as the end of the records when the log opens again.)
        if !poisoned && let Some(last) = self.0.disk.write().segments.last_mut() {
            let _ = last.trim();
        }
    }
}

fn callback_of(command: Command) -> Callback {
    match command {
        Command::Append(append) => append.done,
        Command::Truncate { done, .. }
        | Command::Purge { done, .. }
        | Command::PutMeta { done, .. } => done,
    }
}

/// Waits for work; `None` once closing and nothing is left.
fn next_batch(shared: &Shared) -> Option<Vec<Command>> {
    let mut queue = shared.queue.lock();
    loop {
        if !queue.commands.is_empty() {
            return Some(std::mem::take(&mut queue.commands));
        }
        if queue.closing {
            return None;
        }
        shared.wake.wait(&mut queue);
    }
}

/// Executes a drained batch in order, committing runs of appends as one group.
fn execute(shared: &Shared, batch: Vec<Command>) {
    let mut group = Vec::new();
    for command in batch {
        match command {
            Command::Append(append) => group.push(append),
            other => {
                commit_group(shared, std::mem::take(&mut group));
                execute_other(shared, other);
            }
        }
    }
    commit_group(shared, group);
}

fn current_poison(shared: &Shared) -> Option<Error> {
    let queue = shared.queue.lock();
    let reason = queue.poisoned.as_deref()?;
    Some(poisoned_error(shared, reason))
}

/// Marks the log unusable and resets the logical view to what is known to be on disk.
fn poison(shared: &Shared, error: &Error) {
    let mut queue = shared.queue.lock();
    if queue.poisoned.is_none() {
        queue.poisoned = Some(error.to_string());
    }
    queue.pending.clear();
    let disk = shared.disk.read();
    queue.tail = Tail {
        span: disk.span(),
        purged: disk.purged,
    };
}

fn commit_group(shared: &Shared, group: Vec<AppendCmd>) {
    let Some(last_seq) = group.last().map(|a| a.seq) else {
        return;
    };
    let result = match current_poison(shared) {
        Some(error) => Err(error),
        None => write_group(shared, &group),
    };
    match result {
        Ok(()) => {
            release_pending(shared, last_seq);
            let records: usize = group.iter().map(|a| a.entries.len()).sum();
            shared
                .stats
                .appends
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            shared
                .stats
                .records
                .fetch_add(records as u64, Ordering::Relaxed);
            for append in group {
                complete(append.done, Ok(()));
            }
        }
        Err(error) => {
            poison(shared, &error);
            for append in group {
                complete(append.done, Err(duplicate(shared, &error)));
            }
        }
    }
}

/// Drops pending entries that the appends up to `last_seq` have published.
fn release_pending(shared: &Shared, last_seq: u64) {
    let mut queue = shared.queue.lock();
    while queue.pending.front().is_some_and(|e| e.seq <= last_seq) {
        queue.pending.pop_front();
    }
}

/// One segment being appended to in this group; `created` holds it if it is new.
struct Target {
    created: Option<Segment>,
    appender: Appender,
}

/// Writes every entry of `group`, syncs once per touched segment, then publishes.
fn write_group(shared: &Shared, group: &[AppendCmd]) -> Result<()> {
    let mut active = shared.disk.read().segments.last().map(|s| Target {
        created: None,
        appender: s.appender(),
    });
    let mut finished = Vec::new();
    for (index, payload) in group.iter().flat_map(|a| a.entries.iter()) {
        let mut target = match active.take() {
            Some(target) if !needs_roll(shared, &target) => target,
            previous => roll(shared, previous, &mut finished, *index)?,
        };
        target.appender.push(*index, payload)?;
        active = Some(target);
    }
    if let Some(mut target) = active {
        sync_target(shared, &mut target)?;
        finished.push(target);
    }
    if finished.iter().any(|t| t.created.is_some()) {
        sync_dir(&shared.dir)?;
        shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
    publish(shared, finished)
}

fn needs_roll(shared: &Shared, target: &Target) -> bool {
    !target.appender.is_empty() && target.appender.len_bytes() >= shared.opts.segment_size_bytes
}

fn sync_target(shared: &Shared, target: &mut Target) -> Result<()> {
    if target.appender.write_and_sync()? {
        shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        let written = target.appender.written_bytes();
        shared
            .stats
            .written_bytes
            .fetch_add(written, Ordering::Relaxed);
    }
    Ok(())
}

/// Makes the previous target durable, then starts a new segment at `first_index`. Syncing
/// first means a later segment file only exists once everything before it is durable, so a
/// torn tail can only ever be in the last segment.
fn roll(
    shared: &Shared,
    previous: Option<Target>,
    finished: &mut Vec<Target>,
    first_index: u64,
) -> Result<Target> {
    if let Some(mut previous) = previous {
        sync_target(shared, &mut previous)?;
        previous.appender.trim()?;
        finished.push(previous);
    }
    let segment = Segment::create(&shared.dir, first_index)?;
    let appender = segment.appender();
    Ok(Target {
        created: Some(segment),
        appender,
    })
}

/// Makes durable records visible to readers.
fn publish(shared: &Shared, finished: Vec<Target>) -> Result<()> {
    let mut disk = shared.disk.write();
    for target in finished {
        match target.created {
            Some(mut segment) => {
                segment.commit(target.appender)?;
                disk.segments.push(segment);
            }
            None => match disk.segments.last_mut() {
                Some(segment) => segment.commit(target.appender)?,
                None => return Err(Error::corrupt(&shared.dir, "internal: segment vanished")),
            },
        }
    }
    Ok(())
}

fn execute_other(shared: &Shared, command: Command) {
    let (result, done) = match command {
        Command::Append(append) => {
            commit_group(shared, vec![append]);
            return;
        }
        Command::Truncate { from, done } => (guarded(shared, |s| truncate_disk(s, from)), done),
        Command::Purge { upto, done } => (guarded(shared, |s| purge_disk(s, upto)), done),
        Command::PutMeta { name, value, done } => {
            let result = match current_poison(shared) {
                Some(error) => Err(error),
                None => write_meta(shared, &name, &value),
            };
            (result, done)
        }
    };
    complete(done, result);
}

/// Runs a log-changing operation unless poisoned, and poisons the log if it fails.
fn guarded(shared: &Shared, op: impl FnOnce(&Shared) -> Result<()>) -> Result<()> {
    if let Some(error) = current_poison(shared) {
        return Err(error);
    }
    let result = op(shared);
    if let Err(error) = &result {
        poison(shared, error);
    }
    result
}

/// Drops records `from..` on disk: later segment files first (each deletion made durable
/// before the next, so a crash never leaves a gap), then the cut inside the segment holding
/// `from`.
fn truncate_disk(shared: &Shared, from: u64) -> Result<()> {
    let mut disk = shared.disk.write();
    while disk
        .segments
        .last()
        .is_some_and(|s| s.first_index() >= from)
    {
        if let Some(segment) = disk.segments.pop() {
            segment.remove()?;
            sync_dir(&shared.dir)?;
            shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(segment) = disk.segments.last_mut()
        && segment.last_index().is_some_and(|last| last >= from)
    {
        segment.truncate_from(from)?;
        shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
    remove_purged(shared, &mut disk)
}

/// Records the purge point durably, then deletes segments holding only purged records.
fn purge_disk(shared: &Shared, upto: u64) -> Result<()> {
    if shared.disk.read().purged.is_some_and(|p| p >= upto) {
        return Ok(());
    }
    write_meta(shared, PURGED_META, &upto.to_le_bytes())?;
    let mut disk = shared.disk.write();
    disk.purged = Some(upto);
    remove_purged(shared, &mut disk)
}

fn remove_purged(shared: &Shared, disk: &mut Disk) -> Result<()> {
    if disk.remove_purged_segments()? > 0 {
        sync_dir(&shared.dir)?;
        shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(range: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
        range.map(|i| (i, vec![i as u8])).collect()
    }

    #[test]
    fn tail_accepts_only_contiguous_appends() {
        let mut tail = Tail::default();
        assert!(tail.check_append(&entries(0..3)).is_ok());
        tail.apply_append(0, 2);
        assert!(tail.check_append(&entries(3..5)).is_ok());
        assert!(tail.check_append(&entries(4..5)).is_err());
        assert!(tail.check_append(&entries(2..5)).is_err());
        assert!(tail.check_append(&[(3, vec![]), (5, vec![])]).is_err());
        assert!(tail.check_append(&[]).is_ok());
    }

    #[test]
    fn tail_truncate_and_purge() {
        let mut tail = Tail {
            span: Some((10, 20)),
            purged: Some(9),
        };
        tail.apply_truncate(15);
        assert_eq!(tail.span, Some((10, 14)));
        tail.apply_purge(12);
        assert_eq!(tail.span, Some((13, 14)));
        tail.apply_purge(11);
        assert_eq!(tail.purged, Some(12));
        tail.apply_truncate(13);
        assert_eq!(tail.span, None);
        assert!(tail.check_append(&entries(12..13)).is_err());
        assert!(tail.check_append(&entries(100..101)).is_ok());
        tail.apply_append(100, 100);
        tail.apply_purge(500);
        assert_eq!((tail.span, tail.purged), (None, Some(500)));
    }

    #[test]
    fn tail_rejects_index_overflow() {
        let tail = Tail {
            span: Some((1, u64::MAX)),
            purged: None,
        };
        assert!(tail.check_append(&entries(0..1)).is_err());
        let empty = Tail::default();
        assert!(
            empty
                .check_append(&[(u64::MAX, vec![]), (0, vec![])])
                .is_err()
        );
    }
}
