//! openraft's log store over the shard's storage `Log`: one Raft entry per log record, at the
//! entry's own index. Appends are group-committed by the log's flusher and reported to
//! openraft from its callback, so concurrent writes share an fsync. The vote and the id of the
//! last purged entry are the log's small durable meta values.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, Range, RangeBounds};
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use vecraft_storage::log::Log;

use super::{NodeId, TypeConfig, entry};

pub const VOTE_META: &str = "vote";
pub const PURGED_ID_META: &str = "purged_id";

#[derive(Clone)]
pub struct LogStore {
    log: Arc<Log>,
    /// Dropped after the log: tells the group the log is released.
    _release: SyncSender<()>,
}

impl LogStore {
    pub fn new(log: Arc<Log>, release: SyncSender<()>) -> LogStore {
        LogStore {
            log,
            _release: release,
        }
    }
}

/// The id of the entry at `index`, if the log holds it.
pub fn stored_log_id(log: &Log, index: u64) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
    let records = log
        .read(index..index.saturating_add(1))
        .map_err(read_error)?;
    records
        .first()
        .map(|(i, bytes)| entry::log_id(*i, bytes).map_err(|e| read_error(Corrupt(e))))
        .transpose()
}

/// The id of the log's last entry (of the last one purged, when it holds none).
pub fn last_log_id(log: &Log) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
    match log.last_index() {
        Some(last) => stored_log_id(log, last),
        None => get_json(log, PURGED_ID_META),
    }
}

/// A JSON meta value of the log.
pub fn get_json<T: serde::de::DeserializeOwned>(
    log: &Log,
    name: &str,
) -> Result<Option<T>, StorageError<NodeId>> {
    let Some(bytes) = log.get_meta(name).map_err(read_error)? else {
        return Ok(None);
    };
    let value = serde_json::from_slice(&bytes)
        .map_err(|e| read_error(Corrupt(format!("log meta {name}: {e}"))))?;
    Ok(Some(value))
}

/// Stores a JSON meta value durably, ordered after earlier appends.
pub fn put_json<T: serde::Serialize>(
    log: &Log,
    name: &str,
    value: &T,
) -> Result<(), StorageError<NodeId>> {
    let bytes = serde_json::to_vec(value).expect("Raft state always serialises");
    log.put_meta(name, &bytes).map_err(write_error)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let records = self.log.read(to_range(&range)).map_err(read_error)?;
        records
            .into_iter()
            .map(|(index, bytes)| entry::decode(index, bytes).map_err(|e| read_error(Corrupt(e))))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> = get_json(&self.log, PURGED_ID_META)?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last_log_id(&self.log)?,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        put_json(&self.log, VOTE_META, vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        get_json(&self.log, VOTE_META)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let records: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, entry::encode(&e)))
            .collect();
        let done = Box::new(move |result: vecraft_storage::Result<()>| {
            callback.log_io_completed(result.map_err(io::Error::other));
        });
        self.log
            .append_with_callback(records, done)
            .map_err(write_error)
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.log.truncate(log_id.index).map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // The id first: a crash between the two leaves entries that are already "purged"
        // readable, which is harmless; the other order would lose the purged entry's term.
        put_json(&self.log, PURGED_ID_META, &log_id)?;
        self.log.purge(log_id.index).map_err(write_error)
    }
}

fn to_range(range: &impl RangeBounds<u64>) -> Range<u64> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    start..end
}

/// Log bytes that do not decode as what they should be.
#[derive(Debug)]
pub struct Corrupt(pub String);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Corrupt {}

pub fn read_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

pub fn write_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}
