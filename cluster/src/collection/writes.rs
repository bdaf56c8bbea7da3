//! Writing to a collection: a statement's command split by shard (each row to the shard of
//! its key), each part checked, then proposed to its shard's group.
//!
//! `write_async` is what a statement awaits: no thread waits on an fsync or another node.
//! `write` is for callers outside async code.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use vecraft_storage::command::Command;
use vecraft_storage::shard::Applied;
use vecraft_storage::txn::TxnWrite;
use vecraft_storage::{Error, Result};

use super::Collection;
use crate::metrics::WRITES;
use crate::route::{shard_of, split_keys, split_rows};
use crate::shard_handle::blocking;

impl Collection {
    /// Makes `command` durable on the shards it concerns and applies it there; returns once
    /// every part is applied.
    pub fn write(&self, command: &Command) -> Result<Applied> {
        let started = Instant::now();
        let with_ids = self.assign_row_ids(command)?;
        let command = with_ids.as_ref().unwrap_or(command);
        let applied = match self.shards.as_slice() {
            [only] => {
                only.check(command)?;
                only.propose(command)?
            }
            // Exempt from tokio's cooperative budget, which a thread blocked here could not
            // yield to (`Batcher::propose_blocking`); a wait on other nodes frees the runtime
            // thread first, as `raft::run` does.
            _ => {
                let routed = || {
                    let routed = tokio::task::unconstrained(self.write_routed(command));
                    futures::executor::block_on(routed)
                };
                match self.is_remote() {
                    true => blocking(routed)?,
                    false => routed()?,
                }
            }
        };
        WRITES.written(command, started.elapsed());
        Ok(applied)
    }

    /// `write`, awaited, with no thread waiting on an fsync or on another node: a statement
    /// whose shard has no leader holds up its own session only.
    pub async fn write_async(&self, command: &Command) -> Result<Applied> {
        let started = Instant::now();
        let with_ids = self.assign_row_ids(command)?;
        let command = with_ids.as_ref().unwrap_or(command);
        let applied = match self.shards.as_slice() {
            [only] => {
                only.check(command)?;
                only.propose_async(command).await?
            }
            _ => self.write_routed(command).await?,
        };
        WRITES.written(command, started.elapsed());
        Ok(applied)
    }

    /// Checks every shard's part of `command`, then proposes them one shard after another;
    /// no other routed write of the collection comes between.
    async fn write_routed(&self, command: &Command) -> Result<Applied> {
        let parts = self.split(command)?;
        let _turn = self.routed_writes.lock().await;
        for (shard, part) in self.shards.iter().zip(&parts) {
            if let Some(part) = part {
                shard.check(part)?;
            }
        }
        let (mut total, mut shards_done) = (Applied::default(), 0);
        for (shard, part) in self.shards.iter().zip(&parts) {
            let Some(part) = part else { continue };
            // Checked above, under the same lock.
            match shard.propose_async(part).await {
                Ok(applied) => {
                    shards_done += 1;
                    total.fresh |= applied.fresh;
                    total.rows_written += applied.rows_written;
                    total.rows_deleted += applied.rows_deleted;
                }
                Err(e) if shards_done > 0 => {
                    return Err(Error::Partial {
                        shards: shards_done,
                        rows: total.rows_written + total.rows_deleted,
                        source: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// `command`'s part for each shard (`None`: nothing for that shard).
    fn split(&self, command: &Command) -> Result<Vec<Option<Command>>> {
        let n = self.shards.len();
        Ok(match command {
            Command::Insert(batch) | Command::Upsert(batch) | Command::InsertMissing(batch) => {
                let keys = self.row_keys(batch)?;
                // A key's rows all go to one shard, so each decides its keys alone.
                let part = |b: RecordBatch| match command {
                    Command::Insert(_) => Command::Insert(b),
                    Command::InsertMissing(_) => Command::InsertMissing(b),
                    _ => Command::Upsert(b),
                };
                split_rows(batch, &keys, n)?
                    .into_iter()
                    .map(|rows| rows.map(part))
                    .collect()
            }
            Command::Delete(keys) => split_keys(keys, n)
                .into_iter()
                .map(|keys| (!keys.is_empty()).then_some(Command::Delete(keys)))
                .collect(),
            Command::Truncate | Command::SetIndex { .. } => vec![Some(command.clone()); n],
            Command::Atomic(_)
            | Command::Prepare { .. }
            | Command::Resolve { .. }
            | Command::Forget { .. } => {
                return Err(Error::InvalidArgument(
                    "a transaction's commands go to shards through `txn::commit`".into(),
                ));
            }
        })
    }

    /// `batch`'s keys as the shards store them (so each row is placed by the stored key).
    fn row_keys(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let schema = self.schema();
        let key = &schema.columns[schema.primary_key].name;
        let column = batch.schema().index_of(key).map_err(|_| {
            Error::InvalidArgument(format!("rows without their key column \"{key}\""))
        })?;
        let key_type = schema.columns[schema.primary_key].ty.arrow_type();
        Ok(arrow::compute::cast(batch.column(column), &key_type)?)
    }

    /// A transaction's `write` on this collection, split by shard (`None`: nothing there);
    /// a truncation goes to every shard.
    pub fn split_txn(&self, write: &TxnWrite) -> Result<Vec<Option<TxnWrite>>> {
        // Every field named, so a new one cannot be left behind here.
        let TxnWrite {
            truncate,
            upserts,
            deletes,
            new_keys,
            if_missing,
            read_versions,
        } = write;
        let n = self.shards.len();
        let mut read = vec![Vec::new(); n];
        for (key, version) in read_versions {
            read[shard_of(key, n)].push((key.clone(), *version));
        }
        let mut read = read.into_iter();
        let rows = match upserts {
            Some(batch) => split_rows(batch, &self.row_keys(batch)?, n)?,
            None => vec![None; n],
        };
        let mut keys = [deletes, new_keys, if_missing].map(|k| split_keys(k, n).into_iter());
        Ok(rows
            .into_iter()
            .map(|upserts| {
                let [deletes, new_keys, if_missing] = keys.each_mut().map(|k| k.next());
                let part = TxnWrite {
                    truncate: *truncate,
                    upserts,
                    deletes: deletes.expect("a part per shard"),
                    new_keys: new_keys.expect("a part per shard"),
                    if_missing: if_missing.expect("a part per shard"),
                    read_versions: read.next().expect("a part per shard"),
                };
                (!part.is_empty()).then_some(part)
            })
            .collect())
    }

    /// For a collection keyed by a hidden row id, the insert with fresh ids added (rows
    /// inserted by SQL never carry one); `None` when there is nothing to add.
    fn assign_row_ids(&self, command: &Command) -> Result<Option<Command>> {
        let schema = self.schema();
        // No row of a table without a key conflicts: DO NOTHING inserts them all.
        let (Command::Insert(batch) | Command::InsertMissing(batch)) = command else {
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
}
