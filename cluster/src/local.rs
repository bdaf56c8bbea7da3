//! A collection on one node: one shard and its Raft group, whose log is the shard's storage
//! log, so every acknowledged write survives `kill -9`.
//!
//! Write: check the command against the schema, propose it to the group, and return once it is
//! durable, committed and applied (`raft::Group`). Many concurrent writers share one fsync.
//! Open: `Shard::open` comes back at its durable index and the group replays the log after
//! it before the collection is handed out. `checkpoint` is a Raft snapshot: the shard seals
//! and persists, then the log it covers is purged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::sync::atomic::{AtomicI64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use vecraft_storage::command::Command;
use vecraft_storage::log::{Log, LogOptions};
use vecraft_storage::schema::CollectionSchema;
use vecraft_storage::shard::{Applied, Shard, ShardOptions};
use vecraft_storage::{Error, Result};

use crate::metrics::WRITES;
use crate::raft::Group;

pub struct LocalCollection {
    dir: PathBuf,
    shard: Arc<Shard>,
    group: Group,
    /// The next row id, for a collection whose key is a hidden row id.
    next_row_id: AtomicI64,
}

impl LocalCollection {
    /// Opens (or creates, with `schema`) the collection in `dir` and replays its log.
    pub fn open(dir: &Path, schema: Option<CollectionSchema>, opts: ShardOptions) -> Result<Self> {
        // The log's directory lock comes first: opening the shard removes files its manifest
        // does not name, which must never happen beside a live instance.
        let (log, _recovery) = Log::open(&dir.join("log"), LogOptions::default())?;
        let shard = Arc::new(Shard::open(&dir.join("shard"), schema, opts)?);
        let group = Group::start(dir, Arc::new(log), Arc::clone(&shard))?;
        let next_row_id = AtomicI64::new(max_row_id(&shard)? + 1);
        Ok(LocalCollection {
            dir: dir.to_path_buf(),
            shard,
            group,
            next_row_id,
        })
    }

    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes `command` durable through the shard's Raft group, applies it, and only then
    /// returns. A command the schema refuses is refused here, before it reaches the log.
    pub fn write(&self, command: &Command) -> Result<Applied> {
        let started = std::time::Instant::now();
        let with_ids = self.assign_row_ids(command)?;
        let command = with_ids.as_ref().unwrap_or(command);
        self.shard.check(command)?;
        let applied = self.group.write(command.encode()?)?;
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

    /// Seals and persists the shard, then drops the log it no longer needs. Returns the index
    /// up to which the log was purged.
    pub fn checkpoint(&self) -> Result<u64> {
        self.group.checkpoint()
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
