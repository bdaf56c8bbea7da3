//! `INSERT … ON CONFLICT (key) DO UPDATE SET a = EXCLUDED.a` that sets only some columns
//! (SQLAlchemy's `on_conflict_do_update(set_=…)`, langchain's `PGVector`, which keeps each
//! row's `collection_id`): a row whose key exists keeps its stored values of the columns the
//! statement does not set. Each batch of new rows reads those stored values by key, as of
//! now from the leaders, takes them into the batch, and is written as a replacing upsert.
//!
//! Not atomic with a concurrent write of the same key between the read and the write (each
//! statement is its own transaction here, and writes are per row): the later write wins
//! whole, where PostgreSQL would lock the row.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::interleave;
use datafusion::error::{DataFusionError, Result};
use vecraft_storage::filter::Filter;
use vecraft_storage::key::{Key, keys_of};

use crate::collection::{CollectionSource, Consistency, storage_error};

/// `batch` with the `keep` columns of rows whose key is stored taken from storage.
pub fn keep_stored(
    source: &dyn CollectionSource,
    batch: RecordBatch,
    keep: &[String],
) -> Result<RecordBatch> {
    let pk = source.schema().primary_key().name.clone();
    let column = |b: &RecordBatch, name: &str| {
        b.column_by_name(name)
            .cloned()
            .ok_or_else(|| DataFusionError::Internal(format!("no column {name} to upsert")))
    };
    let keys = keys_of(&column(&batch, &pk)?).map_err(storage_error)?;
    let filter = Filter::keys_in(&pk, &keys);
    let mut wanted = keep.to_vec();
    wanted.push(pk.clone());
    let stored = source.scan(Some(&wanted), Some(&filter), Consistency::Strong)?;
    // Where each stored key is: (its batch, counted from 1, and row).
    let mut found: HashMap<Key, (usize, usize)> = HashMap::new();
    for (at, b) in stored.iter().enumerate() {
        for (row, key) in keys_of(&column(b, &pk)?)
            .map_err(storage_error)?
            .into_iter()
            .enumerate()
        {
            found.insert(key, (at + 1, row));
        }
    }
    if found.is_empty() {
        return Ok(batch); // every row is new
    }
    let picks: Vec<(usize, usize)> = keys
        .iter()
        .enumerate()
        .map(|(row, key)| found.get(key).copied().unwrap_or((0, row)))
        .collect();
    let mut columns = batch.columns().to_vec();
    for name in keep {
        let at = batch.schema().index_of(name)?;
        let mut sources = vec![column(&batch, name)?];
        for b in &stored {
            sources.push(column(b, name)?);
        }
        let sources: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
        columns[at] = interleave(&sources, &picks)?;
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// The rows of `batch` that `ON CONFLICT DO NOTHING` inserts: those whose key is not stored,
/// the first of a repeated key (what `… RETURNING` gives back). Read as of now from the
/// leaders; the write that follows still skips a key written in between.
pub fn missing_rows(source: &dyn CollectionSource, batch: RecordBatch) -> Result<RecordBatch> {
    let schema = source.schema();
    if schema.hidden_key {
        return Ok(batch); // row ids are new
    }
    let pk = schema.primary_key().name.clone();
    let Some(column) = batch.column_by_name(&pk).cloned() else {
        return Err(DataFusionError::Internal(format!(
            "no column {pk} to insert"
        )));
    };
    let keys = keys_of(&column).map_err(storage_error)?;
    let filter = Filter::keys_in(&pk, &keys);
    let mut seen: std::collections::HashSet<Key> = std::collections::HashSet::new();
    for stored in source.scan(
        Some(std::slice::from_ref(&pk)),
        Some(&filter),
        Consistency::Strong,
    )? {
        let Some(stored) = stored.column_by_name(&pk) else {
            continue;
        };
        seen.extend(keys_of(stored).map_err(storage_error)?);
    }
    let new: datafusion::arrow::array::BooleanArray =
        keys.into_iter().map(|k| Some(seen.insert(k))).collect();
    Ok(datafusion::arrow::compute::filter_record_batch(
        &batch, &new,
    )?)
}
