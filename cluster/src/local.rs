//! A collection on one node: the storage log in front of one shard, so every acknowledged
//! write survives `kill -9`.
//!
//! Write: take the next log index and queue the command's bytes (one short lock), wait for the
//! log's group commit to make them durable, then apply in index order and acknowledge. Many
//! concurrent writers share one fsync. Open: `Shard::open` comes back at its durable index and
//! the log after it is replayed. `checkpoint` seals and persists the shard, then purges the log
//! it made unnecessary.
//!
//! This is the single-member shape of a shard's Raft group: the openraft state machine and log
//! store will wrap these same two parts, with the log index becoming the Raft log index.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use std::sync::atomic::{AtomicI64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use parking_lot::{Condvar, Mutex};
use vecraft_storage::command::Command;
use vecraft_storage::log::{Log, LogOptions};
use vecraft_storage::schema::CollectionSchema;
use vecraft_storage::shard::{Applied, Shard, ShardOptions};
use vecraft_storage::{Error, Result};

use crate::metrics::WRITES;

/// Log entries replayed per read on open.
const REPLAY_CHUNK: u64 = 1024;

pub struct LocalCollection {
    dir: PathBuf,
    log: Log,
    shard: Shard,
    /// The last index handed to a writer.
    next_index: Mutex<u64>,
    /// The last index applied to the shard, and a wake-up for writers waiting their turn.
    applied: Mutex<u64>,
    turn: Condvar,
    /// The next row id, for a collection whose key is a hidden row id.
    next_row_id: AtomicI64,
}

impl LocalCollection {
    /// Opens (or creates, with `schema`) the collection in `dir` and replays its log.
    pub fn open(dir: &Path, schema: Option<CollectionSchema>, opts: ShardOptions) -> Result<Self> {
        // The log's directory lock comes first: opening the shard removes files its manifest
        // does not name, which must never happen beside a live instance.
        let (log, _recovery) = Log::open(&dir.join("log"), LogOptions::default())?;
        let shard = Shard::open(&dir.join("shard"), schema, opts)?;
        let from = shard.applied_index() + 1;
        let purged = log.last_purged().unwrap_or(0);
        let last = log.last_index().unwrap_or(0).max(purged);
        let first = log.first_index().unwrap_or(from);
        if purged >= from || (from <= last && first > from) {
            return Err(Error::corrupt(
                dir,
                format!("the log starts after index {from}, which the shard has not applied"),
            ));
        }
        let mut at = from;
        while at <= last {
            let end = (at + REPLAY_CHUNK).min(last + 1);
            for (index, bytes) in log.read(at..end)? {
                replayed(shard.apply(index, &Command::decode(&bytes)?))?;
            }
            at = end;
        }
        let applied = shard.applied_index().max(last);
        let next_row_id = AtomicI64::new(max_row_id(&shard)? + 1);
        Ok(LocalCollection {
            dir: dir.to_path_buf(),
            log,
            shard,
            next_index: Mutex::new(applied),
            applied: Mutex::new(applied),
            turn: Condvar::new(),
            next_row_id,
        })
    }

    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes `command` durable, applies it, and only then returns. A command the schema
    /// refuses is refused here, before it reaches the log.
    pub fn write(&self, command: &Command) -> Result<Applied> {
        let started = std::time::Instant::now();
        let with_ids = self.assign_row_ids(command)?;
        let command = with_ids.as_ref().unwrap_or(command);
        self.shard.check(command)?;
        let bytes = command.encode()?;
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let index = {
            let mut next = self.next_index.lock();
            let index = *next + 1;
            let done = Box::new(move |r: Result<()>| {
                let _ = done_tx.send(r);
            });
            self.log.append_with_callback(vec![(index, bytes)], done)?;
            *next = index;
            index
        };
        done_rx.recv().map_err(|_| Error::Closed)??;
        let applied = self.apply_in_turn(index, command)?;
        WRITES.written(command, started.elapsed());
        Ok(applied)
    }

    /// For a collection keyed by a hidden row id, the insert with fresh ids added (rows
    /// inserted by SQL never carry one); `None` when there is nothing to add.
    fn assign_row_ids(&self, command: &Command) -> Result<Option<Command>> {
        let schema = self.shard.schema();
        let Command::Insert(batch) = command else {
            return Ok(None);
        };
        let key = &schema.columns[schema.primary_key].name;
        if !schema.hidden_key || batch.schema().index_of(key).is_ok() {
            return Ok(None);
        }
        let rows = batch.num_rows() as i64;
        let first = self.next_row_id.fetch_add(rows, Ordering::Relaxed);
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(first..first + rows));
        let mut fields = batch.schema().fields().to_vec();
        fields.push(Arc::new(Field::new(key, DataType::Int64, false)));
        let mut columns = batch.columns().to_vec();
        columns.push(ids);
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(Some(Command::Insert(batch)))
    }

    /// Applies `index` once every earlier index has been applied.
    fn apply_in_turn(&self, index: u64, command: &Command) -> Result<Applied> {
        let mut applied = self.applied.lock();
        while *applied + 1 < index {
            self.turn.wait(&mut applied);
        }
        // Pass the turn on even if apply panics, so later writers are not stuck behind it.
        struct PassTurn<'a>(&'a Condvar);
        impl Drop for PassTurn<'_> {
            fn drop(&mut self) {
                self.0.notify_all();
            }
        }
        let _pass = PassTurn(&self.turn);
        *applied = index;
        self.shard.apply(index, command)
    }

    /// Seals and persists the shard, then drops the log it no longer needs. Returns the index
    /// up to which the log was purged.
    pub fn checkpoint(&self) -> Result<u64> {
        let durable = self.shard.flush()?;
        if durable > 0 {
            self.log.purge(durable)?;
        }
        Ok(durable)
    }
}

/// A replayed command the schema refused was refused when first written too (its index is
/// consumed either way); any other failure stops the open.
fn replayed(result: Result<Applied>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(
            Error::InvalidArgument(_)
            | Error::DimensionMismatch { .. }
            | Error::InvalidVector(_)
            | Error::UnknownColumn(_)
            | Error::DuplicateKey(_)
            | Error::Arrow(_),
        ) => Ok(()),
        Err(e) => Err(e),
    }
}

impl std::fmt::Debug for LocalCollection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCollection")
            .field("dir", &self.dir)
            .finish()
    }
}

/// A shared handle, as the planner and gateway hold it.
pub type CollectionHandle = Arc<LocalCollection>;

/// The largest row id in a collection keyed by a hidden row id (0 when empty or keyed by the
/// user).
fn max_row_id(shard: &Shard) -> Result<i64> {
    let schema = shard.schema();
    if !schema.hidden_key {
        return Ok(0);
    }
    let key = schema.columns[schema.primary_key].name.clone();
    let mut max = 0;
    for batch in shard.scan(Some(&[key]), None)? {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        if let Some(m) = arrow::compute::max(ids) {
            max = max.max(m);
        }
        debug_assert_eq!(ids.null_count(), 0, "row ids are never null");
    }
    Ok(max)
}
